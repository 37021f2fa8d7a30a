import { describe, expect, it } from "@effect/vitest"
import { decodeTrace, encodeTrace, TraceDecoder } from "../../src/events/trace/codec.ts"
import { TraceCorrupt } from "../../src/events/trace/errors.ts"
import { type ByteSource, encodeFrame, magic, maxPayloadBytes, memorySource } from "../../src/events/trace/framing.ts"
import { makeTraceHeader } from "../../src/events/trace/schema.ts"
import { header, sampleChunks } from "./traceFixtures.ts"

const chunks = sampleChunks([5, 9, 3, 11])
const trace = encodeTrace(header, chunks)
const intact = decodeTrace(trace)
const chunkOffsets = intact.end!.chunkOffsets
/** Byte offset of every frame: header, 4 chunks, end. */
const frameOffsets = [magic.length, ...chunkOffsets, chunkOffsets[3] + frameLength(chunkOffsets[3])]
const endFrame = frameOffsets.length - 1

function frameLength(offset: number): number {
  return 8 + new DataView(trace.buffer, trace.byteOffset + offset, 4).getUint32(0, true)
}

const damaged = (edit: (bytes: Uint8Array) => void): Uint8Array => {
  const bytes = trace.slice()
  edit(bytes)
  return bytes
}

/** Builds a trace from raw frame payloads, to say what a well-behaved writer never would. */
const rawTrace = (...payloads: Array<unknown>): Uint8Array => {
  const frames = payloads.map((p, i) => encodeFrame(p, i))
  const bytes = new Uint8Array(magic.length + frames.reduce((n, f) => n + f.length, 0))
  bytes.set(magic)
  let at = magic.length
  for (const f of frames) {
    bytes.set(f, at)
    at += f.length
  }
  return bytes
}
const headerPayload = makeTraceHeader(header)

describe("a damaged trace", () => {
  it("is intact as written", () => {
    expect(intact.error).toBeUndefined()
    expect(intact.chunks.map((c) => c.events)).toEqual(chunks)
    expect(frameOffsets[endFrame] + frameLength(frameOffsets[endFrame])).toBe(trace.length)
  })

  it("cut at every byte of its last chunk and end frame: earlier chunks, then one precise TraceCorrupt", () => {
    for (let cut = chunkOffsets[3]; cut < trace.length; cut++) {
      const decoded = decodeTrace(trace.subarray(0, cut))
      const inEnd = cut >= frameOffsets[endFrame]
      const frame = inEnd ? endFrame : 4
      expect(decoded.header?.config).toEqual(header.config)
      expect(decoded.chunks.map((c) => c.events)).toEqual(inEnd ? chunks : chunks.slice(0, 3))
      expect(decoded.end).toBeUndefined()
      const error = decoded.error!
      expect(error).toBeInstanceOf(TraceCorrupt)
      expect(error.frame).toBe(frame)
      expect(error.offset).toBeGreaterThanOrEqual(frameOffsets[frame])
      expect(error.offset).toBeLessThanOrEqual(cut)
      if (cut === frameOffsets[frame]) {
        expect(error.message).toBe(`truncated: no end frame; the file ends at byte ${cut} after frame ${frame - 1} (${decoded.chunks.reduce((n, c) => n + c.events.length, 0)} events in ${decoded.chunks.length} chunks intact)`)
      } else if (cut - frameOffsets[frame] < 8) {
        expect(error.message).toBe(`file ends inside frame ${frame} at byte ${frameOffsets[frame]}: ${cut - frameOffsets[frame]} of its 8 length and checksum bytes present`)
      } else {
        expect(error.message).toMatch(new RegExp(`^file ends inside frame ${frame} at byte ${frameOffsets[frame]}: ${cut - frameOffsets[frame] - 8} of \\d+ payload bytes present$`))
      }
    }
  })

  it("cut inside the header: no header, an error naming frame 0", () => {
    for (let cut = magic.length + 1; cut < frameOffsets[1]; cut += 7) {
      const decoded = decodeTrace(trace.subarray(0, cut))
      expect(decoded.header).toBeUndefined()
      expect(decoded.error?.frame).toBe(0)
      expect(decoded.error?.message).toMatch(/^file ends inside frame 0 at byte 8: /)
    }
  })

  it("a flipped payload byte in any frame is a checksum mismatch naming that frame", () => {
    for (let frame = 0; frame <= endFrame; frame++) {
      const start = frameOffsets[frame] + 8
      const end = frameOffsets[frame] + frameLength(frameOffsets[frame])
      for (let at = start; at < end; at += frame === 0 ? 5 : 1) {
        const decoded = decodeTrace(damaged((b) => { b[at] ^= 0x10 }))
        expect(decoded.error?.frame).toBe(frame)
        expect(decoded.error?.offset).toBe(frameOffsets[frame])
        expect(decoded.error?.message).toMatch(new RegExp(`^frame ${frame} at byte ${frameOffsets[frame]}: checksum mismatch \\(stored 0x[0-9a-f]{8}, computed 0x[0-9a-f]{8}\\)$`))
        expect(decoded.header === undefined).toBe(frame === 0)
        expect(decoded.chunks.length).toBe(Math.max(0, Math.min(frame - 1, 4)))
      }
    }
  })

  it("a flipped checksum byte names the frame", () => {
    const decoded = decodeTrace(damaged((b) => { b[frameOffsets[2] + 5] ^= 1 }))
    expect(decoded.error?.frame).toBe(2)
    expect(decoded.error?.message).toMatch(/checksum mismatch/)
    expect(decoded.chunks.length).toBe(1)
  })

  it("a flipped length field gives a clear error naming the frame, whichever bit", () => {
    for (let frame = 1; frame <= endFrame; frame++) {
      for (let byte = 0; byte < 4; byte++) {
        for (const mask of [0x01, 0x80, 0xff]) {
          const decoded = decodeTrace(damaged((b) => { b[frameOffsets[frame] + byte] ^= mask }))
          expect(decoded.error?.frame).toBe(frame)
          expect(decoded.error?.offset).toBe(frameOffsets[frame])
          expect(decoded.error?.message).toMatch(/checksum mismatch|file ends inside frame|more than the \d+-byte limit|length field is 0/)
          expect(decoded.chunks.length).toBe(Math.min(frame - 1, 4))
        }
      }
    }
  })

  it("a huge length field is reported without reading or allocating it", () => {
    const requested: Array<number> = []
    const spy = (bytes: Uint8Array): ByteSource => {
      const source = memorySource(bytes)
      return { size: source.size, read: (offset, length) => (requested.push(length), source.read(offset, length)) }
    }
    const huge = damaged((b) => new DataView(b.buffer).setUint32(frameOffsets[2], 0xffffffff, true))
    const decoder = new TraceDecoder(spy(huge))
    decoder.header()
    expect(decoder.next()._tag).toBe("Chunk")
    const step = decoder.next()
    expect(step._tag === "Corrupt" && step.error.message).toBe(`frame 2 at byte ${frameOffsets[2]}: length field says 4294967295 bytes, more than the ${maxPayloadBytes}-byte limit`)
    // Just under the limit, past the end of the file: reported as truncation, never read.
    const long = damaged((b) => new DataView(b.buffer).setUint32(frameOffsets[2], maxPayloadBytes, true))
    requested.length = 0
    const decoded = new TraceDecoder(spy(long))
    decoded.header()
    decoded.next()
    const step2 = decoded.next()
    expect(step2._tag === "Corrupt" && step2.error.message).toMatch(new RegExp(`^file ends inside frame 2 at byte ${frameOffsets[2]}: \\d+ of ${maxPayloadBytes} payload bytes present$`))
    expect(Math.max(...requested)).toBeLessThan(trace.length)
  })

  it("zero-filled bytes after the last frame are named as such", () => {
    const bytes = new Uint8Array(frameOffsets[endFrame] + 64)
    bytes.set(trace.subarray(0, frameOffsets[endFrame]))
    const decoded = decodeTrace(bytes)
    expect(decoded.chunks.length).toBe(4)
    expect(decoded.error?.message).toBe(`frame ${endFrame} at byte ${frameOffsets[endFrame]}: length field is 0 (zero-filled bytes?)`)
  })
})

describe("not a trace", () => {
  it("an empty file", () => {
    const decoded = decodeTrace(new Uint8Array(0))
    expect(decoded).toEqual({ chunks: [], checkpoints: [], error: expect.any(TraceCorrupt) })
    expect(decoded.error?.message).toBe("empty file: not a vmrr trace")
    expect(decoded.error?.frame).toBeUndefined()
  })

  it("bad magic, and a magic mangled by a text-mode copy", () => {
    expect(decodeTrace(new TextEncoder().encode("hello, world\n")).error?.message).toBe("not a vmrr trace: bad magic")
    const lf = new Uint8Array([...magic.subarray(0, 5), 0x0a, 0x1a, ...trace.subarray(8)])
    expect(decodeTrace(lf).error?.message).toBe("not a vmrr trace: bad magic (its CR LF became LF: was the file copied in text mode?)")
    expect(decodeTrace(damaged((b) => { b[0] = 0x09 })).error?.offset).toBe(0)
  })

  it("a file cut inside the magic, or right after it", () => {
    expect(decodeTrace(magic.subarray(0, 5)).error?.message).toBe("truncated: the file ends inside the magic, after 5 of 8 bytes")
    const decoded = decodeTrace(magic)
    expect(decoded.error?.message).toBe("truncated: no header frame; the file ends at byte 8")
    expect(decoded.error?.frame).toBe(0)
  })

  it("a header-only file: the header, then truncated at frame 1", () => {
    const decoded = decodeTrace(trace.subarray(0, frameOffsets[1]))
    expect(decoded.header?.image).toEqual(header.image)
    expect(decoded.chunks).toEqual([])
    expect(decoded.error?.frame).toBe(1)
    expect(decoded.error?.message).toBe(`truncated: no end frame; the file ends at byte ${frameOffsets[1]} after frame 0 (0 events in 0 chunks intact)`)
  })
})

describe("frames that are intact but wrong", () => {
  const events = sampleChunks([4])[0]
  const chunk = { kind: "events", firstSeq: 0, events }

  it("frame 0 must be a header, and only frame 0", () => {
    expect(decodeTrace(rawTrace(chunk)).error?.message).toBe(`frame 0 is not a header (kind "events")`)
    expect(decodeTrace(rawTrace([1, 2, 3])).error?.message).toBe("frame 0 is not a header (kind missing)")
    const second = decodeTrace(rawTrace(headerPayload, chunk, headerPayload))
    expect(second.chunks.length).toBe(1)
    expect(second.error?.frame).toBe(2)
    expect(second.error?.message).toMatch(/^frame 2 at byte \d+: a second header \(only frame 0 is a header\)$/)
  })

  it("an unknown kind, a future format version, a wrong image hash", () => {
    expect(decodeTrace(rawTrace(headerPayload, { kind: "snapshot" })).error?.message).toMatch(/^frame 1 at byte \d+: not a vmrr frame \(kind "snapshot"\)$/)
    expect(decodeTrace(rawTrace({ ...headerPayload, formatVersion: 4 })).error?.message).toBe(`trace format version 4, this vmrr reads 2 and 3; it was written by ${headerPayload.producer}`)
    expect(decodeTrace(rawTrace({ ...headerPayload, formatVersion: 1, producer: "vmrr 0.1.0" })).error?.message).toBe("trace format version 1, this vmrr reads 2 and 3; it was written by vmrr 0.1.0")
    expect(decodeTrace(rawTrace({ ...headerPayload, imageSha256: "0".repeat(64) })).error?.message).toMatch(/^frame 0 at byte 8: image hash mismatch/)
  })

  it("a payload the schema refuses: the frame, the path and the schema's words, one line", () => {
    const bad = { ...chunk, events: [events[0], events[1], { ...events[2], port: 70000 }] }
    const decoded = decodeTrace(rawTrace(headerPayload, chunk, bad))
    expect(decoded.chunks.length).toBe(1)
    expect(decoded.error?.frame).toBe(2)
    expect(decoded.error?.message).toMatch(/^frame 2 at byte \d+: payload does not decode: events\[2\]\.port: .*70000/)
    expect(decoded.error?.message).not.toContain("\n")
    const config = decodeTrace(rawTrace({ ...headerPayload, config: { ...headerPayload.config, mode: "long" } }))
    expect(config.error?.message).toMatch(/^frame 0 at byte 8: payload does not decode: config\.mode: /)
  })

  it("a chunk whose firstSeq is not its first event's seq", () => {
    expect(decodeTrace(rawTrace(headerPayload, { ...chunk, firstSeq: 7 })).error?.message).toMatch(/^frame 1 at byte \d+: chunk says it starts at seq 7, its first event is seq 0$/)
  })

  it("an end frame that disagrees with the chunks", () => {
    const offset = 8 + encodeFrame(headerPayload, 0).length
    expect(decodeTrace(rawTrace(headerPayload, chunk, { kind: "end", eventCount: 4, chunkOffsets: [offset] })).error).toBeUndefined()
    expect(decodeTrace(rawTrace(headerPayload, chunk, { kind: "end", eventCount: 5, chunkOffsets: [offset] })).error?.message).toMatch(/^frame 2 at byte \d+: end frame counts 5 events, the chunks hold 4$/)
    expect(decodeTrace(rawTrace(headerPayload, chunk, { kind: "end", eventCount: 4, chunkOffsets: [offset + 1] })).error?.message).toMatch(/end frame's chunk index disagrees with the chunks \(chunk 0 is at byte \d+, the index says \d+\)$/)
    expect(decodeTrace(rawTrace(headerPayload, chunk, { kind: "end", eventCount: 4, chunkOffsets: [] })).error?.message).toMatch(/\(the index lists 0 chunks, the file has 1\)$/)
  })

  it("bytes after the end frame: everything decoded, then the error", () => {
    const decoded = decodeTrace(new Uint8Array([...trace, 1, 2, 3]))
    expect(decoded.chunks.length).toBe(4)
    expect(decoded.end?.eventCount).toBe(28)
    expect(decoded.error?.message).toBe(`3 bytes follow the end frame at byte ${trace.length}`)
    expect(decoded.error?.frame).toBe(endFrame + 1)
  })

  it("never throws, whatever the bytes", () => {
    // Random garbage after a valid start, and random single-byte damage anywhere.
    let seed = 12345
    const random = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x80000000
    for (let i = 0; i < 300; i++) {
      const bytes = trace.slice()
      for (let n = 0; n < 1 + Math.floor(random() * 4); n++) bytes[Math.floor(random() * bytes.length)] = Math.floor(random() * 256)
      const cut = bytes.subarray(0, Math.floor(random() * bytes.length) + 1)
      expect(() => decodeTrace(cut)).not.toThrow()
      const garbage = Uint8Array.from({ length: 64 + Math.floor(random() * 64) }, () => Math.floor(random() * 256))
      const withGarbage = new Uint8Array([...trace.subarray(0, frameOffsets[2]), ...garbage])
      const decoded = decodeTrace(withGarbage)
      expect(decoded.chunks.length).toBe(1)
      expect(decoded.error).toBeInstanceOf(TraceCorrupt)
    }
  })
})

describe("schema messages", () => {
  it("merges a literal union's issues into one expectation", () => {
    const events = sampleChunks([3])[0]
    const decoded = decodeTrace(rawTrace(headerPayload, { kind: "events", firstSeq: 0, events: [events[0], events[1], { ...events[2], size: 3 }] }))
    expect(decoded.error?.message).toMatch(/^frame 1 at byte \d+: payload does not decode: events\[2\]\.size: Expected 1 \| 2 \| 4, actual 3$/)
  })
})
