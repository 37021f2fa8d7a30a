/**
 * `replayToEnd` checks whole recorded chunks on the packer thread (RawChunkVerifier)
 * while it goes on replaying: a clean recording replays to its end with the worker
 * answering, and a changed one reports exactly the divergence an in-thread replay
 * reports, whether the worker answers, stalls, or is not used at all.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, describe, expect, it } from "vitest"
import { Chunk, Effect, Stream } from "effect"
import { ioLoopGuest } from "../../bench/ioLoop.ts"
import { TraceEncoder } from "../../src/events/trace/codec.ts"
import { packerThread } from "../../src/events/trace/packerThread.ts"
import { type Checkpoint, makeTraceHeader } from "../../src/events/trace/schema.ts"
import { fileSource } from "../../src/events/trace/framing.ts"
import { indexTrace, type SeekableTrace } from "../../src/events/trace/traceIndex.ts"
import type { VmEvent } from "../../src/events/VmEvent.ts"
import { rawEvents } from "../../src/events/rawEvents.ts"
import { recordMachine } from "../../src/qemu/runMachine.ts"
import { ReplayDivergence, ReplayTraceDamaged } from "../../src/replay/divergence.ts"
import { ReplaySession } from "../../src/replay/session.ts"
import { openTraceBytes } from "../support/recordTrace.ts"

const here = path.dirname(fileURLToPath(import.meta.url))
const stalling = path.join(here, "..", "events", "fixtures", "stallingPackerWorker.mjs")
const slow = path.join(here, "fixtures", "slowVerifyWorker.mjs")

/** The I/O loop's recording as trace bytes; the chunk holding event `edit.seq` (and checkpoint `edit.checkpoint`) passed through the edits. */
const recordIoLoop = (
  iterations: number,
  every: number,
  edit: { readonly seq?: number; readonly event?: (e: VmEvent) => VmEvent; readonly checkpoint?: number; readonly change?: (c: Checkpoint) => Checkpoint } = {}
): Uint8Array => {
  const { config, image } = ioLoopGuest(iterations)
  const encoder = new TraceEncoder()
  const parts = [encoder.start(makeTraceHeader({ config, image }))]
  let checkpoints = 0
  for (const { checkpoint, events } of Chunk.toArray(Effect.runSync(Stream.runCollect(recordMachine(config, image, { checkpointEvery: every }))))) {
    if (checkpoint !== undefined) {
      const n = checkpoints++
      parts.push(encoder.checkpoint(n === edit.checkpoint && edit.change !== undefined ? edit.change(checkpoint) : checkpoint))
    }
    const holds = edit.seq !== undefined && edit.seq >= events.firstSeq && edit.seq < events.firstSeq + events.count
    const frame = holds ? encoder.chunk(rawEvents(events).map((e) => (e.seq === edit.seq ? edit.event!(e) : e))) : encoder.rawChunk(events)
    if (frame !== undefined) parts.push(frame)
  }
  parts.push(encoder.end())
  return Buffer.concat(parts)
}

const open = (bytes: Uint8Array): SeekableTrace => openTraceBytes(bytes)

/** The trace as a file's: the worker reads each recorded chunk from it itself. */
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "vmrr-verify-"))
const descriptors: Array<number> = []
afterAll(() => {
  for (const fd of descriptors) fs.closeSync(fd)
  fs.rmSync(dir, { recursive: true, force: true })
})
const openFile = (bytes: Uint8Array): SeekableTrace => {
  const file = path.join(dir, `${descriptors.length}.vmrr`)
  fs.writeFileSync(file, bytes)
  const fd = fs.openSync(file, "r")
  descriptors.push(fd)
  const trace = indexTrace(fileSource(fd, bytes.length), file)
  if (!("index" in trace)) throw trace
  return trace
}

const thrown = (f: () => unknown): unknown => {
  try {
    f()
  } catch (e) {
    return e
  }
  return undefined
}

/** Waits until the process's packer thread for `entry` takes requests. */
const threadReady = async (entry?: string) => {
  const thread = packerThread(entry)
  for (let i = 0; i < 600 && !thread.ready && !thread.dead; i++) await new Promise((r) => setTimeout(r, 50))
  expect(thread.ready).toBe(true)
  return thread
}

const divergenceFields = (e: unknown) => {
  expect(e).toBeInstanceOf(ReplayDivergence)
  const d = e as ReplayDivergence
  return { index: d.index, expected: d.expected, actual: d.actual, context: d.context, point: d.point }
}

describe("replayToEnd with the packer thread", () => {
  it("replays a long recording to its end, the worker checking its chunks", async () => {
    const thread = await threadReady()
    const trace = openFile(recordIoLoop(160_000, 100_000))
    expect(trace.index.eventCount).toBeGreaterThan(500_000)
    expect(trace.index.chunkOffsets.length).toBeGreaterThan(16)
    const posted = thread.posted
    // The process's thread is running: it gets the chunks from the first, whatever startAfterChunks says.
    expect(new ReplaySession(trace).replayToEnd()).toBe(trace.index.eventCount)
    expect(thread.posted - posted).toBeGreaterThanOrEqual(trace.index.chunkOffsets.length - 1)
    expect(thread.dead).toBe(false)
  }, 120_000)

  it("reports a changed event in a late chunk as an in-thread replay does", async () => {
    const thread = await threadReady()
    const plain = open(recordIoLoop(20_000, 7_000))
    const chunks = plain.index.chunkSeqs.length
    expect(chunks).toBeGreaterThan(4)
    const late = plain.chunk(chunks - 3)
    const target = late[Math.floor(late.length / 2)]!
    const changed = recordIoLoop(20_000, 7_000, { seq: target.seq, event: (e) => ({ ...e, time: e.time + 1 }) })
    const inThread = divergenceFields(thrown(() => new ReplaySession(open(changed)).replayToEnd({ enabled: false })))
    expect(inThread.index).toBe(target.seq)
    expect(inThread.actual).toEqual(target)
    const posted = thread.posted
    const withWorker = divergenceFields(thrown(() => new ReplaySession(open(changed)).replayToEnd({ startAfterChunks: 1 })))
    expect(thread.posted - posted).toBeGreaterThan(chunks / 2)
    expect(withWorker).toEqual(inThread)
    // The worker reading the chunks from the file says the same.
    expect(divergenceFields(thrown(() => new ReplaySession(openFile(changed)).replayToEnd()))).toEqual(inThread)
    expect(thread.dead).toBe(false)
    // The default path (in-thread first, the worker when it is up) says the same.
    expect(divergenceFields(thrown(() => new ReplaySession(open(changed)).replayToEnd()))).toEqual(inThread)
  }, 120_000)

  it("reports the first of a changed event and a later changed checkpoint, however late the worker answers", async () => {
    await threadReady()
    const plain = open(recordIoLoop(20_000, 7_000))
    const { chunkSeqs, checkpointSeqs } = plain.index
    expect(checkpointSeqs.length).toBeGreaterThan(4)
    // An event just before the last checkpoint, and that checkpoint's registers.
    const last = checkpointSeqs.length - 1
    const seq = checkpointSeqs[last]! - 2
    const target = plain.chunk(plain.chunkOfEvent(seq))[seq - chunkSeqs[plain.chunkOfEvent(seq)]!]!
    expect(chunkSeqs.length).toBeGreaterThan(4)
    const changed = recordIoLoop(20_000, 7_000, {
      seq: target.seq,
      event: (e) => ({ ...e, time: e.time + 1 }),
      checkpoint: last,
      change: (c) => {
        const cpu = c.sections["cpu"] as { regs: Record<string, number> }
        return { ...c, sections: { ...c.sections, cpu: { ...cpu, regs: { ...cpu.regs, rax: cpu.regs["rax"]! + 1 } } } }
      }
    })
    const inThread = divergenceFields(thrown(() => new ReplaySession(open(changed)).replayToEnd({ enabled: false })))
    expect(inThread.index).toBe(target.seq)
    expect(divergenceFields(thrown(() => new ReplaySession(open(changed)).replayToEnd({ startAfterChunks: 1, maxInFlight: 64 })))).toEqual(inThread)
    // A worker that answers late: the replay passes the changed checkpoint before it hears about the event.
    const slowThread = await threadReady(slow)
    const posted = slowThread.posted
    expect(divergenceFields(thrown(() => new ReplaySession(open(changed)).replayToEnd({ startAfterChunks: 1, maxInFlight: 1000, workerEntry: slow })))).toEqual(inThread)
    expect(slowThread.posted - posted).toBeGreaterThan(2)
    expect(slowThread.dead).toBe(false)
    // With room for two chunks at the worker, the replay checks the others itself rather than wait: the same report.
    const before = slowThread.posted
    expect(divergenceFields(thrown(() => new ReplaySession(open(changed)).replayToEnd({ startAfterChunks: 1, maxInFlight: 2, workerEntry: slow })))).toEqual(inThread)
    const handed = slowThread.posted - before
    expect(handed).toBeGreaterThan(0)
    expect(handed).toBeLessThan(chunkSeqs.length)
  }, 120_000)

  it("a damaged late chunk: the same ReplayTraceDamaged, the worker reading the file or not", async () => {
    await threadReady()
    const bytes = recordIoLoop(20_000, 7_000)
    const plain = open(bytes)
    const chunks = plain.index.chunkSeqs.length
    // A byte inside a late chunk's payload: its checksum no longer holds.
    const damaged = Uint8Array.from(bytes)
    damaged[plain.index.chunkOffsets[chunks - 2]! + 40]! ^= 0xff
    const inThread = thrown(() => new ReplaySession(open(damaged)).replayToEnd({ enabled: false }))
    expect(inThread).toBeInstanceOf(ReplayTraceDamaged)
    const { verified, cause } = inThread as ReplayTraceDamaged
    expect(verified).toBe(plain.index.chunkSeqs[chunks - 2])
    expect(cause.reason).toMatch(/checksum mismatch/)
    const fromFile = thrown(() => new ReplaySession(openFile(damaged)).replayToEnd())
    expect(fromFile).toBeInstanceOf(ReplayTraceDamaged)
    expect({ verified: (fromFile as ReplayTraceDamaged).verified, reason: (fromFile as ReplayTraceDamaged).cause.reason }).toEqual({ verified, reason: cause.reason })
  }, 120_000)

  it("verifies in-thread, nothing skipped, when the worker stalls", async () => {
    const thread = await threadReady(stalling)
    const plain = open(recordIoLoop(10_000, 5_000))
    const chunks = plain.index.chunkSeqs.length
    const late = plain.chunk(chunks - 2)
    const target = late[3]!
    const changed = recordIoLoop(10_000, 5_000, { seq: target.seq, event: (e) => ({ ...e, time: e.time + 1 }) })
    const inThread = divergenceFields(thrown(() => new ReplaySession(open(changed)).replayToEnd({ enabled: false })))
    const stalled = divergenceFields(thrown(() => new ReplaySession(open(changed)).replayToEnd({ startAfterChunks: 1, workerEntry: stalling, stallMs: 300 })))
    expect(thread.dead).toBe(true)
    expect(stalled).toEqual(inThread)
    // Given up: the rest of the process verifies in-thread.
    expect(new ReplaySession(plain).replayToEnd({ startAfterChunks: 1, workerEntry: stalling })).toBe(plain.index.eventCount)
  }, 120_000)
})
