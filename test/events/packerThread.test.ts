import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Cause, Effect, Exit, Fiber } from "effect"
import { type RawChunk, rawChunkOf, rawEvents } from "../../src/events/rawEvents.ts"
import type { VmEvent } from "../../src/events/VmEvent.ts"
import { decodeTrace } from "../../src/events/trace/codec.ts"
import { packerThread, type PackerOptions } from "../../src/events/trace/packerThread.ts"
import type { Checkpoint } from "../../src/events/trace/schema.ts"
import { openSeekableTrace } from "../../src/events/trace/traceIndex.ts"
import { TraceFrameTooLarge, type TraceWriteError } from "../../src/events/trace/errors.ts"
import { maxPayloadBytes } from "../../src/events/trace/framing.ts"
import { openTraceWriter, type TraceWriter } from "../../src/events/trace/writer.ts"
import { header, sampleEvents } from "./traceFixtures.ts"

let dir = ""
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "vmrr-packer-"))
})
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }))
let files = 0
const tempPath = () => path.join(dir, `t${files++}.vmrr`)

/** Every kind of sampleEvents, with host inputs among them (the index lists those). */
const events = (count: number, first: number): Array<VmEvent> =>
  sampleEvents(count, first).map((e): VmEvent => {
    if (e.seq % 29 === 5) return { _tag: "HostInput", seq: e.seq, vcpu: 0, time: e.time, source: "serial0", bytes: Uint8Array.of(e.seq & 0xff) }
    if (e.seq % 31 === 7) return { _tag: "HostTsc", seq: e.seq, vcpu: 0, time: e.time, value: e.seq * 1000 }
    return e
  })


type Item = { readonly events: ReadonlyArray<VmEvent> } | { readonly checkpoint: Checkpoint }

/** `chunks` chunks of `size` events, a checkpoint after every chunk listed in `checkpointsAfter`. */
const recording = (chunks: number, size: number, checkpointsAfter: ReadonlyArray<number>): Array<Item> => {
  const items: Array<Item> = []
  for (let c = 0; c < chunks; c++) {
    const list = events(size, c * size)
    items.push({ events: list })
    if (checkpointsAfter.includes(c)) {
      const last = list[list.length - 1]!
      items.push({ checkpoint: { kind: "checkpoint", seq: last.seq + 1, time: last.time, sections: { cpu: { rip: c }, ram: Uint8Array.of(c, 1, 2) } } })
    }
  }
  return items
}

type WriteEvents = (writer: TraceWriter, events: ReadonlyArray<VmEvent>, n: number) => Effect.Effect<void, TraceWriteError>

/**
 * Writes the items: as objects (`writeChunk`, today's path) or as raw chunks through the
 * packer; `write` chooses otherwise for the n-th chunk of events.
 */
const record = (
  file: string,
  items: ReadonlyArray<Item>,
  packer?: PackerOptions,
  write: WriteEvents = (writer, events) => packer === undefined ? writer.writeChunk(events) : writer.writeRawChunk(rawChunkOf(events))
) =>
  Effect.scoped(Effect.gen(function*() {
    const writer = yield* openTraceWriter(file, header, packer === undefined ? {} : { packer })
    let n = 0
    for (const item of items) {
      if ("checkpoint" in item) yield* writer.writeCheckpoint(item.checkpoint)
      else yield* write(writer, item.events, n++)
    }
    return yield* writer.close
  }))

/** Waits (asynchronously) until the process's packer thread for `entry` takes chunks. */
const threadReady = (entry?: string | URL) =>
  Effect.gen(function*() {
    const thread = packerThread(entry)
    for (let i = 0; i < 600 && !thread.ready && !thread.dead; i++) yield* Effect.sleep("50 millis")
    return thread
  })

const here = path.dirname(fileURLToPath(import.meta.url))
const fixture = (name: string) => path.join(here, "fixtures", name)

describe("packer thread", () => {
  const items = recording(40, 97, [0, 5, 6, 20, 39])

  it.live("raw chunks packed in-thread: the bytes writeChunk(rawEvents(chunk)) writes", () =>
    Effect.gen(function*() {
      const reference = tempPath()
      yield* record(reference, items)
      const raw = tempPath()
      yield* record(raw, items, { enabled: false })
      expect(fs.readFileSync(raw).equals(fs.readFileSync(reference))).toBe(true)
      // rawEvents gives back the very events: the raw chunks are what the test means.
      const chunk = rawChunkOf(events(50, 100))
      expect(rawEvents(chunk)).toEqual(events(50, 100))
    }))

  it.live("through the worker: byte-identical, checkpoints in their places", () =>
    Effect.gen(function*() {
      const reference = tempPath()
      const summary = yield* record(reference, items)
      const thread = yield* threadReady()
      expect(thread.dead).toBe(false)
      expect(thread.ready).toBe(true)
      const before = thread.posted
      const threaded = tempPath()
      // The process's thread is running: the recording hands it every chunk, from its first.
      const threadedSummary = yield* record(threaded, items, { startAfterChunks: 3, maxInFlight: 4 })
      expect(thread.posted - before).toBe(40)
      expect(threadedSummary).toEqual(summary)
      expect(fs.readFileSync(threaded).equals(fs.readFileSync(reference))).toBe(true)

      const decoded = decodeTrace(new Uint8Array(fs.readFileSync(threaded)))
      expect(decoded.error).toBeUndefined()
      expect(decoded.chunks.flatMap((c) => c.events)).toEqual(items.flatMap((i) => "events" in i ? i.events : []))
      expect(decoded.checkpoints.map((c) => c.seq)).toEqual([97, 6 * 97, 7 * 97, 21 * 97, 40 * 97])
      const index = yield* Effect.scoped(Effect.map(openSeekableTrace(threaded), (trace) => trace.index))
      expect(index.fromEndFrame).toBe(true)
      expect(index.chunkSeqs).toEqual(Array.from({ length: 40 }, (_, c) => c * 97))
      expect(index.chunkTimes).toEqual(Array.from({ length: 40 }, (_, c) => c * 97 * 3))
      expect(index.checkpointSeqs).toEqual([97, 6 * 97, 7 * 97, 21 * 97, 40 * 97])
      const all = items.flatMap((i) => "events" in i ? i.events : [])
      expect(index.inputSeqs).toEqual(all.filter((e) => e._tag === "HostInput" || e._tag === "HostTsc").map((e) => e.seq))
    }))

  it.live("with the words transferred to the worker: the same bytes", () =>
    Effect.gen(function*() {
      const reference = tempPath()
      yield* record(reference, items)
      yield* threadReady()
      const threaded = tempPath()
      const back: Array<RawChunk> = []
      yield* record(threaded, items, { startAfterChunks: 1, maxInFlight: 2, transfer: true, onChunkWritten: (chunk) => back.push(chunk) })
      expect(fs.readFileSync(threaded).equals(fs.readFileSync(reference))).toBe(true)
      // Every chunk is handed back, in order, with its words (the worker's come back to this thread).
      expect(back.map((c) => c.firstSeq)).toEqual(Array.from({ length: 40 }, (_, c) => c * 97))
      expect(back.map((c) => rawEvents(c))).toEqual(items.flatMap((i) => "events" in i ? [i.events] : []))
    }))

  it.live("objects' chunks and raw chunks mixed, through the worker: the same bytes", () =>
    Effect.gen(function*() {
      const reference = tempPath()
      yield* record(reference, items)
      yield* threadReady()
      const file = tempPath()
      yield* record(file, items, { startAfterChunks: 1, maxInFlight: 3 }, (writer, events, n) =>
        n % 7 === 3 ? writer.writeChunk(events) : writer.writeRawChunk(rawChunkOf(events)))
      expect(fs.readFileSync(file).equals(fs.readFileSync(reference))).toBe(true)
    }))

  it.live("words in a SharedArrayBuffer are shared, not copied: the same bytes", () =>
    Effect.gen(function*() {
      const reference = tempPath()
      yield* record(reference, items)
      yield* threadReady()
      const file = tempPath()
      yield* record(file, items, { startAfterChunks: 1, maxInFlight: 3 }, (writer, events) => {
        const chunk = rawChunkOf(events)
        const words = new Float64Array(new SharedArrayBuffer(chunk.words.byteLength))
        words.set(chunk.words)
        return writer.writeRawChunk({ ...chunk, words })
      })
      expect(fs.readFileSync(file).equals(fs.readFileSync(reference))).toBe(true)
    }))

  it.live("an interrupted recording keeps every chunk handed in", () =>
    Effect.gen(function*() {
      yield* threadReady()
      const file = tempPath()
      const chunks = items.filter((i) => "events" in i).slice(0, 30)
      const fiber = yield* Effect.fork(Effect.scoped(Effect.gen(function*() {
        const writer = yield* openTraceWriter(file, header, { packer: { startAfterChunks: 1, maxInFlight: 16 } })
        for (const item of chunks) yield* writer.writeRawChunk(rawChunkOf(item.events))
        yield* Effect.never
      })))
      yield* Effect.sleep("200 millis")
      yield* Fiber.interrupt(fiber)
      const index = yield* Effect.scoped(Effect.map(openSeekableTrace(file), (trace) => trace.index))
      expect(index.fromEndFrame).toBe(false)
      expect(index.eventCount).toBe(30 * 97)
      expect(index.damage?.reason).toMatch(/truncated: no end frame/)
    }))

  it.live("a worker that cannot start: in-thread, the same bytes, no hang", () =>
    Effect.gen(function*() {
      const reference = tempPath()
      yield* record(reference, items)
      const entry = fixture("noSuchWorker.mjs")
      const file = tempPath()
      yield* record(file, items, { startAfterChunks: 1, workerEntry: entry })
      expect(fs.readFileSync(file).equals(fs.readFileSync(reference))).toBe(true)
      const thread = yield* threadReady(entry)
      expect(thread.dead).toBe(true)
      // Later recordings do not try again, and still write the same bytes.
      const again = tempPath()
      yield* record(again, items, { startAfterChunks: 1, workerEntry: entry })
      expect(fs.readFileSync(again).equals(fs.readFileSync(reference))).toBe(true)
    }))

  it.live("a worker that dies holding chunks: they are packed in-thread", () =>
    Effect.gen(function*() {
      const reference = tempPath()
      yield* record(reference, items)
      const entry = fixture("dyingPackerWorker.mjs")
      expect((yield* threadReady(entry)).ready).toBe(true)
      const file = tempPath()
      yield* record(file, items, { startAfterChunks: 1, maxInFlight: 3, workerEntry: entry, stallMs: 300 })
      expect(fs.readFileSync(file).equals(fs.readFileSync(reference))).toBe(true)
    }))

  it.live("a worker that stalls: given up after stallMs, nothing lost", () =>
    Effect.gen(function*() {
      const reference = tempPath()
      yield* record(reference, items)
      const entry = fixture("stallingPackerWorker.mjs")
      const thread = yield* threadReady(entry)
      expect(thread.ready).toBe(true)
      const file = tempPath()
      yield* record(file, items, { startAfterChunks: 1, maxInFlight: 3, workerEntry: entry, stallMs: 300 })
      expect(fs.readFileSync(file).equals(fs.readFileSync(reference))).toBe(true)
      expect(thread.dead).toBe(true)
      expect(thread.deathReason).toMatch(/no reply/)
    }))

  it.live("a checkpoint too large for a frame, encoded on the worker: TraceFrameTooLarge naming its frame", () =>
    Effect.gen(function*() {
      expect((yield* threadReady()).ready).toBe(true)
      const file = tempPath()
      const first = events(97, 0)
      const results = yield* Effect.scoped(Effect.gen(function*() {
        const writer = yield* openTraceWriter(file, header, { packer: { startAfterChunks: 1 } })
        const results: Array<Exit.Exit<unknown, unknown>> = []
        results.push(yield* Effect.exit(writer.writeRawChunk(rawChunkOf(first))))
        const huge: Checkpoint = { kind: "checkpoint", seq: 97, time: first[96]!.time, sections: { ram: new Uint8Array(maxPayloadBytes + 1) } }
        results.push(yield* Effect.exit(writer.writeCheckpoint(huge)))
        results.push(yield* Effect.exit(writer.writeRawChunk(rawChunkOf(events(97, 97)))))
        results.push(yield* Effect.exit(writer.close))
        return results
      }))
      // Found on the worker, so reported by a later call (close at the latest), and by every call after it.
      const firstFailure = results.findIndex(Exit.isFailure)
      expect(firstFailure).toBeGreaterThanOrEqual(1)
      for (const r of results.slice(firstFailure)) {
        const error = Exit.isFailure(r) ? Cause.squash(r.cause) : undefined
        expect(error).toBeInstanceOf(TraceFrameTooLarge)
        // Frame 0 is the header, 1 the first chunk.
        expect((error as TraceFrameTooLarge).message).toMatch(/^frame 2 would be \d+ bytes/)
      }
      // The chunk before it is in the file.
      const index = yield* Effect.scoped(Effect.map(openSeekableTrace(file), (trace) => trace.index))
      expect(index.eventCount).toBe(97)
    }))

  it.live("a write error in the worker: TraceWriteError, then every later call fails", () =>
    Effect.gen(function*() {
      const entry = fixture("failingPackerWorker.mjs")
      expect((yield* threadReady(entry)).ready).toBe(true)
      const chunks = items.flatMap((i) => "events" in i ? [i.events] : [])
      const file = tempPath()
      const results = yield* Effect.scoped(Effect.gen(function*() {
        const writer = yield* openTraceWriter(file, header, { packer: { startAfterChunks: 3, maxInFlight: 2, workerEntry: entry } })
        const results: Array<Exit.Exit<unknown, unknown>> = []
        for (const events of chunks.slice(0, 10)) results.push(yield* Effect.exit(writer.writeRawChunk(rawChunkOf(events))))
        results.push(yield* Effect.exit(writer.close))
        return results
      }))
      const failures = results.map((r) => Exit.isFailure(r) ? String(Cause.squash(r.cause)) : "ok")
      // Every chunk went to the running worker: the first failed reply fails a call, and every call after it.
      const first = failures.findIndex((f) => f !== "ok")
      expect(first).toBeGreaterThanOrEqual(0)
      expect(failures.slice(first).every((f) => /TraceIoError|ENOSPC|no space/.test(f))).toBe(true)
      expect(failures[first]).toMatch(/no space left/)
      // What was written before the failure (the header) is still a readable trace.
      const index = yield* Effect.scoped(Effect.map(openSeekableTrace(file), (trace) => trace.index))
      expect(index.eventCount).toBe(0)
    }))

  it("the process exits once a recording is done (the worker is unref'd)", () => {
    const run = spawnSync(process.execPath, ["--import", "tsx", fixture("recordAndExit.ts"), path.join(dir, "exit.vmrr")], {
      cwd: path.resolve(here, "../.."),
      encoding: "utf8",
      timeout: 30_000
    })
    expect(run.error).toBeUndefined()
    expect(run.stderr).toBe("")
    expect(run.status).toBe(0)
    expect(JSON.parse(run.stdout)).toEqual({ ready: true, posted: 20, events: 2000 })
  })
})
