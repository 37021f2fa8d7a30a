import { performance } from "node:perf_hooks"
import * as fs from "node:fs"
import { MessageChannel, type MessagePort, receiveMessageOnPort, Worker } from "node:worker_threads"
import { type RawChunk, releaseRawChunk } from "../rawEvents.ts"
import type { TraceEncoder } from "./codec.ts"
import { TraceFrameTooLarge } from "./errors.ts"
import { encodeFrame, maxPayloadBytes } from "./framing.ts"
import { flagReady, flagResults, flagSlots, type PackReply, type PackRequest, type PackerTables } from "./packerProtocol.ts"
import type { Checkpoint } from "./schema.ts"
import { packsTo } from "./verifyPacked.ts"
import { packedCodec } from "./packedEvents.ts"
import { portableLayouts } from "../eventLayouts.ts"
import { hostInputTags } from "../VmEvent.ts"

/**
 * Packing raw chunks on the second core. Packing (and the frame's msgpack and CRC, and
 * the write) costs a quarter of a recording's time on the vCPU thread; here a worker
 * thread does it, writing each frame at its offset (positional writes on the writer's
 * descriptor), while the writer stays synchronous: `writeRawChunk` posts the chunk,
 * takes the replies that have come (each frame's length and what the index needs), in
 * order, and blocks (`Atomics.wait` on a shared counter the worker bumps after each
 * reply) only when more than `maxInFlight` chunks are out. Checkpoints are posted as
 * they are and encoded there too. The port is read only when that counter has moved.
 *
 * A short recording never waits for the worker, nor starts one: a recording packs
 * in-thread until it has written `startAfterChunks` chunks, then asks for the process's
 * worker (started once, lazily, `unref`ed, shared by every recording after, which use it
 * from their first chunk; it runs a bundle, packerWorkerBundle.ts, and starts in some
 * tens of milliseconds) and keeps packing in-thread until the worker says it is ready. A
 * worker that fails to start, dies or stalls is given up for the process: the chunks it
 * held are packed and written in-thread, at the offsets the replies so far give, from the
 * chunk the writer keeps (a dead worker's partial frame is overwritten, and anything past
 * the last frame truncated).
 */

export interface PackerOptions {
  /** false: always pack in-thread. */
  readonly enabled?: boolean
  /** Chunks a recording packs in-thread before it starts the process's worker; one already started is used at once. Default 4. */
  readonly startAfterChunks?: number
  /** Chunks handed to the worker and not yet written, at most: past it `write` blocks. Default 32. */
  readonly maxInFlight?: number
  /**
   * Hand the worker the chunk's own words buffer (transferred: detached for the caller)
   * instead of a copy when it is not a SharedArrayBuffer (one is always shared, never
   * copied). Saves the copy, but chunks a worker holds when it dies are lost (a write
   * error) rather than packed in-thread. Default false.
   */
  readonly transfer?: boolean
  /** The worker's entry module; tests point it elsewhere. Default the bundle of packerWorker.ts next to this file (packerWorkerBundle.ts). */
  readonly workerEntry?: string | URL
  /** How long a blocked `write` waits without any reply before it gives the worker up. Default 30 s. */
  readonly stallMs?: number
  /**
   * Called once a chunk's frame is in the file and the writer is done with the chunk:
   * from then on its words may be reused (a transferred buffer comes back here, in the
   * chunk passed). Until then, the chunk must not change.
   */
  readonly onChunkWritten?: (chunk: RawChunk) => void
}

const defaultEntry = new URL("./packerWorker.bundle.mjs", import.meta.url)

/**
 * A chunk's words as posted, and the buffers the post moves: shared words go as they are;
 * the caller's own buffer is moved when `transfer` allows it; anything else, a copy (moved).
 */
const postedWords = (words: Float64Array, transfer: boolean): { readonly words: Float64Array; readonly moved: Array<ArrayBuffer> } => {
  if (words.buffer instanceof SharedArrayBuffer) return { words, moved: [] }
  const own = transfer && words.byteOffset === 0 && words.byteLength === words.buffer.byteLength
  const sent = own ? words : words.slice()
  return { words: sent, moved: [sent.buffer as ArrayBuffer] }
}

/** One worker thread, shared by every recording of the process that uses its entry. */
export class PackerThread {
  private state: "starting" | "ready" | "dead" = "starting"
  private readonly flags = new Int32Array(new SharedArrayBuffer(flagSlots * 4))
  private readonly port: MessagePort
  private readonly worker: Worker | undefined
  private readonly replies = new Map<number, PackReply>()
  private readonly forgotten = new Set<number>()
  private nextId = 0
  private nextFile = 0
  /** The results counter when the port was last read: replies are looked for only once it moves. */
  private resultsRead = 0
  /** Chunks handed to the worker so far (tests and benchmarks look). */
  posted = 0
  /** Milliseconds writers have spent blocked waiting for replies (benchmarks look). */
  waitedMs = 0
  /** Why the worker was given up, for diagnostics. */
  deathReason: string | undefined

  constructor(entry: string | URL) {
    const { port1, port2 } = new MessageChannel()
    this.port = port1
    port1.unref()
    let worker: Worker | undefined
    try {
      // The thread builds its packer from these (packerWorker.ts), without the schemas and Effect.
      const tables: PackerTables = { layouts: portableLayouts(), hostInputTags: [...hostInputTags] }
      // No inherited flags: the entry is plain JavaScript (a test's may register a loader), and a --trace-gc or --cpu-prof is for the process's own thread.
      worker = new Worker(entry, { workerData: { port: port2, flags: this.flags, tables }, transferList: [port2], execArgv: [] })
      worker.unref()
      worker.on("error", (e) => this.die(`error: ${e instanceof Error ? e.message : String(e)}`))
      worker.on("exit", (code) => this.die(`exited with code ${code}`))
    } catch (e) {
      this.die(`did not start: ${e instanceof Error ? e.message : String(e)}`)
    }
    this.worker = worker
  }

  get dead(): boolean {
    return this.state === "dead"
  }

  /** Takes chunks: started and not given up. Reads the shared flag, so cheap. */
  get ready(): boolean {
    if (this.state === "starting" && Atomics.load(this.flags, flagReady) === 1) this.state = "ready"
    return this.state === "ready"
  }

  /** Frames for the returned file number go to `fd`, the first at `position`. */
  open(fd: number, position: number): number {
    const file = this.nextFile++
    this.port.postMessage({ _tag: "Open", file, fd, position } satisfies PackRequest)
    return file
  }

  /** No more requests for `file` (those before are still carried out). */
  close(file: number): void {
    if (!this.dead) this.port.postMessage({ _tag: "Close", file } satisfies PackRequest)
  }

  /** Hands the worker a chunk for `file`; its reply comes under the id. Throws if the chunk cannot be posted. */
  postChunk(file: number, chunk: RawChunk, transfer: boolean): number {
    const id = this.nextId++
    const { words, moved } = postedWords(chunk.words, transfer)
    const request: PackRequest = { _tag: "Chunk", id, file, firstSeq: chunk.firstSeq, count: chunk.count, words, objects: chunk.objects }
    this.port.postMessage(request, moved)
    this.posted++
    return id
  }

  /**
   * Hands the worker a replayed chunk to pack and compare with the recorded bytes: given
   * (copied: the caller's bytes stay its own), or the events frame the worker reads from
   * the trace file itself; its Verified reply comes under the id. The chunk must not
   * change until the reply is in. Throws if the chunk cannot be posted.
   */
  postVerify(chunk: RawChunk, recorded: Uint8Array | FrameAt): number {
    const id = this.nextId++
    const { words, moved } = postedWords(chunk.words, false)
    const fields = { id, firstSeq: chunk.firstSeq, count: chunk.count, words, objects: chunk.objects }
    let request: PackRequest
    if (recorded instanceof Uint8Array) {
      const expected = recorded.slice()
      moved.push(expected.buffer as ArrayBuffer)
      request = { _tag: "Verify", ...fields, expected }
    } else request = { _tag: "VerifyAt", ...fields, fd: recorded.fd, size: recorded.size, offset: recorded.offset }
    this.port.postMessage(request, moved)
    this.posted++
    return id
  }

  /** Hands the worker a checkpoint to encode and write for `file`. Throws if it cannot be posted (cloned). */
  postCheckpoint(file: number, checkpoint: Checkpoint): number {
    const id = this.nextId++
    this.port.postMessage({ _tag: "Checkpoint", id, file, checkpoint } satisfies PackRequest)
    return id
  }

  /** Hands the worker a frame to write for `file` (transferred). */
  postFrame(file: number, frame: Uint8Array): number {
    const id = this.nextId++
    this.port.postMessage({ _tag: "Frame", id, file, frame } satisfies PackRequest, [frame.buffer as ArrayBuffer])
    return id
  }

  /** The reply for `id` if it has come, without waiting. */
  take(id: number): PackReply | undefined {
    this.poll()
    const reply = this.replies.get(id)
    if (reply !== undefined) this.replies.delete(id)
    return reply
  }

  /**
   * Blocks until the reply for `id` comes; undefined once the worker is given up (it
   * died, or sent no reply for `stallMs`).
   */
  wait(id: number, stallMs: number): PackReply | undefined {
    const start = performance.now()
    try {
      return this.waitFor(id, stallMs)
    } finally {
      this.waitedMs += performance.now() - start
    }
  }

  private waitFor(id: number, stallMs: number): PackReply | undefined {
    let lastProgress = Date.now()
    let seen = Atomics.load(this.flags, flagResults)
    for (;;) {
      if (this.dead) return undefined
      const reply = this.take(id)
      if (reply !== undefined) return reply
      // Replies posted after `seen` was read bump the counter past it: no wake-up is missed.
      Atomics.wait(this.flags, flagResults, seen, 50)
      const now = Atomics.load(this.flags, flagResults)
      if (now !== seen) {
        seen = now
        lastProgress = Date.now()
      } else if (Date.now() - lastProgress > stallMs) {
        this.die(`no reply in ${stallMs} ms`)
      }
    }
  }

  /** The writer no longer wants these replies (it failed): dropped when they come. */
  forget(ids: Iterable<number>): void {
    for (const id of ids) if (!this.replies.delete(id)) this.forgotten.add(id)
  }

  private poll(): void {
    if (this.dead) return
    // Reading an empty port costs microseconds; the counter is bumped after each reply is posted.
    const results = Atomics.load(this.flags, flagResults)
    if (results === this.resultsRead) return
    this.resultsRead = results
    for (;;) {
      const received = receiveMessageOnPort(this.port)
      if (received === undefined) return
      const reply = received.message as PackReply
      if (this.forgotten.delete(reply.id)) continue
      this.replies.set(reply.id, reply)
    }
  }

  private die(reason: string): void {
    if (this.state === "dead") return
    this.state = "dead"
    this.deathReason = reason
    this.replies.clear()
    this.forgotten.clear()
    this.port.close()
    void this.worker?.terminate().catch(() => undefined)
  }
}

const threads = new Map<string, PackerThread>()

/** Whether the process has started its packer thread for `entry` (and not given it up). */
const started = (entry: string | URL): boolean => threads.get(String(entry))?.dead === false

/** The process's packer thread for `entry`, started on first use. */
export const packerThread = (entry: string | URL = defaultEntry): PackerThread => {
  const key = String(entry)
  let thread = threads.get(key)
  if (thread === undefined) {
    thread = new PackerThread(entry)
    threads.set(key, thread)
  }
  return thread
}

/** The ids of the queued requests from `head` on that went to the worker. */
const workerIds = (queue: ReadonlyArray<{ readonly id?: number | undefined } | undefined>, head: number): Array<number> => {
  const ids: Array<number> = []
  for (let i = head; i < queue.length; i++) {
    const id = queue[i]!.id
    if (id !== undefined) ids.push(id)
  }
  return ids
}

type Pending =
  | { readonly _tag: "Chunk"; chunk: RawChunk; id: number | undefined }
  | { readonly _tag: "Checkpoint"; readonly checkpoint: Checkpoint; id: number | undefined }

/**
 * One recording's side: raw chunks and checkpoints in, frames in the file in the order
 * they came. Every method is synchronous and throws what `write` throws, a write or
 * packing error the worker met (an `Error`), or `TraceFrameTooLarge`.
 */
export class RawChunkPacker {
  private readonly queue: Array<Pending> = []
  private head = 0
  private chunksSeen = 0
  private thread: PackerThread | undefined
  /** The file's number at the thread while frames go there. */
  private file: number | undefined
  /** The worker died or stalled holding frames: bytes past the last good frame may be junk. */
  private truncate = false
  /** Something the worker was handed failed: nothing more can be written in order. */
  private broken: Error | undefined
  private readonly enabled: boolean
  private readonly startAfterChunks: number
  private readonly maxInFlight: number
  private readonly transfer: boolean
  private readonly entry: string | URL
  private readonly stallMs: number
  private readonly onChunkWritten: ((chunk: RawChunk) => void) | undefined

  constructor(
    private readonly encoder: TraceEncoder,
    private readonly fd: number,
    /** Writes bytes at an offset (positional: the worker writes through the same descriptor). */
    private readonly write: (bytes: Uint8Array, position: number) => void,
    options: PackerOptions = {}
  ) {
    this.enabled = options.enabled ?? true
    this.startAfterChunks = options.startAfterChunks ?? 4
    this.maxInFlight = Math.max(1, options.maxInFlight ?? 32)
    this.transfer = options.transfer ?? false
    this.entry = options.workerEntry ?? defaultEntry
    this.stallMs = options.stallMs ?? 30_000
    this.onChunkWritten = options.onChunkWritten
  }

  /** Chunks and checkpoints not yet in the file (or not yet confirmed). */
  get pending(): number {
    return this.queue.length - this.head
  }

  /** Whether frames go to the worker now. */
  get threaded(): boolean {
    return this.file !== undefined && this.thread?.dead === false
  }

  writeRawChunk(chunk: RawChunk): void {
    if (this.broken !== undefined) throw this.broken
    if (chunk.count === 0) return
    if (this.enabled && this.thread === undefined && (++this.chunksSeen >= this.startAfterChunks || started(this.entry))) {
      this.thread = packerThread(this.entry)
    }
    if (this.attach()) {
      let id: number | undefined
      try {
        id = this.thread!.postChunk(this.file!, chunk, this.transfer)
      } catch {
        // Not postable (an object the worker cannot receive): written here in its turn, and
        // the worker's idea of the file's end is stale from there.
        this.detach()
      }
      this.queue.push({ _tag: "Chunk", chunk, id })
      this.pump(this.maxInFlight)
    } else {
      this.pump(0)
      this.writeHere(this.encoder.rawChunk(chunk))
      this.onChunkWritten?.(chunk)
    }
  }

  writeCheckpoint(checkpoint: Checkpoint): void {
    if (this.broken !== undefined) throw this.broken
    if (this.threaded) {
      // Encoded there (the index is updated when the worker has written it, in its turn).
      let id: number
      try {
        id = this.thread!.postCheckpoint(this.file!, checkpoint)
      } catch {
        // Not cloneable: its bytes here.
        id = this.thread!.postFrame(this.file!, encodeFrame(checkpoint, this.encoder.nextFrame + this.pending))
      }
      this.queue.push({ _tag: "Checkpoint", checkpoint, id })
      this.pump(this.maxInFlight)
    } else if (this.pending === 0) {
      this.writeHere(this.encoder.checkpoint(checkpoint))
    } else {
      this.queue.push({ _tag: "Checkpoint", checkpoint, id: undefined })
      this.pump(this.maxInFlight)
    }
  }

  /**
   * Everything handed in so far in the file, waiting for the worker as long as it takes.
   * The worker gets no more frames until the next raw chunk: the caller may write here.
   */
  flush(): void {
    if (this.broken !== undefined) throw this.broken
    this.pump(0)
    this.detach()
    if (this.truncate) {
      fs.ftruncateSync(this.fd, this.encoder.offset)
      this.truncate = false
    }
  }

  /** The recording is over (closed, failed or interrupted): the worker's replies for it are dropped. */
  release(): void {
    this.thread?.forget(workerIds(this.queue, this.head))
    this.queue.length = 0
    this.head = 0
    this.detach()
  }

  /** Frames go to the worker from here on, if it is ready and nothing is queued here. */
  private attach(): boolean {
    const thread = this.thread
    if (thread === undefined || thread.dead) return false
    if (this.file !== undefined) return true
    if (this.pending > 0 || !thread.ready) return false
    this.file = thread.open(this.fd, this.encoder.offset)
    return true
  }

  private detach(): void {
    if (this.file !== undefined) this.thread?.close(this.file)
    this.file = undefined
  }

  private writeHere(frame: Uint8Array | undefined): void {
    if (frame !== undefined) this.write(frame, this.encoder.offset - frame.length)
  }

  /** Takes the queue's head while it is done; waits for it while more than `limit` are pending. */
  private pump(limit: number): void {
    while (this.head < this.queue.length) {
      const p = this.queue[this.head]!
      if (p.id === undefined || this.thread === undefined) {
        this.writeHere(p._tag === "Chunk" ? this.encoder.rawChunk(p.chunk) : this.encoder.checkpoint(p.checkpoint))
        if (p._tag === "Chunk") this.onChunkWritten?.(p.chunk)
      } else {
        const thread = this.thread
        let reply = thread.take(p.id)
        if (reply === undefined && !thread.dead) {
          if (this.pending <= limit) return
          reply = thread.wait(p.id, this.stallMs)
        }
        if (reply === undefined) {
          this.lost(p)
          continue
        }
        if (reply._tag === "Failed") {
          this.broken = reply.tooLarge !== undefined
            ? new TraceFrameTooLarge({ frame: this.encoder.nextFrame, bytes: reply.tooLarge, limit: maxPayloadBytes })
            : new Error(reply.error ?? "packer thread: an earlier frame failed")
          this.release()
          throw this.broken
        }
        if (reply._tag === "Verified") throw new Error("packer thread: a Verified reply for a frame")
        if (p._tag === "Chunk") {
          this.encoder.writtenChunk(reply.length, { firstSeq: p.chunk.firstSeq, count: p.chunk.count, firstTime: reply.firstTime, inputSeqs: reply.inputSeqs })
          this.onChunkWritten?.(reply.words === undefined ? p.chunk : { ...p.chunk, words: reply.words })
        } else {
          this.encoder.writtenCheckpoint(reply.length, p.checkpoint)
        }
      }
      this.queue[this.head++] = undefined as unknown as Pending
      if (this.head === this.queue.length) {
        this.queue.length = 0
        this.head = 0
      }
    }
  }

  /** The worker was given up holding `p`: written here, from the writer's chunk. */
  private lost(p: Pending): void {
    this.file = undefined
    this.truncate = true
    if (p._tag === "Chunk" && p.chunk.words.buffer.byteLength === 0) {
      this.broken = new Error(`packer thread lost the chunk at seq ${p.chunk.firstSeq} (${this.thread?.deathReason ?? "gone"}): its words were transferred`)
      throw this.broken
    }
    p.id = undefined
  }
}

export interface VerifierOptions {
  /** false: always verify in-thread. */
  readonly enabled?: boolean
  /** Chunks a replay verifies in-thread before it starts the process's worker; one already started is used at once. Default 4. */
  readonly startAfterChunks?: number
  /** Chunks handed to the worker whose results are not taken yet, at most: past it `verify` checks the chunk itself. Default 16. */
  readonly maxInFlight?: number
  /** The worker's entry module; tests point it elsewhere. Default the bundle of packerWorker.ts next to this file (packerWorkerBundle.ts). */
  readonly workerEntry?: string | URL
  /** How long a blocked `verify` waits without any reply before it gives the worker up. Default 30 s. */
  readonly stallMs?: number
}

/** An events frame in a trace file of `size` bytes. */
export interface FrameAt {
  readonly fd: number
  readonly size: number
  readonly offset: number
}

/** The recorded bytes a replayed chunk is checked against. */
export interface RecordedChunkBytes {
  /** Where the worker reads them itself, when the trace is a file: nothing to read or copy on the replay's thread. */
  readonly at: FrameAt | undefined
  /** Reads them in this thread; undefined (or a throw) when they are not a packed chunk's. */
  readonly read: () => Uint8Array | undefined
}

type PendingCheck =
  /** Handed to the worker: its result comes under `id`. */
  | { readonly key: number; readonly chunk: RawChunk; readonly recorded: RecordedChunkBytes; readonly id: number }
  /** Checked in this thread when it came. */
  | { readonly key: number; readonly same: boolean; readonly id?: undefined }

/**
 * The check in this thread. Recorded bytes that cannot be read are "different": the
 * replay then reads the chunk again in-thread, which reports what is wrong with it.
 */
const packsToHere = (chunk: RawChunk, recorded: RecordedChunkBytes): boolean => {
  let expected: Uint8Array | undefined
  try {
    expected = recorded.read()
  } catch {
    return false
  }
  return expected !== undefined && packsTo(packedCodec, chunk, expected)
}

/**
 * A replay's side (ReplaySession.replayToEnd): each raw chunk it produced, with the bytes
 * the recording holds for it, checked on the packer thread while the replay goes on. The
 * results are taken in the order the chunks came; `verify` and `finish` return the key
 * of the first chunk found different (nothing after it is looked at: the caller
 * `discard`s the rest). A chunk goes back to the event log's spare buffers
 * (`releaseRawChunk`) once its result is in.
 *
 * As a recording does, a replay verifies in-thread until it has seen `startAfterChunks`
 * chunks (or at once, when it has at least that many to go), then asks for the process's
 * worker and goes on in-thread until it is ready; a worker that dies or stalls is given
 * up, and the chunks it held are verified in-thread (from the chunks, which are kept
 * until then): the results are the same, only later.
 */
export class RawChunkVerifier {
  private readonly queue: Array<PendingCheck | undefined> = []
  private head = 0
  private chunksSeen = 0
  private thread: PackerThread | undefined
  /** Chunks with the worker whose results are not taken yet. */
  private inFlight = 0
  /** Results the worker gave (tests look). */
  threaded = 0
  private readonly enabled: boolean
  private readonly startAfterChunks: number
  private readonly maxInFlight: number
  private readonly entry: string | URL
  private readonly stallMs: number

  /** `chunks`: how many the replay will hand in, if known; at least `startAfterChunks` starts the worker now, to be ready sooner. */
  constructor(options: VerifierOptions = {}, chunks = 0) {
    this.enabled = options.enabled ?? true
    this.startAfterChunks = options.startAfterChunks ?? 4
    this.maxInFlight = Math.max(1, options.maxInFlight ?? 16)
    this.entry = options.workerEntry ?? defaultEntry
    this.stallMs = options.stallMs ?? 30_000
    if (this.enabled && chunks >= this.startAfterChunks) this.thread = packerThread(this.entry)
  }

  /** Chunks whose results are not taken yet. */
  get pending(): number {
    return this.queue.length - this.head
  }

  /**
   * Checks (now or later) that `chunk` packs to the `recorded` bytes, which must not
   * change until then (the chunk neither). Returns the key of the first chunk found
   * different, if one is.
   */
  verify(key: number, chunk: RawChunk, recorded: RecordedChunkBytes): number | undefined {
    if (this.enabled && this.thread === undefined && (++this.chunksSeen >= this.startAfterChunks || started(this.entry))) {
      this.thread = packerThread(this.entry)
    }
    const thread = this.thread
    let id: number | undefined
    // Results that are in first: the room they free goes to this chunk.
    const different = this.pump(Number.POSITIVE_INFINITY)
    if (thread !== undefined && !thread.dead && thread.ready && this.inFlight < this.maxInFlight) {
      try {
        const bytes = recorded.at ?? recorded.read()
        if (bytes !== undefined) id = thread.postVerify(chunk, bytes)
      } catch {
        // Not postable (an object the worker cannot receive) or not readable: checked here.
      }
    }
    if (id === undefined) {
      // No worker yet, or one with enough to do (a cold one packs slower than a replay
      // runs): the replay checks the chunk itself rather than wait.
      this.queue.push({ key, same: packsToHere(chunk, recorded) })
      releaseRawChunk(chunk)
    } else {
      this.inFlight++
      this.queue.push({ key, chunk, recorded, id })
    }
    return different ?? this.pump(Number.POSITIVE_INFINITY)
  }

  /** Every result, waiting for the worker as long as it takes: the key of the first chunk found different, if one is. */
  finish(): number | undefined {
    return this.pump(0)
  }

  /** The results not taken are not wanted (the replay went back): dropped, and their chunks left to the garbage collector. */
  discard(): void {
    this.thread?.forget(workerIds(this.queue, this.head))
    this.queue.length = 0
    this.head = 0
    this.inFlight = 0
  }

  /** Takes results in order while they are in; waits for the head's while more than `limit` are with the worker. */
  private pump(limit: number): number | undefined {
    while (this.head < this.queue.length) {
      const p = this.queue[this.head]!
      let same: boolean
      if ("same" in p) same = p.same
      else {
        const thread = this.thread!
        let reply = thread.take(p.id)
        if (reply === undefined && !thread.dead) {
          if (this.inFlight <= limit) return undefined
          reply = thread.wait(p.id, this.stallMs)
        }
        if (reply?._tag === "Verified") {
          same = reply.same
          this.threaded++
        } else same = packsToHere(p.chunk, p.recorded)
        this.inFlight--
        releaseRawChunk(p.chunk)
      }
      this.queue[this.head++] = undefined
      if (this.head === this.queue.length) {
        this.queue.length = 0
        this.head = 0
      }
      if (!same) return p.key
    }
    return undefined
  }
}
