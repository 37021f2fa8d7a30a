import * as fs from "node:fs"
import { crc32 } from "node:zlib"
import { Packr, RESET_BUFFER_MODE } from "msgpackr"

/**
 * The bytes of a `.vmrr` file's frames, written and read, with nothing of Effect in them:
 * the packer thread (packerThread.ts) loads this, and a thread starts in a fraction of the
 * time without Effect's modules. framing.ts is the rest of the byte layer.
 */

/** PNG-style: the high byte and the CR LF / SUB catch 7-bit and text-mode transfers. */
export const magic = Uint8Array.of(0x89, 0x56, 0x4d, 0x52, 0x52, 0x0d, 0x0a, 0x1a)
export const frameHeadBytes = 8
/** Larger length fields are corruption: a reader never allocates from one. */
export const maxPayloadBytes = 64 * 1024 * 1024

// Plain msgpack maps (no msgpackr records) so any msgpack reader can read a trace.
export const packr = new Packr({ useRecords: false })

/**
 * One whole frame, or the payload's size when it is larger than a reader accepts (the
 * caller says which frame, as `encodeFrame` does with TraceFrameTooLarge).
 */
export const frameOf = (value: unknown): Uint8Array | number => {
  // Each payload from the start of msgpackr's buffer: it is copied out below, and carrying
  // on after the last one would make msgpackr allocate a new buffer every few frames.
  const payload = packr.pack(value, RESET_BUFFER_MODE)
  if (payload.length > maxPayloadBytes) return payload.length
  // Copy out at once: msgpackr reuses its output buffer across calls.
  const frame = new Uint8Array(frameHeadBytes + payload.length)
  const view = new DataView(frame.buffer)
  view.setUint32(0, payload.length, true)
  view.setUint32(4, crc32(payload), true)
  frame.set(payload, frameHeadBytes)
  return frame
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

export const fileSource = (fd: number, size: number): ByteSource => ({
  size,
  fd,
  read: (offset, length) => {
    const buffer = new Uint8Array(Math.max(0, Math.min(length, size - offset)))
    let filled = 0
    while (filled < buffer.length) {
      const n = fs.readSync(fd, buffer, filled, buffer.length - filled, offset + filled)
      if (n === 0) break // the file shrank under us: the decoder reports it as truncation
      filled += n
    }
    return filled === buffer.length ? buffer : buffer.subarray(0, filled)
  }
})

export type PayloadRead =
  | { readonly _tag: "Payload"; readonly payload: Uint8Array; readonly end: number }
  | { readonly _tag: "Eof" }
  | { readonly _tag: "Damage"; readonly reason: string }

const hex32 = (n: number): string => `0x${n.toString(16).padStart(8, "0")}`

/** Where frame `index` at byte `offset` is, in a damage reason. */
export const frameAt = (index: number, offset: number): string => `frame ${index} at byte ${offset}`

/**
 * The payload of frame `index` at byte `offset`, its length and checksum checked, not
 * unpacked. Damage is a value, never a throw; only the source's I/O may throw. Nothing is
 * allocated from a length field before it has been checked against the limit and
 * against the bytes actually there.
 */
export const readPayload = (source: ByteSource, offset: number, index: number): PayloadRead => {
  if (offset >= source.size) return { _tag: "Eof" }
  const where = frameAt(index, offset)
  const damage = (reason: string): PayloadRead => ({ _tag: "Damage", reason })
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
  return { _tag: "Payload", payload, end: payloadStart + length }
}
