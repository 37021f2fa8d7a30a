/**
 * Conformance checking without /dev/kvm: the comparison itself (userspaceView.ts), and
 * `conform` with the model standing in for KVM, unchanged or with one thing changed.
 */
import { readFileSync } from "node:fs"
import { join } from "node:path"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import { describe, expect, it } from "vitest"
import type { MachineConfig } from "../../src/events/MachineConfig.ts"
import type { RunEnd, VmEvent } from "../../src/events/VmEvent.ts"
import type { KernelFactory } from "../../src/qemu/machine.ts"
import { conform, ConformanceDivergence, ConformanceMemoryDiffers } from "../../src/replay/conform.ts"
import { modelOnKvmClock } from "../../src/replay/kvmClock.ts"
import { isUserspaceVisible, UserspaceComparison } from "../../src/replay/userspaceView.ts"
import { repoRoot } from "../support/cli.ts"

const hello = readFileSync(join(repoRoot, "guests/hello.bin"))
const helloConfig: MachineConfig = { memoryMiB: 16, loadAddress: 0x7c00, entry: 0x7c00, mode: "real", instructionLimit: 1_000_000 }

const registers: RunEnd["registers"] = { eax: 0, ecx: 0, edx: 0, ebx: 0, esp: 0x7c00, ebp: 0, esi: 0, edi: 0, eip: 0x1000ee, eflags: 0x46, cr0: 0x60000011, cr3: 0 }
const out: VmEvent = { _tag: "Pio", seq: 7, vcpu: 0, time: 3, direction: "out", port: 0xf4, size: 4, count: 1, values: [0x21] }
const ioExit: VmEvent = { _tag: "UserspaceExit", seq: 8, vcpu: 0, time: 3, exitReason: 2 }
const end = (eip: number, seq = 9, time = 3): VmEvent => ({ _tag: "RunEnd", seq, vcpu: 0, time, reason: "debug-exit", exitCode: 67, registers: { ...registers, eip } })

describe("the userspace view", () => {
  it("keeps what kvm_run and the devices show, not the kernel's own events or the host's tracepoints", () => {
    expect(isUserspaceVisible(out)).toBe(true)
    expect(isUserspaceVisible({ _tag: "VmEntry", seq: 0, vcpu: 0, time: 0, rip: 0 })).toBe(false)
    expect(isUserspaceVisible({ _tag: "Tracepoint", seq: 0, vcpu: 0, time: 0, name: "kvm_exit", fields: "reason io" })).toBe(false)
  })

  it("compares without position, time or each backend's free text", () => {
    const c = new UserspaceComparison()
    expect(c.equal(out, { ...out, seq: 70, time: 300 })).toBe(true)
    expect(c.equal({ ...ioExit, detail: "from KVM" }, ioExit)).toBe(true)
    expect(c.equal(out, { ...out, values: [0x22] })).toBe(false)
  })

  it("leaves EIP out only where a run ends on the exit of an OUT, which KVM has already completed", () => {
    const afterOut = new UserspaceComparison()
    afterOut.equal(out, out)
    afterOut.equal(ioExit, ioExit)
    expect(afterOut.equal(end(0x1000f0), end(0x1000ee, 300, 900))).toBe(true)
    expect(new UserspaceComparison().equal(end(0x1000f0), end(0x1000ee))).toBe(false)
  })
})

/** The model on KVM's clock, with `change` applied to what it builds: a stand-in for a KVM that differs. */
const modelWith = (change: { ram?: (ram: Uint8Array) => void; flipThirdSerialByte?: boolean }): KernelFactory =>
  Object.assign(
    (log: Parameters<KernelFactory>[0]) => {
      const vm = modelOnKvmClock(log)
      return {
        setUserMemoryRegion: (r: Parameters<typeof vm.setUserMemoryRegion>[0]) => vm.setUserMemoryRegion(r),
        createVcpu: (id: number) => {
          const vcpu = vm.createVcpu(id)
          const run = vcpu.run.bind(vcpu)
          let serialOuts = 0
          // The third write to port 0x3f8 (the divisor latch, then "H", then "e") leaves with its case flipped.
          if (change.flipThirdSerialByte === true) {
            vcpu.run = () => {
              const exit = run()
              if (exit._tag === "KVM_EXIT_IO" && exit.direction === "out" && exit.port === 0x3f8 && ++serialOuts === 3) exit.data[0] ^= 0x20
              return exit
            }
          }
          return vcpu
        }
      }
    },
    {
      allocateRam: (bytes: number) => {
        const ram = new Uint8Array(bytes)
        change.ram?.(ram)
        return ram
      }
    }
  )

describe("conform", () => {
  it("a kernel that behaves like the model conforms, with the count of userspace events", async () => {
    const report = await Effect.runPromise(conform(helloConfig, hello, modelOnKvmClock))
    expect(report.events).toBe(296)
    expect(report.memorySha256).toMatch(/^[0-9a-f]{64}$/)
  })

  it("reports the first userspace event that differs, with the events before it", async () => {
    const exit = await Effect.runPromiseExit(conform(helloConfig, hello, modelWith({ flipThirdSerialByte: true })))
    const error = Exit.isFailure(exit) && exit.cause._tag === "Fail" ? exit.cause.error : undefined
    expect(error).toBeInstanceOf(ConformanceDivergence)
    const d = error as ConformanceDivergence
    expect(d.kvm?._tag).toBe("DeviceOutput")
    expect(d.model?._tag).toBe("DeviceOutput")
    expect(d.context).toHaveLength(5)
    expect(d.message).toMatch(/^the model diverges from KVM at userspace event #\d+: KVM has #\d+ t=\d+ vcpu0 device serial0 output "E", the model has #\d+ t=\d+ vcpu0 device serial0 output "e"$/)
  })

  it("reports the first byte of RAM that differs when every event matched", async () => {
    const exit = await Effect.runPromiseExit(conform(helloConfig, hello, modelWith({ ram: (ram) => void (ram[0x9000] = 0x5a) })))
    const error = Exit.isFailure(exit) && exit.cause._tag === "Fail" ? exit.cause.error : undefined
    expect(error).toBeInstanceOf(ConformanceMemoryDiffers)
    expect((error as ConformanceMemoryDiffers).address).toBe(0x9000)
    expect((error as ConformanceMemoryDiffers).message).toMatch(/^all 296 userspace events match, but guest RAM differs from 0x9000 \(KVM 0x5a, model 0x0;/)
  })
})
