import { crc32 } from "node:zlib"
import { Packr, RESET_BUFFER_MODE } from "msgpackr"

/**
 * The bytes of a `.vmrr` file's frames, with nothing of Effect in them: the packer thread
 * (packerThread.ts) loads this, and a thread starts in a fraction of the time without
 * Effect's modules. framing.ts is the rest of the byte layer.
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
