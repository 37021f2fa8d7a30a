import { TraceFrameTooLarge } from "./errors.ts"
import { type ByteSource, detachBinary, frameAt, frameOf, maxPayloadBytes, packr, readPayload, shortText } from "./frameBytes.ts"

export { type ByteSource, detachBinary, fileSource, frameHeadBytes, magic, maxPayloadBytes, memorySource, shortText } from "./frameBytes.ts"

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

export type FrameRead =
  | { readonly _tag: "Frame"; readonly index: number; readonly offset: number; readonly end: number; readonly value: unknown }
  | { readonly _tag: "Eof"; readonly index: number; readonly offset: number }
  | { readonly _tag: "Damage"; readonly index: number; readonly offset: number; readonly reason: string }

/**
 * Reads frame `index` starting at byte `offset` (readPayload), and unpacks it. Damage is
 * a value, never a throw; only the source's I/O may throw.
 */
export const readFrame = (source: ByteSource, offset: number, index: number): FrameRead => {
  const read = readPayload(source, offset, index)
  if (read._tag === "Eof") return { _tag: "Eof", index, offset }
  if (read._tag === "Damage") return { _tag: "Damage", index, offset, reason: read.reason }
  let value: unknown
  try {
    value = detachBinary(packr.unpack(read.payload))
  } catch (e) {
    const reason = `${frameAt(index, offset)}: payload is not msgpack (${shortText(e instanceof Error ? e.message : String(e))})`
    return { _tag: "Damage", index, offset, reason }
  }
  return { _tag: "Frame", index, offset, end: read.end, value }
}
