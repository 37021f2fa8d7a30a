/**
 * Conformance of the model to the machine: one guest, one machine config, run once on
 * the real /dev/kvm and once on the model, compared on what userspace sees (the events
 * of userspaceView.ts, final registers included) and then on guest RAM. KVM is the
 * reference: where they differ, the model is what needs explaining.
 */
import { createHash } from "node:crypto"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import { describeEvent } from "../events/describe.ts"
import type { MachineConfig } from "../events/MachineConfig.ts"
import type { VmEvent } from "../events/VmEvent.ts"
import { cpuExecOnce, logRunEnd } from "../qemu/cpuExec.ts"
import type { MachineSetupError } from "../qemu/errors.ts"
import { createMachine, type KernelFactory } from "../qemu/machine.ts"
import { CONTEXT_EVENTS, contextLines } from "./divergence.ts"
import { modelOnKvmClock } from "./kvmClock.ts"
import { isUserspaceVisible, UserspaceComparison } from "./userspaceView.ts"

/** The first userspace-visible event where the model parts from KVM, in the form of a replay divergence. */
export class ConformanceDivergence extends Data.TaggedError("ConformanceDivergence")<{
  /** Index in the userspace-visible stream (= events that matched before it). */
  readonly index: number
  readonly kvm: VmEvent | undefined
  readonly model: VmEvent | undefined
  /** The last KVM events before it, oldest first. */
  readonly context: ReadonlyArray<VmEvent>
}> {
  override get message(): string {
    const show = (e: VmEvent | undefined) => (e === undefined ? "(end of run)" : describeEvent(e))
    return `the model diverges from KVM at userspace event #${this.index}: KVM has ${show(this.kvm)}, the model has ${show(this.model)}`
  }

  get details(): ReadonlyArray<string> {
    return contextLines(this.context)
  }
}

/** Every event matched, but guest RAM at the end did not. */
export class ConformanceMemoryDiffers extends Data.TaggedError("ConformanceMemoryDiffers")<{
  readonly events: number
  readonly address: number
  readonly kvm: number
  readonly model: number
  readonly kvmSha256: string
  readonly modelSha256: string
}> {
  override get message(): string {
    const hex = (n: number) => `0x${n.toString(16)}`
    return (
      `all ${this.events} userspace events match, but guest RAM differs from ${hex(this.address)} ` +
      `(KVM ${hex(this.kvm)}, model ${hex(this.model)}; sha256 KVM ${this.kvmSha256.slice(0, 16)}, model ${this.modelSha256.slice(0, 16)})`
    )
  }
}

/** The KVM side failed outright (an ioctl refused, /dev/kvm unusable): its message, as one line. */
export class ConformanceRunFailed extends Data.TaggedError("ConformanceRunFailed")<{ readonly backend: string; readonly reason: string }> {
  override get message(): string {
    return `the run on ${this.backend} failed: ${this.reason}`
  }
}

export interface ConformReport {
  /** Userspace-visible events that matched, RunEnd included. */
  readonly events: number
  readonly memorySha256: string
}

export type ConformError = MachineSetupError | ConformanceDivergence | ConformanceMemoryDiffers | ConformanceRunFailed

interface Run {
  readonly events: ReadonlyArray<VmEvent>
  readonly ram: Uint8Array
}

/** The vCPU loop to the end, keeping what userspace saw; `config.instructionLimit` counts KVM_RUN calls. */
const runToEnd = (config: MachineConfig, image: Uint8Array, kernel: KernelFactory, backend: string): Effect.Effect<Run, MachineSetupError | ConformanceRunFailed> =>
  Effect.flatMap(
    Effect.try({
      try: () => createMachine(config, image, kernel),
      catch: (e) => new ConformanceRunFailed({ backend, reason: e instanceof Error ? e.message : String(e) })
    }),
    (created): Effect.Effect<Run, MachineSetupError | ConformanceRunFailed> =>
      Either.match(created, {
        onLeft: (e) => Effect.fail(e),
        onRight: (machine) =>
          Effect.try({
            try: () => {
              const events: VmEvent[] = []
              const keep = () => {
                for (const e of machine.log.drainEvents()) if (isUserspaceVisible(e)) events.push(e)
              }
              for (;;) {
                const outcome = cpuExecOnce(machine)
                if (outcome !== undefined) {
                  logRunEnd(machine, outcome)
                  keep()
                  return { events, ram: machine.ram }
                }
                keep()
              }
            },
            catch: (e) => new ConformanceRunFailed({ backend, reason: e instanceof Error ? e.message : String(e) })
          })
      })
  )

const sha256 = (bytes: Uint8Array): string => createHash("sha256").update(bytes).digest("hex")

/**
 * Runs the guest on `kvm` and on the model (both timed in KVM_RUN calls) and compares them: the first userspace event
 * that differs (with the KVM events before it), or else the first byte of RAM.
 */
export const conform = (config: MachineConfig, image: Uint8Array, kvm: KernelFactory): Effect.Effect<ConformReport, ConformError> =>
  Effect.gen(function* () {
    const onKvm = yield* runToEnd(config, image, kvm, "/dev/kvm")
    // On KVM's clock, so that a --limit cuts both runs at the same KVM_RUN.
    const onModel = yield* runToEnd(config, image, modelOnKvmClock, "the model")
    const comparison = new UserspaceComparison()
    const n = Math.max(onKvm.events.length, onModel.events.length)
    for (let i = 0; i < n; i++) {
      const k = onKvm.events[i]
      const m = onModel.events[i]
      if (k === undefined || m === undefined || !comparison.equal(k, m)) {
        return yield* new ConformanceDivergence({ index: i, kvm: k, model: m, context: onKvm.events.slice(Math.max(0, i - CONTEXT_EVENTS), i) })
      }
    }
    const kvmSha256 = sha256(onKvm.ram)
    const modelSha256 = sha256(onModel.ram)
    if (kvmSha256 !== modelSha256) {
      let a = 0
      while (a < onKvm.ram.length && onKvm.ram[a] === onModel.ram[a]) a++
      return yield* new ConformanceMemoryDiffers({ events: n, address: a, kvm: onKvm.ram[a], model: onModel.ram[a], kvmSha256, modelSha256 })
    }
    return { events: n, memorySha256: kvmSha256 }
  })
