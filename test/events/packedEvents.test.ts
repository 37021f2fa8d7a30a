import { readFileSync } from "node:fs"
import { describe, expect, it } from "@effect/vitest"
import { FastCheck as fc } from "effect"
import { ioLoopEvents, mixedEvents } from "../../bench/codec.ts"
import { VmEvent } from "../../src/events/VmEvent.ts"
import { ByteReader, ByteWriter, PackedDecodeError } from "../../src/events/trace/bytes.ts"
import { decodeTrace, encodeTrace } from "../../src/events/trace/codec.ts"
import { eventsEqual } from "../../src/events/trace/equality.ts"
import { encodeFrame, magic, memorySource } from "../../src/events/trace/framing.ts"
import { packEvents, unpackEvents } from "../../src/events/trace/packedEvents.ts"
import { formatVersion, makeTraceHeader } from "../../src/events/trace/schema.ts"
import { indexTrace, type SeekableTrace } from "../../src/events/trace/traceIndex.ts"
import { anyChunk, anyEvent, consecutive } from "./eventChunks.ts"
import { header, sampleEvents } from "./traceFixtures.ts"


/** Same events: equal values, and every event's keys in the same order (as JSON output prints them). */
const expectSame = (back: ReadonlyArray<VmEvent>, events: ReadonlyArray<VmEvent>) => {
  expect(back).toEqual(events)
  expect(back.map((e) => JSON.stringify(Object.keys(e)))).toEqual(events.map((e) => JSON.stringify(Object.keys(e))))
  back.forEach((e, i) => expect(eventsEqual(e, events[i]!)).toBe(true))
}

describe("packed events", () => {
  it("round-trip: chunks of mixed kinds with consecutive seqs, fields changing or not, optional fields coming and going", () => {
    fc.assert(
      fc.property(anyChunk, fc.nat({ max: 2 ** 40 }), (chunk, first) => {
        const events = consecutive(chunk, first)
        expectSame(unpackEvents(packEvents(events).bytes, first), events)
      }),
      { numRuns: 400 }
    )
  })

  it("round-trip: any seqs and times, in any order", () => {
    fc.assert(
      fc.property(fc.array(anyEvent, { minLength: 1, maxLength: 30 }), (events) => {
        expectSame(unpackEvents(packEvents(events).bytes, events[0]!.seq), events)
      }),
      { numRuns: 300 }
    )
  })

  it("is canonical: the same events give the same bytes, and so do their copies and their decoding", () => {
    fc.assert(
      fc.property(anyChunk, (chunk) => {
        const events = consecutive(chunk, 5)
        const bytes = packEvents(events).bytes
        expect(packEvents(events).bytes).toEqual(bytes)
        expect(packEvents(structuredClone(events)).bytes).toEqual(bytes)
        expect(packEvents(unpackEvents(bytes, 5)).bytes).toEqual(bytes)
      }),
      { numRuns: 200 }
    )
  })

  it("takes a few bytes per event when little changes", () => {
    const perEvent = (events: ReadonlyArray<VmEvent>) => packEvents(events).bytes.length / events.length
    expect(perEvent(ioLoopEvents(1000))).toBeLessThanOrEqual(3.1)
    expect(perEvent(mixedEvents(8000))).toBeLessThanOrEqual(6)
  })

  it("decoded bytes and arrays are plain values, not views into the chunk", () => {
    const events = sampleEvents(18)
    const data = packEvents(events).bytes
    const output = unpackEvents(data, 0).find((e) => e._tag === "DeviceOutput")
    if (output?._tag !== "DeviceOutput") throw new Error("fixture has a DeviceOutput")
    expect(output.bytes.constructor).toBe(Uint8Array)
    expect(output.bytes.buffer).not.toBe(data.buffer)
  })

  it("refuses damage with a one-line PackedDecodeError, never another throw", () => {
    const data = packEvents(sampleEvents(40)).bytes
    fc.assert(
      fc.property(fc.nat({ max: data.length - 1 }), fc.nat({ max: 255 }), fc.nat({ max: data.length }), (at, value, cut) => {
        const damaged = data.slice(0, Math.max(1, cut))
        damaged[at % damaged.length] = value
        try {
          unpackEvents(damaged, 0)
        } catch (e) {
          expect(e).toBeInstanceOf(PackedDecodeError)
          expect((e as Error).message).not.toContain("\n")
        }
      }),
      { numRuns: 2000 }
    )
  })

  it("checks every value against its schema", () => {
    const [entry, , pio] = sampleEvents(3)
    const bad = [entry!, { ...pio!, port: 70000 } as VmEvent]
    expect(() => unpackEvents(packEvents(bad).bytes, 0)).toThrow(new PackedDecodeError("event 1: port: 70000 is outside 0..65535"))
    expect(() => packEvents([{ ...pio!, direction: "sideways" } as unknown as VmEvent])).toThrow(/direction = sideways is not a value of its schema/)
    expect(() => packEvents([{ ...pio!, size: 3 } as unknown as VmEvent])).toThrow(/size = 3 is not a value of its schema/)
    expect(() => packEvents([{ ...entry!, _tag: "HostInput", source: "serial1", bytes: new Uint8Array() } as unknown as VmEvent])).toThrow(/source = serial1/)
    expect(() => packEvents([{ ...entry!, _tag: "Lunch" } as unknown as VmEvent])).toThrow(/Lunch is not a VmEvent kind/)
  })

  it("a chunk frame whose packed events do not decode is one line naming the frame, the event and the field", () => {
    const events = sampleEvents(4)
    const frames = [
      encodeFrame(makeTraceHeader(header), 0),
      encodeFrame({ kind: "events", firstSeq: 0, packed: packEvents(events).bytes }, 1),
      encodeFrame({ kind: "events", firstSeq: 4, packed: packEvents(consecutive([...sampleEvents(11).slice(9), { ...sampleEvents(12)[11]!, count: 5000 } as VmEvent], 4)).bytes }, 2)
    ]
    const bytes = new Uint8Array([...magic, ...frames.flatMap((f) => [...f])])
    const decoded = decodeTrace(bytes)
    expect(decoded.chunks.length).toBe(1)
    expect(decoded.error?.frame).toBe(2)
    expect(decoded.error?.message).toMatch(/^frame 2 at byte \d+: payload does not decode: packed: event 2: count: 5000 is outside 1\.\.4096$/)
  })
})

describe("the kinds a chunk lists", () => {
  /** The CRC-32 a writer lists for VmEntry's signature. */
  const entryCrc = (() => {
    const r = new ByteReader(packEvents([sampleEvents(1)[0]!]).bytes)
    r.varint() // count
    r.byte() // flags
    r.varint() // kinds
    r.varint() // kind number
    r.bytes() // name
    return r.varint()
  })()

  const chunk = (name: string, crc: number, number: number, events: (w: ByteWriter) => void) => {
    const w = new ByteWriter()
    w.varint(2)
    w.byte(0)
    w.varint(1)
    w.varint(number)
    w.bytes(new TextEncoder().encode(name))
    w.varint(crc)
    events(w)
    return w.buf.slice(0, w.pos)
  }

  it("are found by name and signature, whatever numbers the chunk gives them", () => {
    const data = chunk("VmEntry", entryCrc, 200, (w) => {
      w.varint(200) // kind
      w.signed(5) // time
      w.varint(2) // mask: rip (vcpu is bit 0)
      w.signed(0x7c00)
      w.varint(200)
      w.signed(0)
      w.varint(0)
    })
    expect(unpackEvents(data, 7)).toEqual([
      { _tag: "VmEntry", seq: 7, vcpu: 0, time: 5, rip: 0x7c00 },
      { _tag: "VmEntry", seq: 8, vcpu: 0, time: 5, rip: 0x7c00 }
    ])
  })

  it("a kind whose fields differ from this vmrr's, or an unknown kind, is refused in one line", () => {
    expect(() => unpackEvents(chunk("VmEntry", entryCrc ^ 1, 0, () => {}), 0)).toThrow(new PackedDecodeError("VmEntry events written with other fields than this vmrr's VmEntry"))
    expect(() => unpackEvents(chunk("Lunch", entryCrc, 0, () => {}), 0)).toThrow(new PackedDecodeError(`a kind this vmrr does not know: "Lunch"`))
  })
})

describe("zigzag and plain varints", () => {
  const roundTrip = (write: (w: ByteWriter) => void, read: (r: ByteReader) => number) => {
    const w = new ByteWriter()
    write(w)
    const r = new ByteReader(w.buf.slice(0, w.pos))
    const value = read(r)
    expect(r.atEnd).toBe(true)
    return value
  }

  it("are exact for every safe integer, and for -2^53 (the seq difference from the largest seq back to 0)", () => {
    const safe = fc.oneof(fc.maxSafeInteger(), fc.integer(), fc.integer({ min: -200, max: 200 }))
    fc.assert(
      fc.property(safe, (n) => {
        expect(roundTrip((w) => w.signed(n), (r) => r.signed())).toBe(n)
        expect(roundTrip((w) => w.varint(Math.abs(n)), (r) => r.varint())).toBe(Math.abs(n))
      }),
      { numRuns: 2000 }
    )
    expect(roundTrip((w) => w.signed(-(2 ** 53)), (r) => r.signed())).toBe(-(2 ** 53))
    for (const n of [0, 63, 64, 127, 128, 2 ** 28 - 1, 2 ** 28, 2 ** 31, 2 ** 32, Number.MAX_SAFE_INTEGER]) {
      expect(roundTrip((w) => w.varint(n), (r) => r.varint())).toBe(n)
      expect(roundTrip((w) => w.signed(n), (r) => r.signed())).toBe(n)
      expect(roundTrip((w) => w.signed(-n), (r) => r.signed())).toBe(n === 0 ? 0 : -n)
    }
  })
})

describe("format versions", () => {
  it("this vmrr writes format 3 with packed chunks", () => {
    const decoded = decodeTrace(encodeTrace(header, [sampleEvents(9)]))
    expect(formatVersion).toBe(3)
    expect(decoded.header?.formatVersion).toBe(3)
    expect(decoded.chunks[0]?.events).toEqual(sampleEvents(9))
  })

  it("reads format 2 traces: the committed golden traces decode, seek and re-encode to the same events", () => {
    for (const file of ["traces/hello.vmrr", "traces/kvm/hello.vmrr"]) {
      const bytes = new Uint8Array(readFileSync(file))
      const v2 = decodeTrace(bytes)
      expect(v2.error).toBeUndefined()
      expect(v2.header?.formatVersion).toBe(2)
      const events = v2.chunks.map((c) => c.events)
      const v3 = decodeTrace(encodeTrace({ config: v2.header!.config, image: v2.header!.image }, events))
      expect(v3.error).toBeUndefined()
      expect(v3.chunks.map((c) => c.events)).toEqual(events)
      const seekable = indexTrace(memorySource(bytes), file) as SeekableTrace
      expect(seekable.index.chunkOffsets.map((_, i) => seekable.chunk(i))).toEqual(events)
    }
  })
})
