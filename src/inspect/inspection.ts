import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import type { TraceError } from "../events/trace/errors.ts"
import type { MachineSetupError } from "../qemu/errors.ts"
import { annotateExits } from "./annotate.ts"
import { machineDevices } from "./devices.ts"
import { type ExplainContext, flowsBySeq } from "./explain.ts"
import { type LoadedTrace, loadTrace } from "./loadTrace.ts"

/** `--from` names an event the trace does not have. */
export class EventOutOfRange extends Data.TaggedError("EventOutOfRange")<{ readonly from: number; readonly eventCount: number }> {
  override get message(): string {
    return `--from ${this.from}: the trace has ${this.eventCount} events (#0 to #${this.eventCount - 1})`
  }
}

/** A trace with everything the inspection commands say about it: events, instructions at exits, devices, trips out of the guest. */
export interface Inspection extends ExplainContext {
  readonly trace: LoadedTrace
}

/**
 * Loads a trace and re-executes it up to event `until` to learn the instruction at each
 * exit. Fails with the trace reader's error, or the machine's if the header cannot build one.
 */
export const inspectTrace = (path: string, until?: number): Effect.Effect<Inspection, TraceError | MachineSetupError> =>
  Effect.gen(function* () {
    const trace = yield* loadTrace(path)
    const devices = yield* machineDevices(trace.header.config, trace.header.image)
    const instructions = yield* annotateExits(trace.header, trace.events, until)
    return { trace, devices, instructions, flows: flowsBySeq(trace.events) }
  })

/** One line for the top of a report when the model no longer reproduces the trace. */
export const divergenceNote = (inspection: Inspection): string | undefined =>
  inspection.instructions.divergedAt === undefined
    ? undefined
    : `note: this model no longer reproduces the trace from event #${inspection.instructions.divergedAt} on (see \`vmrr replay\`): instructions after it are not shown`
