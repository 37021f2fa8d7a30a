import { crc32 } from "node:zlib"
import { Packr } from "msgpackr"
import { TraceFrameTooLarge } from "./errors.ts"

/**
 * The byte layer of a `.vmrr` file: an 8-byte magic, then frames of
 * `u32 LE payload length | u32 LE CRC-32 of the payload | payload (one msgpack value)`.
 * Knows nothing of what the payloads mean (see codec.ts).
 */

/** PNG-style: the high byte and the CR LF / SUB catch 7-bit and text-mode transfers. */
export const magic = Uint8Array.of(0x89, 0x56, 0x4d, 0x52, 0x52, 0x0d, 0x0a, 0x1a)
export const frameHeadBytes = 8
/** Larger length fields are corruption: a reader never allocates from one. */
export const maxPayloadBytes = 64 * 1024 * 1024

// Plain msgpack maps (no msgpackr records) so any msgpack reader can read a trace.
const packr = new Packr({ useRecords: false })

/** One whole frame. Throws `TraceFrameTooLarge` rather than write what no reader accepts. */
export const encodeFrame = (value: unknown, frameIndex: number): Uint8Array => {
  const payload = packr.pack(value)
  if (payload.length > maxPayloadBytes) {
    throw new TraceFrameTooLarge({ frame: frameIndex, bytes: payload.length, limit: maxPayloadBytes })
  }
  // Copy out at once: msgpackr reuses its output buffer across calls.
  const frame = new Uint8Array(frameHeadBytes + payload.length)
  const view = new DataView(frame.buffer)
  view.setUint32(0, payload.length, true)
  view.setUint32(4, crc32(payload), true)
  frame.set(payload, frameHeadBytes)
  return frame
}

/** Random access to a trace's bytes: memory or an open file. */
export interface ByteSource {
  readonly size: number
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

/**
 * msgpackr hands binary back as views (Buffers) into the payload. Copy each into a
 * plain `Uint8Array`: deep equality with the recorded events holds, and a decoded
 * event does not keep a whole chunk's buffer alive.
 */
export const detachBinary = (value: unknown): unknown => {
  if (typeof value !== "object" || value === null) return value
  if (value instanceof Uint8Array) return new Uint8Array(value)
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) value[i] = detachBinary(value[i])
    return value
  }
  const record = value as Record<string, unknown>
  for (const key in record) record[key] = detachBinary(record[key])
  return value
}

/** One line, bounded: error text goes into a one-sentence reason. */
export const shortText = (text: string, max = 160): string => {
  const line = text.replace(/\s+/g, " ").trim()
  return line.length <= max ? line : `${line.slice(0, max - 1)}…`
}
