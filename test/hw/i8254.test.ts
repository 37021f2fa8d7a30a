import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { insnsForTick, ticksAt } from "../../src/hw/clock.ts"
import {
  PIT_HZ,
  pitAdvance,
  pitCount,
  pitCreate,
  pitIoRead,
  pitIoWrite,
  pitNextDeadline,
  pitOut,
  type PitState
} from "../../src/hw/timer/i8254.ts"

/** Threads the PIT through guest accesses at given instruction counts, summing IRQ0 edges. */
class Pit {
  s: PitState
  edges = 0
  constructor(shift = 0) {
    this.s = pitCreate(shift)
  }
  out(port: number, v: number, now: number): this {
    const r = pitIoWrite(this.s, port, v, now)
    this.s = r.state
    this.edges += r.irq0Edges
    return this
  }
  in(port: number, now: number): number {
    const r = pitIoRead(this.s, port, now)
    this.s = r.state
    this.edges += r.irq0Edges
    return r.value
  }
  advance(now: number): number {
    const r = pitAdvance(this.s, now)
    this.s = r.state
    this.edges += r.irq0Edges
    return r.irq0Edges
  }
}

// Linux's PIT clockevent in periodic mode: LATCH = (1193182 + HZ/2) / HZ for HZ = 1000.
const LATCH = 1193

describe("8254 clock", () => {
  it("runs at 1.193182 MHz of virtual time: with shift 0 one instruction is 1 ns", () => {
    expect(ticksAt(1_000_000_000, 0, PIT_HZ)).toBe(1_193_182)
    expect(ticksAt(999_999_999, 0, PIT_HZ)).toBe(1_193_181)
    // -icount shift 3: 8 ns per instruction.
    expect(ticksAt(125_000_000, 3, PIT_HZ)).toBe(1_193_182)
  })

  it("counts ticks exactly, in doubles or in BigInt", () => {
    const exact = (now: number, shift: number) => Number(((BigInt(now) << BigInt(shift)) * BigInt(PIT_HZ)) / 1_000_000_000n)
    fc.assert(
      fc.property(fc.nat(10), fc.constantFrom(2 ** 53 / PIT_HZ, 2 ** 40, 2 ** 60), fc.double({ min: 0, max: 1, noNaN: true }), (shift, range, at) => {
        // From 0 to past where the product leaves the safe integers, often just before a tick.
        let now = Math.floor((range / 2 ** shift) * at)
        if (at < 0.5) now = Math.max(0, Math.ceil((ticksAt(now, shift, PIT_HZ) * 1e9) / PIT_HZ / 2 ** shift) - 1)
        expect(ticksAt(now, shift, PIT_HZ)).toBe(exact(now, shift))
      }),
      { numRuns: 2000 }
    )
    expect(Object.is(ticksAt(-0, 0, PIT_HZ), 0)).toBe(true)
    expect(() => ticksAt(0.5, 0, PIT_HZ)).toThrow(RangeError)
  })

  it("resets as QEMU does: every channel in mode 3 with count 65536, channel 0 already ticking", () => {
    const s = pitCreate(0)
    expect(s.channels.map((c) => [c.mode, c.count])).toEqual([[3, 65536], [3, 65536], [3, 65536]])
    expect(pitNextDeadline(s)).toBe(insnsForTick(65536, 0, PIT_HZ))
  })
})

describe("8254 mode 2 (rate generator), as Linux programs channel 0", () => {
  const periodic = (): Pit => new Pit().out(0x43, 0x34, 0).out(0x40, LATCH & 0xff, 0).out(0x40, LATCH >> 8, 0)

  it("raises IRQ0 every 1193 ticks: the first edge at instruction 999848 exactly", () => {
    const p = periodic()
    // 1193 ticks = 1193e9 / 1193182 ns = 999847.47 ns, so the edge is seen at instruction 999848.
    expect(pitNextDeadline(p.s)).toBe(999_848)
    expect(p.advance(999_847)).toBe(0)
    expect(p.advance(999_848)).toBe(1)
    expect(pitNextDeadline(p.s)).toBe(insnsForTick(2 * LATCH, 0, PIT_HZ))
    expect(p.advance(10_000_000)).toBe(9) // 10 ms = 11931 ticks: edges at 1193k, k = 2..10
  })

  it("counts down from the reload value and OUT is low only on the clock where the count is 1", () => {
    const p = periodic()
    p.advance(insnsForTick(100, 0, PIT_HZ))
    expect(pitCount(p.s, 0)).toBe(LATCH - 100)
    p.advance(insnsForTick(LATCH - 1, 0, PIT_HZ))
    expect(pitCount(p.s, 0)).toBe(1)
    expect(pitOut(p.s, 0)).toBe(false)
    p.advance(insnsForTick(LATCH, 0, PIT_HZ))
    expect(pitCount(p.s, 0)).toBe(LATCH)
    expect(pitOut(p.s, 0)).toBe(true)
  })

  it("a counter latch (control word 0x00) freezes the value read until both bytes are read", () => {
    const p = periodic()
    const t = insnsForTick(300, 0, PIT_HZ)
    p.out(0x43, 0x00, t)
    const later = insnsForTick(700, 0, PIT_HZ)
    expect(p.in(0x40, later) | (p.in(0x40, later) << 8)).toBe(LATCH - 300)
    // Unlatched, lo/hi reads follow the live count.
    expect(p.in(0x40, later) | (p.in(0x40, later) << 8)).toBe(LATCH - 700)
  })

  it("read-back latches status then count: OUT, RW = 3, mode 2, binary", () => {
    const p = periodic()
    const t = insnsForTick(10, 0, PIT_HZ)
    p.out(0x43, 0xc2, t) // read-back, count and status, channel 0
    expect(p.in(0x40, t)).toBe(0x80 | (3 << 4) | (2 << 1))
    expect(p.in(0x40, t) | (p.in(0x40, t) << 8)).toBe(LATCH - 10)
    // Status only (bit 5 set = don't latch count).
    p.out(0x43, 0xe2, t)
    expect(p.in(0x40, t)).toBe(0xb4)
  })
})

describe("8254 other modes and access modes", () => {
  it("mode 0 on channel 2, as Linux calibrates: OUT2 (port 0x61 bit 5) goes high at terminal count", () => {
    const p = new Pit()
    p.out(0x61, (p.in(0x61, 0) & ~0x02) | 0x01, 0) // gate high, speaker off
    p.out(0x43, 0xb0, 0).out(0x42, 0xff, 0).out(0x42, 0xff, 0)
    expect(p.in(0x61, 0) & 0x21).toBe(0x01)
    expect(p.in(0x61, insnsForTick(0xfffe, 0, PIT_HZ)) & 0x20).toBe(0)
    expect(p.in(0x61, insnsForTick(0xffff, 0, PIT_HZ)) & 0x20).toBe(0x20)
    // The count wraps on past zero; OUT stays high.
    expect(p.in(0x61, insnsForTick(0x10005, 0, PIT_HZ)) & 0x20).toBe(0x20)
    p.out(0x43, 0x80, insnsForTick(0x10005, 0, PIT_HZ))
    expect(p.in(0x42, 0x10005 * 1000) | (p.in(0x42, 0x10005 * 1000) << 8)).toBe(0xfffa)
  })

  it("mode 0 on channel 0 raises one IRQ0 edge, at terminal count", () => {
    const p = new Pit().out(0x43, 0x30, 0).out(0x40, 50, 0).out(0x40, 0, 0)
    expect(pitOut(p.s, 0)).toBe(false)
    expect(pitNextDeadline(p.s)).toBe(insnsForTick(50, 0, PIT_HZ))
    p.advance(1_000_000_000)
    expect(p.edges).toBe(1)
    expect(pitNextDeadline(p.s)).toBeUndefined()
  })

  it("mode 4 strobes OUT low for one clock at count 0: the rising edge is one clock later", () => {
    const p = new Pit().out(0x43, 0x38, 0).out(0x40, 20, 0).out(0x40, 0, 0)
    expect(pitNextDeadline(p.s)).toBe(insnsForTick(21, 0, PIT_HZ))
    p.advance(insnsForTick(20, 0, PIT_HZ))
    expect(pitOut(p.s, 0)).toBe(false)
    expect(p.advance(insnsForTick(21, 0, PIT_HZ))).toBe(1)
  })

  it("mode 3 (square wave) is high for the first half of each period, low for the second", () => {
    const p = new Pit().out(0x43, 0x36, 0).out(0x40, 11, 0).out(0x40, 0, 0)
    const outAt = (t: number): boolean => (p.advance(insnsForTick(t, 0, PIT_HZ)), pitOut(p.s, 0))
    expect([0, 5, 6, 10, 11, 16, 17].map(outAt)).toEqual([true, true, false, false, true, true, false])
    expect(p.edges).toBe(1)
  })

  it("LSB-only and MSB-only access modes read and write one byte", () => {
    const p = new Pit().out(0x43, 0x50, 0).out(0x41, 0x80, 0) // channel 1, LSB, mode 0
    expect(p.in(0x41, insnsForTick(0x10, 0, PIT_HZ))).toBe(0x70)
    p.out(0x43, 0x60, 0).out(0x41, 0x02, 0) // MSB only: count 0x200
    expect(p.s.channels[1].count).toBe(0x200)
  })

  it("BCD counting reads and writes decimal digits", () => {
    const p = new Pit().out(0x43, 0x31, 0).out(0x40, 0x00, 0).out(0x40, 0x10, 0) // 1000 in BCD
    const t = insnsForTick(1, 0, PIT_HZ)
    p.out(0x43, 0x00, t)
    expect(p.in(0x40, t) | (p.in(0x40, t) << 8)).toBe(0x0999)
  })

  it("a rising gate restarts channel 2 in mode 2; port 0x61 keeps the speaker bit", () => {
    const p = new Pit().out(0x43, 0xb4, 0).out(0x42, 100, 0).out(0x42, 0, 0)
    p.out(0x61, 0x03, insnsForTick(40, 0, PIT_HZ))
    expect(p.in(0x61, insnsForTick(40, 0, PIT_HZ)) & 0x03).toBe(0x03)
    p.out(0x43, 0x80, insnsForTick(50, 0, PIT_HZ))
    expect(p.in(0x42, 0) | (p.in(0x42, 0) << 8)).toBe(90)
  })
})

describe("8254 timer properties", () => {
  it("mode 2 with period N gives exactly floor(elapsed / N) IRQ0 edges, however time is split", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 2, max: 0xffff }),
        fc.integer({ min: 0, max: 6 }),
        fc.integer({ min: 0, max: 5_000_000 }),
        fc.array(fc.integer({ min: 1, max: 3_000_000 }), { minLength: 1, maxLength: 20 }),
        (n, shift, start, steps) => {
          const p = new Pit(shift)
          p.advance(start)
          p.edges = 0
          p.out(0x43, 0x34, start).out(0x40, n & 0xff, start).out(0x40, n >> 8, start)
          let now = start
          for (const step of steps) p.advance((now += step))
          const elapsed = ticksAt(now, shift, PIT_HZ) - ticksAt(start, shift, PIT_HZ)
          expect(p.edges).toBe(Math.floor(elapsed / n))
        }
      )
    )
  })

  it("nextDeadline is never in the past, and advancing to it (not one before) fires", () => {
    fc.assert(
      fc.property(
        fc.constantFrom(0x30, 0x34, 0x36, 0x38),
        fc.integer({ min: 2, max: 0xffff }),
        fc.integer({ min: 0, max: 6 }),
        fc.array(fc.integer({ min: 0, max: 2_000_000 }), { maxLength: 10 }),
        (control, n, shift, steps) => {
          const p = new Pit(shift).out(0x43, control, 0).out(0x40, n & 0xff, 0).out(0x40, n >> 8, 0)
          let now = 0
          for (const step of steps) {
            const d = pitNextDeadline(p.s)
            if (d === undefined) break
            expect(d).toBeGreaterThan(now)
            const target = Math.min(d - 1, now + step)
            expect(p.advance(target)).toBe(0)
            now = target
            if (target === d - 1) {
              expect(p.advance(d)).toBe(1)
              now = d
            }
          }
        }
      )
    )
  })
})
