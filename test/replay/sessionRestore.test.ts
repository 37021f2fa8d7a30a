/**
 * What a replay session builds from checkpoints: a restore loads each page's latest
 * saved copy (not every checkpoint before its target), so it must give the state a
 * replay from the start has; a whole replay checks every event and every checkpoint's
 * state, and says how far it got when the trace is damaged.
 */
import { describe, expect, it } from "vitest"
import { assertProperty } from "../support/soakRuns.ts"
import { expectSameStates, sessionState } from "../support/sessionState.ts"
import { Chunk, Effect, Stream } from "effect"
import fc from "fast-check"
import { TraceEncoder } from "../../src/events/trace/codec.ts"
import { makeTraceHeader } from "../../src/events/trace/schema.ts"
import type { Checkpoint } from "../../src/events/trace/schema.ts"
import type { SeekableTrace } from "../../src/events/trace/traceIndex.ts"
import type { VmEvent } from "../../src/events/VmEvent.ts"
import { recordMachine } from "../../src/qemu/runMachine.ts"
import { rawEvents } from "../../src/events/rawEvents.ts"
import { checkpointRegisters, registerParts, ReplayDivergence, ReplayTraceDamaged } from "../../src/replay/divergence.ts"
import { ReplaySession } from "../../src/replay/session.ts"
import { le32, pm32Config, SCRATCH } from "../support/programs.ts"
import { openTraceBytes } from "../support/recordTrace.ts"

const config = pm32Config({ memoryMiB: 4 })
const HOT = SCRATCH - 0x1000

/**
 * mov edi, SCRATCH; mov ecx, n; L: mov [edi], ecx; mov [HOT], ecx; add edi, 4096; loop L; hlt:
 * a new page every iteration (each interval between checkpoints saves different pages)
 * and one page written in all of them.
 */
const pageWriter = (n: number): Uint8Array =>
  Uint8Array.from([0xbf, ...le32(SCRATCH), 0xb9, ...le32(n), 0x89, 0x0f, 0x89, 0x0d, ...le32(HOT), 0x81, 0xc7, ...le32(0x1000), 0xe2, 0xf0, 0xf4])

/** A recording as trace bytes, each checkpoint and event passed through `edit` on its way in. */
const recordTrace = (
  image: Uint8Array,
  every: number | undefined,
  edit: { readonly checkpoint?: (c: Checkpoint, i: number) => Checkpoint; readonly event?: (e: VmEvent) => VmEvent } = {}
): Uint8Array => {
  const encoder = new TraceEncoder()
  const parts = [encoder.start(makeTraceHeader({ config, image }))]
  let checkpoints = 0
  for (const { checkpoint, events } of Chunk.toArray(Effect.runSync(Stream.runCollect(recordMachine(config, image, { checkpointEvery: every }))))) {
    if (checkpoint !== undefined) parts.push(encoder.checkpoint(edit.checkpoint?.(checkpoint, checkpoints++) ?? checkpoint))
    const frame = encoder.chunk(edit.event === undefined ? rawEvents(events) : rawEvents(events).map(edit.event))
    if (frame !== undefined) parts.push(frame)
  }
  parts.push(encoder.end())
  return Buffer.concat(parts)
}

const open = (bytes: Uint8Array): SeekableTrace => openTraceBytes(bytes)

describe("restoring a checkpoint", () => {
  it("gives the state of a replay from the start, from any checkpoint, in any order", async () => {
    await assertProperty(
      fc.tuple(fc.integer({ min: 5, max: 120 }), fc.nat(), fc.array(fc.nat(), { minLength: 1, maxLength: 6 })),
      ([n, e, picks]) => {
        // 4 instructions an iteration: at least 4 checkpoints.
        const every = 3 + (e % (n - 2))
        const image = pageWriter(n)
        const seeking = new ReplaySession(open(recordTrace(image, every)))
        const straight = new ReplaySession(open(recordTrace(image, undefined)))
        expect(seeking.trace.index.checkpointTimes.length).toBeGreaterThan(1)
        // Backwards and forwards: each restore starts from whatever the session holds.
        expectSameStates(seeking, straight, picks.map((pick) => ({ time: pick % (seeking.endTime + 1) })))
      },
      12
    )
  })

  it("from the last checkpoint equals a replay from the start to it", () => {
    const image = pageWriter(100)
    const trace = open(recordTrace(image, 10))
    const times = trace.index.checkpointTimes
    const late = new ReplaySession(trace)
    // From the end, so that the seek restores the checkpoint rather than running on to it.
    late.seekTime(late.endTime)
    late.seekTime(times.at(-1)! + 1)
    const whole = new ReplaySession(open(recordTrace(image, undefined)))
    whole.seekTime(times.at(-1)! + 1)
    expect(sessionState(late)).toEqual(sessionState(whole))
  })
})

describe("a whole replay in a session", () => {
  it("verifies every event and the state at every checkpoint", () => {
    const image = pageWriter(40)
    const trace = open(recordTrace(image, 25))
    expect(new ReplaySession(trace).replayToEnd()).toBe(trace.index.eventCount)
    // A checkpoint whose registers say something else than the run: its events all match.
    const tampered = open(recordTrace(image, 25, {
      checkpoint: (c, i) => {
        if (i !== 3) return c
        const cpu = c.sections["cpu"] as { regs: Record<string, number> }
        return { ...c, sections: { ...c.sections, cpu: { ...cpu, regs: { ...cpu.regs, rax: cpu.regs["rax"]! + 1 } } } }
      }
    }))
    const error = (() => {
      try {
        new ReplaySession(tampered).replayToEnd()
      } catch (e) {
        return e
      }
    })()
    expect(error).toBeInstanceOf(ReplayDivergence)
    expect((error as ReplayDivergence).point?.atCheckpoint).toBe(3)
    expect((error as ReplayDivergence).index).toBe(tampered.index.checkpointSeqs[3])
  })

  it("reads a checkpoint's registers as a restore reads them, and stops at a damaged checkpoint with the error a restore gives", () => {
    const image = pageWriter(40)
    const bytes = recordTrace(image, 25)
    const trace = open(bytes)
    const { checkpointOffsets, checkpointSeqs } = trace.index
    expect(checkpointOffsets.length).toBeGreaterThan(3)
    for (let i = 0; i < checkpointOffsets.length; i++) {
      const whole = trace.checkpoint(i)
      const part = trace.checkpointPart(i, registerParts)
      expect(part).not.toEqual(whole)
      expect(checkpointRegisters(part)).toEqual(checkpointRegisters(whole))
      expect(Object.keys(checkpointRegisters(part))).toHaveLength(12)
    }
    const restoreError = (damaged: SeekableTrace) => {
      try {
        damaged.checkpoint(2)
      } catch (e) {
        return e
      }
      return expect.fail("a damaged checkpoint decoded")
    }
    // A byte of checkpoint 2's cpu section changed (its checksum fails), then checkpoints not of the schema's shape.
    const flipped = Uint8Array.from(bytes)
    flipped[Buffer.from(bytes).indexOf("rax", checkpointOffsets[2])] ^= 0xff
    const reshaped = (change: (c: Checkpoint) => unknown) =>
      open(recordTrace(image, 25, { checkpoint: (c, i) => (i === 2 ? change(c) as Checkpoint : c) }))
    const damagedTraces = [
      [open(flipped), /checksum mismatch/],
      [reshaped((c) => ({ ...c, kind: "check" })), /payload does not decode: kind: /],
      [reshaped((c) => ({ ...c, sections: 5 })), /payload does not decode: sections: /]
    ] as const
    for (const [damaged, reason] of damagedTraces) {
      const expected = restoreError(damaged)
      expect((expected as Error).message).toMatch(reason)
      expect(() => damaged.checkpointPart(2, registerParts)).toThrow(expected as Error)
      try {
        new ReplaySession(damaged).replayToEnd()
        expect.fail("a damaged checkpoint replayed")
      } catch (e) {
        expect(e).toBeInstanceOf(ReplayTraceDamaged)
        expect((e as ReplayTraceDamaged).cause).toEqual(expected)
        expect((e as ReplayTraceDamaged).verified).toBe(checkpointSeqs[2])
      }
    }
  })

  it("finds a changed event inside any chunk, with both events", () => {
    const image = pageWriter(60)
    const plain = open(recordTrace(image, 20))
    expect(plain.index.chunkOffsets.length).toBeGreaterThan(3)
    const target = plain.chunk(3)[1]!
    const changed = open(recordTrace(image, 20, { event: (e) => (e.seq === target.seq ? { ...e, time: e.time + 1 } : e) }))
    try {
      new ReplaySession(changed).replayToEnd()
      expect.fail("a changed recording replayed")
    } catch (e) {
      expect(e).toBeInstanceOf(ReplayDivergence)
      const d = e as ReplayDivergence
      expect(d.index).toBe(target.seq)
      expect(d.expected).toEqual({ ...target, time: target.time + 1 })
      expect(d.actual).toEqual(target)
    }
  })

  it("on a damaged chunk, or past the end of a cut recording, says how many events it verified", () => {
    const bytes = recordTrace(pageWriter(60), 20)
    const whole = open(bytes)
    const { chunkOffsets, chunkSeqs } = whole.index
    expect(chunkOffsets.length).toBeGreaterThan(2)
    // A byte of chunk 2's payload changed: its checksum fails; the index (end frame) is intact.
    const flipped = bytes.slice()
    flipped[chunkOffsets[2]! + 8 + 3] ^= 0xff
    expect(() => new ReplaySession(open(flipped)).replayToEnd()).toThrow(ReplayTraceDamaged)
    try {
      new ReplaySession(open(flipped)).replayToEnd()
    } catch (e) {
      expect((e as ReplayTraceDamaged).verified).toBe(chunkSeqs[2])
      expect((e as ReplayTraceDamaged).cause.message).toMatch(/checksum mismatch/)
    }
    // Cut inside its last chunk: every intact event verified, then the damage.
    const cut = open(bytes.subarray(0, chunkOffsets.at(-1)! + 3))
    try {
      new ReplaySession(cut).replayToEnd()
      expect.fail("a cut recording replayed to its end")
    } catch (e) {
      expect(e).toBeInstanceOf(ReplayTraceDamaged)
      expect((e as ReplayTraceDamaged).verified).toBe(cut.index.eventCount)
      expect((e as ReplayTraceDamaged).cause).toBe(cut.index.damage)
    }
  })
})
