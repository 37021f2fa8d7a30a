import * as fs from "node:fs"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type { VmEvent } from "../VmEvent.ts"
import { TraceDecoder } from "./codec.ts"
import { ioError, TraceCorrupt, type TraceError } from "./errors.ts"
import { fileSource } from "./framing.ts"
import type { TraceHeader } from "./schema.ts"

/**
 * Reading `.vmrr` files at the edge: synchronous reads at explicit offsets, one frame
 * at a time, so a reader holds one chunk in memory whatever the trace's size.
 */

/** An open trace: its checked header and its events (a stream that can be run once). */
export interface OpenTrace {
  readonly header: TraceHeader
  /**
   * Every intact chunk's events, one stream chunk per trace chunk; ends at a valid end
   * frame, or fails with one `TraceCorrupt` after the last intact chunk.
   */
  readonly events: Stream.Stream<VmEvent, TraceError>
}

export const openFile = (path: string): Effect.Effect<{ readonly fd: number; readonly size: number }, TraceError, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.try({
      try: () => {
        const fd = fs.openSync(path, "r")
        try {
          const stat = fs.fstatSync(fd)
          if (!stat.isFile()) throw new Error("not a regular file")
          return { fd, size: stat.size }
        } catch (e) {
          fs.closeSync(fd)
          throw e
        }
      },
      catch: (e) => ioError(path, "open", e)
    }),
    // Reading is over; a failing close has nothing left to lose.
    ({ fd }) => Effect.ignore(Effect.try(() => fs.closeSync(fd)))
  )

/** Runs a decoder call; a throw can only be the file system's. */
const step = <A>(path: string, f: () => A): Effect.Effect<A, TraceError> =>
  Effect.try({ try: f, catch: (e) => ioError(path, "read", e) })

/** Opens a trace for as long as the scope lasts and checks its header. */
export const openTrace = (path: string): Effect.Effect<OpenTrace, TraceError, Scope.Scope> =>
  Effect.gen(function*() {
    const file = yield* openFile(path)
    const decoder = new TraceDecoder(fileSource(file.fd, file.size), path)
    const header = yield* step(path, () => decoder.header())
    if (header instanceof TraceCorrupt) return yield* Effect.fail(header)
    // Checkpoints are for seeking (traceIndex.ts): the event stream passes over them.
    const nextEventsStep = () => {
      for (;;) {
        const s = decoder.next()
        if (s._tag !== "Checkpoint") return s
      }
    }
    const next: Effect.Effect<Chunk.Chunk<VmEvent>, Option.Option<TraceError>> = Effect.flatMap(
      Effect.mapError(Effect.suspend(() => step(path, nextEventsStep)), Option.some),
      (s) => {
        switch (s._tag) {
          case "Chunk":
            return Effect.succeed(Chunk.unsafeFromArray(s.chunk.events))
          case "End":
            return Effect.fail(s.error === undefined ? Option.none() : Option.some(s.error))
          case "Corrupt":
            return Effect.fail(Option.some(s.error))
        }
      }
    )
    return { header, events: Stream.repeatEffectChunkOption(next) }
  })

/** A trace's header, checked (magic, checksum, schema, image hash). */
export const readTraceHeader = (path: string): Effect.Effect<TraceHeader, TraceError> =>
  Effect.scoped(Effect.map(openTrace(path), (trace) => trace.header))

/** A trace's events: see `OpenTrace.events`. The header is checked first. */
export const readTraceEvents = (path: string): Stream.Stream<VmEvent, TraceError> =>
  Stream.unwrapScoped(Effect.map(openTrace(path), (trace) => trace.events))
