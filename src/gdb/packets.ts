/**
 * The GDB Remote Serial Protocol's framing, as pure functions: `$data#cc` packets with a
 * modulo-256 checksum, `}`-escaping of binary data, run-length encoding (`X*n`), and a
 * parser that turns the bytes of a connection into acks, naks, interrupts and packets.
 * Packet data is a "binary string": one char per byte (latin1), as the wire carries it.
 */

/** Sum of the bytes of `data` modulo 256. */
export const checksum = (data: string): number => {
  let sum = 0
  for (let i = 0; i < data.length; i++) sum = (sum + data.charCodeAt(i)) & 0xff
  return sum
}

const hex2 = (n: number): string => n.toString(16).padStart(2, "0")

/** Characters that cannot appear raw in packet data: they are sent as `}` then the char XOR 0x20. */
const MUST_ESCAPE = new Set(["#", "$", "}", "*"])

export const escape = (data: string): string => {
  let out = ""
  for (const c of data) out += MUST_ESCAPE.has(c) ? `}${String.fromCharCode(c.charCodeAt(0) ^ 0x20)}` : c
  return out
}

export const unescape = (data: string): string => {
  let out = ""
  for (let i = 0; i < data.length; i++) {
    const c = data[i]
    if (c === "}" && i + 1 < data.length) out += String.fromCharCode(data.charCodeAt(++i) ^ 0x20)
    else out += c
  }
  return out
}

/** A repeat count n is sent as the char n + 29; counts 6 and 7 would be `#` and `$`. */
const RLE_BIAS = 29
const MAX_REPEAT = 126 - RLE_BIAS

/**
 * Run-length encodes packet data (already escaped): a run of a char followed by at least
 * three copies becomes `c*` and the count of copies; `*` and `}` are never the run char
 * (they belong to the encoding and to escapes).
 */
export const rleEncode = (data: string): string => {
  let out = ""
  let i = 0
  while (i < data.length) {
    const c = data[i]
    let run = 1
    while (i + run < data.length && data[i + run] === c && run - 1 < MAX_REPEAT) run++
    let repeats = run - 1
    if (repeats === 6 || repeats === 7) repeats = 5
    if (repeats >= 3 && c !== "*" && c !== "}") {
      out += `${c}*${String.fromCharCode(repeats + RLE_BIAS)}`
      i += repeats + 1
    } else {
      out += c
      i++
    }
  }
  return out
}

export const rleDecode = (data: string): string => {
  let out = ""
  for (let i = 0; i < data.length; i++) {
    const c = data[i]
    if (c === "*" && i + 1 < data.length && out.length > 0) {
      out += out[out.length - 1].repeat(data.charCodeAt(++i) - RLE_BIAS)
    } else {
      out += c
    }
  }
  return out
}

/** A whole packet on the wire for `data` (escaping is the caller's business: only binary replies need it). */
export const framePacket = (data: string): string => {
  const body = rleEncode(data)
  return `$${body}#${hex2(checksum(body))}`
}

/** What arrives from gdb. */
export type Incoming =
  | { readonly _tag: "Ack" }
  | { readonly _tag: "Nak" }
  /** 0x03 outside a packet: stop the running target (gdb's Ctrl-C). */
  | { readonly _tag: "Interrupt" }
  /** `data` is the packet's content with run-length encoding undone (escapes left for the command). */
  | { readonly _tag: "Packet"; readonly data: string; readonly checksumOk: boolean }

const ACK: Incoming = { _tag: "Ack" }
const NAK: Incoming = { _tag: "Nak" }
const INTERRUPT: Incoming = { _tag: "Interrupt" }

/** Incremental parser: bytes in any slicing give the same items. Bytes outside a packet other than `+ - $ 0x03` are ignored. */
export class PacketParser {
  private state: "idle" | "data" | "check1" | "check2" = "idle"
  private body = ""
  private sum = ""

  feed(bytes: Uint8Array | string): Incoming[] {
    const out: Incoming[] = []
    for (let i = 0; i < bytes.length; i++) {
      const c = typeof bytes === "string" ? bytes[i] : String.fromCharCode(bytes[i])
      switch (this.state) {
        case "idle":
          if (c === "+") out.push(ACK)
          else if (c === "-") out.push(NAK)
          else if (c === "\x03") out.push(INTERRUPT)
          else if (c === "$") {
            this.state = "data"
            this.body = ""
          }
          break
        case "data":
          if (c === "#") this.state = "check1"
          // A `$` inside a packet means the previous one was cut short: start again.
          else if (c === "$") this.body = ""
          else this.body += c
          break
        case "check1":
          this.sum = c
          this.state = "check2"
          break
        case "check2": {
          this.sum += c
          this.state = "idle"
          const expected = /^[0-9a-fA-F]{2}$/.test(this.sum) ? Number.parseInt(this.sum, 16) : -1
          out.push({ _tag: "Packet", data: rleDecode(this.body), checksumOk: expected === checksum(this.body) })
          break
        }
      }
    }
    return out
  }
}

// ---- hex, as packets carry numbers and memory -------------------------------------

export const bytesToHex = (bytes: ArrayLike<number>): string => {
  let out = ""
  for (let i = 0; i < bytes.length; i++) out += hex2(bytes[i] & 0xff)
  return out
}

/** Bytes of an even-length hex string, or undefined if it is not one. */
export const hexToBytes = (hex: string): Uint8Array | undefined => {
  if (hex.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(hex)) return undefined
  const out = new Uint8Array(hex.length / 2)
  for (let i = 0; i < out.length; i++) out[i] = Number.parseInt(hex.slice(2 * i, 2 * i + 2), 16)
  return out
}

/** A 32-bit value as gdb's i386 registers travel: 4 bytes, little-endian, in hex. */
export const le32Hex = (value: number): string => bytesToHex([value, value >>> 8, value >>> 16, value >>> 24])

export const le32FromHex = (hex: string): number | undefined => {
  const b = hexToBytes(hex)
  return b === undefined || b.length !== 4 ? undefined : (b[0] | (b[1] << 8) | (b[2] << 16) | (b[3] << 24)) >>> 0
}

/** A big-endian hex number as packets write addresses and lengths (`m7c00,4`), or undefined. */
export const parseHexNumber = (text: string): number | undefined =>
  /^[0-9a-fA-F]{1,8}$/.test(text) ? Number.parseInt(text, 16) : undefined

export const textToHex = (text: string): string => bytesToHex(Buffer.from(text, "utf8"))

export const hexToText = (hex: string): string | undefined => {
  const b = hexToBytes(hex)
  return b === undefined ? undefined : Buffer.from(b).toString("utf8")
}
