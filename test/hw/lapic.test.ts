import fc from "fast-check"
import { describe, expect, it } from "vitest"
import type { ApicMessage } from "../../src/hw/intc/ioapic.ts"
import {
  lapicAcceptIrq,
  lapicAcceptsPicInterrupts,
  lapicAcknowledge,
  lapicAdvance,
  lapicCreate,
  lapicDivisor,
  lapicLint,
  lapicMatchDest,
  lapicNextDeadline,
  lapicPendingVector,
  lapicRead,
  lapicWrite,
  type LapicState,
  type LapicWriteResult
} from "../../src/hw/intc/lapic.ts"

const fixed = (vector: number, level = false): ApicMessage => ({ vector, deliveryMode: 0, logical: false, dest: 0, level, pin: -1 })
const hasIrr = (s: LapicState, v: number): boolean => ((s.irr[v >> 5]! >>> (v & 31)) & 1) === 1

class Apic {
  s: LapicState
  last: LapicWriteResult | undefined
  constructor(shift = 0, enable = true) {
    this.s = lapicCreate({ shift })
    if (enable) this.w(0xf0, 0x1ff) // Linux: SVR = APIC_SPIV_APIC_ENABLED | SPURIOUS_APIC_VECTOR
  }
  r(off: number, now = 0): number {
    const res = lapicRead(this.s, off, 4, now)
    this.s = res.state
    return res.value
  }
  w(off: number, v: number, now = 0): this {
    this.last = lapicWrite(this.s, off, 4, v, now)
    this.s = this.last.state
    return this
  }
  accept(m: ApicMessage): this {
    this.s = lapicAcceptIrq(this.s, m)
    return this
  }
  ack(): number {
    const r = lapicAcknowledge(this.s)
    this.s = r.state
    return r.vector
  }
}

describe("local APIC registers", () => {
  it("reset: version 0x50014, SVR 0xff, LVTs masked except the BSP's LINT0 (ExtINT), DFR flat", () => {
    const a = new Apic(0, false)
    expect(a.r(0x30)).toBe(0x00050014)
    expect(a.r(0xf0)).toBe(0xff)
    expect([0x320, 0x330, 0x340, 0x360, 0x370].map((o) => a.r(o))).toEqual(new Array(5).fill(0x10000))
    expect(a.r(0x350)).toBe(0x700)
    expect(a.r(0xe0)).toBe(0xffffffff)
    expect(lapicAcceptsPicInterrupts(a.s)).toBe(true)
    a.w(0x350, 0x10700)
    expect(lapicAcceptsPicInterrupts(a.s)).toBe(false)
  })

  it("ID, TPR, LDR keep their defined bits; only 4-byte aligned writes count; narrow reads work", () => {
    const a = new Apic()
    a.w(0x20, 0x03ffffff).w(0x80, 0x1ff).w(0xd0, 0xffffffff)
    expect([a.r(0x20), a.r(0x80), a.r(0xd0)]).toEqual([0x03000000, 0xff, 0xff000000])
    a.s = lapicWrite(a.s, 0x80, 1, 0x10, 0).state
    expect(a.r(0x80)).toBe(0xff)
    expect(lapicRead(a.s, 0x23, 1, 0).value).toBe(0x03)
  })

  it("fixed interrupts are dropped while software disabled, and LVTs cannot be unmasked", () => {
    const a = new Apic(0, false).accept(fixed(0x40))
    expect(lapicPendingVector(a.s)).toBe(-1)
    a.w(0x320, 0xec)
    expect(a.r(0x320)).toBe(0x100ec)
    a.w(0xf0, 0x1ff).accept(fixed(0x40))
    expect(lapicPendingVector(a.s)).toBe(0x40)
    a.w(0xf0, 0xff)
    expect(a.r(0x350) & 0x10000).toBe(0x10000)
  })
})

describe("local APIC priority and EOI", () => {
  it("delivers the highest IRR vector whose class is above PPR", () => {
    const a = new Apic().accept(fixed(0x31)).accept(fixed(0x51))
    expect(lapicPendingVector(a.s)).toBe(0x51)
    a.w(0x80, 0x60)
    expect(lapicPendingVector(a.s)).toBe(-1)
    expect(a.r(0xa0)).toBe(0x60)
    a.w(0x80, 0x40)
    expect(a.ack()).toBe(0x51)
    expect(a.r(0xa0)).toBe(0x50) // PPR = ISRV class above TPR
    expect(lapicPendingVector(a.s)).toBe(-1) // 0x31 is below
    a.accept(fixed(0x5f))
    expect(lapicPendingVector(a.s)).toBe(-1) // same class as in service
    a.accept(fixed(0x61))
    expect(a.ack()).toBe(0x61)
    expect([a.r(0x100 + 0x20), a.r(0x100 + 0x30)]).toEqual([1 << 0x11, 1 << 0x01]) // 0x51 and 0x61 in service
  })

  it("ISR, IRR and TMR read as eight dwords; EOI retires the highest ISR bit and reports TMR", () => {
    const a = new Apic().accept(fixed(0x41, true)).accept(fixed(0x81))
    expect(a.r(0x200 + 0x20)).toBe(1 << 1)
    expect(a.r(0x180 + 0x20)).toBe(1 << 1)
    expect(a.ack()).toBe(0x81)
    expect(a.ack()).toBe(-1) // 0x41 is blocked by 0x81 in service
    a.w(0xb0, 0)
    expect(a.last?.eoi).toEqual({ vector: 0x81, level: false })
    expect(a.ack()).toBe(0x41)
    expect(a.r(0x100 + 0x20)).toBe(1 << 1)
    a.w(0xb0, 0)
    expect(a.last?.eoi).toEqual({ vector: 0x41, level: true })
    a.w(0xb0, 0)
    expect(a.last?.eoi).toEqual({ vector: -1, level: false })
  })
})

describe("local APIC timer", () => {
  it("divides the 1 ns bus clock by the divide configuration", () => {
    expect([0, 1, 2, 3, 8, 9, 0xa, 0xb].map(lapicDivisor)).toEqual([2, 4, 8, 16, 32, 64, 128, 1])
  })

  it("one-shot: count 1000 divided by 16 expires at 16 000 ns exactly, once", () => {
    const a = new Apic().w(0x3e0, 0x3).w(0x320, 0xec).w(0x380, 1000, 100)
    expect(lapicNextDeadline(a.s)).toBe(16_100)
    expect(a.r(0x390, 8_100)).toBe(500)
    a.s = lapicAdvance(a.s, 16_099)
    expect(hasIrr(a.s, 0xec)).toBe(false)
    expect(a.r(0x390, 16_099)).toBe(1)
    a.s = lapicAdvance(a.s, 16_100)
    expect(hasIrr(a.s, 0xec)).toBe(true)
    expect(a.r(0x390, 16_100)).toBe(0)
    expect(lapicNextDeadline(a.s)).toBeUndefined()
  })

  it("periodic: reloads from the initial count; with shift 2 (4 ns) count 100 / 1 fires every 25 instructions", () => {
    const a = new Apic(2).w(0x3e0, 0xb).w(0x320, 0x200ec).w(0x380, 100)
    expect(lapicNextDeadline(a.s)).toBe(25)
    a.s = lapicAdvance(a.s, 25)
    expect(a.ack()).toBe(0xec)
    a.w(0xb0, 0, 25)
    expect(lapicNextDeadline(a.s)).toBe(50)
    expect(a.r(0x390, 30)).toBe(80)
  })

  it("a masked timer keeps counting but sets no IRR bit; count 0 stops it", () => {
    const a = new Apic().w(0x3e0, 0xb).w(0x320, 0x100ec).w(0x380, 10)
    a.s = lapicAdvance(a.s, 100)
    expect(hasIrr(a.s, 0xec)).toBe(false)
    a.w(0x380, 0, 100)
    expect(lapicNextDeadline(a.s)).toBeUndefined()
  })

  it("changing the divider keeps the current count", () => {
    const a = new Apic().w(0x3e0, 0xb).w(0x320, 0xec).w(0x380, 1000)
    expect(a.r(0x390, 400)).toBe(600)
    a.w(0x3e0, 0x0, 400) // divide by 2
    expect(a.r(0x390, 400)).toBe(600)
    expect(lapicNextDeadline(a.s)).toBe(400 + 1200)
  })

  it("nextDeadline is never in the past, and advancing to it (not one before) sets the vector", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 100_000 }),
        fc.constantFrom(0, 1, 2, 3, 8, 9, 0xa, 0xb),
        fc.boolean(),
        fc.integer({ min: 0, max: 5 }),
        fc.array(fc.integer({ min: 0, max: 1_000_000 }), { maxLength: 8 }),
        (count, dcr, periodic, shift, steps) => {
          const a = new Apic(shift).w(0x3e0, dcr).w(0x320, (periodic ? 0x20000 : 0) | 0x80).w(0x380, count)
          let now = 0
          for (const step of steps) {
            const d = lapicNextDeadline(a.s)
            if (d === undefined) break
            expect(d).toBeGreaterThan(now)
            const target = Math.min(d - 1, now + step)
            a.s = lapicAdvance(a.s, target)
            expect(hasIrr(a.s, 0x80)).toBe(false)
            now = target
            if (target === d - 1) {
              a.s = lapicAdvance(a.s, d)
              expect(a.ack()).toBe(0x80)
              a.w(0xb0, 0, d)
              now = d
            }
          }
        }
      )
    )
  })
})

describe("local APIC ICR and destinations", () => {
  it("a self IPI (shorthand 01) and a fixed IPI to its own ID land in IRR, with nothing sent out", () => {
    const a = new Apic().w(0x20, 0x02000000)
    a.w(0x300, 0x40000 | 0x45)
    expect(lapicPendingVector(a.s)).toBe(0x45)
    expect(a.last?.ipi).toBeUndefined()
    a.w(0x310, 0x02000000).w(0x300, 0x55)
    expect(lapicPendingVector(a.s)).toBe(0x55)
    expect(a.last?.ipi).toBeUndefined()
    expect(a.r(0x300) & (1 << 12)).toBe(0) // delivery status idle
  })

  it("other destinations leave as a message; all-excluding-self does not reach this APIC; NMI is kept apart", () => {
    const a = new Apic()
    a.w(0x310, 0x05000000).w(0x300, 0x66)
    expect(a.last?.ipi).toMatchObject({ vector: 0x66, dest: 5, logical: false })
    expect(lapicPendingVector(a.s)).toBe(-1)
    a.w(0x300, 0xc0000 | 0x67)
    expect(a.last?.ipi?.vector).toBe(0x67)
    expect(lapicPendingVector(a.s)).toBe(-1)
    a.w(0x300, 0x40000 | 0x400)
    expect(a.s.nmiPending).toBe(true)
  })

  it("flat logical destinations match LDR bits; cluster mode matches cluster and member bits", () => {
    const a = new Apic().w(0xd0, 0x01000000)
    expect(lapicMatchDest(a.s, true, 0x01)).toBe(true)
    expect(lapicMatchDest(a.s, true, 0x02)).toBe(false)
    expect(lapicMatchDest(a.s, true, 0xff)).toBe(true)
    a.w(0xe0, 0x0fffffff).w(0xd0, 0x21000000)
    expect(lapicMatchDest(a.s, true, 0x21)).toBe(true)
    expect(lapicMatchDest(a.s, true, 0x11)).toBe(false)
    expect(lapicMatchDest(a.s, false, 0)).toBe(true)
  })
})

describe("local APIC LINT inputs", () => {
  it("LINT1 programmed as NMI (as Linux does, 0x400) raises an NMI; LINT0 fixed delivers its vector", () => {
    const a = new Apic().w(0x360, 0x400).w(0x350, 0x31)
    a.s = lapicLint(a.s, 1)
    expect(a.s.nmiPending).toBe(true)
    a.s = lapicLint(a.s, 0)
    expect(lapicPendingVector(a.s)).toBe(0x31)
    expect(lapicAcceptsPicInterrupts(a.s)).toBe(false)
  })
})
