/**
 * The chips connected the way the vCPU loop will connect them (whichever side hosts
 * them): run to the next deadline, advance, move the lines, inject, EOI.
 */
import { describe, expect, it } from "vitest"
import { earliest } from "../../src/hw/clock.ts"
import { ioapicEoi, ioapicInitial, ioapicSetIrq, ioapicWrite, type ApicMessage, type IoapicState } from "../../src/hw/intc/ioapic.ts"
import { picInitial, picInterruptAcknowledge, picIntr, picIoWrite, picSetIrq } from "../../src/hw/intc/i8259.ts"
import {
  lapicAcceptIrq,
  lapicAcceptsPicInterrupts,
  lapicAcknowledge,
  lapicAdvance,
  lapicCreate,
  lapicMatchDest,
  lapicNextDeadline,
  lapicPendingVector,
  lapicWrite,
  type LapicState
} from "../../src/hw/intc/lapic.ts"
import { pitAdvance, pitCreate, pitIoWrite, pitNextDeadline } from "../../src/hw/timer/i8254.ts"

describe("PIT -> PIC -> CPU", () => {
  it("a 1 kHz PIT (Linux's LATCH 1193) gives ten IRQ0 interrupts, vector 0x30, in 10 ms of virtual time", () => {
    let pic = picInitial
    for (const [port, v] of [[0x20, 0x11], [0x21, 0x30], [0x21, 0x04], [0x21, 0x01], [0xa0, 0x11], [0xa1, 0x38], [0xa1, 0x02], [0xa1, 0x01], [0x21, 0xfe], [0xa1, 0xff]] as const)
      pic = picIoWrite(pic, port, v)
    let pit = pitCreate(0)
    for (const [port, v] of [[0x43, 0x34], [0x40, 1193 & 0xff], [0x40, 1193 >> 8]] as const) pit = pitIoWrite(pit, port, v, 0).state
    const lapic = lapicCreate({ shift: 0 })
    expect(lapicAcceptsPicInterrupts(lapic)).toBe(true)

    const vectors: number[] = []
    const stops: number[] = []
    for (;;) {
      const now = pitNextDeadline(pit)!
      if (now > 10_000_000) break
      stops.push(now)
      const r = pitAdvance(pit, now)
      pit = r.state
      for (let i = 0; i < r.irq0Edges; i++) pic = picSetIrq(picSetIrq(pic, 0, false), 0, true)
      while (picIntr(pic)) {
        const ack = picInterruptAcknowledge(pic)
        pic = picIoWrite(ack.state, 0x20, 0x20) // the ISR's EOI
        vectors.push(ack.vector)
      }
    }
    expect(vectors).toEqual(new Array(10).fill(0x30))
    expect(stops[0]).toBe(999_848)
  })
})

describe("device -> IOAPIC -> LAPIC -> EOI broadcast", () => {
  const deliver = (lapic: LapicState, msgs: readonly ApicMessage[]): LapicState =>
    msgs.reduce((l, m) => (lapicMatchDest(l, m.logical, m.dest) ? lapicAcceptIrq(l, m) : l), lapic)

  it("a level-triggered line is delivered once per EOI while it stays asserted", () => {
    let lapic = lapicWrite(lapicCreate({ shift: 0 }), 0xf0, 4, 0x1ff, 0).state
    let io: IoapicState = ioapicInitial
    io = ioapicWrite(io, 0, 4, 0x10 + 2 * 10).state
    io = ioapicWrite(io, 0x10, 4, 0x8000 | 0x61).state // level, fixed, vector 0x61, physical dest 0
    const raised = ioapicSetIrq(io, 10, true)
    io = raised.state
    lapic = deliver(lapic, raised.messages)

    let taken = 0
    for (let round = 0; round < 3; round++) {
      const ack = lapicAcknowledge(lapic)
      expect(ack.vector).toBe(0x61)
      taken++
      if (round === 2) io = ioapicSetIrq(io, 10, false).state // the driver finally quiets the device
      const w = lapicWrite(ack.state, 0xb0, 4, 0, 0)
      lapic = w.state
      expect(w.eoi).toEqual({ vector: 0x61, level: true })
      const again = ioapicEoi(io, w.eoi!.vector)
      io = again.state
      lapic = deliver(lapic, again.messages)
    }
    expect(taken).toBe(3)
    expect(lapicPendingVector(lapic)).toBe(-1)
  })

  it("the LAPIC timer and the PIT share one deadline: the loop stops at the earlier one", () => {
    let lapic = lapicWrite(lapicCreate({ shift: 0 }), 0xf0, 4, 0x1ff, 0).state
    lapic = lapicWrite(lapic, 0x3e0, 4, 0xb, 0).state
    lapic = lapicWrite(lapic, 0x320, 4, 0xef, 0).state
    lapic = lapicWrite(lapic, 0x380, 4, 500_000, 0).state
    const pit = pitCreate(0)
    const next = earliest(pitNextDeadline(pit), lapicNextDeadline(lapic))
    expect(next).toBe(500_000)
    expect(lapicPendingVector(lapicAdvance(lapic, next!))).toBe(0xef)
  })
})
