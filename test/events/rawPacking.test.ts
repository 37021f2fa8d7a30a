import { describe, expect, it } from "@effect/vitest"
import { FastCheck as fc } from "effect"
import { ioLoopEvents, mixedEvents } from "../../bench/codec.ts"
import { rawChunkOf, rawEvents } from "../../src/events/rawEvents.ts"
import { packEvents, packRawEvents, unpackEvents } from "../../src/events/trace/packedEvents.ts"
import { isHostInputTag, type VmEvent } from "../../src/events/VmEvent.ts"
import { anyChunk, anyEvent, consecutive, fieldOrder } from "./eventChunks.ts"



/** Packing the raw chunk gives the bytes and kinds packing its events does, and they read back. */
const expectSamePacking = (events: ReadonlyArray<VmEvent>) => {
  const chunk = rawChunkOf(events)
  expect(rawEvents(chunk)).toEqual(events)
  const raw = packRawEvents(chunk)
  const packed = packEvents(events)
  expect(Buffer.from(raw.bytes).toString("hex")).toBe(Buffer.from(packed.bytes).toString("hex"))
  expect(raw.kinds).toEqual(packed.kinds)
  expect(raw.inputSeqs).toEqual(events.filter((e) => isHostInputTag(e._tag)).map((e) => e.seq))
  expect(unpackEvents(raw.bytes, chunk.firstSeq)).toEqual(events)
}

describe("packing raw chunks", () => {
  // First in the file, so the encoder has met no kind yet: each kind below is new to it
  // where it appears, past the start of the chunk.
  it("kinds met for the first time late in a chunk (the encoder is compiled again mid-chunk)", () => {
    const samples = fc.sample(anyEvent, { numRuns: 2000, seed: 42 })
    const oneOfEach = [...new Map(samples.map((e) => [e._tag, e])).values()]
    expect(oneOfEach.length).toBe(fieldOrder.size)
    const io = ioLoopEvents(50)
    expectSamePacking(consecutive([...io, ...oneOfEach, ...io, ...[...oneOfEach].reverse()], 7))
  })

  it("gives the bytes of packing the chunk's events: mixed kinds, fields changing or not, optional fields coming and going", () => {
    fc.assert(
      fc.property(anyChunk, fc.nat({ max: 2 ** 40 }), (chunk, first) => expectSamePacking(consecutive(chunk, first))),
      { numRuns: 400 }
    )
  })

  it("the same for host inputs, which it lists", () => {
    const anyInput = fc.oneof(...["HostInput", "HostClock", "HostTsc", "HostMonotonicClock"].map((tag) =>
      anyEvent.filter((e) => e._tag === tag)))
    fc.assert(
      fc.property(fc.array(fc.oneof(anyInput, anyEvent), { minLength: 1, maxLength: 30 }), (events) => {
        const chunk = consecutive(events, 100)
        expectSamePacking(chunk)
      }),
      { numRuns: 100 }
    )
  })

  it("the benchmark guest's port I/O loop and the mix of changing kinds", () => {
    const io = ioLoopEvents(2000)
    for (let i = 0; i < io.length; i += 4096) expectSamePacking(io.slice(i, i + 4096))
    const mixed = mixedEvents(5000)
    for (let i = 0; i < mixed.length; i += 1000) expectSamePacking(mixed.slice(i, i + 1000))
    expect(packRawEvents(rawChunkOf(io.slice(0, 10))).inputSeqs).toEqual([])
  })

  it("refuses a record its writer got wrong, naming kind and field", () => {
    const pio = rawChunkOf(consecutive([ioLoopEvents(1)[1]!], 0))
    // Pio: kind, vcpu, time, direction (a two-member literal), port, size, count, values
    const words = Float64Array.from(pio.words)
    words[3] = 2
    expect(() => packRawEvents({ ...pio, words })).toThrow(/Pio\.direction = 2/)
    const size = Float64Array.from(pio.words)
    size[5] = 9
    expect(() => packRawEvents({ ...pio, words: size })).toThrow(/Pio\.size = 9/)
    const kind = Float64Array.from(pio.words)
    kind[0] = 1e6
    expect(() => packRawEvents({ ...pio, words: kind })).toThrow(/kind number 1000000/)
    expect(() => packRawEvents({ ...pio, words: pio.words.subarray(0, 5) })).toThrow(/^packed events: /)
    expect(() => packRawEvents({ ...pio, words: Float64Array.of(...pio.words, 0) })).toThrow(/1 raw records do not take the chunk's 10 words/)
  })
})
