import { crc32 } from "node:zlib"
import { TraceFrameTooLarge } from "./errors.ts"
import { detachBinary, frameHeadBytes, frameOf, maxPayloadBytes, packr, shortText } from "./frameBytes.ts"

export { detachBinary, frameHeadBytes, magic, maxPayloadBytes, shortText } from "./frameBytes.ts"

/**
 * The byte layer of a `.vmrr` file: an 8-byte magic, then frames of
 * `u32 LE payload length | u32 LE CRC-32 of the payload | payload (one msgpack value)`.
 * Knows nothing of what the payloads mean (see codec.ts).
 */

/** One whole frame. Throws `TraceFrameTooLarge` rather than write what no reader accepts. */
export const encodeFrame = (value: unknown, frameIndex: number): Uint8Array => {
  const frame = frameOf(value)
  if (typeof frame === "number") throw new TraceFrameTooLarge({ frame: frameIndex, bytes: frame, limit: maxPayloadBytes })
  return frame
}

/** Random access to a trace's bytes: memory or an open file. */
export interface ByteSource {
  readonly size: number
  /** The file's descriptor when the bytes are a file's: another thread can read them itself (positional reads). */
  readonly fd?: number
  /** Up to `length` bytes from `offset`; fewer only at the end of the data. May throw on I/O failure. */
  read(offset: number, length: number): Uint8Array
}

export const memorySource = (bytes: Uint8Array): ByteSource => ({
  size: bytes.length,
  read: (offset, length) => bytes.subarray(offset, offset + length)
})

export type FrameRead =
  | { readonly _tag: "Frame"; readonly index: number; readonly offset: number; readonly end: number; readonly value: unknown }
  | { readonly _tag: "Eof"; readonly index: number; readonly offset: number }
  | { readonly _tag: "Damage"; readonly index: number; readonly offset: number; readonly reason: string }

const hex32 = (n: number): string => `0x${n.toString(16).padStart(8, "0")}`

/**
 * Reads frame `index` starting at byte `offset`. Damage is a value, never a throw; only
 * the source's I/O may throw. Nothing is allocated from a length field before it has
 * been checked against the limit and against the bytes actually there.
 */
export const readFrame = (source: ByteSource, offset: number, index: number): FrameRead => {
  if (offset >= source.size) return { _tag: "Eof", index, offset }
  const where = `frame ${index} at byte ${offset}`
  const damage = (reason: string): FrameRead => ({ _tag: "Damage", index, offset, reason })
  const head = source.read(offset, frameHeadBytes)
  if (head.length < frameHeadBytes) {
    return damage(`file ends inside ${where}: ${head.length} of its 8 length and checksum bytes present`)
  }
  const view = new DataView(head.buffer, head.byteOffset, head.byteLength)
  const length = view.getUint32(0, true)
  const stored = view.getUint32(4, true)
  if (length === 0) {
    // msgpack has no empty value; zeros are what a crash often leaves at a file's end.
    return damage(`${where}: length field is 0 (zero-filled bytes?)`)
  }
  if (length > maxPayloadBytes) {
    return damage(`${where}: length field says ${length} bytes, more than the ${maxPayloadBytes}-byte limit`)
  }
  const payloadStart = offset + frameHeadBytes
  const present = Math.min(length, source.size - payloadStart)
  const payload = present < length ? undefined : source.read(payloadStart, length)
  if (payload === undefined || payload.length < length) {
    return damage(`file ends inside ${where}: ${payload?.length ?? present} of ${length} payload bytes present`)
  }
  const computed = crc32(payload)
  if (computed !== stored) {
    return damage(`${where}: checksum mismatch (stored ${hex32(stored)}, computed ${hex32(computed)})`)
  }
  let value: unknown
  try {
    value = detachBinary(packr.unpack(payload))
  } catch (e) {
    return damage(`${where}: payload is not msgpack (${shortText(e instanceof Error ? e.message : String(e))})`)
  }
  return { _tag: "Frame", index, offset, end: payloadStart + length, value }
}

