import * as Either from "effect/Either"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import { isHostInput, isHostInputTag, type VmEvent } from "../VmEvent.ts"
import { kindLayouts } from "../eventLayouts.ts"
import { TraceCorrupt, TraceFrameTooLarge } from "./errors.ts"
import { type ByteSource, encodeFrame, magic, maxPayloadBytes, memorySource, readFrame, shortText } from "./framing.ts"
import { PackedDecodeError } from "./bytes.ts"
import { packedCodec, packEvents, unpackEvents } from "./packedEvents.ts"
import type { RawChunk } from "../rawEvents.ts"
import { makeRawChunkFramer, packedChunkPayload, type RawChunkIndexEntry } from "./rawPack.ts"
import {
  Checkpoint,
  EventChunk,
  makeTraceHeader,
  PackedEventChunk,
  readableFormatVersions,
  sha256Hex,
  TraceEnd,
  TraceHeader,
  type TraceHeaderInput
} from "./schema.ts"


/** This thread's framer of raw chunks (the packer thread has its own). */
const frameRawChunk = makeRawChunkFramer(packedCodec, kindLayouts)

/**
 * The trace layer: header, event chunks, end frame, and the checks that tie them
 * together. Pure over bytes; the file writer and reader (file.ts) and the in-memory
 * `encodeTrace` / `decodeTrace` all go through these two classes.
 */

export interface TraceSummary {
  readonly eventCount: number
  readonly chunkCount: number
  /** Size of the trace in bytes, magic included. */
  readonly bytes: number
}

/** Where the chunks and checkpoints are: what the end frame lists and a scan rebuilds. */
export class TraceIndexBuilder {
  eventCount = 0
  readonly chunkOffsets: Array<number> = []
  readonly chunkSeqs: Array<number> = []
  readonly chunkTimes: Array<number> = []
  readonly checkpointOffsets: Array<number> = []
  readonly checkpointSeqs: Array<number> = []
  readonly checkpointTimes: Array<number> = []
  /** Events a replay takes from the recording rather than the guest: serial input, wall-clock readings. */
  readonly inputSeqs: Array<number> = []

  /** `kinds`, the kinds the chunk holds if known, spares a look at every event when none is a host input. */
  addChunk(offset: number, events: ReadonlyArray<VmEvent>, kinds?: ReadonlyArray<string>): void {
    this.chunkOffsets.push(offset)
    this.chunkSeqs.push(events[0].seq)
    this.chunkTimes.push(events[0].time)
    this.eventCount += events.length
    if (kinds !== undefined && !kinds.some(isHostInputTag)) return
    for (let i = 0; i < events.length; i++) if (isHostInput(events[i]!)) this.inputSeqs.push(events[i]!.seq)
  }

  /** The same from the numbers alone, for a chunk packed without objects (rawPack.ts). */
  addChunkEntry(offset: number, entry: RawChunkIndexEntry): void {
    this.chunkOffsets.push(offset)
    this.chunkSeqs.push(entry.firstSeq)
    this.chunkTimes.push(entry.firstTime)
    this.eventCount += entry.count
    for (let i = 0; i < entry.inputSeqs.length; i++) this.inputSeqs.push(entry.inputSeqs[i]!)
  }

  addCheckpoint(offset: number, checkpoint: Pick<Checkpoint, "seq" | "time">): void {
    this.checkpointOffsets.push(offset)
    this.checkpointSeqs.push(checkpoint.seq)
    this.checkpointTimes.push(checkpoint.time)
  }

  end(): TraceEnd {
    return {
      kind: "end",
      eventCount: this.eventCount,
      chunkOffsets: this.chunkOffsets,
      chunkSeqs: this.chunkSeqs,
      chunkTimes: this.chunkTimes,
      checkpointOffsets: this.checkpointOffsets,
      checkpointSeqs: this.checkpointSeqs,
      checkpointTimes: this.checkpointTimes,
      inputSeqs: this.inputSeqs
    }
  }
}

/**
 * Turns a header, chunks of events, checkpoints and the end into the bytes to append,
 * keeping the byte offsets the end frame's index needs. Throws `TraceFrameTooLarge` (state unchanged).
 */
export class TraceEncoder {
  private position = 0
  private frameCount = 0
  private readonly index = new TraceIndexBuilder()
  private phase: "new" | "events" | "ended" = "new"

  /** The magic and the header frame. */
  start(header: TraceHeader): Uint8Array {
    this.expect("new", "start")
    const frame = encodeFrame(header, 0)
    const bytes = new Uint8Array(magic.length + frame.length)
    bytes.set(magic)
    bytes.set(frame, magic.length)
    this.advance(bytes)
    this.phase = "events"
    return bytes
  }

  /** One events frame, or nothing for no events. */
  chunk(events: ReadonlyArray<VmEvent>): Uint8Array | undefined {
    this.expect("events", "chunk")
    if (events.length === 0) return undefined
    const packed = packEvents(events)
    const payload: PackedEventChunk = { kind: "events", firstSeq: events[0].seq, packed: packed.bytes }
    const frame = encodeFrame(payload, this.frameCount)
    this.index.addChunk(this.position, events, packed.kinds)
    this.advance(frame)
    return frame
  }

  /** One events frame for a raw chunk (rawEvents.ts), packed here: the bytes `chunk(rawEvents(raw))` gives. */
  rawChunk(raw: RawChunk): Uint8Array | undefined {
    this.expect("events", "rawChunk")
    if (raw.count === 0) return undefined
    const { frame, entry } = frameRawChunk(raw)
    if (typeof frame === "number") throw new TraceFrameTooLarge({ frame: this.frameCount, bytes: frame, limit: maxPayloadBytes })
    return this.framedChunk(frame, entry)
  }

  /** One events frame for a chunk already packed (`{ firstSeq, packed }`). */
  packedChunk(packed: Uint8Array, entry: RawChunkIndexEntry): Uint8Array {
    this.expect("events", "packedChunk")
    return this.framedChunk(encodeFrame(packedChunkPayload(entry.firstSeq, packed), this.frameCount), entry)
  }

  /** An events frame already encoded elsewhere (by a framer of rawPack.ts): appended as is. */
  framedChunk(frame: Uint8Array, entry: RawChunkIndexEntry): Uint8Array {
    this.writtenChunk(frame.length, entry)
    return frame
  }

  /** An events frame of `length` bytes someone else (the packer thread) encoded and wrote at `position`. */
  writtenChunk(length: number, entry: RawChunkIndexEntry): void {
    this.expect("events", "writtenChunk")
    this.index.addChunkEntry(this.position, entry)
    this.advance(length)
  }

  /** A checkpoint frame of `length` bytes someone else wrote at `position`. */
  writtenCheckpoint(length: number, checkpoint: Pick<Checkpoint, "seq" | "time">): void {
    this.expect("events", "writtenCheckpoint")
    this.index.addCheckpoint(this.position, checkpoint)
    this.advance(length)
  }

  /** Where the next frame goes: the bytes so far. */
  get offset(): number {
    return this.position
  }

  /** The number of the next frame: what a `TraceFrameTooLarge` for it names. */
  get nextFrame(): number {
    return this.frameCount
  }

  /** One checkpoint frame, between the events before it and those after. */
  checkpoint(checkpoint: Checkpoint): Uint8Array {
    this.expect("events", "checkpoint")
    const frame = encodeFrame(checkpoint, this.frameCount)
    this.index.addCheckpoint(this.position, checkpoint)
    this.advance(frame)
    return frame
  }

  /** The end frame: the index. */
  end(): Uint8Array {
    this.expect("events", "end")
    const frame = encodeFrame(this.index.end(), this.frameCount)
    this.advance(frame)
    this.phase = "ended"
    return frame
  }

  get summary(): TraceSummary {
    return { eventCount: this.index.eventCount, chunkCount: this.index.chunkOffsets.length, bytes: this.position }
  }

  private advance(bytes: Uint8Array | number): void {
    this.position += typeof bytes === "number" ? bytes : bytes.length
    this.frameCount++
  }

  private expect(phase: TraceEncoder["phase"], call: string): void {
    if (this.phase !== phase) throw new Error(`TraceEncoder.${call}() called in phase ${this.phase}`)
  }
}

/** A whole trace in memory; shares every byte of logic with the file writer. */
export const encodeTrace = (
  header: TraceHeaderInput,
  chunks: Iterable<ReadonlyArray<VmEvent>>
): Uint8Array => {
  const encoder = new TraceEncoder()
  const parts: Array<Uint8Array> = [encoder.start(makeTraceHeader(header))]
  for (const events of chunks) {
    const frame = encoder.chunk(events)
    if (frame !== undefined) parts.push(frame)
  }
  parts.push(encoder.end())
  const bytes = new Uint8Array(encoder.summary.bytes)
  let at = 0
  for (const part of parts) {
    bytes.set(part, at)
    at += part.length
  }
  return bytes
}

export type TraceStep =
  | { readonly _tag: "Chunk"; readonly chunk: EventChunk; readonly offset: number }
  | { readonly _tag: "Checkpoint"; readonly checkpoint: Checkpoint; readonly offset: number }
  /** A valid end frame; `error` if bytes follow it. */
  | { readonly _tag: "End"; readonly end: TraceEnd; readonly error?: TraceCorrupt }
  | { readonly _tag: "Corrupt"; readonly error: TraceCorrupt }

const decodeOptions = { errors: "first", onExcessProperty: "ignore" } as const
const decodeHeader = Schema.decodeUnknownEither(TraceHeader, decodeOptions)
const decodeChunk = Schema.decodeUnknownEither(EventChunk, decodeOptions)
const decodePackedChunk = Schema.decodeUnknownEither(PackedEventChunk, decodeOptions)
const decodeEnd = Schema.decodeUnknownEither(TraceEnd, decodeOptions)
const decodeCheckpoint = Schema.decodeUnknownEither(Checkpoint, decodeOptions)

/** The first schema issue as `path: message`, one short line. */
const describeParseError = (error: ParseResult.ParseError): string => {
  const issues = ParseResult.ArrayFormatter.formatErrorSync(error)
  const first = issues[0]
  if (first === undefined) return shortText(error.message)
  const path = first.path.map((key, i) => (typeof key === "number" ? `[${key}]` : i === 0 ? String(key) : `.${String(key)}`)).join("")
  // A literal union reports each member apart ("Expected 1, actual 3", "Expected 2, …"): merge them.
  const samePath = issues.filter((issue) => issue.path.join("\0") === first.path.join("\0"))
  const parts = samePath.map((issue) => /^Expected (.*), actual (.*)$/.exec(issue.message))
  const message = samePath.length > 1 && parts.every((m) => m !== null && m[2] === parts[0]![2])
    ? `Expected ${parts.map((m) => m![1]).join(" | ")}, actual ${parts[0]![2]}`
    : first.message
  return shortText(path === "" ? message : `${path}: ${message}`)
}

/**
 * An events frame's payload as its chunk: packed (format 3) or a msgpack array of events
 * (format 2), told apart by the `packed` key. Left: why not, one line.
 */
export const decodeEventChunk = (value: unknown): Either.Either<EventChunk, string> => {
  if (typeof value !== "object" || value === null || !("packed" in value)) {
    return Either.mapLeft(decodeChunk(value), describeParseError)
  }
  const chunk = decodePackedChunk(value)
  if (Either.isLeft(chunk)) return Either.left(describeParseError(chunk.left))
  const { firstSeq, packed } = chunk.right
  try {
    return Either.right({ kind: "events", firstSeq, events: unpackEvents(packed, firstSeq) })
  } catch (e) {
    if (e instanceof PackedDecodeError) return Either.left(shortText(`packed: ${e.message}`))
    throw e
  }
}

const kindOf = (value: unknown): unknown =>
  typeof value === "object" && value !== null && !Array.isArray(value) ? (value as { kind?: unknown }).kind : undefined

/**
 * Reads a trace front to back from a `ByteSource`: `header()` once, then `next()` until
 * an `End` or `Corrupt` step. Never throws for any bytes; only the source's I/O throws.
 */
export class TraceDecoder {
  private position = magic.length
  private frameIndex = 0
  /** What has been read so far: for a trace without an end frame, the index a scan gives. */
  readonly index = new TraceIndexBuilder()
  private phase: "new" | "events" | "done" = "new"

  constructor(private readonly source: ByteSource, private readonly path?: string) {}

  header(): TraceHeader | TraceCorrupt {
    if (this.phase !== "new") throw new Error("TraceDecoder.header() called twice")
    this.phase = "done"
    const { size } = this.source
    if (size === 0) return this.corrupt(undefined, 0, "empty file: not a vmrr trace")
    const head = this.source.read(0, magic.length)
    for (let i = 0; i < head.length; i++) {
      if (head[i] !== magic[i]) {
        // The one mangling worth naming: CR LF turned into LF by a text-mode copy.
        const lineEndings = head.length >= 6 && [0, 1, 2, 3, 4].every((j) => head[j] === magic[j]) && head[5] === 0x0a
        return this.corrupt(undefined, i, lineEndings
          ? "not a vmrr trace: bad magic (its CR LF became LF: was the file copied in text mode?)"
          : "not a vmrr trace: bad magic")
      }
    }
    if (head.length < magic.length) {
      return this.corrupt(undefined, head.length, `truncated: the file ends inside the magic, after ${head.length} of 8 bytes`)
    }
    const read = readFrame(this.source, this.position, 0)
    if (read._tag === "Eof") return this.corrupt(0, read.offset, `truncated: no header frame; the file ends at byte ${read.offset}`)
    if (read._tag === "Damage") return this.corrupt(0, read.offset, read.reason)
    const kind = kindOf(read.value)
    if (kind !== "header") return this.corrupt(0, read.offset, `frame 0 is not a header (kind ${showKind(kind)})`)
    const version = (read.value as { formatVersion?: unknown }).formatVersion
    if (typeof version !== "number" || !readableFormatVersions.includes(version)) {
      const producer = (read.value as { producer?: unknown }).producer
      const by = typeof producer === "string" ? `; it was written by ${shortText(producer, 40)}` : ""
      return this.corrupt(0, read.offset, `trace format version ${shortText(String(version), 20)}, this vmrr reads ${readableFormatVersions.join(" and ")}${by}`)
    }
    const decoded = decodeHeader(read.value)
    if (Either.isLeft(decoded)) return this.payloadError(read.index, read.offset, decoded.left)
    const header = decoded.right
    const computed = sha256Hex(header.image)
    if (computed !== header.imageSha256) {
      return this.corrupt(0, read.offset, `frame 0 at byte ${read.offset}: image hash mismatch (header says ${header.imageSha256.slice(0, 12)}…, image is ${computed.slice(0, 12)}…)`)
    }
    this.accept(read.end)
    this.phase = "events"
    return header
  }

  next(): TraceStep {
    if (this.phase !== "events") throw new Error(`TraceDecoder.next() called in phase ${this.phase}`)
    this.phase = "done"
    const read = readFrame(this.source, this.position, this.frameIndex)
    if (read._tag === "Eof") {
      return this.fail(read.index, read.offset, `truncated: no end frame; the file ends at byte ${read.offset} after frame ${read.index - 1} (${this.index.eventCount} events in ${this.index.chunkOffsets.length} chunks intact)`)
    }
    if (read._tag === "Damage") return this.fail(read.index, read.offset, read.reason)
    const where = `frame ${read.index} at byte ${read.offset}`
    const kind = kindOf(read.value)
    switch (kind) {
      case "events": {
        const decoded = decodeEventChunk(read.value)
        if (Either.isLeft(decoded)) return this.fail(read.index, read.offset, `${where}: payload does not decode: ${decoded.left}`)
        const chunk = decoded.right
        if (chunk.events.length > 0 && chunk.events[0].seq !== chunk.firstSeq) {
          return this.fail(read.index, read.offset, `${where}: chunk says it starts at seq ${chunk.firstSeq}, its first event is seq ${chunk.events[0].seq}`)
        }
        if (chunk.events.length > 0) this.index.addChunk(read.offset, chunk.events)
        this.accept(read.end)
        this.phase = "events"
        return { _tag: "Chunk", chunk, offset: read.offset }
      }
      case "checkpoint": {
        const decoded = decodeCheckpoint(read.value)
        if (Either.isLeft(decoded)) return { _tag: "Corrupt", error: this.payloadError(read.index, read.offset, decoded.left) }
        const checkpoint = decoded.right
        if (checkpoint.seq !== this.index.eventCount) {
          return this.fail(read.index, read.offset, `${where}: checkpoint says it follows ${checkpoint.seq} events, ${this.index.eventCount} come before it`)
        }
        this.index.addCheckpoint(read.offset, checkpoint)
        this.accept(read.end)
        this.phase = "events"
        return { _tag: "Checkpoint", checkpoint, offset: read.offset }
      }
      case "end": {
        const decoded = decodeEnd(read.value)
        if (Either.isLeft(decoded)) return { _tag: "Corrupt", error: this.payloadError(read.index, read.offset, decoded.left) }
        const end = decoded.right
        if (end.eventCount !== this.index.eventCount) {
          return this.fail(read.index, read.offset, `${where}: end frame counts ${end.eventCount} events, the chunks hold ${this.index.eventCount}`)
        }
        const mismatch = indexMismatch(end, this.index)
        if (mismatch !== undefined) return this.fail(read.index, read.offset, `${where}: end frame's ${mismatch}`)
        this.accept(read.end)
        if (this.position < this.source.size) {
          const extra = this.source.size - this.position
          return { _tag: "End", end, error: this.corrupt(this.frameIndex, this.position, `${extra} bytes follow the end frame at byte ${this.position}`) }
        }
        return { _tag: "End", end }
      }
      case "header":
        return this.fail(read.index, read.offset, `${where}: a second header (only frame 0 is a header)`)
      default:
        return this.fail(read.index, read.offset, `${where}: not a vmrr frame (kind ${showKind(kind)})`)
    }
  }

  private accept(end: number): void {
    this.position = end
    this.frameIndex++
  }

  private fail(frame: number, offset: number, reason: string): TraceStep {
    return { _tag: "Corrupt", error: this.corrupt(frame, offset, reason) }
  }

  private payloadError(frame: number, offset: number, error: ParseResult.ParseError): TraceCorrupt {
    return this.corrupt(frame, offset, `frame ${frame} at byte ${offset}: payload does not decode: ${describeParseError(error)}`)
  }

  private corrupt(frame: number | undefined, offset: number, reason: string): TraceCorrupt {
    return new TraceCorrupt({ ...(this.path === undefined ? {} : { path: this.path }), ...(frame === undefined ? {} : { frame }), offset, reason })
  }
}

const showKind = (kind: unknown): string =>
  kind === undefined ? "missing" : typeof kind === "string" ? JSON.stringify(shortText(kind, 40)) : typeof kind

const listMismatch = (what: string, field: string, listed: ReadonlyArray<number> | undefined, read: ReadonlyArray<number>): string | undefined => {
  if (listed === undefined) return undefined
  for (let i = 0; i < Math.min(listed.length, read.length); i++) {
    if (listed[i] !== read[i]) return `${what} ${i} is ${field} ${read[i]}, the index says ${listed[i]}`
  }
  return listed.length === read.length ? undefined : `the index lists ${listed.length} ${what}s, the file has ${read.length}`
}

/** The first way the end frame's index disagrees with the frames read, as a phrase. */
export const indexMismatch = (end: TraceEnd, read: TraceIndexBuilder): string | undefined => {
  const chunk = listMismatch("chunk", "at byte", end.chunkOffsets, read.chunkOffsets) ??
    listMismatch("chunk", "at seq", end.chunkSeqs, read.chunkSeqs) ??
    listMismatch("chunk", "at time", end.chunkTimes, read.chunkTimes)
  if (chunk !== undefined) return `chunk index disagrees with the chunks (${chunk})`
  const checkpoint = listMismatch("checkpoint", "at byte", end.checkpointOffsets, read.checkpointOffsets) ??
    listMismatch("checkpoint", "at seq", end.checkpointSeqs, read.checkpointSeqs) ??
    listMismatch("checkpoint", "at time", end.checkpointTimes, read.checkpointTimes)
  if (checkpoint !== undefined) return `checkpoint index disagrees with the checkpoints (${checkpoint})`
  const input = listMismatch("host input", "event", end.inputSeqs, read.inputSeqs)
  return input === undefined ? undefined : `host input index disagrees with the chunks (${input})`
}

/** Everything intact in a trace, and the damage if any. Never throws. */
export interface DecodedTrace {
  readonly header?: TraceHeader
  readonly chunks: ReadonlyArray<EventChunk>
  readonly checkpoints: ReadonlyArray<Checkpoint>
  readonly end?: TraceEnd
  readonly error?: TraceCorrupt
}

export const decodeTrace = (bytes: Uint8Array): DecodedTrace => {
  const decoder = new TraceDecoder(memorySource(bytes))
  const header = decoder.header()
  if (header instanceof TraceCorrupt) return { chunks: [], checkpoints: [], error: header }
  const chunks: Array<EventChunk> = []
  const checkpoints: Array<Checkpoint> = []
  for (;;) {
    const step = decoder.next()
    switch (step._tag) {
      case "Chunk":
        chunks.push(step.chunk)
        continue
      case "Checkpoint":
        checkpoints.push(step.checkpoint)
        continue
      case "End":
        return step.error === undefined
          ? { header, chunks, checkpoints, end: step.end }
          : { header, chunks, checkpoints, end: step.end, error: step.error }
      case "Corrupt":
        return { header, chunks, checkpoints, error: step.error }
    }
  }
}
