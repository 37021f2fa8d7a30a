import { describe, expect, it } from "@effect/vitest"
import { assertProperty } from "../support/soakRuns.ts"
import { expectSameStates, sessionState } from "../support/sessionState.ts"
import { Chunk, Effect, Stream } from "effect"
import fc from "fast-check"
import { decodeTrace, encodeTrace } from "../../src/events/trace/codec.ts"
import type { SeekableTrace } from "../../src/events/trace/traceIndex.ts"
import type { VmEvent } from "../../src/events/VmEvent.ts"
import { QueuedHostInput } from "../../src/qemu/hostInput.ts"
import { runMachine } from "../../src/qemu/runMachine.ts"
import { recordedInputs } from "../../src/replay/hostInput.ts"
import { replayEvents } from "../../src/replay/replay.ts"
import { ReplayDivergence } from "../../src/replay/divergence.ts"
import { withDivergencePoint } from "../../src/replay/divergencePoint.ts"
import { previousEvent, previousEventOfKind, previousWrite, stepBack } from "../../src/replay/reverse.ts"
import { ReplaySession, SessionError } from "../../src/replay/session.ts"
import { instruction, le32, pm32Config, SCRATCH } from "../support/programs.ts"
import { recordTraceBytes, openTraceBytes } from "../support/recordTrace.ts"

const COUNTER = SCRATCH + 0xff0

/** A generated body run `n` times: mov [COUNTER], n; L: body; dec dword [COUNTER]; jnz L; hlt. */
const loopProgram: fc.Arbitrary<Uint8Array> = fc
  .tuple(fc.array(instruction, { minLength: 1, maxLength: 12 }), fc.integer({ min: 2, max: 30 }))
  .map(([body, n]) => {
    const code = body.flat()
    const back = -(code.length + 6 + 6)
    return Uint8Array.from([0xc7, 0x05, ...le32(COUNTER), ...le32(n), ...code, 0xff, 0x0d, ...le32(COUNTER), 0x0f, 0x85, ...le32(back >>> 0), 0xf4])
  })

// Small RAM: every restore builds a machine, and states are compared whole.
const config = pm32Config({ memoryMiB: 4 })

/** A recording as trace bytes, with a checkpoint every `every` instructions (none: undefined). */
const recordTrace = (image: Uint8Array, every: number | undefined): Uint8Array => recordTraceBytes(config, image, every)

const open = (bytes: Uint8Array): SeekableTrace => openTraceBytes(bytes)

/** Everything a position is: registers, RAM, EPT, devices, the event count. */
describe("checkpoints", () => {
  it("do not change the events: a recording with checkpoints has the events of one without", async () => {
    await assertProperty(
      fc.tuple(loopProgram, fc.integer({ min: 1, max: 200 })),
      ([image, every]) => {
        const plain = Effect.runSync(Stream.runCollect(runMachine(config, image)).pipe(Effect.map(Chunk.toArray)))
        const bytes = recordTrace(image, every)
        const withCheckpoints = open(bytes)
        const events: VmEvent[] = []
        for (let i = 0; i < withCheckpoints.index.chunkOffsets.length; i++) events.push(...withCheckpoints.chunk(i))
        expect(events).toEqual(plain)
        expect(withCheckpoints.index.fromEndFrame).toBe(true)
        // The sequential reader passes over the checkpoints and checks them against the index.
        const decoded = decodeTrace(bytes)
        expect(decoded.error).toBeUndefined()
        expect(decoded.chunks.flatMap((c) => c.events)).toEqual(plain)
        expect(decoded.checkpoints.map((c) => c.seq)).toEqual(withCheckpoints.index.checkpointSeqs)
      },
      15
    )
  })

  it("a trace cut off (no end frame) is indexed by a scan and still seeks", () => {
    const image = fc.sample(loopProgram, { numRuns: 1, seed: 7 })[0]!
    const bytes = recordTrace(image, 20)
    const whole = open(bytes)
    const cut = open(bytes.subarray(0, whole.index.chunkOffsets.at(-1)! + 3))
    expect(cut.index.fromEndFrame).toBe(false)
    expect(cut.index.damage?.message).toMatch(/file ends inside frame/)
    expect(cut.index.checkpointSeqs).toEqual(whole.index.checkpointSeqs.filter((s) => s <= whole.index.chunkSeqs.at(-1)!))
    const session = new ReplaySession(cut)
    const last = cut.index.eventCount - 1
    session.seekEvent(last)
    expect(session.position.seq).toBeLessThanOrEqual(last)
  })
})

describe("seek", () => {
  it("seeking to any event gives the state a straight replay from the start has there, and replays on to the end", async () => {
    await assertProperty(
      fc.tuple(loopProgram, fc.integer({ min: 1, max: 100 }), fc.nat()),
      ([image, every, pick]) => {
        const seeking = new ReplaySession(open(recordTrace(image, every)))
        const straight = new ReplaySession(open(recordTrace(image, undefined)))
        expectSameStates(seeking, straight, [pick % seeking.eventCount])
      },
      15
    )
  })

  it("seeks from checkpoints taken inside long compute, where the vCPU never leaves KVM_RUN", async () => {
    await assertProperty(
      fc.tuple(fc.integer({ min: 2_000, max: 8_000 }), fc.integer({ min: 37, max: 700 }), fc.nat()),
      ([n, every, pick]) => {
        // mov ecx, n; 1: add eax, ecx; loop 1b; hlt: one KVM_RUN from the first instruction to HLT.
        const image = Uint8Array.from([0xb9, ...le32(n), 0x01, 0xc8, 0xe2, 0xfc, 0xf4])
        const trace = open(recordTrace(image, every))
        // Exactly every `every` instructions, though no exit comes until HLT.
        const times = trace.index.checkpointTimes
        expect(times.length).toBeGreaterThanOrEqual(Math.floor((2 * n) / every))
        times.forEach((t, i) => expect(t).toBe((i + 1) * every))
        const seeking = new ReplaySession(trace)
        const straight = new ReplaySession(open(recordTrace(image, undefined)))
        expectSameStates(seeking, straight, [{ time: pick % (seeking.endTime + 1) }])
      },
      15
    )
  })

  it("refuses positions outside the recording with one line", () => {
    const session = new ReplaySession(open(recordTrace(fc.sample(loopProgram, { numRuns: 1, seed: 3 })[0]!, 50)))
    expect(() => session.seekEvent(session.eventCount)).toThrow(SessionError)
    expect(() => session.seekTime(-1)).toThrow(/outside the recording/)
    expect(() => session.seekTime(session.endTime + 1)).toThrow(/outside the recording \(0 to \d+\)/)
  })
})

describe("reverse", () => {
  it("a step back then a step forward returns to the same state", async () => {
    await assertProperty(
      fc.tuple(loopProgram, fc.integer({ min: 1, max: 100 }), fc.nat()),
      ([image, every, pick]) => {
        const session = new ReplaySession(open(recordTrace(image, every)))
        const t = 1 + (pick % session.endTime)
        session.seekTime(t)
        const here = sessionState(session)
        stepBack(session)
        expect(session.position.time).toBe(t - 1)
        session.stepInstruction()
        expect(sessionState(session)).toEqual(here)
      },
      15
    )
  })

  it("previous event and previous event of a kind go to the recorded event's time", () => {
    const image = fc.sample(loopProgram, { numRuns: 1, seed: 11 })[0]!
    const session = new ReplaySession(open(recordTrace(image, 30)))
    session.seekTime(session.endTime)
    const seq = session.position.seq
    const e = previousEvent(session)!
    expect(e.seq).toBe(seq - 1)
    expect(session.position.time).toBe(e.time)
    const exit = previousEventOfKind(session, "VmExit")
    if (exit !== undefined) {
      expect(exit._tag).toBe("VmExit")
      expect(session.position.time).toBe(exit.time)
      if (exit._tag === "VmExit") expect(session.registers().regs.rip).toBe(exit.rip)
    }
    expect(() => previousEventOfKind(session, "no-such-kind")).toThrow(SessionError)
  })

  it("previous write finds the last instruction that changed the bytes", async () => {
    await assertProperty(
      fc.tuple(loopProgram, fc.integer({ min: 5, max: 100 })),
      ([image, every]) => {
        const session = new ReplaySession(open(recordTrace(image, every)))
        session.seekTime(session.endTime)
        const t = previousWrite(session, COUNTER, 4)
        // The last change to the loop counter is the last `dec`, which leaves it 0.
        expect(t).toBeDefined()
        expect(session.position.time).toBe(t)
        expect(session.currentInstruction().text).toMatch(/^decl/)
        session.stepInstruction()
        expect(Array.from(session.readPhysical(COUNTER, 4)!)).toEqual([0, 0, 0, 0])
      },
      8
    )
  })
})

describe("divergence reports", () => {
  it("carry the replay's registers at the point, the instruction, and what differs from the recording", () => {
    const image = Uint8Array.from([0xb8, ...le32(0x1234), 0xe6, 0xe9, 0xf4]) // mov eax, 0x1234; out 0xe9, al; hlt
    const trace = open(recordTrace(image, undefined))
    const exit = trace.chunk(0).find((e): e is Extract<VmEvent, { _tag: "VmExit" }> => e._tag === "VmExit" && e.reason === 30)!
    const tampered = { ...exit, rip: exit.rip + 1 } as VmEvent
    const d = withDivergencePoint(trace, new ReplayDivergence({ index: exit.seq, expected: tampered, actual: exit, context: [] }))
    expect(d.point?.replay.instruction).toMatch(/: out {4}%al,\$0xe9$/)
    expect(d.point?.replay.registers["eax"]).toBe(0x1234)
    expect(d.details).toContain(`  register differences (the recording ≠ the replay): eip 0x${(exit.rip + 1).toString(16)} ≠ 0x${exit.rip.toString(16)}`)
  })
})

describe("real-time RDTSC", () => {
  it("reads the host's counter through the host-input service; replay and seek read the recorded values", () => {
    // rdtsc; mov ebx, eax; rdtsc; hlt
    const image = Uint8Array.from([0x0f, 0x31, 0x89, 0xc3, 0x0f, 0x31, 0xf4])
    const realtime = pm32Config({ memoryMiB: 4, tsc: "realtime" })
    let counter = 1_000_000
    const host = new QueuedHostInput(undefined, () => (counter += 777))
    const events = Effect.runSync(Stream.runCollect(runMachine(realtime, image, { input: host })).pipe(Effect.map(Chunk.toArray)))
    const readings = events.filter((e) => e._tag === "HostTsc")
    expect(readings.map((e) => e._tag === "HostTsc" && e.value)).toEqual([1_000_777, 1_001_554])
    const end = events.at(-1)!
    expect(end._tag === "RunEnd" && [end.registers.ebx, end.registers.eax]).toEqual([1_000_777, 1_001_554])
    const replayed = Effect.runSync(replayEvents({ config: realtime, image }, Stream.fromIterable(events), recordedInputs(events)))
    expect(replayed.verified).toBe(events.length)
    const session = new ReplaySession(open(encodeTrace({ config: realtime, image }, [events])))
    session.seekTime(2)
    expect(session.registers().regs.rbx).toBe(1_000_777)
  })
})
