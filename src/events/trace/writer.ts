import * as fs from "node:fs"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as Sink from "effect/Sink"
import * as Stream from "effect/Stream"
import type { RawChunk } from "../rawEvents.ts"
import type { VmEvent } from "../VmEvent.ts"
import { TraceEncoder, type TraceSummary } from "./codec.ts"
import { ioError, TraceFrameTooLarge, type TraceWriteError } from "./errors.ts"
import { type PackerOptions, RawChunkPacker } from "./packerThread.ts"
import { releaseRawChunk } from "../rawEvents.ts"
import { type Checkpoint, makeTraceHeader, type TraceHeader, type TraceHeaderInput } from "./schema.ts"

/**
 * Writing `.vmrr` files: one synchronous write per frame, straight to the final path,
 * so an interrupted recording leaves every chunk written so far readable.
 */

export interface TraceWriter {
  readonly path: string
  readonly header: TraceHeader
  /** Appends one events frame (nothing for no events). */
  readonly writeChunk: (events: ReadonlyArray<VmEvent>) => Effect.Effect<void, TraceWriteError>
  /**
   * Appends one events frame for a raw chunk (nothing for no events): the bytes
   * `writeChunk(rawEvents(chunk))` writes. Past the first few chunks of a recording the
   * packing happens on the packer thread (packerThread.ts) and the frame is written by a
   * later call. The writer takes the chunk: once it is written, its words go back to
   * the event log's spare buffers (`releaseRawChunk`), so nothing may read it after this call.
   */
  readonly writeRawChunk: (chunk: RawChunk) => Effect.Effect<void, TraceWriteError>
  /** Appends a checkpoint frame: taken after every event written so far and before the next. */
  readonly writeCheckpoint: (checkpoint: Checkpoint) => Effect.Effect<void, TraceWriteError>
  /**
   * Writes the end frame and closes the file. Without it the trace stays readable but
   * is reported as truncated, which is what a failed or interrupted recording is.
   */
  readonly close: Effect.Effect<TraceSummary, TraceWriteError>
}

/** Positional: the packer thread (packerThread.ts) writes frames through the same descriptor. */
const writeAll = (fd: number, bytes: Uint8Array, position: number): void => {
  let done = 0
  while (done < bytes.length) done += fs.writeSync(fd, bytes, done, bytes.length - done, position + done)
}

/**
 * Creates (or replaces) `path` and writes the magic and header. The file is closed when
 * the scope ends; call `close` first for a complete trace.
 */
export interface TraceWriterOptions {
  /** Where raw chunks are packed (packerThread.ts). */
  readonly packer?: PackerOptions
}

export const openTraceWriter = (
  path: string,
  input: TraceHeaderInput,
  options: TraceWriterOptions = {}
): Effect.Effect<TraceWriter, TraceWriteError, Scope.Scope> =>
  Effect.gen(function*() {
    const file = yield* Effect.acquireRelease(
      Effect.try({ try: () => ({ fd: fs.openSync(path, "w"), open: true }), catch: (e) => ioError(path, "open", e) }),
      // Still open only without `close` (failure, interruption): the trace is incomplete anyway.
      (file) => Effect.ignore(Effect.try(() => {
        if (file.open) {
          file.open = false
          fs.closeSync(file.fd)
        }
      }))
    )
    const encoder = new TraceEncoder()
    // After a failed write the file's end is unknown: later frames would sit at the wrong offsets.
    let failed: TraceWriteError | undefined
    const append = (frame: () => Uint8Array | undefined): Effect.Effect<void, TraceWriteError> =>
      Effect.suspend(() => {
        if (failed !== undefined) return Effect.fail(failed)
        if (!file.open) return Effect.dieMessage(`trace ${path} written after close`)
        return Effect.try({
          try: () => {
            const bytes = frame()
            if (bytes !== undefined) writeAll(file.fd, bytes, encoder.offset - bytes.length)
          },
          catch: (e) => e instanceof TraceFrameTooLarge ? e : (failed = ioError(path, "write", e))
        })
      })
    const header = makeTraceHeader(input)
    yield* append(() => encoder.start(header))
    // Raw chunks: packed in-thread, or handed to the packer thread, which writes them
    // itself; writing anything else here waits for those first (`flush`).
    const packer = new RawChunkPacker(encoder, file.fd, (bytes, position) => writeAll(file.fd, bytes, position), {
      onChunkWritten: releaseRawChunk,
      ...options.packer
    })
    // Runs before the file is closed (finalizers run last-added first): what is in flight
    // is written, so an interrupted recording keeps every chunk handed in.
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        if (file.open && failed === undefined) {
          try {
            packer.flush()
          } catch {
            // The trace stays what was written before the failure.
          }
        }
        packer.release()
      })
    )
    const appendAll = (frame: () => Uint8Array | undefined): Effect.Effect<void, TraceWriteError> =>
      append(() => {
        packer.flush()
        return frame()
      })
    return {
      path,
      header,
      writeChunk: (events) => appendAll(() => encoder.chunk(events)),
      writeRawChunk: (chunk) =>
        append(() => {
          packer.writeRawChunk(chunk)
          return undefined
        }),
      writeCheckpoint: (checkpoint) =>
        append(() => {
          packer.writeCheckpoint(checkpoint)
          return undefined
        }),
      close: appendAll(() => encoder.end()).pipe(
        Effect.zipRight(Effect.try({
          try: () => {
            file.open = false
            fs.closeSync(file.fd)
            return encoder.summary
          },
          catch: (e) => ioError(path, "close", e)
        }))
      )
    }
  })

/**
 * A sink that records a stream into a trace, one trace chunk per stream chunk
 * (`Stream.rechunk` first to choose the size), and ends it when the stream does.
 */
export const traceSink = (
  path: string,
  header: TraceHeaderInput
): Sink.Sink<TraceSummary, VmEvent, never, TraceWriteError> =>
  Sink.unwrapScoped(Effect.map(openTraceWriter(path, header), (writer) =>
    Sink.forEachChunk((events: Chunk.Chunk<VmEvent>) => writer.writeChunk(Chunk.toReadonlyArray(events))).pipe(
      Sink.mapEffect(() => writer.close)
    )))

/** Records `events` into a trace at `path`. A failing stream leaves a truncated trace. */
export const writeTrace = <E, R>(
  path: string,
  header: TraceHeaderInput,
  events: Stream.Stream<VmEvent, E, R>
): Effect.Effect<TraceSummary, E | TraceWriteError, R> => Stream.run(events, traceSink(path, header))
