import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import type { TraceError } from "../events/trace/errors.ts"
import { openTrace } from "../events/trace/reader.ts"
import type { TraceHeader } from "../events/trace/schema.ts"
import type { VmEvent } from "../events/VmEvent.ts"

/** A whole trace in memory: the inspection commands look back and ahead across events. */
export interface LoadedTrace {
  readonly header: TraceHeader
  readonly events: ReadonlyArray<VmEvent>
}

/** Reads every event of a trace; a damaged trace fails with the reader's one-line error. */
export const loadTrace = (path: string): Effect.Effect<LoadedTrace, TraceError> =>
  Effect.scoped(
    Effect.flatMap(openTrace(path), (trace) =>
      Effect.map(Stream.runCollect(trace.events), (events) => ({ header: trace.header, events: Chunk.toReadonlyArray(events) }))
    )
  )
