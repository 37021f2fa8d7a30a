/**
 * Part of a frame's payload, unpacked without the rest: for a reader that needs a few
 * fields of a large frame (a replay compares a checkpoint's registers), where unpacking
 * it whole costs more than everything else it does there.
 */

/** The keys to keep of a map, and of each what to keep: `true`, the whole value (not a map, array or binary). */
export interface PruneShape {
  readonly [key: string]: PruneShape | true
}

/** A payload this module cannot read as msgpackr does: the caller unpacks it, which says what is wrong. */
const outside = Symbol("outside")

/** Deeper than frames nest: deeper payloads are left to msgpackr, whose stack it is. */
const maxDepth = 64

class PrunedReader {
  private at = 0
  private readonly view: DataView

  constructor(private readonly bytes: Uint8Array) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  }

  /** The whole payload, one value and nothing after it, as `shape` keeps it. */
  whole(shape: PruneShape): unknown {
    const value = this.value(shape, 0)
    return this.at === this.bytes.length ? value : outside
  }

  /** The value at `at`: kept as `shape` says, or only passed over when `shape` is undefined. */
  private value(shape: PruneShape | true | undefined, depth: number): unknown {
    const t = this.bytes[this.at++]
    if (t === undefined || depth > maxDepth) return outside
    if (t < 0x80) return t
    if (t >= 0xe0) return t - 0x100
    if (t < 0x90) return this.map(t - 0x80, shape, depth)
    if (t < 0xa0) return this.array(t - 0x90, shape, depth)
    if (t < 0xc0) return this.string(t - 0xa0, shape !== undefined)
    switch (t) {
      case 0xc0: return null
      case 0xc2: return false
      case 0xc3: return true
      case 0xc4: return this.binary(this.uint(1), shape !== undefined)
      case 0xc5: return this.binary(this.uint(2), shape !== undefined)
      case 0xc6: return this.binary(this.uint(4), shape !== undefined)
      case 0xcb: return this.fits(8) ? this.view.getFloat64(this.at - 8) : outside
      case 0xcc: return this.uint(1)
      case 0xcd: return this.uint(2)
      case 0xce: return this.uint(4)
      case 0xd0: return this.fits(1) ? this.view.getInt8(this.at - 1) : outside
      case 0xd1: return this.fits(2) ? this.view.getInt16(this.at - 2) : outside
      case 0xd2: return this.fits(4) ? this.view.getInt32(this.at - 4) : outside
      // float 32 and 64-bit integers: msgpackr's options say what they unpack to, so only passed over.
      case 0xca: return shape === undefined && this.fits(4) ? undefined : outside
      case 0xcf: case 0xd3: return shape === undefined && this.fits(8) ? undefined : outside
      // fixext 1 of type 0: msgpackr's `undefined` (the one extension frames hold).
      case 0xd4: return this.bytes[this.at] === 0 && this.fits(2) ? undefined : outside
      case 0xd9: return this.string(this.uint(1), shape !== undefined)
      case 0xda: return this.string(this.uint(2), shape !== undefined)
      case 0xdb: return this.string(this.uint(4), shape !== undefined)
      case 0xdc: return this.array(this.uint(2), shape, depth)
      case 0xdd: return this.array(this.uint(4), shape, depth)
      case 0xde: return this.map(this.uint(2), shape, depth)
      case 0xdf: return this.map(this.uint(4), shape, depth)
    }
    return outside
  }

  /** Passes over `size` bytes: false when the payload ends before them. */
  private fits(size: number): boolean {
    this.at += size
    return this.at <= this.bytes.length
  }

  private uint(size: 1 | 2 | 4): number | typeof outside {
    if (!this.fits(size)) return outside
    return size === 1 ? this.bytes[this.at - 1]! : size === 2 ? this.view.getUint16(this.at - 2) : this.view.getUint32(this.at - 4)
  }

  /** A kept string is ASCII: its bytes are its characters, however msgpackr decodes others. */
  private string(length: number | typeof outside, kept: boolean): unknown {
    if (length === outside) return outside
    const start = this.at
    if (!this.fits(length)) return outside
    if (!kept) return undefined
    let text = ""
    for (let i = start; i < this.at; i++) {
      const c = this.bytes[i]!
      if (c >= 0x80) return outside
      text += String.fromCharCode(c)
    }
    return text
  }

  private binary(length: number | typeof outside, kept: boolean): unknown {
    return length === outside || kept || !this.fits(length) ? outside : undefined
  }

  private array(length: number | typeof outside, shape: PruneShape | true | undefined, depth: number): unknown {
    if (length === outside || shape !== undefined) return outside
    for (let i = 0; i < length; i++) {
      if (this.value(undefined, depth + 1) === outside) return outside
    }
    return undefined
  }

  /** Keys are strings (msgpackr makes other keys strings, or fails); a later one replaces an earlier one, as in msgpackr. */
  private map(length: number | typeof outside, shape: PruneShape | true | undefined, depth: number): unknown {
    if (length === outside || shape === true) return outside
    const kept: Record<string, unknown> | undefined = shape === undefined ? undefined : {}
    for (let i = 0; i < length; i++) {
      const t = this.bytes[this.at++]
      const keyLength = t === undefined ? outside : t >= 0xa0 && t < 0xc0 ? t - 0xa0 : t === 0xd9 ? this.uint(1) : t === 0xda ? this.uint(2) : t === 0xdb ? this.uint(4) : outside
      const key = this.string(keyLength, kept !== undefined)
      if (key === outside) return outside
      const part = kept !== undefined && Object.hasOwn(shape!, key as string) ? shape![key as string] : undefined
      const value = this.value(part, depth + 1)
      if (value === outside) return outside
      if (part !== undefined) kept![key as string] = value
    }
    return kept
  }
}

/**
 * The msgpack value in `payload` as msgpackr (frameBytes.ts) unpacks it, but of each map
 * only the keys `shape` names, or undefined where this cannot tell that msgpackr unpacks
 * the payload, or to what: an extension other than msgpackr's `undefined`, a key not a
 * string, a value past the end or short of it; where a value is kept, an array, binary,
 * float 32, 64-bit integer or non-ASCII string, or a map where `shape` says `true`; a
 * non-ASCII key in a kept map. Everything else is checked only as far as passing over it.
 */
export const unpackPruned = (payload: Uint8Array, shape: PruneShape): { readonly value: unknown } | undefined => {
  const value = new PrunedReader(payload).whole(shape)
  return value === outside ? undefined : { value }
}
