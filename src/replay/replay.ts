import * as Chunk from "effect/Chunk"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import type { HostInput as HostInputEvent, VmEvent } from "../events/VmEvent.ts"
import { eventsEqual } from "../events/trace/equality.ts"
import type { TraceCorrupt, TraceError } from "../events/trace/errors.ts"
import type { TraceHeader } from "../events/trace/schema.ts"
import { openTrace } from "../events/trace/reader.ts"
import type { MachineSetupError } from "../qemu/errors.ts"
import { describeEvent } from "../events/describe.ts"
import { hostInputReplay, isHostInput, runWithHostInput } from "./hostInput.ts"

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
}> {
  override get message(): string {
    const show = (e: VmEvent | undefined) => (e === undefined ? "(end of run)" : describeEvent(e))
    return `replay diverged at event #${this.index}: recorded ${show(this.expected)}, replay produced ${show(this.actual)}`
  }

  /** Lines the CLI prints after the message: what the guest did just before. */
  get details(): ReadonlyArray<string> {
    return contextLines(this.context)
  }
}

/** The events before a difference, one `describeEvent` line each, under a heading. */
export const contextLines = (context: ReadonlyArray<VmEvent>): ReadonlyArray<string> =>
  context.length === 0
    ? ["  (no events before it)"]
    : [`  the ${context.length} events before it:`, ...context.map((e) => `    ${describeEvent(e)}`)]

/** The trace is damaged; everything before the damage was verified. */
export class ReplayTraceDamaged extends Data.TaggedError("ReplayTraceDamaged")<{
  readonly verified: number
  readonly cause: TraceCorrupt
}> {
  override get message(): string {
    return `${this.verified} events verified before the damage; ${this.cause.message}`
  }
}

export interface ReplayReport {
  readonly verified: number
}

export type ReplayError = TraceError | MachineSetupError | ReplayDivergence | ReplayTraceDamaged

/**
 * Rebuilds the machine from the trace header, re-executes the guest and compares
 * every produced event with the recorded one, in order. The first difference, a
 * missing event or an extra one stops the replay.
 */
export const replayTrace = (path: string): Effect.Effect<ReplayReport, ReplayError> =>
  Effect.flatMap(traceInputs(path), (inputs) =>
    Effect.scoped(Effect.flatMap(openTrace(path), (trace) => replayEvents(trace.header, trace.events, inputs))))

/**
 * A first pass over the trace for its host inputs: the machine needs each before it
 * reaches its time, ahead of the comparison. Damage is left for the second pass to report.
 */
const traceInputs = (path: string): Effect.Effect<HostInputEvent[], TraceError> =>
  Effect.scoped(
    Effect.flatMap(openTrace(path), (trace) =>
      Stream.runCollect(Stream.filter(Stream.catchAll(trace.events, () => Stream.empty), isHostInput)).pipe(
        Effect.map(Chunk.toArray)
      ))
  )

/**
 * Replays a recording given its header and its events, from a file or from memory.
 * `inputs` are the recording's HostInput events (from memory: `recordedInputs(events)`);
 * they are fed back at their recorded times and nothing is read from the host.
 */
export const replayEvents = (
  header: Pick<TraceHeader, "config" | "image">,
  recorded: Stream.Stream<VmEvent, TraceError>,
  inputs: ReadonlyArray<HostInputEvent> = []
): Effect.Effect<ReplayReport, ReplayError> =>
  Effect.suspend(() => {
    const context: VmEvent[] = []
    let verified = 0
    const compared = Stream.zipAll(recorded, {
      other: Stream.provideLayer(runWithHostInput(header.config, header.image), hostInputReplay(inputs)),
      defaultSelf: undefined as VmEvent | undefined,
      defaultOther: undefined as VmEvent | undefined
    })
    return Stream.runForEach(compared, ([expected, actual]) => {
      if (expected !== undefined && actual !== undefined && eventsEqual(expected, actual)) {
        verified++
        context.push(expected)
        if (context.length > CONTEXT_EVENTS) context.shift()
        return Effect.void
      }
      return Effect.fail(new ReplayDivergence({ index: verified, expected, actual, context: context.slice() }))
    }).pipe(
      Effect.catchTag("TraceCorrupt", (cause) => Effect.fail(new ReplayTraceDamaged({ verified, cause }))),
      Effect.map(() => ({ verified }))
    )
  })
