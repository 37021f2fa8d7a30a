import { describe, expect, it } from "vitest"
import {
  picInitial,
  picInterruptAcknowledge,
  picIntr,
  picIoRead,
  picIoWrite,
  picPendingIrq,
  picSetIrq,
  type PicPairState
} from "../../src/hw/intc/i8259.ts"

/** Threads the pair's state through guest port accesses and line changes. */
class Pic {
  s: PicPairState = picInitial
  out(port: number, v: number): this {
    this.s = picIoWrite(this.s, port, v)
    return this
  }
  in(port: number): number {
    const r = picIoRead(this.s, port)
    this.s = r.state
    return r.value
  }
  irq(line: number, level: boolean): this {
    this.s = picSetIrq(this.s, line, level)
    return this
  }
  pulse(line: number): this {
    return this.irq(line, true).irq(line, false)
  }
  inta(): number {
    const r = picInterruptAcknowledge(this.s)
    this.s = r.state
    return r.vector
  }
}

/** Linux's init_8259A: ICW1 0x11, ICW2 0x30/0x38, ICW3 0x04/0x02, ICW4 0x01 (8086, normal EOI). */
const linuxInit = (autoEoi = false): Pic => {
  const icw4 = autoEoi ? 0x03 : 0x01
  return new Pic()
    .out(0x21, 0xff)
    .out(0xa1, 0xff)
    .out(0x20, 0x11)
    .out(0x21, 0x30)
    .out(0x21, 0x04)
    .out(0x21, icw4)
    .out(0xa0, 0x11)
    .out(0xa1, 0x38)
    .out(0xa1, 0x02)
    .out(0xa1, icw4)
    .out(0x21, 0x00)
    .out(0xa1, 0x00)
}

describe("8259A initialisation", () => {
  it("takes the vector bases from ICW2 as SeaBIOS programs them (0x08 and 0x70)", () => {
    const p = new Pic()
      .out(0x20, 0x11)
      .out(0x21, 0x08)
      .out(0x21, 0x04)
      .out(0x21, 0x01)
      .out(0xa0, 0x11)
      .out(0xa1, 0x70)
      .out(0xa1, 0x02)
      .out(0xa1, 0x01)
      .out(0x21, 0xfb)
      .out(0xa1, 0xff)
    expect(p.s.master.irqBase).toBe(0x08)
    expect(p.s.slave.irqBase).toBe(0x70)
    expect(p.in(0x21)).toBe(0xfb)
    expect(p.in(0xa1)).toBe(0xff)
    p.out(0x21, 0xfa).pulse(0)
    expect(p.inta()).toBe(0x08)
  })

  it("ICW1 clears IMR, ISR and edge requests; without ICW4 it needs only ICW2 in single mode", () => {
    const p = linuxInit().pulse(1)
    p.inta()
    p.out(0x20, 0x13) // single, ICW4 needed
    expect(p.s.master.isr).toBe(0)
    expect(p.s.master.irr).toBe(0)
    p.out(0x21, 0x40).out(0x21, 0x01)
    expect(p.s.master.initState).toBe(0)
    p.out(0x21, 0xaa)
    expect(p.in(0x21)).toBe(0xaa)
  })
})

describe("8259A requests, priority and EOI", () => {
  it("an edge on IRQ0 raises INTR; INTA returns base+0, sets ISR and clears IRR; EOI clears ISR", () => {
    const p = linuxInit().pulse(0)
    expect(picIntr(p.s)).toBe(true)
    expect(p.inta()).toBe(0x30)
    expect(p.s.master.isr).toBe(1)
    expect(p.s.master.irr).toBe(0)
    expect(picIntr(p.s)).toBe(false)
    p.out(0x20, 0x20)
    expect(p.s.master.isr).toBe(0)
  })

  it("lower line numbers win, and an in-service line blocks itself and lower priorities only", () => {
    const p = linuxInit().pulse(3).pulse(4)
    expect(p.inta()).toBe(0x33)
    expect(picIntr(p.s)).toBe(false) // IRQ4 waits for IRQ3's EOI
    p.pulse(1)
    expect(picIntr(p.s)).toBe(true) // IRQ1 nests
    expect(p.inta()).toBe(0x31)
    p.out(0x20, 0x20) // non-specific EOI retires the highest in service: IRQ1
    expect(p.s.master.isr).toBe(1 << 3)
    p.out(0x20, 0x20)
    expect(p.inta()).toBe(0x34)
  })

  it("a specific EOI retires the line it names", () => {
    const p = linuxInit().pulse(5)
    p.inta()
    p.pulse(2 - 1) // IRQ1
    p.inta()
    p.out(0x20, 0x60 | 5)
    expect(p.s.master.isr).toBe(1 << 1)
  })

  it("a masked line does not raise INTR but stays requested until unmasked", () => {
    const p = linuxInit().out(0x21, 0x01).pulse(0)
    expect(picIntr(p.s)).toBe(false)
    expect(p.s.master.irr).toBe(1)
    p.out(0x21, 0x00)
    expect(p.inta()).toBe(0x30)
  })

  it("OCW3 selects IRR or ISR for command-port reads", () => {
    const p = linuxInit().pulse(6).pulse(7)
    p.out(0x20, 0x0a)
    expect(p.in(0x20)).toBe(0xc0)
    p.inta()
    p.out(0x20, 0x0b)
    expect(p.in(0x20)).toBe(0x40)
    p.out(0x20, 0x0a)
    expect(p.in(0x20)).toBe(0x80)
  })

  it("an edge-triggered line held high requests once; it needs a new rising edge", () => {
    const p = linuxInit().irq(1, true)
    expect(p.inta()).toBe(0x31)
    p.out(0x20, 0x20).irq(1, true)
    expect(picIntr(p.s)).toBe(false)
    p.irq(1, false).irq(1, true)
    expect(picIntr(p.s)).toBe(true)
  })

  it("a level-triggered line (ELCR) requests again after EOI while still high, and drops when lowered", () => {
    const p = linuxInit().out(0x4d1, 0x08) // IRQ11 level, as PIIX does for PCI interrupts
    expect(p.in(0x4d1)).toBe(0x08)
    p.irq(11, true)
    expect(p.inta()).toBe(0x38 + 3)
    p.out(0xa0, 0x20).out(0x20, 0x20)
    expect(p.inta()).toBe(0x38 + 3)
    p.irq(11, false).out(0xa0, 0x20).out(0x20, 0x20) // the driver quiets the device, then EOIs
    expect(picIntr(p.s)).toBe(false)
  })

  it("the ELCR cannot make IRQ0, 1, 2, 8 or 13 level-triggered", () => {
    const p = new Pic().out(0x4d0, 0xff).out(0x4d1, 0xff)
    expect(p.in(0x4d0)).toBe(0xf8)
    expect(p.in(0x4d1)).toBe(0xde)
  })
})

describe("8259A cascade", () => {
  it("a slave line comes in through master IRQ2 with the slave's vector, and needs both EOIs", () => {
    const p = linuxInit().pulse(8)
    expect(picPendingIrq(p.s)).toBe(8)
    expect(p.inta()).toBe(0x38)
    expect(p.s.master.isr).toBe(1 << 2)
    expect(p.s.slave.isr).toBe(1)
    p.pulse(12)
    expect(picIntr(p.s)).toBe(false) // IRQ12 waits: slave IRQ0 and master IRQ2 in service
    p.out(0xa0, 0x20).out(0x20, 0x20)
    expect(p.inta()).toBe(0x38 + 4)
  })

  it("slave lines have the priority of IRQ2: above IRQ3, below IRQ1", () => {
    const p = linuxInit().pulse(3).pulse(14).pulse(1)
    expect(p.inta()).toBe(0x31)
    p.out(0x20, 0x20)
    expect(p.inta()).toBe(0x38 + 6)
    p.out(0xa0, 0x20).out(0x20, 0x20)
    expect(p.inta()).toBe(0x33)
  })
})

describe("8259A spurious interrupts and modes", () => {
  it("INTA after the request went away answers IRQ7 without setting ISR", () => {
    const p = linuxInit().out(0x4d0, 0x20).irq(5, true) // IRQ5 level
    expect(picIntr(p.s)).toBe(true)
    p.irq(5, false)
    expect(p.inta()).toBe(0x37)
    expect(p.s.master.isr).toBe(0)
  })

  it("a slave request that went away answers IRQ15, with master IRQ2 in service", () => {
    const p = linuxInit().out(0x4d1, 0x08).irq(11, true)
    expect(p.inta()).toBe(0x3b)
    // Slave EOI first: the still-high line raises the slave's INT again, an edge the master
    // latches on IRQ2; then the line drops before the next INTA.
    p.out(0xa0, 0x20).out(0x20, 0x20).irq(11, false)
    expect(picIntr(p.s)).toBe(true)
    expect(p.inta()).toBe(0x3f)
    expect(p.s.slave.isr).toBe(0)
    expect(p.s.master.isr).toBe(1 << 2)
  })

  it("auto-EOI (ICW4 bit 1) leaves ISR clear after INTA", () => {
    const p = linuxInit(true).pulse(0)
    expect(p.inta()).toBe(0x30)
    expect(p.s.master.isr).toBe(0)
    p.pulse(0)
    expect(p.inta()).toBe(0x30)
  })

  it("poll mode: the next command-port read acknowledges and returns 0x80 | irq", () => {
    const p = linuxInit().pulse(4)
    p.out(0x20, 0x0c)
    expect(p.in(0x20)).toBe(0x84)
    expect(p.s.master.isr).toBe(1 << 4)
    p.out(0x20, 0x0c)
    expect(p.in(0x20)).toBe(0)
  })

  it("rotate on non-specific EOI makes the retired line the lowest priority", () => {
    const p = linuxInit().pulse(0)
    p.inta()
    p.out(0x20, 0xa0) // rotate on non-specific EOI: IRQ0 becomes lowest
    p.pulse(0).pulse(5)
    expect(p.inta()).toBe(0x35)
  })

  it("special mask mode lets lower-priority lines in while a masked line is in service", () => {
    const p = linuxInit().pulse(3)
    p.inta()
    p.pulse(5)
    expect(picIntr(p.s)).toBe(false)
    p.out(0x21, 0x08).out(0x20, 0x68) // mask IRQ3, set special mask
    expect(p.inta()).toBe(0x35)
  })
})
