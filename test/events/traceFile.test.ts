import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Chunk, Effect, Either, Stream } from "effect"
import type { VmEvent } from "../../src/events/VmEvent.ts"
import { decodeTrace, encodeTrace } from "../../src/events/trace/codec.ts"
import { TraceCorrupt, TraceFrameTooLarge, TraceIoError } from "../../src/events/trace/errors.ts"
import { maxPayloadBytes } from "../../src/events/trace/framing.ts"
import { openTrace, readTraceEvents, readTraceHeader } from "../../src/events/trace/reader.ts"
import { openTraceWriter, writeTrace } from "../../src/events/trace/writer.ts"
import { header, sampleChunks, sampleEvents } from "./traceFixtures.ts"

let dir = ""
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "vmrr-trace-"))
})
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }))

let files = 0
const tempPath = () => path.join(dir, `t${files++}.vmrr`)

/** Every event the stream yields before it ends or fails, and how it ended. */
const drain = (stream: Stream.Stream<VmEvent, unknown>) =>
  Effect.map(Stream.runCollect(Stream.either(stream)), (items) => {
    const all = Chunk.toReadonlyArray(items)
    return {
      events: all.filter(Either.isRight).map((e) => e.right),
      errors: all.filter(Either.isLeft).map((e) => e.left)
    }
  })

describe("trace files", () => {
  const chunks = sampleChunks([7, 1, 12])

  it.effect("writer → header and event stream, byte-identical to encodeTrace", () =>
    Effect.gen(function*() {
      const file = tempPath()
      const summary = yield* Effect.scoped(Effect.gen(function*() {
        const writer = yield* openTraceWriter(file, header)
        for (const chunk of chunks) yield* writer.writeChunk(chunk)
        yield* writer.writeChunk([])
        return yield* writer.close
      }))
      const bytes = fs.readFileSync(file)
      expect(summary).toEqual({ eventCount: 20, chunkCount: 3, bytes: bytes.length })
      expect(new Uint8Array(bytes)).toEqual(encodeTrace(header, chunks))

      const read = yield* readTraceHeader(file)
      expect(read.config).toEqual(header.config)
      expect(read.image).toEqual(header.image)
      const events = yield* Stream.runCollect(readTraceEvents(file))
      expect(Chunk.toReadonlyArray(events)).toEqual(chunks.flat())
    }))

  it.effect("the stream's chunks are the trace's chunks", () =>
    Effect.gen(function*() {
      const file = tempPath()
      fs.writeFileSync(file, encodeTrace(header, chunks))
      const sizes = yield* Stream.runCollect(Stream.mapChunks(readTraceEvents(file), (c) => Chunk.of(c.length)))
      expect(Chunk.toReadonlyArray(sizes)).toEqual([7, 1, 12])
    }))

  it.scoped("openTrace gives the header and the events from one open file", () =>
    Effect.gen(function*() {
      const file = tempPath()
      fs.writeFileSync(file, encodeTrace(header, chunks))
      const trace = yield* openTrace(file)
      expect(trace.header.imageSha256).toMatch(/^[0-9a-f]{64}$/)
      expect((yield* drain(trace.events)).events.length).toBe(20)
    }))

  it.effect("writeTrace records a stream, one trace chunk per stream chunk", () =>
    Effect.gen(function*() {
      const file = tempPath()
      const events = sampleEvents(10)
      const summary = yield* writeTrace(file, header, Stream.rechunk(Stream.fromIterable(events), 4))
      expect(summary.chunkCount).toBe(3)
      const decoded = decodeTrace(fs.readFileSync(file))
      expect(decoded.error).toBeUndefined()
      expect(decoded.chunks.map((c) => c.events.length)).toEqual([4, 4, 2])
      expect(decoded.chunks.flatMap((c) => c.events)).toEqual(events)
    }))

  it.effect("a failed recording leaves a truncated trace: every written event, then one TraceCorrupt", () =>
    Effect.gen(function*() {
      const file = tempPath()
      const events = Stream.concat(Stream.rechunk(Stream.fromIterable(sampleEvents(6)), 3), Stream.fail("guest crashed"))
      const result = yield* Effect.either(writeTrace(file, header, events))
      expect(result).toEqual(Either.left("guest crashed"))
      const { events: read, errors } = yield* drain(readTraceEvents(file))
      expect(read).toEqual(sampleEvents(6))
      expect(errors.length).toBe(1)
      const error = errors[0] as TraceCorrupt
      expect(error._tag).toBe("TraceCorrupt")
      expect(error.frame).toBe(3)
      expect(error.path).toBe(file)
      expect(error.message).toMatch(/: truncated: no end frame; the file ends at byte \d+ after frame 2 \(6 events in 2 chunks intact\)$/)
    }))

  it.effect("a writer whose scope ends without close leaves a truncated trace", () =>
    Effect.gen(function*() {
      const file = tempPath()
      yield* Effect.scoped(Effect.flatMap(openTraceWriter(file, header), (w) => w.writeChunk(sampleEvents(3))))
      const decoded = decodeTrace(fs.readFileSync(file))
      expect(decoded.chunks.length).toBe(1)
      expect(decoded.error?.message).toMatch(/^truncated: no end frame/)
    }))

  it.effect("a file cut inside a chunk: the stream yields the intact chunks, then the damage", () =>
    Effect.gen(function*() {
      const bytes = encodeTrace(header, chunks)
      const offsets = decodeTrace(bytes).end!.chunkOffsets
      for (const cut of [offsets[2] + 3, offsets[2] + 20, bytes.length - 1]) {
        const file = tempPath()
        fs.writeFileSync(file, bytes.subarray(0, cut))
        const { events, errors } = yield* drain(readTraceEvents(file))
        const inEnd = cut === bytes.length - 1
        expect(events).toEqual(inEnd ? chunks.flat() : chunks.slice(0, 2).flat())
        expect(errors).toHaveLength(1)
        expect((errors[0] as TraceCorrupt).frame).toBe(inEnd ? 4 : 3)
        expect((errors[0] as TraceCorrupt).message).toMatch(new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}: file ends inside frame`))
      }
    }))

  it.effect("a damaged header fails readTraceHeader and the stream before any event", () =>
    Effect.gen(function*() {
      const file = tempPath()
      const bytes = encodeTrace(header, chunks)
      bytes[30] ^= 0xff
      fs.writeFileSync(file, bytes)
      const error = yield* Effect.flip(readTraceHeader(file))
      expect(error._tag).toBe("TraceCorrupt")
      expect((error as TraceCorrupt).frame).toBe(0)
      const { events, errors } = yield* drain(readTraceEvents(file))
      expect(events).toEqual([])
      expect(errors).toHaveLength(1)
    }))

  it.effect("a missing file or a directory is a TraceIoError with one clear line", () =>
    Effect.gen(function*() {
      const missing = path.join(dir, "missing.vmrr")
      const error = yield* Effect.flip(readTraceHeader(missing))
      expect(error).toBeInstanceOf(TraceIoError)
      expect(error.message).toBe(`cannot open trace ${missing}: ENOENT: no such file or directory`)
      const { errors } = yield* drain(readTraceEvents(dir))
      expect(errors[0]).toBeInstanceOf(TraceIoError)
      const unwritable = yield* Effect.flip(Effect.scoped(openTraceWriter(path.join(dir, "no", "such", "dir.vmrr"), header)))
      expect(unwritable).toBeInstanceOf(TraceIoError)
      expect(unwritable.message).toMatch(/^cannot open trace .*dir\.vmrr: ENOENT/)
    }))

  it.effect("an image too large for a frame is refused when writing, not discovered when reading", () =>
    Effect.gen(function*() {
      const big = { ...header, image: new Uint8Array(maxPayloadBytes + 1) }
      expect(() => encodeTrace(big, [])).toThrow(TraceFrameTooLarge)
      const error = yield* Effect.flip(Effect.scoped(openTraceWriter(tempPath(), big)))
      expect(error).toBeInstanceOf(TraceFrameTooLarge)
      expect(error.message).toMatch(/^frame 0 would be \d+ bytes, more than the \d+-byte frame limit \(the guest image is too large for a trace header\)$/)
    }))
})
