import type { RawChunk } from "../rawEvents.ts"
import { fileSource, packr, readPayload } from "./frameBytes.ts"
import type { PackedCodec } from "./packedCodec.ts"

/**
 * A replay's check of a chunk it produced (RawChunkVerifier in packerThread.ts): the raw
 * chunk, packed as a recording packs it, gives exactly the recorded chunk's bytes. On the
 * packer thread (packerWorker.ts) or in-thread; the same answer either way. A chunk that
 * does not pack (packing throws) is "different": the replay then checks it event by
 * event in-thread, which meets the same error.
 */
export const packsTo = (codec: PackedCodec, chunk: RawChunk, expected: Uint8Array): boolean => {
  try {
    const bytes = codec.packRawEvents(chunk).bytes
    return bytes.length === expected.length && Buffer.compare(bytes, expected) === 0
  } catch {
    return false
  }
}

/**
 * The packed events of the format 3 events frame for `firstSeq` at `offset` in the file
 * `fd` of `size` bytes, read by the packer thread itself; undefined for anything else (a
 * short read, a bad checksum, another frame). The replay then reads the frame in-thread,
 * which reports exactly what is wrong with it.
 */
export const packedChunkAt = (fd: number, size: number, offset: number, firstSeq: number): Uint8Array | undefined => {
  try {
    // The frame's number only names it in a damage reason, which is not looked at here.
    const read = readPayload(fileSource(fd, size), offset, 0)
    if (read._tag !== "Payload") return undefined
    const value = packr.unpack(read.payload) as { kind?: unknown; firstSeq?: unknown; packed?: unknown }
    return value.kind === "events" && value.firstSeq === firstSeq && value.packed instanceof Uint8Array ? value.packed : undefined
  } catch {
    return undefined
  }
}
