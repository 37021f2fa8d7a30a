/**
 * The real-time clock mode (`--clock realtime`): the PIT, the LAPIC timer and the RTC
 * follow the host's monotonic clock, read only through the host-input service. Here the
 * host is a fake clock driven by a generated schedule; the recording keeps the readings
 * that changed something (HostMonotonicClock), and replay and seek give them back at
 * the same points.
 */
import { Chunk, Effect, Stream } from "effect"
import fc from "fast-check"
import { describe, expect, it, vi } from "vitest"
import { assertProperty } from "../support/soakRuns.ts"
import { expectSameStates, sessionState } from "../support/sessionState.ts"
import type { MachineConfig } from "../../src/events/MachineConfig.ts"
import type { SeekableTrace } from "../../src/events/trace/traceIndex.ts"
import type { VmEvent } from "../../src/events/VmEvent.ts"
import { QueuedHostInput } from "../../src/qemu/hostInput.ts"
import { runMachine } from "../../src/qemu/runMachine.ts"
import { recordedInputs } from "../../src/replay/hostInput.ts"
import { replayEvents } from "../../src/replay/replay.ts"
import { ReplaySession } from "../../src/replay/session.ts"
import { guestConfig, guestImage, type InterruptGuest, irqchipModes } from "../support/interruptGuests.ts"
import { recordTraceBytes, openTraceBytes } from "../support/recordTrace.ts"

/** How far the fake host clock moves at each reading, in ns (used in turn): from 1 µs to 3 ms. */
const schedule = fc.array(fc.integer({ min: 1_000, max: 3_000_000 }), { minLength: 1, maxLength: 16 })

/** A host whose monotonic clock advances by the schedule's steps, one per reading; nothing typed. */
const fakeHost = (steps: ReadonlyArray<number>): QueuedHostInput => {
  let ns = 0
  let i = 0
  return new QueuedHostInput(undefined, undefined, () => (ns += steps[i++ % steps.length]!))
}

const realtime = (guest: InterruptGuest, irqchip: MachineConfig["irqchip"] & string): MachineConfig => ({
  ...guestConfig(guest, irqchip),
  clock: "realtime"
})

const record = (config: MachineConfig, image: Uint8Array, host: QueuedHostInput): VmEvent[] =>
  Effect.runSync(Stream.runCollect(runMachine(config, image, { input: host })).pipe(Effect.map(Chunk.toArray)))

const open = (bytes: Uint8Array): SeekableTrace => openTraceBytes(bytes, "realtime.vmrr")

const guests: ReadonlyArray<InterruptGuest> = ["pit", "lapic"]

describe.each(irqchipModes)("timers on the host clock, %s irqchip", (irqchip) => {
  it.each(guests)("guests/%s.bin: any host-clock schedule records, and replays event for event", async (guest) => {
    const config = realtime(guest, irqchip)
    const image = guestImage(guest)
    await assertProperty(
      schedule,
      (steps) => {
        const events = record(config, image, fakeHost(steps))
        const end = events.at(-1)!
        expect(end._tag === "RunEnd" && end.reason).toBe("debug-exit")
        const readings = events.filter((e) => e._tag === "HostMonotonicClock")
        expect(readings.length).toBeGreaterThan(0)
        // Delivered readings only move forwards; the timers fired on them.
        for (let i = 1; i < readings.length; i++) expect(readings[i]!._tag === "HostMonotonicClock" && readings[i]!.ns).toBeGreaterThan(readings[i - 1]!._tag === "HostMonotonicClock" ? readings[i - 1]!.ns : 0)
        expect(events.some((e) => e._tag === "TimerExpiry")).toBe(true)
        const replayed = Effect.runSync(replayEvents({ config, image }, Stream.fromIterable(events), recordedInputs(events)))
        expect(replayed.verified).toBe(events.length)
      },
      6
    )
  })

  it("seeking in a real-time recording gives the state of a straight replay; checkpoints change no event", async () => {
    const config = realtime("pit", irqchip)
    const image = guestImage("pit")
    await assertProperty(
      fc.tuple(schedule, fc.integer({ min: 1_000, max: 20_000 }), fc.array(fc.nat(), { minLength: 1, maxLength: 4 })),
      ([steps, every, picks]) => {
        const withCheckpoints = open(recordTraceBytes(config, image, every, fakeHost(steps)))
        const plain = open(recordTraceBytes(config, image, undefined, fakeHost(steps)))
        const events = (t: SeekableTrace) => t.index.chunkOffsets.flatMap((_, i) => t.chunk(i))
        expect(events(withCheckpoints)).toEqual(events(plain))
        expect(withCheckpoints.index.checkpointSeqs.length).toBeGreaterThan(0)
        const seeking = new ReplaySession(withCheckpoints)
        const straight = new ReplaySession(plain)
        expectSameStates(seeking, straight, picks.map((pick) => pick % seeking.eventCount))
        expect(seeking.ended?.reason).toBe("debug-exit")
      },
      3
    )
  })
})

describe("the record stays light", () => {
  it("a reading that reaches no deadline is not recorded: a compute loop under a far timer logs only its PIT accesses", () => {
    // mov al, 0x30; out 0x43, al (channel 0, mode 0); mov al, 0xff; out 0x40, al twice (65535 clocks, 55 ms);
    // mov cx, 0xffff; loop $; hlt
    const image = Uint8Array.from([0xb0, 0x30, 0xe6, 0x43, 0xb0, 0xff, 0xe6, 0x40, 0xe6, 0x40, 0xb9, 0xff, 0xff, 0xe2, 0xfe, 0xf4])
    const config: MachineConfig = { memoryMiB: 1, loadAddress: 0x7c00, entry: 0x7c00, mode: "real", instructionLimit: 1_000_000, clock: "realtime" }
    // The host clock moves 1 µs a reading: the 55 ms deadline is never reached while the loop runs.
    let reads = 0
    const host = new QueuedHostInput(undefined, undefined, () => ++reads * 1_000)
    const events = record(config, image, host)
    // 65535 iterations pass a look at the host clock every CLOCK_POLL_INSNS instructions.
    expect(reads).toBeGreaterThan(60)
    // Only the three accesses to the PIT's ports kept a reading (stamped before the OUT retires).
    expect(events.filter((e) => e._tag === "HostMonotonicClock").map((e) => e.time)).toEqual([1, 3, 4])
    expect(Effect.runSync(replayEvents({ config, image }, Stream.fromIterable(events), recordedInputs(events))).verified).toBe(events.length)
  })
})

describe("replay", () => {
  it("never reads the host's clocks: every reading comes from the recording", async () => {
    const config = realtime("lapic", "kernel")
    const image = guestImage("lapic")
    const trace = open(recordTraceBytes(config, image, 300, fakeHost([1_500_000])))
    const clocks = [vi.spyOn(process.hrtime, "bigint"), vi.spyOn(Date, "now"), vi.spyOn(performance, "now")]
    try {
      const session = new ReplaySession(trace)
      expect(session.replayToEnd()).toBe(trace.index.eventCount)
      expect(clocks.map((c) => c.mock.calls.length)).toEqual([0, 0, 0])
    } finally {
      vi.restoreAllMocks()
    }
  })
})
