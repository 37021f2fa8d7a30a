import fc from "fast-check"
import { describe, expect, it } from "vitest"
import {
  bytesToHex,
  checksum,
  escape,
  framePacket,
  hexToBytes,
  le32FromHex,
  le32Hex,
  PacketParser,
  rleDecode,
  rleEncode,
  unescape
} from "../../src/gdb/packets.ts"

/** Any byte string, with the protocol's special characters made likely. */
const binary = fc
  .array(fc.oneof(fc.constantFrom("#", "$", "}", "*", "+", "-", "\x03", "a", "0"), fc.integer({ min: 0, max: 255 }).map((b) => String.fromCharCode(b))), {
    maxLength: 300
  })
  .map((chars) => chars.join(""))

/** Strings with long runs, where run-length encoding has something to do. */
const runs = fc
  .array(fc.tuple(fc.constantFrom("0", "f", "x", "#", "}", "*", " "), fc.integer({ min: 1, max: 120 })), { maxLength: 12 })
  .map((parts) => parts.map(([c, n]) => c.repeat(n)).join(""))

describe("RSP packets", () => {
  it("checksums as the protocol's examples give them", () => {
    expect(checksum("OK")).toBe(0x9a)
    expect(framePacket("OK")).toBe("$OK#9a")
    expect(framePacket("")).toBe("$#00")
    expect(checksum("qSupported")).toBe(0x37)
  })

  it("escape then unescape gives back any bytes, and escaped data has no raw # $ *", () => {
    fc.assert(
      fc.property(binary, (data) => {
        const escaped = escape(data)
        expect(unescape(escaped)).toBe(data)
        expect(/[#$*]/.test(escaped)).toBe(false)
      })
    )
  })

  it("run-length encoding of escaped data round-trips and never produces # or $", () => {
    fc.assert(
      fc.property(fc.oneof(runs, binary).map(escape), (data) => {
        const encoded = rleEncode(data)
        expect(rleDecode(encoded)).toBe(data)
        expect(/[#$]/.test(encoded)).toBe(false)
      })
    )
    expect(rleEncode("0000000000")).toBe("0*&")
    expect(rleDecode("0* ")).toBe("0000")
  })

  it("a framed packet parses back to its data with a good checksum, however the bytes are split", () => {
    fc.assert(
      fc.property(binary, fc.integer({ min: 1, max: 7 }), (data, piece) => {
        const wire = framePacket(escape(data))
        const parser = new PacketParser()
        const items = []
        for (let i = 0; i < wire.length; i += piece) items.push(...parser.feed(wire.slice(i, i + piece)))
        expect(items).toHaveLength(1)
        const [item] = items
        expect(item._tag).toBe("Packet")
        if (item._tag !== "Packet") return
        expect(item.checksumOk).toBe(true)
        expect(unescape(item.data)).toBe(data)
      })
    )
  })

  it("any corrupted checksum is reported as bad", () => {
    fc.assert(
      fc.property(binary, fc.integer({ min: 1, max: 255 }), (data, delta) => {
        const body = rleEncode(escape(data))
        const wrong = ((checksum(body) + delta) & 0xff).toString(16).padStart(2, "0")
        const [item] = new PacketParser().feed(`$${body}#${wrong}`)
        expect(item).toMatchObject({ _tag: "Packet", checksumOk: false })
      })
    )
  })

  it("tells acks, naks and interrupts apart from packets, and skips noise between packets", () => {
    const items = new PacketParser().feed("+-\x03junk$g#67+$m0,4#fd")
    expect(items.map((i) => i._tag)).toEqual(["Ack", "Nak", "Interrupt", "Packet", "Ack", "Packet"])
    expect(items[3]).toEqual({ _tag: "Packet", data: "g", checksumOk: true })
    expect(new PacketParser().feed("$g#zz")[0]).toMatchObject({ checksumOk: false })
    // A `$` inside a packet starts it over: the cut-short one is dropped.
    expect(new PacketParser().feed("$m0,$g#67")).toEqual([{ _tag: "Packet", data: "g", checksumOk: true }])
  })

  it("hex helpers round-trip bytes and little-endian 32-bit values", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), fc.integer({ min: 0, max: 0xffffffff }), (bytes, value) => {
        expect(hexToBytes(bytesToHex(bytes))).toEqual(bytes)
        expect(le32FromHex(le32Hex(value))).toBe(value)
      })
    )
    expect(le32Hex(0x100010)).toBe("10001000")
    expect(hexToBytes("abc")).toBeUndefined()
    expect(hexToBytes("zz")).toBeUndefined()
  })
})
