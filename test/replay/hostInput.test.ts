import { describe, expect, it } from "@effect/vitest"
import { Chunk, Effect, Stream } from "effect"
import fc from "fast-check"
import type { VmEvent } from "../../src/events/VmEvent.ts"
import { HOST_INPUT_QUANTUM, type HostInputPort, QueuedHostInput, ScheduledHostInput } from "../../src/qemu/hostInput.ts"
import { runMachine } from "../../src/qemu/runMachine.ts"
import { recordedInputs } from "../../src/replay/hostInput.ts"
import { replayEvents } from "../../src/replay/replay.ts"
import { instruction, le32, pm32Config } from "../support/programs.ts"

/**
 * Instructions that use the UART's receiver: bounded polls of LSR.DR (`loopz` gives up
 * after N tries, so a run without input still ends), RBR reads, FIFO on/off, echoes.
 */
const uartInstruction: fc.Arbitrary<number[]> = fc.oneof(
  // mov ecx, n; mov dx, 0x3fd; 1: in al, dx; test al, 1; loopz 1b
  fc.integer({ min: 1, max: 1500 }).map((n) => [0xb9, ...le32(n), 0x66, 0xba, 0xfd, 0x03, 0xec, 0xa8, 0x01, 0xe1, 0xfb]),
  fc.constant([0x66, 0xba, 0xf8, 0x03, 0xec]), // mov dx, 0x3f8; in al, dx (RBR)
  fc.constant([0x66, 0xba, 0xf8, 0x03, 0xee]), // mov dx, 0x3f8; out dx, al (THR: echo)
  fc.constantFrom(0x00, 0x01, 0x07, 0xc1).map((fcr) => [0x66, 0xba, 0xfa, 0x03, 0xb0, fcr, 0xee]) // FCR
)

const uartProgram: fc.Arbitrary<Uint8Array> = fc
  .array(fc.oneof({ weight: 3, arbitrary: uartInstruction }, { weight: 1, arbitrary: instruction }), { minLength: 1, maxLength: 30 })
  .map((parts) => Uint8Array.from([...parts.flat(), 0xf4]))

/** Bytes the host hands over once the guest has reached virtual time `at`. */
const arrivals = fc.array(
  fc.record({ at: fc.integer({ min: 0, max: 12_000 }), bytes: fc.uint8Array({ minLength: 1, maxLength: 24 }) }),
  { maxLength: 6 }
)

/** A live source whose host is scripted in virtual time: a deterministic stand-in for stdin. */
const scriptedLive = (script: ReadonlyArray<{ at: number; bytes: Uint8Array }>): HostInputPort => {
  const live = new QueuedHostInput()
  const pending = [...script].sort((a, b) => a.at - b.at)
  return {
    nextDelivery: (now, room) => {
      while (pending.length > 0 && pending[0]!.at <= now) live.push(pending.shift()!.bytes)
      return live.nextDelivery(now, room)
    },
    deliver: (now, room) => live.deliver(now, room),
    paced: true,
    wallClock: () => live.wallClock()
  }
}

const config = pm32Config({ instructionLimit: 200_000 })

const record = (image: Uint8Array, input: HostInputPort): VmEvent[] =>
  Effect.runSync(Stream.runCollect(runMachine(config, image, { input })).pipe(Effect.map(Chunk.toArray)))

const replay = (image: Uint8Array, events: VmEvent[]) =>
  Effect.runSync(replayEvents({ config, image }, Stream.fromIterable(events), recordedInputs(events)))

describe("host input: record → replay", () => {
  it("random UART-polling guests with random live input schedules replay exactly", () => {
    let delivered = 0
    fc.assert(
      fc.property(uartProgram, arrivals, (image, script) => {
        const events = record(image, scriptedLive(script))
        const end = events.at(-1)
        expect(end?._tag === "RunEnd" && end.reason).toBe("hlt")
        const inputs = recordedInputs(events).flatMap((e) => (e._tag === "HostInput" ? [e] : []))
        delivered += inputs.length
        // Live input lands on the quantum grid, and never more than was typed.
        for (const e of inputs) expect(e.time % HOST_INPUT_QUANTUM).toBe(0)
        expect(inputs.reduce((n, e) => n + e.bytes.length, 0)).toBeLessThanOrEqual(script.reduce((n, a) => n + a.bytes.length, 0))
        expect(replay(image, events).verified).toBe(events.length)
      }),
      { numRuns: 40 }
    )
    expect(delivered).toBeGreaterThan(0)
  })

  it("any schedule of inputs, at any times, replays exactly", () => {
    const schedule = fc
      .array(fc.record({ time: fc.integer({ min: 0, max: 8000 }), bytes: fc.uint8Array({ minLength: 1, maxLength: 20 }) }), { maxLength: 8 })
      .map((inputs) => inputs.sort((a, b) => a.time - b.time).map((i) => ({ ...i, source: "serial0" as const })))
    fc.assert(
      fc.property(uartProgram, schedule, (image, inputs) => {
        const events = record(image, new ScheduledHostInput(inputs))
        const delivered = recordedInputs(events)
        // Each input arrives at its time (or at the run's end, never, if the guest stopped first).
        expect(delivered.map((e) => e.time)).toEqual(inputs.slice(0, delivered.length).map((i) => i.time))
        expect(replay(image, events).verified).toBe(events.length)
      }),
      { numRuns: 40 }
    )
  })

  it("a replay given no inputs diverges where the recording had one", () => {
    const image = Uint8Array.from([0xb9, ...le32(3000), 0x66, 0xba, 0xfd, 0x03, 0xec, 0xa8, 0x01, 0xe1, 0xfb, 0xf4])
    const events = record(image, scriptedLive([{ at: 10, bytes: Uint8Array.of(0x41) }]))
    const index = events.findIndex((e) => e._tag === "HostInput")
    expect(index).toBeGreaterThan(0)
    const error = Effect.runSync(Effect.flip(replayEvents({ config, image }, Stream.fromIterable(events))))
    expect(error._tag).toBe("ReplayDivergence")
    // The recording stopped for the input one event before it (KVM_EXIT_INTR); the replay did not.
    if (error._tag === "ReplayDivergence") expect(error.index).toBe(index - 1)
  })
})

describe("QueuedHostInput", () => {
  it("delivers at the next quantum boundary, as much as the receiver has room for, at least one byte", () => {
    const q = new QueuedHostInput()
    expect(q.nextDelivery(5, 16)).toBeUndefined()
    q.push(Uint8Array.of(1, 2, 3))
    expect(q.nextDelivery(5, 0)).toBeUndefined() // full receiver: wait for the guest
    expect(q.nextDelivery(5, 1)).toBe(HOST_INPUT_QUANTUM)
    expect(q.nextDelivery(700, 1)).toBe(HOST_INPUT_QUANTUM) // the choice is kept
    expect(q.deliver(HOST_INPUT_QUANTUM, 2).bytes).toEqual(Uint8Array.of(1, 2))
    expect(q.nextDelivery(HOST_INPUT_QUANTUM, 1)).toBe(2 * HOST_INPUT_QUANTUM)
    expect(q.deliver(2 * HOST_INPUT_QUANTUM, 0).bytes).toEqual(Uint8Array.of(3))
    expect(q.nextDelivery(2 * HOST_INPUT_QUANTUM, 16)).toBeUndefined()
  })
})
