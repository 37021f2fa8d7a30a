/**
 * What a divergence report shows besides the events: the machine at the point where the
 * runs part (registers, the instruction about to execute) and the registers the
 * recording holds for that point. A fresh replay session goes there: events before the
 * difference all matched, so the way there is the recorded one.
 */
import type { SeekableTrace } from "../events/trace/traceIndex.ts"
import type { VmEvent } from "../events/VmEvent.ts"
import { type RegisterSet, ReplayDivergence } from "./divergence.ts"
import { ReplaySession } from "./session.ts"

/** What a recorded event says about the registers where it happened. */
export const eventRegisters = (event: VmEvent | undefined): { readonly registers: RegisterSet; readonly what: string } => {
  if (event === undefined) return { registers: {}, what: "the recording has no event there" }
  if (event._tag === "RunEnd") return { registers: event.registers, what: "the registers of the recorded RunEnd" }
  if (event._tag === "VmExit") return { registers: { eip: event.rip }, what: "the rip of the recorded VM exit" }
  return { registers: {}, what: "the recorded event carries no registers" }
}

/** The earliest time either side's event happens at: the state there precedes both. */
const divergenceTime = (d: ReplayDivergence): number =>
  Math.min(d.expected?.time ?? Number.POSITIVE_INFINITY, d.actual?.time ?? Number.POSITIVE_INFINITY)

/** `d` with the machine at its point; `d` unchanged if the point cannot be reached. */
export const withDivergencePoint = (trace: SeekableTrace, d: ReplayDivergence): ReplayDivergence => {
  if (d.point !== undefined) return d
  try {
    const time = divergenceTime(d)
    const session = new ReplaySession(trace)
    session.seekTime(Number.isFinite(time) ? Math.min(time, session.endTime) : session.endTime)
    const recorded = eventRegisters(d.expected)
    return new ReplayDivergence({ ...d, point: { replay: session.machinePoint(), recorded: recorded.registers, recordedFrom: recorded.what } })
  } catch {
    return d
  }
}
