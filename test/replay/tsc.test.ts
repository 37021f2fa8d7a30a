/**
 * The guest's TSC through RDTSC, RDMSR and WRMSR of IA32_TSC (0x10): in virtual mode it
 * counts retired instructions; with `--tsc realtime` every read, and the write (which
 * sets the TSC offset from the counter it replaces, as KVM's kvm_write_tsc), takes the
 * host's counter through the host-input service, recorded as HostTsc. Replay and seeks
 * (from checkpoints taken between any two instructions) read the recorded values.
 */
import { Chunk, Effect, Stream } from "effect"
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import type { SeekableTrace } from "../../src/events/trace/traceIndex.ts"
import type { MachineConfig } from "../../src/events/MachineConfig.ts"
import type { RunEnd, VmEvent } from "../../src/events/VmEvent.ts"
import { QueuedHostInput } from "../../src/qemu/hostInput.ts"
import { runMachine } from "../../src/qemu/runMachine.ts"
import { recordedInputs } from "../../src/replay/hostInput.ts"
import { replayEvents } from "../../src/replay/replay.ts"
import { ReplaySession } from "../../src/replay/session.ts"
import { le32, pm32Config } from "../support/programs.ts"
import { recordTraceBytes, openTraceBytes } from "../support/recordTrace.ts"

/**
 * t=0 mov ecx, 0x10; t=1 rdmsr; t=2 mov ebx, eax; t=3 mov eax, value; t=4 xor edx, edx;
 * t=5 wrmsr; t=6 rdtsc; t=7 mov esi, eax; t=8 rdmsr; t=9 hlt
 */
const tscProgram = (value: number): Uint8Array =>
  Uint8Array.from([0xb9, ...le32(0x10), 0x0f, 0x32, 0x89, 0xc3, 0xb8, ...le32(value), 0x31, 0xd2, 0x0f, 0x30, 0x0f, 0x31, 0x89, 0xc6, 0x0f, 0x32, 0xf4])

const written = fc.integer({ min: 0, max: 0x7fff_ffff })

const run = (config: MachineConfig, image: Uint8Array, input?: QueuedHostInput): VmEvent[] =>
  Effect.runSync(Stream.runCollect(runMachine(config, image, input === undefined ? {} : { input })).pipe(Effect.map(Chunk.toArray)))

const endOf = (events: ReadonlyArray<VmEvent>): RunEnd => {
  const end = events.at(-1)!
  if (end._tag !== "RunEnd") throw new Error("the run did not end")
  return end
}

const open = (bytes: Uint8Array): SeekableTrace => openTraceBytes(bytes, "tsc.vmrr")

/** Seeks into the trace (from its checkpoints, which may sit between any two instructions) and back to the end. */
const seekAndCompare = (trace: SeekableTrace, end: RunEnd): void => {
  const session = new ReplaySession(trace)
  session.seekTime(8)
  expect(session.registers().regs.rsi).toBe(end.registers.esi)
  session.seekTime(2)
  expect(session.registers().regs.rax).toBe(end.registers.ebx)
  session.replayToEvent(session.eventCount - 1)
  expect(session.registers().regs.rax).toBe(end.registers.eax)
}

describe("the TSC in virtual time", () => {
  it("counts instructions; WRMSR sets the offset so that later reads go on from the written value", () => {
    fc.assert(
      fc.property(written, fc.integer({ min: 1, max: 4 }), (value, every) => {
        const config = pm32Config({ memoryMiB: 4 })
        const image = tscProgram(value)
        const events = run(config, image)
        const end = endOf(events)
        expect([end.registers.ebx, end.registers.esi, end.registers.eax]).toEqual([1, value + 1, value + 3])
        expect(events.some((e) => e._tag === "HostTsc")).toBe(false)
        expect(Effect.runSync(replayEvents({ config, image }, Stream.fromIterable(events))).verified).toBe(events.length)
        seekAndCompare(open(recordTraceBytes(config, image, every)), end)
      }),
      { numRuns: 20 }
    )
  })
})

describe("the TSC in real time", () => {
  it("RDMSR reads the host's counter as RDTSC does, and WRMSR offsets it; replay and seek read the recorded counter", () => {
    fc.assert(
      fc.property(written, fc.array(fc.integer({ min: 0, max: 1_000_000 }), { minLength: 4, maxLength: 4 }), fc.integer({ min: 1, max: 4 }), (value, steps, every) => {
        const config = pm32Config({ memoryMiB: 4, tsc: "realtime" })
        const image = tscProgram(value)
        const host = () => {
          let counter = 5_000_000
          let i = 0
          return new QueuedHostInput(undefined, () => (counter += steps[i++ % steps.length]!))
        }
        const events = run(config, image, host())
        const readings = events.flatMap((e) => (e._tag === "HostTsc" ? [e.value] : []))
        expect(readings).toHaveLength(4)
        const [rdmsr, wrmsr, rdtsc, rdmsr2] = readings as [number, number, number, number]
        const end = endOf(events)
        expect([end.registers.ebx, end.registers.esi, end.registers.eax]).toEqual([rdmsr, value + rdtsc - wrmsr, value + rdmsr2 - wrmsr])
        expect(Effect.runSync(replayEvents({ config, image }, Stream.fromIterable(events), recordedInputs(events))).verified).toBe(events.length)
        const trace = open(recordTraceBytes(config, image, every, host()))
        expect(trace.index.checkpointSeqs.length).toBeGreaterThan(0)
        seekAndCompare(trace, end)
      }),
      { numRuns: 20 }
    )
  })
})
