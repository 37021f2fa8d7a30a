import { describe, expect, it } from "vitest"
import {
  DM_FIXED,
  ioapicEoi,
  ioapicInitial,
  ioapicRead,
  ioapicSetIrq,
  ioapicWrite,
  type ApicMessage,
  type IoapicState
} from "../../src/hw/intc/ioapic.ts"

class Ioapic {
  s: IoapicState = ioapicInitial
  sent: ApicMessage[] = []
  reg(index: number): number {
    this.s = ioapicWrite(this.s, 0x00, 4, index).state
    return ioapicRead(this.s, 0x10, 4).value
  }
  setReg(index: number, v: number): this {
    this.s = ioapicWrite(this.s, 0x00, 4, index).state
    const r = ioapicWrite(this.s, 0x10, 4, v)
    this.s = r.state
    this.sent.push(...r.messages)
    return this
  }
  route(pin: number, low: number, dest = 0): this {
    return this.setReg(0x11 + 2 * pin, dest << 24).setReg(0x10 + 2 * pin, low)
  }
  irq(pin: number, level: boolean): this {
    const r = ioapicSetIrq(this.s, pin, level)
    this.s = r.state
    this.sent.push(...r.messages)
    return this
  }
  eoi(vector: number): this {
    const r = ioapicEoi(this.s, vector)
    this.s = r.state
    this.sent.push(...r.messages)
    return this
  }
  take(): ApicMessage[] {
    const m = this.sent
    this.sent = []
    return m
  }
}

const LEVEL = 1 << 15
const MASKED = 1 << 16

describe("IOAPIC registers", () => {
  it("version 0x11 with 24 entries, ID in bits 27-24, entries reset masked", () => {
    const io = new Ioapic()
    expect(io.reg(0x01)).toBe(0x00170011)
    io.setReg(0x00, 0x0a000000)
    expect(io.reg(0x00)).toBe(0x0a000000)
    expect(io.reg(0x02)).toBe(0x0a000000)
    expect(io.reg(0x10)).toBe(MASKED)
    expect(io.reg(0x10 + 2 * 23)).toBe(MASKED)
    expect(io.reg(0x10 + 2 * 24)).toBe(0)
  })

  it("IOREGSEL reads back; delivery status and remote IRR are read-only", () => {
    const io = new Ioapic().route(1, 0xffffffff)
    expect(ioapicRead(io.s, 0x00, 4).value).toBe(0x12)
    expect(io.reg(0x12)).toBe(0x1afff) // all but bits 12 (delivery status) and 14 (remote IRR)
    io.setReg(0x13, 0xffffffff)
    expect(io.reg(0x13)).toBe(0xff000000)
  })
})

describe("IOAPIC delivery", () => {
  it("an edge on an unmasked pin sends its message; a masked edge waits for the unmask", () => {
    const io = new Ioapic().route(2, 0x30, 0x01)
    io.irq(2, true)
    expect(io.take()).toEqual([{ vector: 0x30, deliveryMode: DM_FIXED, logical: false, dest: 1, level: false, pin: 2 }])
    io.irq(2, true)
    expect(io.take()).toEqual([]) // no new edge
    io.irq(2, false).route(2, 0x30 | MASKED).irq(2, true)
    expect(io.take()).toEqual([])
    io.route(2, 0x30)
    expect(io.take().map((m) => m.vector)).toEqual([0x30])
  })

  it("a level pin sets remote IRR and sends nothing more until the EOI broadcast for its vector", () => {
    const io = new Ioapic().route(10, 0x41 | LEVEL | (1 << 11), 0x01)
    io.irq(10, true)
    expect(io.take()).toEqual([{ vector: 0x41, deliveryMode: DM_FIXED, logical: true, dest: 1, level: true, pin: 10 }])
    expect(io.reg(0x10 + 20) & (1 << 14)).not.toBe(0)
    io.irq(10, false).irq(10, true)
    expect(io.take()).toEqual([])
    io.eoi(0x42) // another vector: nothing
    expect(io.reg(0x10 + 20) & (1 << 14)).not.toBe(0)
    io.eoi(0x41) // still asserted: delivered again
    expect(io.take().map((m) => m.vector)).toEqual([0x41])
    io.irq(10, false).eoi(0x41)
    expect(io.take()).toEqual([])
    expect(io.reg(0x10 + 20) & (1 << 14)).toBe(0)
  })

  it("unmasking an asserted level pin delivers it; switching to edge clears remote IRR", () => {
    const io = new Ioapic().route(5, 0x50 | LEVEL | MASKED).irq(5, true)
    expect(io.take()).toEqual([])
    io.route(5, 0x50 | LEVEL)
    expect(io.take().map((m) => m.level)).toEqual([true])
    io.route(5, 0x50)
    expect(io.reg(0x10 + 10) & (1 << 14)).toBe(0)
    expect(io.take()).toEqual([])
  })

  it("messages carry the delivery mode and destination of the entry", () => {
    const io = new Ioapic().route(0, 0x700, 0xff) // ExtINT, broadcast: the PIC through the IOAPIC
    io.irq(0, true)
    expect(io.take()).toEqual([{ vector: 0, deliveryMode: 7, logical: false, dest: 0xff, level: false, pin: 0 }])
  })
})
