import * as Schema from "effect/Schema"

/**
 * Everything the machine is built from, apart from the guest image. A trace's header
 * carries it, so a replay rebuilds exactly the same machine.
 */
export const CpuMode = Schema.Literal("real", "pm32")
export type CpuMode = typeof CpuMode.Type

export const MachineConfig = Schema.Struct({
  /** Guest RAM in MiB, one memslot at guest-physical 0. */
  memoryMiB: Schema.Int.pipe(Schema.between(1, 3072)),
  /** Guest-physical address the image is loaded at. */
  loadAddress: Schema.Int.pipe(Schema.between(0, 0xffffffff)),
  /** Where the vCPU starts: CS:IP = 0:entry in real mode, EIP = entry in pm32. */
  entry: Schema.Int.pipe(Schema.between(0, 0xffffffff)),
  mode: CpuMode,
  /** Stop after this many instructions (a runaway guest still ends, and deterministically). */
  instructionLimit: Schema.Int.pipe(Schema.between(1, Number.MAX_SAFE_INTEGER))
})
export type MachineConfig = typeof MachineConfig.Type

export const defaultInstructionLimit = 100_000_000
