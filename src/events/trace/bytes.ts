/**
 * Byte-level helpers of the packed event encoding (packedEvents.ts): LEB128 varints,
 * zigzag signed varints, length-prefixed bytes and strings. Exact for every safe integer;
 * small values take the 32-bit fast paths, which are what the hot loop sees.
 */

/** Thrown by `ByteReader` on bytes that do not decode; the caller adds where. */
export class PackedDecodeError extends Error {}

const initialBytes = 64 * 1024
const maxKeptBytes = 4 * 1024 * 1024

const utf8Encoder = new TextEncoder()
const utf8Decoder = new TextDecoder()

/** Unsigned LEB128 of a safe integer ≥ 0 at `pos` (at most 8 bytes); returns the position after it. */
export const writeVarint = (buf: Uint8Array, pos: number, u: number): number => {
  while (u >= 0x10000000) {
    buf[pos++] = (u % 0x80) | 0x80
    u = Math.floor(u / 0x80)
  }
  while (u >= 0x80) {
    buf[pos++] = (u & 0x7f) | 0x80
    u >>>= 7
  }
  buf[pos++] = u
  return pos
}

/**
 * Zigzag LEB128 of an integer of at most 2^53 in size (a safe integer, or the difference
 * of two that are ≥ 0): the bytes of varint(2d or −2d − 1) without ever forming that
 * number, which a double may not hold exactly.
 */
export const writeSigned = (buf: Uint8Array, pos: number, d: number): number => {
  if (d >= -0x20000000 && d < 0x20000000) return writeVarint(buf, pos, (d << 1) ^ (d >> 31))
  const negative = d < 0
  const m = negative ? -d - 1 : d
  buf[pos++] = 0x80 | ((m % 64) << 1) | (negative ? 1 : 0)
  return writeVarint(buf, pos, Math.floor(m / 64))
}

/**
 * A growable output buffer; the packed encoder also writes into `buf` at `pos` directly.
 * `byte`, `varint` and `signed` need room made first (`ensure`); `bytes` and `string` make their own.
 */
export class ByteWriter {
  buf = new Uint8Array(initialBytes)
  pos = 0

  /** Room for `n` more bytes. */
  ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return
    const grown = new Uint8Array(Math.max(this.buf.length * 2, this.pos + n))
    grown.set(this.buf.subarray(0, this.pos))
    this.buf = grown
  }

  byte(b: number): void {
    this.buf[this.pos++] = b
  }

  varint(u: number): void {
    this.pos = writeVarint(this.buf, this.pos, u)
  }

  signed(d: number): void {
    this.pos = writeSigned(this.buf, this.pos, d)
  }

  bytes(b: Uint8Array): void {
    this.ensure(10 + b.length)
    this.varint(b.length)
    this.buf.set(b, this.pos)
    this.pos += b.length
  }

  /**
   * A string through the chunk's string table: 0 and the UTF-8 bytes the first time,
   * then 1 + its number in the table.
   */
  string(s: string, table: Map<string, number>): void {
    const known = table.get(s)
    if (known !== undefined) {
      this.varint(known + 1)
      return
    }
    table.set(s, table.size)
    this.byte(0)
    this.bytes(utf8Encoder.encode(s))
  }

  /** Empties it; a buffer grown for one huge chunk is dropped rather than kept for good. */
  reset(): void {
    this.pos = 0
    if (this.buf.length > maxKeptBytes) this.buf = new Uint8Array(initialBytes)
  }
}

export class ByteReader {
  pos = 0
  constructor(readonly buf: Uint8Array) {}

  get atEnd(): boolean {
    return this.pos >= this.buf.length
  }

  byte(): number {
    if (this.pos >= this.buf.length) throw new PackedDecodeError("the data ends inside it")
    return this.buf[this.pos++]!
  }

  /** See `writeVarint`; refuses more than 8 bytes and values past 2^53. */
  varint(): number {
    let b = this.byte()
    if (b < 0x80) return b
    let v = b & 0x7f
    for (let shift = 7; shift < 28; shift += 7) {
      b = this.byte()
      v |= (b & 0x7f) << shift
      if (b < 0x80) return v
    }
    let scale = 0x10000000
    for (let i = 4; i < 8; i++) {
      b = this.byte()
      v += (b & 0x7f) * scale
      if (b < 0x80) {
        if (v > Number.MAX_SAFE_INTEGER) throw new PackedDecodeError("a number past 2^53")
        return v
      }
      scale *= 0x80
    }
    throw new PackedDecodeError("a number longer than 8 bytes")
  }

  /** See `writeSigned`. */
  signed(): number {
    const b = this.byte()
    if (b < 0x80) return b & 1 ? -(b >> 1) - 1 : b >> 1
    const m = ((b >> 1) & 0x3f) + this.varint() * 64
    if (m > Number.MAX_SAFE_INTEGER) throw new PackedDecodeError("a number past 2^53")
    return b & 1 ? -m - 1 : m
  }

  /** Length-prefixed bytes, as a fresh plain Uint8Array (not a view into the chunk). */
  bytes(): Uint8Array {
    const n = this.varint()
    if (n > this.buf.length - this.pos) throw new PackedDecodeError(`${n} bytes announced, ${this.buf.length - this.pos} left`)
    const out = new Uint8Array(this.buf.subarray(this.pos, this.pos + n))
    this.pos += n
    return out
  }

  string(table: Array<string>): string {
    const ref = this.varint()
    if (ref === 0) {
      const s = utf8Decoder.decode(this.bytes())
      table.push(s)
      return s
    }
    if (ref > table.length) throw new PackedDecodeError(`string ${ref - 1} of a table of ${table.length}`)
    return table[ref - 1]!
  }
}
