import { isDeepStrictEqual } from "node:util"
import { describe, expect, it } from "@effect/vitest"
import { Arbitrary, FastCheck as fc, Schema } from "effect"
import { MachineConfig } from "../../src/events/MachineConfig.ts"
import { VmEvent } from "../../src/events/VmEvent.ts"
import { decodeTrace, encodeTrace } from "../../src/events/trace/codec.ts"
import { eventsEqual } from "../../src/events/trace/equality.ts"
import { eventToJson } from "../../src/events/trace/json.ts"
import { sha256Hex } from "../../src/events/trace/schema.ts"
import { header, sampleEvents } from "./traceFixtures.ts"

// Arbitraries come from the schemas, so a new event kind or field is covered unasked.
const anyEvent = Arbitrary.make(VmEvent)
const anyConfig = Arbitrary.make(MachineConfig)

describe("trace encode/decode", () => {
  it("every VmEvent survives encode → decode unchanged", () => {
    fc.assert(
      fc.property(anyEvent, (event) => {
        const decoded = decodeTrace(encodeTrace(header, [[event]]))
        expect(decoded.error).toBeUndefined()
        const back = decoded.chunks[0].events[0]
        expect(eventsEqual(back, event)).toBe(true)
        expect(back).toEqual(event)
      }),
      { numRuns: 500 }
    )
  })

  it("chunks of events survive with their boundaries, firstSeq and the end index", () => {
    fc.assert(
      fc.property(fc.array(fc.array(anyEvent, { maxLength: 12 }), { maxLength: 6 }), (chunks) => {
        const bytes = encodeTrace(header, chunks)
        const decoded = decodeTrace(bytes)
        expect(decoded.error).toBeUndefined()
        const written = chunks.filter((c) => c.length > 0) // an empty chunk writes no frame
        expect(decoded.chunks.map((c) => c.events)).toEqual(written)
        expect(decoded.chunks.map((c) => c.firstSeq)).toEqual(written.map((c) => c[0].seq))
        expect(decoded.end?.eventCount).toBe(written.reduce((n, c) => n + c.length, 0))
        expect(decoded.end?.chunkOffsets.length).toBe(written.length)
        decoded.chunks.forEach((chunk, i) => chunk.events.forEach((e, j) => expect(eventsEqual(e, written[i][j])).toBe(true)))
      }),
      { numRuns: 200 }
    )
  })

  it("the header survives: config, image bytes as a plain Uint8Array, hash, producer", () => {
    fc.assert(
      fc.property(anyConfig, fc.uint8Array({ maxLength: 300 }), (config, image) => {
        const decoded = decodeTrace(encodeTrace({ config, image }, []))
        expect(decoded.error).toBeUndefined()
        expect(decoded.header?.config).toEqual(config)
        expect(decoded.header?.image.constructor).toBe(Uint8Array)
        expect(decoded.header?.image).toEqual(image)
        expect(decoded.header?.imageSha256).toBe(sha256Hex(image))
        expect(decoded.header?.producer).toMatch(/^vmrr \d+\.\d+\.\d+/)
        expect(decoded.chunks).toEqual([])
        expect(decoded.end).toEqual({
          kind: "end", eventCount: 0, chunkOffsets: [], chunkSeqs: [], chunkTimes: [],
          checkpointOffsets: [], checkpointSeqs: [], checkpointTimes: [], inputSeqs: []
        })
      }),
      { numRuns: 100 }
    )
  })

  it("decoded bytes are plain Uint8Arrays, not Buffers or views into the file", () => {
    const bytes = encodeTrace(header, [sampleEvents(9)])
    const output = decodeTrace(bytes).chunks[0].events.find((e) => e._tag === "DeviceOutput")
    expect(output?._tag).toBe("DeviceOutput")
    if (output?._tag !== "DeviceOutput") return
    expect(output.bytes.constructor).toBe(Uint8Array)
    expect(output.bytes.buffer).not.toBe(bytes.buffer)
  })

  it("encoding is deterministic", () => {
    expect(encodeTrace(header, [sampleEvents(20)])).toEqual(encodeTrace(header, [sampleEvents(20)]))
  })
})

describe("eventToJson", () => {
  it("round-trips through JSON.parse and the schema, `_tag` first", () => {
    fc.assert(
      fc.property(anyEvent, (event) => {
        const json = eventToJson(event)
        expect(json.startsWith(`{"_tag":"${event._tag}",`)).toBe(true)
        expect(json).not.toContain("\n")
        const back = Schema.decodeUnknownSync(VmEvent)(JSON.parse(json))
        expect(eventsEqual(back, event)).toBe(true)
        expect(back).toEqual(event)
      }),
      { numRuns: 500 }
    )
  })

  it("writes bytes as the schema encodes them: a number array", () => {
    const json = eventToJson({ _tag: "DeviceOutput", seq: 1, vcpu: 0, time: 2, device: "serial", bytes: new Uint8Array([104, 105]) })
    expect(json).toBe(`{"_tag":"DeviceOutput","seq":1,"vcpu":0,"time":2,"device":"serial","bytes":[104,105]}`)
  })
})

describe("eventsEqual", () => {
  it("agrees with deep strict equality on arbitrary pairs and copies", () => {
    fc.assert(
      fc.property(anyEvent, anyEvent, (a, b) => {
        expect(eventsEqual(a, structuredClone(a))).toBe(true)
        expect(eventsEqual(a, b)).toBe(isDeepStrictEqual(a, b))
      }),
      { numRuns: 1000 }
    )
  })

  it("sees every difference: a field, an array element, a byte, an optional field present on one side", () => {
    const [entry, exit, pio, , , , output, , end] = sampleEvents(9)
    expect(eventsEqual(entry, { ...entry, rip: entry._tag === "VmEntry" ? entry.rip + 1 : 0 } as VmEvent)).toBe(false)
    expect(eventsEqual(exit, { ...exit, guestPhysical: 0x1000 } as VmEvent)).toBe(false)
    expect(eventsEqual({ ...exit, guestPhysical: 0x1000 } as VmEvent, exit)).toBe(false)
    expect(eventsEqual(pio, { ...pio, values: [0x42] } as VmEvent)).toBe(false)
    expect(eventsEqual(pio, { ...pio, values: [0x41, 0] } as VmEvent)).toBe(false)
    expect(eventsEqual(output, { ...output, bytes: new Uint8Array([72, 105, 11]) } as VmEvent)).toBe(false)
    expect(eventsEqual(output, { ...output, bytes: new Uint8Array([72, 105, 10]) } as VmEvent)).toBe(true)
    if (end._tag !== "RunEnd") throw new Error("fixture order")
    expect(eventsEqual(end, { ...end, registers: { ...end.registers, cr3: 1 } })).toBe(false)
    expect(eventsEqual(end, { ...end, registers: { ...end.registers } })).toBe(true)
    expect(eventsEqual(entry, { ...entry, _tag: "Other" } as unknown as VmEvent)).toBe(false)
  })
})
