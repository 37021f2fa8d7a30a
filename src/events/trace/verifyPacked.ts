import * as fs from "node:fs"
import { crc32 } from "node:zlib"
import type { RawChunk } from "../rawEvents.ts"
import { frameHeadBytes, maxPayloadBytes, packr } from "./frameBytes.ts"
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
 * `fd`, read by the packer thread itself; undefined for anything else (a short read, a bad
 * checksum, another frame). The replay then reads the frame in-thread, which reports
 * exactly what is wrong with it.
 */
export const packedChunkAt = (fd: number, offset: number, firstSeq: number): Uint8Array | undefined => {
  try {
    const head = new Uint8Array(frameHeadBytes)
    if (fs.readSync(fd, head, 0, frameHeadBytes, offset) !== frameHeadBytes) return undefined
    const view = new DataView(head.buffer)
    const length = view.getUint32(0, true)
    if (length === 0 || length > maxPayloadBytes) return undefined
    const payload = new Uint8Array(length)
    let filled = 0
    while (filled < length) {
      const n = fs.readSync(fd, payload, filled, length - filled, offset + frameHeadBytes + filled)
      if (n === 0) return undefined
      filled += n
    }
    if (crc32(payload) !== view.getUint32(4, true)) return undefined
    const value = packr.unpack(payload) as { kind?: unknown; firstSeq?: unknown; packed?: unknown }
    return value.kind === "events" && value.firstSeq === firstSeq && value.packed instanceof Uint8Array ? value.packed : undefined
  } catch {
    return undefined
  }
}
