import { describe, expect, it } from "@effect/vitest"
import { FastCheck as fc } from "effect"
import { EventLog } from "../../src/events/EventLog.ts"
import { LOG_WORDS, rawEvents, releaseRawChunk, takeWords } from "../../src/events/rawEvents.ts"
import type { VmEvent } from "../../src/events/VmEvent.ts"

const u32 = fc.nat({ max: 0xffffffff })
const time = fc.nat({ max: Number.MAX_SAFE_INTEGER })
const size = fc.constantFrom(1 as const, 2 as const, 4 as const)

/**
 * Each kind with a writer of its own: the arguments, the call, and the event `push`
 * would log for the same values.
 */
const written = fc.oneof(
  fc.tuple(fc.nat({ max: 255 }), time, u32).map(([vcpu, t, rip]) => ({
    write: (log: EventLog) => log.vmEntry(vcpu, t, rip),
    event: (seq: number): VmEvent => ({ _tag: "VmEntry", seq, vcpu, time: t, rip })
  })),
  fc.tuple(fc.nat({ max: 255 }), time, fc.nat({ max: 0xffff }), u32, fc.option(u32, { nil: undefined }), u32, fc.nat({ max: 15 }), fc.constantFrom("kernel" as const, "userspace" as const))
    .map(([vcpu, t, reason, qualification, gpa, rip, instructionLength, handledIn]) => ({
      write: (log: EventLog) => log.vmExit(vcpu, t, reason, qualification, gpa, rip, instructionLength, handledIn),
      event: (seq: number): VmEvent => gpa === undefined
        ? { _tag: "VmExit", seq, vcpu, time: t, reason, qualification, rip, instructionLength, handledIn }
        : { _tag: "VmExit", seq, vcpu, time: t, reason, qualification, guestPhysical: gpa, rip, instructionLength, handledIn }
    })),
  fc.tuple(fc.nat({ max: 255 }), time, fc.constantFrom("in" as const, "out" as const), fc.nat({ max: 0xffff }), size, u32).map(([vcpu, t, direction, port, sz, value]) => ({
    write: (log: EventLog) => log.pio(vcpu, t, direction, port, sz, value),
    event: (seq: number): VmEvent => ({ _tag: "Pio", seq, vcpu, time: t, direction, port, size: sz, count: 1, values: [value] })
  })),
  fc.tuple(fc.nat({ max: 255 }), time, fc.constantFrom("read" as const, "write" as const, "unsatisfied-read" as const), u32, size, u32).map(([vcpu, t, op, gpa, length, value]) => ({
    write: (log: EventLog) => log.mmio(vcpu, t, op, gpa, length, value),
    event: (seq: number): VmEvent => ({ _tag: "Mmio", seq, vcpu, time: t, op, gpa, length, value })
  })),
  fc.tuple(fc.nat({ max: 255 }), time, fc.nat({ max: 255 }), fc.option(fc.string(), { nil: undefined })).map(([vcpu, t, exitReason, detail]) => ({
    write: (log: EventLog) => log.userspaceExit(vcpu, t, exitReason, detail),
    event: (seq: number): VmEvent => detail === undefined
      ? { _tag: "UserspaceExit", seq, vcpu, time: t, exitReason }
      : { _tag: "UserspaceExit", seq, vcpu, time: t, exitReason, detail }
  })),
  fc.tuple(fc.nat({ max: 255 }), time, fc.constantFrom("io" as const, "mmio" as const), u32, size, fc.boolean()).map(([vcpu, t, space, address, sz, write]) => ({
    write: (log: EventLog) => log.unassigned(vcpu, t, space, address, sz, write),
    event: (seq: number): VmEvent => ({ _tag: "Unassigned", seq, vcpu, time: t, space, address, size: sz, write })
  }))
)

describe("the event log", () => {
  it("writes the records of the exit kinds as pushing the same events would, mixed with pushed events", () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(written, fc.boolean()), { minLength: 1, maxLength: 60 }), fc.nat({ max: 1000 }), (entries, first) => {
        const fast = new EventLog()
        const pushed = new EventLog()
        fast.nextSeq = pushed.nextSeq = first
        const events = entries.map(([entry, viaPush], i) => {
          const event = entry.event(first + i)
          if (viaPush) fast.push(event)
          else entry.write(fast)
          pushed.push(event)
          return event
        })
        expect(fast.pending).toBe(events.length)
        const a = fast.drain()
        const b = pushed.drain()
        expect(a.firstSeq).toBe(first)
        expect([...a.words]).toEqual([...b.words])
        expect(a.objects).toEqual(b.objects)
        expect(rawEvents(a)).toEqual(events)
      })
    )
  })

  it("starts a chunk after each drain, with the seqs going on", () => {
    const log = new EventLog()
    log.vmEntry(0, 1, 0x7c00)
    log.vmEntry(0, 2, 0x7c02)
    const first = log.drain()
    log.userspaceExit(0, 3, 2, "port 0x3f8")
    const second = log.drain()
    expect([first.firstSeq, first.count, second.firstSeq, second.count]).toEqual([0, 2, 2, 1])
    expect(rawEvents(second)).toEqual([{ _tag: "UserspaceExit", seq: 2, vcpu: 0, time: 3, exitReason: 2, detail: "port 0x3f8" }])
    // The first chunk's buffer is its own: the log writes on into another.
    expect(rawEvents(first).map((e) => e.time)).toEqual([1, 2])
  })

  it("grows past its buffer without losing a record", () => {
    const log = new EventLog()
    const n = 70_000 // nine words each: more than LOG_WORDS
    expect(n * 9).toBeGreaterThan(LOG_WORDS)
    for (let i = 0; i < n; i++) log.pio(0, i, "out", 0x80, 1, i)
    const events = log.drainEvents()
    expect(events.length).toBe(n)
    expect(events[n - 1]).toEqual({ _tag: "Pio", seq: n - 1, vcpu: 0, time: n - 1, direction: "out", port: 0x80, size: 1, count: 1, values: [n - 1] })
  })

  it("refuses an event pushed with another seq than the next, and a value outside its schema", () => {
    const log = new EventLog()
    expect(() => log.push({ _tag: "VmEntry", seq: 5, vcpu: 0, time: 0, rip: 0 })).toThrow(/seq 5, expected 0/)
    expect(() => log.push({ _tag: "InjVirq", seq: 0, vcpu: 0, time: 0, vector: 32, source: "nmi" as never })).toThrow(/InjVirq.source = nmi/)
  })

  it("hands a full buffer over with its chunk and reuses it once given back; copies a small chunk", () => {
    const log = new EventLog()
    const fill = (time: number) => {
      // Four words each: past a quarter of the buffer, which a drain hands over.
      for (let i = 0; i < LOG_WORDS / 16 + 1; i++) log.vmEntry(0, time, 0)
      return log.drain()
    }
    const out = fill(0)
    const kept = fill(1)
    expect(kept.words.buffer).not.toBe(out.words.buffer)
    releaseRawChunk(out)
    expect(takeWords(1).buffer).toBe(out.words.buffer)
    expect(rawEvents(kept)[0]!.time).toBe(1)
    // A few events are copied out: a reader keeping many small chunks keeps no buffer each.
    log.vmEntry(0, 2, 0)
    const small = log.drain()
    expect(small.words.buffer.byteLength).toBe(4 * Float64Array.BYTES_PER_ELEMENT)
    expect(log.words.buffer).not.toBe(small.words.buffer)
  })
})
