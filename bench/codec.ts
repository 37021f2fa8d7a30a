/**
 * The cost of the trace's event encoding: events per second through the public encoder
 * (`TraceEncoder.chunk`: packing, framing, checksum, index) and decoder (`TraceDecoder`,
 * chunk by chunk as `openTrace` reads), and bytes per event on disk. Times are the
 * process's CPU time, best of a few runs, so other processes on the machine inflate
 * them less. `npx tsx bench/codec.ts` measures the events of the record/replay
 * benchmark's guest (a port I/O loop) and a mix of kinds whose fields keep changing;
 * `measureCodec` is for other benchmarks. `measurePacking` measures the packing alone:
 * of event objects (`packEvents`) and of the event log's raw records (`packRawEvents`,
 * which recording uses).
 */
import type { MachineConfig } from "../src/events/MachineConfig.ts"
import { rawChunkOf } from "../src/events/rawEvents.ts"
import type { VmEvent } from "../src/events/VmEvent.ts"
import { packEvents, packRawEvents } from "../src/events/trace/packedEvents.ts"
import { encodeTrace, TraceDecoder, TraceEncoder } from "../src/events/trace/codec.ts"
import { memorySource } from "../src/events/trace/framing.ts"
import { makeTraceHeader } from "../src/events/trace/schema.ts"
import { CHUNK_EVENTS } from "../src/qemu/runMachine.ts"
const config: MachineConfig = { memoryMiB: 2, loadAddress: 0x7c00, entry: 0x7c00, mode: "real", instructionLimit: 1_000_000 }
const header = { config, image: new Uint8Array(16) }

export interface CodecMeasurement {
  readonly encodeEventsPerSecond: number
  readonly decodeEventsPerSecond: number
  readonly bytesPerEvent: number
}

const chunksOf = (events: ReadonlyArray<VmEvent>): Array<ReadonlyArray<VmEvent>> => {
  const chunks: Array<ReadonlyArray<VmEvent>> = []
  for (let i = 0; i < events.length; i += CHUNK_EVENTS) chunks.push(events.slice(i, i + CHUNK_EVENTS))
  return chunks
}

/** The least CPU time `f` took in `runs` runs, in seconds: the first runs also warm the JIT. */
const fastest = (runs: number, f: () => void): number => {
  let best = Number.POSITIVE_INFINITY
  for (let i = 0; i < runs; i++) {
    const start = process.cpuUsage()
    f()
    const used = process.cpuUsage(start)
    best = Math.min(best, (used.user + used.system) / 1e6)
  }
  return best
}

/** Encodes `events` (consecutive seqs) in chunks as a recording does, and decodes them back. */
export const measureCodec = (events: ReadonlyArray<VmEvent>, runs = 5): CodecMeasurement => {
  const chunks = chunksOf(events)
  const headerFrame = makeTraceHeader(header)
  let eventBytes = 0
  const encodeTime = fastest(runs, () => {
    const encoder = new TraceEncoder()
    encoder.start(headerFrame)
    eventBytes = 0
    for (const chunk of chunks) eventBytes += encoder.chunk(chunk)!.length
    encoder.end()
  })
  const trace = encodeTrace(header, chunks)
  const decodeTime = fastest(runs, () => {
    const decoder = new TraceDecoder(memorySource(trace))
    decoder.header()
    for (let step = decoder.next(); step._tag !== "End"; step = decoder.next()) {
      if (step._tag === "Corrupt") throw step.error
    }
  })
  return {
    encodeEventsPerSecond: events.length / encodeTime,
    decodeEventsPerSecond: events.length / decodeTime,
    bytesPerEvent: eventBytes / events.length
  }
}

export interface PackingMeasurement {
  /** `packEvents` of the chunks' event objects. */
  readonly packEventsPerSecond: number
  /** `packRawEvents` of the same chunks as the event log's records. */
  readonly packRawEventsPerSecond: number
}


/** Packs `events` (consecutive seqs) in chunks, from objects and from raw records: the packing alone, no framing. */
export const measurePacking = (events: ReadonlyArray<VmEvent>, runs = 20): PackingMeasurement => {
  const chunks = chunksOf(events)
  const rawChunks = chunks.map(rawChunkOf)
  let sink = 0
  // In turns, so that what else the machine runs weighs on both alike.
  let objectTime = Number.POSITIVE_INFINITY
  let rawTime = Number.POSITIVE_INFINITY
  for (let i = 0; i < runs; i++) {
    objectTime = Math.min(objectTime, fastest(1, () => {
      for (const chunk of chunks) sink += packEvents(chunk).bytes.length
    }))
    rawTime = Math.min(rawTime, fastest(1, () => {
      for (const chunk of rawChunks) sink -= packRawEvents(chunk).bytes.length
    }))
  }
  if (sink !== 0) throw new Error("packing raw records gave other bytes than packing the events")
  return { packEventsPerSecond: events.length / objectTime, packRawEventsPerSecond: events.length / rawTime }
}

/** What the benchmark guest's `out 0x80, al; loop` records per iteration. */
export const ioLoopEvents = (iterations: number): Array<VmEvent> => {
  const events: Array<VmEvent> = []
  let seq = 0
  for (let i = 0; i < iterations; i++) {
    const time = 2 * i + 2
    events.push(
      { _tag: "VmExit", seq: seq++, vcpu: 0, time, reason: 30, qualification: 0x800040, rip: 0x100005, instructionLength: 2, handledIn: "userspace" },
      { _tag: "Pio", seq: seq++, vcpu: 0, time, direction: "out", port: 0x80, size: 1, count: 1, values: [0] },
      { _tag: "UserspaceExit", seq: seq++, vcpu: 0, time, exitReason: 2 },
      { _tag: "Unassigned", seq: seq++, vcpu: 0, time, space: "io", address: 0x80, size: 1, write: true },
      { _tag: "VmEntry", seq: seq++, vcpu: 0, time, rip: 0x100007 }
    )
  }
  return events
}

/** Eight kinds in turn, with fields that change from one event to the next. */
export const mixedEvents = (count: number): Array<VmEvent> =>
  Array.from({ length: count }, (_, seq): VmEvent => {
    const common = { seq, vcpu: 0, time: seq * 7 }
    switch (seq % 8) {
      case 0: return { _tag: "VmExit", ...common, reason: seq % 3 === 0 ? 48 : 30, qualification: seq * 16, ...(seq % 3 === 0 ? { guestPhysical: 0xfee00000 + (seq & 0xff0) } : {}), rip: 0x7c00 + (seq & 0xff), instructionLength: 2, handledIn: "userspace" }
      case 1: return { _tag: "Mmio", ...common, op: seq % 2 === 0 ? "read" : "write", gpa: 0xfee00000 + (seq & 0xf0), length: 4, value: seq * 2654435761 >>> 0 }
      case 2: return { _tag: "Pio", ...common, direction: "in", port: 0x3f8 + (seq & 7), size: 1, count: 1, values: [seq & 0xff] }
      case 3: return { _tag: "DeviceOutput", ...common, device: "serial0", bytes: Uint8Array.of(seq & 0x7f) }
      case 4: return { _tag: "InjVirq", ...common, vector: 0x20 + (seq & 15), source: "pic" }
      case 5: return { _tag: "PicSetIrq", ...common, irq: seq & 15, level: (seq & 16) !== 0, imr: 0xb8, elcr: 0, intr: true, hostedIn: "kernel" }
      case 6: return { _tag: "UserspaceExit", ...common, exitReason: 2, detail: seq % 5 === 0 ? "io" : "mmio" }
      default: return { _tag: "VmEntry", ...common, rip: 0x7c00 + (seq & 0xff) }
    }
  })

const report = (name: string, m: CodecMeasurement) =>
  console.log(`${name}: ${m.bytesPerEvent.toFixed(2)} bytes/event; encode ${(1e9 / m.encodeEventsPerSecond).toFixed(0)} ns/event (${(m.encodeEventsPerSecond / 1e6).toFixed(1)} M/s), decode ${(1e9 / m.decodeEventsPerSecond).toFixed(0)} ns/event (${(m.decodeEventsPerSecond / 1e6).toFixed(1)} M/s)`)

const reportPacking = (name: string, m: PackingMeasurement) =>
  console.log(`${name}: pack objects ${(1e9 / m.packEventsPerSecond).toFixed(0)} ns/event (${(m.packEventsPerSecond / 1e6).toFixed(1)} M/s), pack raw records ${(1e9 / m.packRawEventsPerSecond).toFixed(0)} ns/event (${(m.packRawEventsPerSecond / 1e6).toFixed(1)} M/s), ${(m.packRawEventsPerSecond / m.packEventsPerSecond).toFixed(2)}×`)

if (import.meta.url === `file://${process.argv[1]}`) {
  report("port I/O loop (1M events)", measureCodec(ioLoopEvents(200_000)))
  reportPacking("port I/O loop (1M events)", measurePacking(ioLoopEvents(200_000)))
  report("mixed kinds, changing fields (1M events)", measureCodec(mixedEvents(1_000_000)))
  reportPacking("mixed kinds, changing fields (1M events)", measurePacking(mixedEvents(1_000_000)))
}
