import type { KindLayout } from "../eventLayouts.ts"
import type { RawChunk } from "../rawEvents.ts"
import { frameOf } from "./frameBytes.ts"
import type { PackedCodec, PackedRawChunk } from "./packedCodec.ts"
import type { PackedEventChunk } from "./schema.ts"

/**
 * A raw chunk (rawEvents.ts) as a trace events frame: what the packer thread
 * (packerThread.ts) does off the vCPU thread, and the writer does in-thread before the
 * thread is up or after it failed. Both give the bytes `TraceEncoder.chunk(rawEvents(chunk))` gives
 * (`packRawEvents` gives the bytes of `packEvents(rawEvents(chunk))`). Nothing here
 * loads Effect: the thread builds its framer from the layouts it is given.
 */

export type { PackedRawChunk }

/** What the trace index needs of a chunk besides its offset. */
export interface RawChunkIndexEntry {
  readonly firstSeq: number
  readonly count: number
  readonly firstTime: number
  readonly inputSeqs: ReadonlyArray<number>
}

/** The events frame payload of a packed chunk. */
export const packedChunkPayload = (firstSeq: number, packed: Uint8Array): PackedEventChunk => ({ kind: "events", firstSeq, packed })

export interface RawChunkFrame {
  /** The whole frame, or the size of a payload too large for a frame. */
  readonly frame: Uint8Array | number
  readonly entry: RawChunkIndexEntry
}

/**
 * Frames raw chunks with `codec`, whose layouts are `layouts`. The time of a chunk's first
 * event is read from its record: every kind has `time` at a fixed word (after the kind
 * number and the fields before it, each one word), which is checked here, once.
 */
export const makeRawChunkFramer = (codec: PackedCodec, layouts: ReadonlyArray<KindLayout>): ((chunk: RawChunk) => RawChunkFrame) => {
  const timeWord = layouts.map((layout) => {
    let at = 1
    for (const f of layout.fields) {
      if (f.name === "seq") continue
      if (f.name === "time") return at
      if (f.optional || f.codec._tag === "ints") break
      at++
    }
    throw new Error(`raw chunks: ${layout.tag}'s time is not at a fixed word of its record`)
  })
  return (chunk) => {
    const packed = codec.packRawEvents(chunk)
    return {
      frame: frameOf(packedChunkPayload(chunk.firstSeq, packed.bytes)),
      entry: { firstSeq: chunk.firstSeq, count: chunk.count, firstTime: chunk.words[timeWord[chunk.words[0]!]!]!, inputSeqs: packed.inputSeqs }
    }
  }
}
