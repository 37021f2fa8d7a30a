import { readFileSync } from "node:fs"
import { join } from "node:path"
import * as Either from "effect/Either"
import type { IrqchipMode, MachineConfig } from "../../src/events/MachineConfig.ts"
import type { RunEnd, VmEvent } from "../../src/events/VmEvent.ts"
import { Vcpu } from "../../src/kernel/vcpu.ts"
import { cpuExecOnce, logRunEnd } from "../../src/qemu/cpuExec.ts"
import { createMachine } from "../../src/qemu/machine.ts"
import { repoRoot } from "./cli.ts"

export const irqchipModes: ReadonlyArray<IrqchipMode> = ["kernel", "split", "userspace"]

/** The interrupt guests and how `vmrr run` is told to load them. */
export const interruptGuests = {
  pit: { mode: "real", loadAddress: 0x7c00 },
  rtc: { mode: "real", loadAddress: 0x7c00 },
  lapic: { mode: "pm32", loadAddress: 0x100000 }
} as const

export type InterruptGuest = keyof typeof interruptGuests

export const guestImage = (name: InterruptGuest): Uint8Array => new Uint8Array(readFileSync(join(repoRoot, "guests", `${name}.bin`)))

export const guestConfig = (name: InterruptGuest, irqchip: IrqchipMode, icountShift = 0): MachineConfig => ({
  memoryMiB: 16,
  loadAddress: interruptGuests[name].loadAddress,
  entry: interruptGuests[name].loadAddress,
  mode: interruptGuests[name].mode,
  // Virtual time: a halted vCPU skips to the next tick, so slow PITs use up time quickly.
  instructionLimit: 10_000_000_000,
  irqchip,
  icountShift
})

export interface GuestRun {
  readonly events: ReadonlyArray<VmEvent>
  /** Everything the guest printed (serial0 and debugcon). */
  readonly output: string
  readonly end: RunEnd
  /** Injections the CPU was asked to take while IF = 0 or in an interrupt shadow (must stay empty). */
  readonly badInjections: ReadonlyArray<string>
}

/**
 * Runs a guest to its end as `vmrr run` does (no host input, the fixed wall clock),
 * watching every injection the kernel makes: the CPU must be interruptible then.
 */
export const runGuest = (config: MachineConfig, image: Uint8Array): GuestRun => {
  const machine = Either.getOrThrow(createMachine(config, image))
  const cpu = (machine.vcpu as Vcpu).cpu
  const badInjections: string[] = []
  const inject = cpu.injectExternalInterrupt.bind(cpu)
  cpu.injectExternalInterrupt = (vector: number) => {
    if ((cpu.getEflags() & 0x200) === 0 || cpu.interruptShadow !== 0) {
      badInjections.push(`vector ${vector} at t=${cpu.retired} (eflags 0x${cpu.getEflags().toString(16)}, shadow ${cpu.interruptShadow})`)
    }
    return inject(vector)
  }
  const events: VmEvent[] = []
  for (;;) {
    const outcome = cpuExecOnce(machine)
    if (outcome !== undefined) {
      logRunEnd(machine, outcome)
      events.push(...machine.log.drainEvents())
      break
    }
    if (machine.log.pending > 4096) events.push(...machine.log.drainEvents())
  }
  const output = Buffer.from(events.flatMap((e) => (e._tag === "DeviceOutput" ? [...e.bytes] : []))).toString("latin1")
  const end = events.at(-1)
  if (end?._tag !== "RunEnd") throw new Error("the event stream does not end with RunEnd")
  return { events, output, end, badInjections }
}

/** Event counts by kind, for comparing the modes. */
export const countByKind = (events: ReadonlyArray<VmEvent>): Map<string, number> => {
  const counts = new Map<string, number>()
  for (const e of events) counts.set(e._tag, (counts.get(e._tag) ?? 0) + 1)
  return counts
}
