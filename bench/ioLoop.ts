/**
 * The guest of the I/O and trace measurements: `out 0x80, al` (the PC's POST port, which
 * nothing claims) then `loop`, in flat 32-bit protected mode. Each iteration is one I/O
 * exit round trip and, on the model, five events (kvm_exit, kvm_pio, kvm_userspace_exit,
 * the unassigned access, kvm_entry) for two instructions.
 */
import type { MachineConfig } from "../src/events/MachineConfig.ts"
import { le32 } from "./stats.ts"

export const EVENTS_PER_ITERATION = 5

export interface Guest {
  readonly config: MachineConfig
  readonly image: Uint8Array
}

/** mov ecx, n; l: out 0x80, al; loop l; hlt */
export const ioLoopGuest = (iterations: number): Guest => ({
  image: Uint8Array.from([0xb9, ...le32(iterations), 0xe6, 0x80, 0xe2, 0xfc, 0xf4]),
  // The limit is only a backstop: the loop ends with HLT after 2 instructions per iteration.
  config: { memoryMiB: 16, loadAddress: 0x100000, entry: 0x100000, mode: "pm32", instructionLimit: Math.max(100_000_000, 4 * iterations) }
})

/** Iterations of the I/O loop that give about `events` events on the model. */
export const iterationsFor = (events: number): number => Math.max(1, Math.round(events / EVENTS_PER_ITERATION))
