import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as ParseResult from "effect/ParseResult"
import type * as Scope from "effect/Scope"
import * as Schema from "effect/Schema"
import type { VmEvent } from "../VmEvent.ts"
import { decodeEventChunk, TraceDecoder, type TraceIndexBuilder } from "./codec.ts"
import { ioError, TraceCorrupt, type TraceError } from "./errors.ts"
import { type ByteSource, fileSource, frameHeadBytes, magic, maxPayloadBytes, readFrame } from "./framing.ts"
import { readPayload } from "./frameBytes.ts"
import { type PruneShape, unpackPruned } from "./prunedUnpack.ts"
import { openFile } from "./reader.ts"
import { Checkpoint, TraceEnd, type TraceHeader } from "./schema.ts"

/**
 * Random access to a trace: where its chunks and checkpoints are, by event number and
 * virtual time. The end frame lists them; it is found from the end of the file, as
 * the one frame whose length field reaches exactly the last byte and whose checksum
 * holds. A trace without it (a recording cut off) is indexed by a scan of every frame,
 * up to the first damage.
 */

export interface TraceIndex {
  readonly eventCount: number
  readonly chunkOffsets: ReadonlyArray<number>
  readonly chunkSeqs: ReadonlyArray<number>
  readonly chunkTimes: ReadonlyArray<number>
  readonly checkpointOffsets: ReadonlyArray<number>
  readonly checkpointSeqs: ReadonlyArray<number>
  readonly checkpointTimes: ReadonlyArray<number>
  readonly inputSeqs: ReadonlyArray<number>
  /** From the end frame (true) or from a scan (false). */
  readonly fromEndFrame: boolean
  /** Where a scan stopped on damage: everything before it is indexed. */
  readonly damage?: TraceCorrupt
}

const decodeOptions = { errors: "first", onExcessProperty: "ignore" } as const
const decodeEnd = Schema.decodeUnknownEither(TraceEnd, decodeOptions)
const decodeCheckpoint = Schema.decodeUnknownEither(Checkpoint, decodeOptions)

/** How far back from the end the end frame is looked for: a small tail first, then larger ones. */
const endSearchBytes = [64 * 1024, 1024 * 1024, maxPayloadBytes + frameHeadBytes]

/** The end frame, if the file ends with a valid one holding the full index. */
const findEndFrame = (source: ByteSource, headerEnd: number): TraceEnd | undefined => {
  let searched = source.size
  for (const bytes of endSearchBytes) {
    const from = Math.max(headerEnd, source.size - bytes)
    if (from >= searched) break
    const tail = source.read(from, source.size - from)
    const view = new DataView(tail.buffer, tail.byteOffset, tail.byteLength)
    // Only the offsets the smaller tail did not cover: a frame head there reaches the end.
    for (let at = Math.min(tail.length, searched - from) - 1; at >= 0; at--) {
      if (at + frameHeadBytes >= tail.length || view.getUint32(at, true) !== tail.length - at - frameHeadBytes) continue
      const read = readFrame(source, from + at, 0)
      if (read._tag !== "Frame") continue
      const end = decodeEnd(read.value)
      if (Either.isRight(end) && end.right.chunkSeqs !== undefined && end.right.checkpointOffsets !== undefined && end.right.inputSeqs !== undefined) return end.right
    }
    searched = from
  }
  return undefined
}

const fromEnd = (end: TraceEnd): TraceIndex => ({
  eventCount: end.eventCount,
  chunkOffsets: end.chunkOffsets,
  chunkSeqs: end.chunkSeqs ?? [],
  chunkTimes: end.chunkTimes ?? [],
  checkpointOffsets: end.checkpointOffsets ?? [],
  checkpointSeqs: end.checkpointSeqs ?? [],
  checkpointTimes: end.checkpointTimes ?? [],
  inputSeqs: end.inputSeqs ?? [],
  fromEndFrame: true
})

const fromScan = (built: TraceIndexBuilder, damage: TraceCorrupt | undefined): TraceIndex => ({
  eventCount: built.eventCount,
  chunkOffsets: built.chunkOffsets,
  chunkSeqs: built.chunkSeqs,
  chunkTimes: built.chunkTimes,
  checkpointOffsets: built.checkpointOffsets,
  checkpointSeqs: built.checkpointSeqs,
  checkpointTimes: built.checkpointTimes,
  inputSeqs: built.inputSeqs,
  fromEndFrame: false,
  ...(damage === undefined ? {} : { damage })
})

/** Reads every frame after the header; stops at the end frame or the first damage. */
const scan = (decoder: TraceDecoder): TraceIndex => {
  for (;;) {
    const step = decoder.next()
    if (step._tag === "End") return fromScan(decoder.index, step.error)
    if (step._tag === "Corrupt") return fromScan(decoder.index, step.error)
  }
}

/** Event `i` of a chunk starting at `firstSeq` looks like one: a tagged map with its seq and a time. */
const sequenced = (firstSeq: number) => (e: unknown, i: number): boolean => {
  if (typeof e !== "object" || e === null) return false
  const { _tag, seq, time } = e as { _tag?: unknown; seq?: unknown; time?: unknown }
  return typeof _tag === "string" && seq === firstSeq + i && typeof time === "number" && Number.isSafeInteger(time) && time >= 0
}

/** The last index `i` with `list[i] <= value`, or -1. */
export const lastAtOrBefore = (list: ReadonlyArray<number>, value: number): number => {
  let lo = 0
  let hi = list.length
  while (lo < hi) {
    const mid = (lo + hi) >>> 1
    if (list[mid]! <= value) lo = mid + 1
    else hi = mid
  }
  return lo - 1
}

/**
 * A trace opened for seeking: synchronous reads of single chunks and checkpoints by
 * offset. Methods throw `TraceCorrupt` (a frame the index points at is damaged) and,
 * from the file system, `TraceIoError`; the Effect edge (`openSeekableTrace`) and the
 * replay session turn those into failures.
 */
export class SeekableTrace {
  constructor(
    readonly path: string,
    readonly header: TraceHeader,
    readonly index: TraceIndex,
    private readonly source: ByteSource
  ) {}

  /** The frame number of the frame at `offset` (for error messages). */
  private frameNumber(offset: number): number {
    return 1 + lastAtOrBefore(this.index.chunkOffsets, offset - 1) + 1 + lastAtOrBefore(this.index.checkpointOffsets, offset - 1) + 1
  }

  private frame(offset: number): unknown {
    const frame = this.frameNumber(offset)
    const read = readFrame(this.source, offset, frame)
    if (read._tag === "Frame") return read.value
    const reason = read._tag === "Eof" ? `the index points past the end of the file (byte ${offset})` : read.reason
    throw new TraceCorrupt({ path: this.path, frame, offset, reason })
  }

  private decoded<A>(offset: number, decode: (u: unknown) => Either.Either<A, ParseResult.ParseError>): A {
    const value = decode(this.frame(offset))
    if (Either.isRight(value)) return value.right
    const frame = this.frameNumber(offset)
    const issue = ParseResult.ArrayFormatter.formatErrorSync(value.left)[0]
    throw new TraceCorrupt({ path: this.path, frame, offset, reason: `frame ${frame} at byte ${offset}: payload does not decode: ${issue?.path.join(".")}: ${issue?.message}` })
  }

  /**
   * The events of chunk `i` (in index order). The frame's checksum holds; a packed chunk
   * (format 3) is checked as it is unpacked. Of a format 2 chunk, a replay compares every
   * recorded event with one the model produced, so only the shape a seek relies on is
   * checked here (kind, seq, time): the full schema costs more than the replay itself.
   * A chunk without that shape gets the schema's own words.
   */
  chunk(i: number): ReadonlyArray<VmEvent> {
    const offset = this.index.chunkOffsets[i]!
    const value = this.frame(offset) as { kind?: unknown; firstSeq?: unknown; events?: unknown }
    const events = value.events
    if (value.kind === "events" && value.firstSeq === this.index.chunkSeqs[i] && Array.isArray(events) && events.every(sequenced(value.firstSeq))) {
      return events as ReadonlyArray<VmEvent>
    }
    const frame = this.frameNumber(offset)
    const decoded = decodeEventChunk(value)
    if (Either.isLeft(decoded)) {
      throw new TraceCorrupt({ path: this.path, frame, offset, reason: `frame ${frame} at byte ${offset}: payload does not decode: ${decoded.left}` })
    }
    if (decoded.right.firstSeq !== this.index.chunkSeqs[i]) {
      throw new TraceCorrupt({ path: this.path, frame, offset, reason: `frame ${frame} at byte ${offset}: the index says it starts at event ${this.index.chunkSeqs[i]}, it says ${decoded.right.firstSeq}` })
    }
    return decoded.right.events
  }

  /**
   * The packed events of chunk `i` (format 3) as they were written, checksum checked but
   * not unpacked; undefined for a format 2 chunk. A replay packs the events it produced
   * and compares bytes: the same bytes unpack to the same events.
   */
  packedChunk(i: number): Uint8Array | undefined {
    const value = this.frame(this.index.chunkOffsets[i]!) as { kind?: unknown; firstSeq?: unknown; packed?: unknown }
    return value.kind === "events" && value.firstSeq === this.index.chunkSeqs[i] && value.packed instanceof Uint8Array ? value.packed : undefined
  }

  /** Where chunk `i`'s frame is, when the trace is a file: for the packer thread to read it itself (verifyPacked.ts). */
  chunkFrameAt(i: number): { readonly fd: number; readonly size: number; readonly offset: number } | undefined {
    const fd = this.source.fd
    return fd === undefined ? undefined : { fd, size: this.source.size, offset: this.index.chunkOffsets[i]! }
  }

  /** Checkpoint `i` (in index order). */
  checkpoint(i: number): Checkpoint {
    return this.decoded(this.index.checkpointOffsets[i]!, decodeCheckpoint)
  }

  /**
   * Checkpoint `i` with, of its sections, only the parts `sections` names (see
   * `unpackPruned`): for a reader of a few fields, such as a replay comparing the registers
   * at every checkpoint it passes, for whom unpacking and decoding the whole frame costs
   * more than the rest of its work there. The frame is checked as `checkpoint(i)` checks it,
   * with the same errors: one not read here (damaged, not of the schema's shape, or not
   * read by `unpackPruned`) is read by `checkpoint(i)`, whose value has the same parts.
   */
  checkpointPart(i: number, sections: PruneShape): Checkpoint {
    const offset = this.index.checkpointOffsets[i]!
    const read = readPayload(this.source, offset, this.frameNumber(offset))
    if (read._tag === "Payload") {
      const part = unpackPruned(read.payload, { kind: true, seq: true, time: true, sections })?.value as Partial<Record<keyof Checkpoint, unknown>> | undefined
      const count = (n: unknown) => Number.isSafeInteger(n) && (n as number) >= 0
      // What the schema accepts, checked without its cost.
      if (part?.kind === "checkpoint" && count(part.seq) && count(part.time) && typeof part.sections === "object" && part.sections !== null) {
        return part as Checkpoint
      }
    }
    return this.checkpoint(i)
  }

  /** The chunk holding event `seq`, or -1 when the trace has no such event. */
  chunkOfEvent(seq: number): number {
    if (seq < 0 || seq >= this.index.eventCount) return -1
    return lastAtOrBefore(this.index.chunkSeqs, seq)
  }
}

/**
 * Checks the header and indexes a trace held by `source` (from its end frame, or by a
 * scan). Returns the damage that stops it from being a trace at all; throws only on I/O.
 */
export const indexTrace = (source: ByteSource, path: string): SeekableTrace | TraceCorrupt => {
  const decoder = new TraceDecoder(source, path)
  const header = decoder.header()
  if (header instanceof TraceCorrupt) return header
  const headerFrame = readFrame(source, magic.length, 0)
  const headerEnd = headerFrame._tag === "Frame" ? headerFrame.end : source.size
  const end = findEndFrame(source, headerEnd)
  const index = end !== undefined && end.chunkOffsets.every((o) => o >= headerEnd) ? fromEnd(end) : scan(decoder)
  return new SeekableTrace(path, header, index, source)
}

/** Opens `path` for seeking for as long as the scope lasts. */
export const openSeekableTrace = (path: string): Effect.Effect<SeekableTrace, TraceError, Scope.Scope> =>
  Effect.flatMap(openFile(path), (file) =>
    Effect.flatMap(
      Effect.try({ try: () => indexTrace(fileSource(file.fd, file.size), path), catch: (e) => ioError(path, "read", e) }),
      (trace) => (trace instanceof TraceCorrupt ? Effect.fail(trace) : Effect.succeed(trace))
    ))
