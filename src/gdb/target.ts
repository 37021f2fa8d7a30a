/**
 * What the gdb stub drives: a machine that stands at an instruction boundary and can be
 * run forward to a later one, or, for a replay, put back at an earlier one. Positions
 * are instructions retired (virtual time), which a deterministic replay reaches the same
 * way every time. The stub knows nothing else of how a target gets there.
 */
import type { KvmDebugWatchpoint } from "../kernel/api.ts"
import type { RunOutcome } from "../qemu/cpuExec.ts"
import type { GeneralRegisters } from "./i386.ts"

/** Why a target cannot run on. */
export type TargetEnd =
  /** The guest's run is over (RunEnd). */
  | { readonly _tag: "Exited"; readonly outcome: RunOutcome }
  /** A replay that cannot go on: re-execution diverged from the recording, or the trace is damaged. */
  | { readonly _tag: "ReplayFailed"; readonly message: string }

/** Going back, which only a replay can. */
export interface History {
  /** Stands at `position`, earlier or later. */
  seek(position: number): void
  /** The latest position before `position` that the target restarts from cheaply (a checkpoint), or 0. */
  restartBefore(position: number): number
}

export interface Target {
  /** Instructions retired. */
  readonly position: number
  readonly end: TargetEnd | undefined
  /** Present on replays. */
  readonly history: History | undefined
  registers(): GeneralRegisters
  /** Linear address of the next instruction (CS base + EIP): where breakpoints are compared. */
  pc(): number
  /** Guest memory at linear addresses, through the guest's paging; undefined where unmapped. */
  readMemory(linear: number, length: number): Uint8Array | undefined
  /** Whether gdb may change the guest: not in a replay, nor in a run being recorded. */
  readonly writable: boolean
  /** KVM_SET_REGS with the integer registers (the selectors are left as they are). */
  writeRegisters(registers: GeneralRegisters): void
  /** False when a byte is unmapped or outside RAM (nothing is written then). */
  writeMemory(linear: number, bytes: Uint8Array): boolean
  /**
   * Runs until `position` instructions have retired or the target ends; a replay may
   * stop short at the time of its last event, a step before its end.
   */
  runTo(position: number): void
  /** Arms the CPU's debugger watchpoints for reads (or reads and writes) of these linear ranges (KVM_SET_GUEST_DEBUG). */
  watchAccesses(watchpoints: ReadonlyArray<KvmDebugWatchpoint>): void
  /** One bit per armed watchpoint the guest accessed since the last call. */
  accessHits(): number
  /** The answer to a `monitor` command, or undefined when the command is unknown. */
  monitor(command: string): string | undefined
}
