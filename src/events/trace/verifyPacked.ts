import type { RawChunk } from "../rawEvents.ts"
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
