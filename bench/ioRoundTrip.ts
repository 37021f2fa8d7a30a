/**
 * The I/O exit round trip (guest `out` → VM exit → userspace → device → VM entry) on the
 * model, without and with recording (bench/ioExit.ts), and the same guest and vCPU loop
 * on the real /dev/kvm through the KVM backend, where /dev/kvm opens: the model's time
 * as a multiple of KVM's, measured in the same run. Part of `npm run bench`.
 */
import * as Either from "effect/Either"
import { devKvmKernel, devKvmUnavailable, type DevKvmVm, freeGuestMemory } from "../src/devkvm/devKvm.ts"
import { cpuExecOnce } from "../src/qemu/cpuExec.ts"
import { createMachine } from "../src/qemu/machine.ts"
import { CHUNK_EVENTS } from "../src/qemu/runMachine.ts"
import { ioExitRoundTrip } from "./ioExit.ts"
import { ioLoopGuest } from "./ioLoop.ts"

export interface IoRoundTrip {
  readonly iterations: number
  readonly modelMicroseconds: number
  readonly modelRecordedMicroseconds: number
  readonly kvm:
    | { readonly iterations: number; readonly microseconds: number; readonly modelOverKvm: number }
    | { readonly skipped: string }
}

/**
 * µs per round trip on /dev/kvm: ioExit.ts's vCPU loop (cpuExecOnce, the log drained
 * per chunk) over the KVM backend, so the two differ only in the kernel behind the API.
 */
const kvmRoundTrip = (iterations: number): number => {
  const guest = ioLoopGuest(iterations)
  const machine = Either.getOrThrow(createMachine(guest.config, guest.image, devKvmKernel()))
  try {
    const start = performance.now()
    for (;;) {
      const outcome = cpuExecOnce(machine)
      if (outcome !== undefined) {
        if (outcome.reason !== "hlt") throw new Error(`the I/O loop on /dev/kvm ended with ${outcome.reason}: ${outcome.message ?? ""}`)
        break
      }
      if (machine.log.pending >= CHUNK_EVENTS) machine.log.drain()
    }
    return ((performance.now() - start) * 1000) / iterations
  } finally {
    ;(machine.vm as DevKvmVm).close()
    freeGuestMemory(machine.ram)
  }
}

/** Each of the three: the fastest of `runs` (the first also warms the JIT). */
export const measureIoRoundTrip = async (options: { readonly iterations: number; readonly kvmIterations: number; readonly runs: number }): Promise<IoRoundTrip> => {
  const { iterations, kvmIterations, runs } = options
  const modelMicroseconds = await ioExitRoundTrip({ iterations, runs })
  const modelRecordedMicroseconds = await ioExitRoundTrip({ iterations, runs, record: true })
  const unavailable = devKvmUnavailable()
  if (unavailable !== undefined) return { iterations, modelMicroseconds, modelRecordedMicroseconds, kvm: { skipped: unavailable.message } }
  const microseconds = Math.min(...Array.from({ length: runs }, () => kvmRoundTrip(kvmIterations)))
  return { iterations, modelMicroseconds, modelRecordedMicroseconds, kvm: { iterations: kvmIterations, microseconds, modelOverKvm: modelMicroseconds / microseconds } }
}
