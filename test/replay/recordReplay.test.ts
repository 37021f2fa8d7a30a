import { describe, expect, it } from "@effect/vitest"
import { Chunk, Effect, Either, Stream } from "effect"
import fc from "fast-check"
import { decodeTrace, encodeTrace } from "../../src/events/trace/codec.ts"
import type { VmEvent } from "../../src/events/VmEvent.ts"
import { runMachine } from "../../src/qemu/runMachine.ts"
import { replayEvents } from "../../src/replay/replay.ts"
import { pm32Config, program } from "../support/programs.ts"

const record = (image: Uint8Array) => {
  const config = pm32Config()
  const events = Effect.runSync(Stream.runCollect(runMachine(config, image)).pipe(Effect.map(Chunk.toArray)))
  return { config, image, events }
}

describe("record → replay", () => {
  it("verifies every event of generated straight-line programs, through the trace codec", () => {
    fc.assert(
      fc.property(program, (image) => {
        const run = record(image)
        expect(run.events.at(-1)?._tag).toBe("RunEnd")
        const trace = decodeTrace(encodeTrace({ config: run.config, image }, [run.events]))
        expect(trace.error).toBeUndefined()
        const recorded = trace.chunks.flatMap((c) => c.events)
        const report = Effect.runSync(replayEvents(trace.header!, Stream.fromIterable(recorded)))
        expect(report.verified).toBe(run.events.length)
      }),
      { numRuns: 60 }
    )
  })

  it("stops at the first event that differs, with both events", () => {
    fc.assert(
      fc.property(program, fc.nat(), (image, pick) => {
        const run = record(image)
        const index = pick % run.events.length
        const tampered: VmEvent[] = run.events.map((e, i) => (i === index ? { ...e, time: e.time + 1 } : e))
        const result = Effect.runSync(Effect.either(replayEvents(run, Stream.fromIterable(tampered))))
        expect(Either.isLeft(result)).toBe(true)
        const error = Either.getLeft(result)
        expect(error._tag === "Some" && error.value._tag).toBe("ReplayDivergence")
        if (error._tag === "Some" && error.value._tag === "ReplayDivergence") {
          expect(error.value.index).toBe(index)
          expect(error.value.expected).toEqual(tampered[index])
          expect(error.value.actual).toEqual(run.events[index])
        }
      }),
      { numRuns: 30 }
    )
  })

  it("records the same guest to the same bytes every time", () => {
    fc.assert(
      fc.property(program, (image) => {
        const a = record(image)
        const b = record(image)
        expect(encodeTrace({ config: b.config, image }, [b.events])).toEqual(encodeTrace({ config: a.config, image }, [a.events]))
      }),
      { numRuns: 20 }
    )
  })

  it("reports a recording that ends early or runs long", () => {
    const run = record(Uint8Array.of(0xe6, 0xe9, 0xf4))
    const short = Effect.runSync(Effect.flip(replayEvents(run, Stream.fromIterable(run.events.slice(0, -1)))))
    expect(short._tag).toBe("ReplayDivergence")
    if (short._tag === "ReplayDivergence") {
      expect(short.expected).toBeUndefined()
      expect(short.actual?._tag).toBe("RunEnd")
    }
  })
})
