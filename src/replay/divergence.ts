import * as Data from "effect/Data"
import { describeEvent } from "../events/describe.ts"
import type { TraceCorrupt } from "../events/trace/errors.ts"
import type { Checkpoint } from "../events/trace/schema.ts"
import type { VmEvent } from "../events/VmEvent.ts"

/** The registers a report names, in `RunEnd`'s words. */
export type RegisterSet = Readonly<Record<string, number>>

/** The machine at a point in a run: its registers and the instruction about to execute there. */
export interface MachinePoint {
  readonly time: number
  readonly registers: RegisterSet
  /** `0x7c41: in (%dx),%al` */
  readonly instruction: string
}

const hex = (n: number): string => `0x${(n >>> 0).toString(16)}`

/** The registers that differ between two sets (those both have), as `name left ≠ right` phrases. */
export const registerDifferences = (left: RegisterSet, right: RegisterSet): string[] =>
  Object.keys(right).filter((k) => left[k] !== undefined && left[k] !== right[k]).map((k) => `${k} ${hex(left[k]!)} ≠ ${hex(right[k]!)}`)

export const registerLine = (registers: RegisterSet): string =>
  Object.entries(registers).map(([k, v]) => `${k}=${hex(v)}`).join(" ")

/**
 * The lines describing where two runs part: the point (time and instruction) and the
 * register differences, `left` being the recording (or trace A) and `right` the replay (or B).
 */
export const pointLines = (
  names: readonly [string, string],
  left: { readonly registers: RegisterSet; readonly instruction?: string; readonly what?: string },
  right: MachinePoint
): string[] => {
  const differences = registerDifferences(left.registers, right.registers)
  const lines = [`  at t=${right.time} ${names[1]} is about to execute ${right.instruction}`]
  if (left.instruction !== undefined && left.instruction !== right.instruction) lines.push(`  ${names[0]} is about to execute ${left.instruction}`)
  lines.push(`  registers of ${names[1]}: ${registerLine(right.registers)}`)
  lines.push(
    differences.length > 0
      ? `  register differences (${names[0]} ≠ ${names[1]}): ${differences.join(", ")}`
      : `  no register differs between ${names[0]} and ${names[1]}${left.what === undefined ? "" : ` (${left.what})`}`
  )
  return lines
}

/** The registers a checkpoint's cpu section holds, under the same names. */
export const checkpointRegisters = (checkpoint: Checkpoint): RegisterSet => {
  const cpu = checkpoint.sections["cpu"] as { regs: Record<string, number>; sregs: Record<string, number> } | undefined
  if (cpu === undefined) return {}
  const r = cpu.regs
  return {
    eax: r["rax"]!, ecx: r["rcx"]!, edx: r["rdx"]!, ebx: r["rbx"]!, esp: r["rsp"]!, ebp: r["rbp"]!, esi: r["rsi"]!, edi: r["rdi"]!,
    eip: r["rip"]!, eflags: r["rflags"]!, cr0: cpu.sregs["cr0"]!, cr3: cpu.sregs["cr3"]!
  }
}

/** What `checkpointRegisters` reads of a checkpoint's sections: all it needs of `SeekableTrace.checkpointPart`. */
export const registerParts = {
  cpu: {
    regs: { rax: true, rcx: true, rdx: true, rbx: true, rsp: true, rbp: true, rsi: true, rdi: true, rip: true, rflags: true },
    sregs: { cr0: true, cr3: true }
  }
} as const

/** Recorded events shown before a divergence. */
export const CONTEXT_EVENTS = 5

/** Re-execution produced something other than what was recorded. */
export class ReplayDivergence extends Data.TaggedError("ReplayDivergence")<{
  /** Index of the first differing event (= events verified before it). */
  readonly index: number
  readonly expected: VmEvent | undefined
  readonly actual: VmEvent | undefined
  /** The last recorded events before the difference, oldest first. */
  readonly context: ReadonlyArray<VmEvent>
  /**
   * The replaying machine where it diverged (before the instruction that made the
   * difference), and the registers the recording holds for that point, where it has any.
   */
  readonly point?: {
    /** The events matched, but the machine's state at a recorded checkpoint did not. */
    readonly atCheckpoint?: number
    readonly replay: MachinePoint
    readonly recorded: RegisterSet
    /** What the recorded registers come from (a checkpoint, the recorded event). */
    readonly recordedFrom: string
  }
}> {
  override get message(): string {
    const show = (e: VmEvent | undefined) => (e === undefined ? "(end of run)" : describeEvent(e))
    const checkpoint = this.point?.atCheckpoint
    if (checkpoint !== undefined) {
      return `replay diverged at checkpoint ${checkpoint}, before event #${this.index}: every event matched, the machine state does not`
    }
    return `replay diverged at event #${this.index}: recorded ${show(this.expected)}, replay produced ${show(this.actual)}`
  }

  /** Lines the CLI prints after the message: the machine there, and what the guest did just before. */
  get details(): ReadonlyArray<string> {
    const point = this.point
    const at = point === undefined ? [] : pointLines(["the recording", "the replay"], { registers: point.recorded, what: point.recordedFrom }, point.replay)
    return [...at, ...contextLines(this.context)]
  }
}

/** The trace is damaged; everything before the damage was verified. */
export class ReplayTraceDamaged extends Data.TaggedError("ReplayTraceDamaged")<{
  readonly verified: number
  readonly cause: TraceCorrupt
}> {
  override get message(): string {
    return `${this.verified} events verified before the damage; ${this.cause.message}`
  }
}

/** The events before a difference, one `describeEvent` line each, under a heading. */
export const contextLines = (context: ReadonlyArray<VmEvent>): ReadonlyArray<string> =>
  context.length === 0
    ? ["  (no events before it)"]
    : [`  the ${context.length} events before it:`, ...context.map((e) => `    ${describeEvent(e)}`)]

