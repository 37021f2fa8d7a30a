import { describe, expect, it } from "vitest"
import type { IoSize } from "../../src/kernel/cpu/bus.ts"
import {
  uart16550,
  uartInitial,
  uartIrqLevel,
  uartReceive,
  UART_IER,
  UART_IIR_FCR,
  UART_LCR,
  UART_LSR,
  UART_MCR,
  UART_MSR,
  UART_RBR_THR,
  UART_SCR,
  type Uart16550State
} from "../../src/qemu/devices/uart16550.ts"

/** A tiny guest-side driver: threads the state through accesses and collects output. */
class Port {
  state: Uart16550State = uartInitial
  output: number[] = []
  read(reg: number, size: IoSize = 1): number {
    const r = uart16550.read(this.state, reg, size)
    this.state = r.state
    expect(r.effects).toBeUndefined()
    return r.value
  }
  write(reg: number, value: number, size: IoSize = 1): void {
    const r = uart16550.write(this.state, reg, size, value)
    this.state = r.state
    expect(r.effects?.exitCode).toBeUndefined()
    if (r.effects?.output) this.output.push(...r.effects.output)
  }
  receive(...bytes: number[]): void {
    for (const b of bytes) this.state = uartReceive(this.state, b)
  }
}

describe("16550A reset values", () => {
  it("read as the datasheet (and QEMU) give them", () => {
    const p = new Port()
    expect(uart16550.kind).toBe("isa-serial")
    expect(p.read(UART_IER)).toBe(0x00)
    expect(p.read(UART_IIR_FCR)).toBe(0x01) // no interrupt pending, FIFOs off
    expect(p.read(UART_LCR)).toBe(0x00)
    expect(p.read(UART_MCR)).toBe(0x00)
    expect(p.read(UART_LSR)).toBe(0x60) // THRE | TEMT
    expect(p.read(UART_MSR)).toBe(0xb0) // DCD | DSR | CTS: a connected host
    expect(p.read(UART_SCR)).toBe(0x00)
    expect(p.read(UART_RBR_THR)).toBe(0x00) // nothing received
    p.write(UART_LCR, 0x80)
    expect(p.read(UART_RBR_THR)).toBe(0x0c) // divisor 12: 9600 baud
    expect(p.read(UART_IER)).toBe(0x00)
    expect(uartIrqLevel(uartInitial)).toBe(false)
  })
})

describe("DLAB (LCR bit 7)", () => {
  it("maps +0/+1 to DLL/DLM and back to THR/IER", () => {
    const p = new Port()
    p.write(UART_IER, 0x05)
    p.write(UART_LCR, 0x83) // DLAB + 8N1
    p.write(UART_RBR_THR, 0x01) // DLL: no byte is sent
    p.write(UART_IER, 0x02) // DLM: IER untouched
    expect(p.output).toEqual([])
    expect(p.read(UART_RBR_THR)).toBe(0x01)
    expect(p.read(UART_IER)).toBe(0x02)
    expect(p.read(UART_LCR)).toBe(0x83)
    p.write(UART_LCR, 0x03)
    expect(p.read(UART_IER)).toBe(0x05)
    p.write(UART_RBR_THR, 0x41)
    expect(p.output).toEqual([0x41])
    p.write(UART_LCR, 0x80)
    expect(p.read(UART_RBR_THR)).toBe(0x01) // the divisor survived the THR write
    expect(p.read(UART_IER)).toBe(0x02)
  })

  it("DLAB reads of +0 do not pop the RX FIFO", () => {
    const p = new Port()
    p.receive(0x33)
    p.write(UART_LCR, 0x80)
    expect(p.read(UART_RBR_THR)).toBe(0x0c)
    p.write(UART_LCR, 0x00)
    expect(p.read(UART_RBR_THR)).toBe(0x33)
  })
})

describe("plain registers", () => {
  it("SCR keeps any byte", () => {
    const p = new Port()
    for (let v = 0; v < 256; v++) {
      p.write(UART_SCR, v)
      expect(p.read(UART_SCR)).toBe(v)
    }
  })

  it("LCR keeps all 8 bits; IER keeps bits 3:0; MCR keeps bits 4:0", () => {
    const p = new Port()
    p.write(UART_LCR, 0x7f)
    expect(p.read(UART_LCR)).toBe(0x7f)
    p.write(UART_IER, 0xff)
    expect(p.read(UART_IER)).toBe(0x0f)
    p.write(UART_MCR, 0xef)
    expect(p.read(UART_MCR)).toBe(0x0f)
  })

  it("THR writes go to the host at once, in order", () => {
    const p = new Port()
    for (const c of "hi\n") p.write(UART_RBR_THR, c.charCodeAt(0))
    expect(Buffer.from(p.output).toString()).toBe("hi\n")
    expect(p.read(UART_LSR)).toBe(0x60) // the transmitter is always empty again
  })

  it("writes to LSR and MSR are ignored", () => {
    const p = new Port()
    p.write(UART_LSR, 0xff)
    p.write(UART_MSR, 0x0f)
    expect(p.read(UART_LSR)).toBe(0x60)
    expect(p.read(UART_MSR)).toBe(0xb0)
  })
})

describe("LSR", () => {
  it("DR follows the RX FIFO; THRE|TEMT are always set", () => {
    const p = new Port()
    p.receive(0x61)
    expect(p.read(UART_LSR)).toBe(0x61)
    expect(p.read(UART_RBR_THR)).toBe(0x61)
    expect(p.read(UART_LSR)).toBe(0x60)
  })

  it("OE is set by an overrun and cleared by reading LSR", () => {
    const p = new Port()
    p.receive(1, 2)
    expect(p.read(UART_LSR)).toBe(0x63)
    expect(p.read(UART_LSR)).toBe(0x61)
  })
})

describe("IIR / FCR", () => {
  it("IIR bits 7:6 read 11 while FCR bit 0 is set", () => {
    const p = new Port()
    p.write(UART_IIR_FCR, 0x01)
    expect(p.read(UART_IIR_FCR)).toBe(0xc1)
    p.write(UART_IIR_FCR, 0x00)
    expect(p.read(UART_IIR_FCR)).toBe(0x01)
  })

  it("FCR bit 1 clears the RX FIFO; bit 2 (TX) is harmless", () => {
    const p = new Port()
    p.write(UART_IIR_FCR, 0x01)
    p.receive(1, 2, 3)
    p.write(UART_IIR_FCR, 0x05)
    expect(p.state.rx).toEqual([1, 2, 3])
    p.write(UART_IIR_FCR, 0x03)
    expect(p.state.rx).toEqual([])
    expect(p.read(UART_LSR)).toBe(0x60)
  })

  it("turning the FIFOs on or off flushes them", () => {
    const p = new Port()
    p.receive(9)
    p.write(UART_IIR_FCR, 0x01)
    expect(p.state.rx).toEqual([])
    p.receive(1, 2)
    p.write(UART_IIR_FCR, 0x00)
    expect(p.state.rx).toEqual([])
  })

  it("the RX trigger level (bits 7:6) chooses between data-available and timeout", () => {
    for (const [fcr, level] of [[0x01, 1], [0x41, 4], [0x81, 8], [0xc1, 14]] as const) {
      const p = new Port()
      p.write(UART_IIR_FCR, fcr)
      p.write(UART_IER, 0x01)
      for (let i = 1; i < level; i++) {
        p.receive(i)
        expect(p.read(UART_IIR_FCR)).toBe(0xcc) // below trigger: character timeout
      }
      p.receive(0xff)
      expect(p.read(UART_IIR_FCR)).toBe(0xc4) // at trigger: received data available
    }
  })

  it("trigger bits are programmed only together with FCR bit 0", () => {
    const p = new Port()
    p.write(UART_IIR_FCR, 0xc0) // FIFOs stay off, trigger not programmed
    p.write(UART_IIR_FCR, 0x01)
    p.write(UART_IER, 0x01)
    p.receive(1)
    expect(p.read(UART_IIR_FCR)).toBe(0xc4) // trigger level 1
  })
})

describe("RX FIFO", () => {
  it("pops in arrival order; an empty RBR reads 0", () => {
    const p = new Port()
    p.write(UART_IIR_FCR, 0x07)
    p.receive(10, 20, 30, 40)
    expect([p.read(0), p.read(0), p.read(0), p.read(0)]).toEqual([10, 20, 30, 40])
    expect(p.read(UART_LSR) & 1).toBe(0)
    expect(p.read(UART_RBR_THR)).toBe(0)
  })

  it("with FIFOs on, holds 16 bytes; the 17th is lost and OE set", () => {
    const p = new Port()
    p.write(UART_IIR_FCR, 0x01)
    const bytes = Array.from({ length: 17 }, (_, i) => i + 1)
    p.receive(...bytes)
    expect(p.state.rx).toEqual(bytes.slice(0, 16))
    expect(p.read(UART_LSR)).toBe(0x63)
    const got = Array.from({ length: 16 }, () => p.read(UART_RBR_THR))
    expect(got).toEqual(bytes.slice(0, 16))
    expect(p.read(UART_LSR)).toBe(0x60)
  })

  it("with FIFOs off (16450 mode), a new byte overwrites the unread RBR and sets OE", () => {
    const p = new Port()
    p.receive(0x11, 0x22)
    expect(p.read(UART_LSR)).toBe(0x63)
    expect(p.read(UART_RBR_THR)).toBe(0x22)
    expect(p.read(UART_LSR)).toBe(0x60)
  })

  it("uartReceive keeps only the low byte", () => {
    expect(uartReceive(uartInitial, 0x1234).rx).toEqual([0x34])
  })
})

describe("interrupts (IER masking of uartIrqLevel)", () => {
  it("received data raises the line only with IER.ERBFI", () => {
    const p = new Port()
    p.receive(0x55)
    expect(uartIrqLevel(p.state)).toBe(false)
    expect(p.read(UART_IIR_FCR)).toBe(0x01)
    p.write(UART_IER, 0x01)
    expect(uartIrqLevel(p.state)).toBe(true)
    expect(p.read(UART_IIR_FCR)).toBe(0x04)
    p.read(UART_RBR_THR)
    expect(uartIrqLevel(p.state)).toBe(false)
    expect(p.read(UART_IIR_FCR)).toBe(0x01)
  })

  it("THR empty: enabling ETBEI raises it, reading IIR acknowledges it, a THR write re-arms it", () => {
    const p = new Port()
    p.write(UART_IER, 0x02)
    expect(uartIrqLevel(p.state)).toBe(true)
    expect(p.read(UART_IIR_FCR)).toBe(0x02)
    expect(uartIrqLevel(p.state)).toBe(false)
    expect(p.read(UART_IIR_FCR)).toBe(0x01)
    p.write(UART_RBR_THR, 0x2a)
    expect(uartIrqLevel(p.state)).toBe(true)
    p.write(UART_IER, 0x00)
    expect(uartIrqLevel(p.state)).toBe(false)
    p.write(UART_RBR_THR, 0x2a)
    expect(uartIrqLevel(p.state)).toBe(false) // masked
  })

  it("a THR write with ETBEI off leaves the condition pending for when it is enabled", () => {
    const p = new Port()
    p.write(UART_RBR_THR, 0x2a)
    expect(uartIrqLevel(p.state)).toBe(false)
    p.write(UART_IER, 0x02)
    expect(p.read(UART_IIR_FCR)).toBe(0x02)
  })

  it("priority: line status > received data > THR empty; lower ones are not acknowledged by IIR", () => {
    const p = new Port()
    p.write(UART_IER, 0x07)
    p.receive(1, 2) // overrun in 16450 mode
    expect(p.read(UART_IIR_FCR)).toBe(0x06)
    expect(p.read(UART_IIR_FCR)).toBe(0x06) // IIR does not clear line status
    p.read(UART_LSR)
    expect(p.read(UART_IIR_FCR)).toBe(0x04)
    p.read(UART_RBR_THR)
    expect(p.read(UART_IIR_FCR)).toBe(0x02) // still pending: it was never the one reported
    expect(p.read(UART_IIR_FCR)).toBe(0x01)
  })

  it("an overrun raises no interrupt without IER.ELSI", () => {
    const p = new Port()
    p.receive(1, 2)
    p.read(UART_RBR_THR)
    expect(uartIrqLevel(p.state)).toBe(false)
  })

  it("modem status never interrupts (inputs never change)", () => {
    const p = new Port()
    p.write(UART_IER, 0x08)
    p.write(UART_MCR, 0x1f)
    expect(uartIrqLevel(p.state)).toBe(false)
  })
})

describe("loopback (MCR bit 4)", () => {
  it("MSR follows the MCR outputs, as Linux's 8250 probe checks", () => {
    const p = new Port()
    p.write(UART_MCR, 0x10 | 0x0a) // LOOP | OUT2 | RTS
    expect(p.read(UART_MSR) & 0xf0).toBe(0x90) // DCD | CTS
    p.write(UART_MCR, 0x1f)
    expect(p.read(UART_MSR)).toBe(0xf0)
    p.write(UART_MCR, 0x10)
    expect(p.read(UART_MSR)).toBe(0x00)
  })

  it("THR bytes come back in RBR instead of going to the host", () => {
    const p = new Port()
    p.write(UART_MCR, 0x10)
    p.write(UART_RBR_THR, 0x5a)
    expect(p.output).toEqual([])
    expect(p.read(UART_LSR)).toBe(0x61)
    expect(p.read(UART_RBR_THR)).toBe(0x5a)
  })
})

describe("wide accesses", () => {
  it("are split into byte accesses, little-endian", () => {
    const p = new Port()
    p.write(UART_RBR_THR, 0x0f41, 2) // THR = 'A', IER = 0x0f
    expect(p.output).toEqual([0x41])
    expect(p.read(UART_IER)).toBe(0x0f)
    p.write(UART_SCR - 1, 0x5a00, 2) // MSR ignored, SCR = 0x5a
    expect(p.read(UART_MSR, 2)).toBe(0x5ab0)
    p.write(UART_LCR, 0x03)
    expect(p.read(UART_LCR, 4)).toBe(0xb0_60_00_03 >>> 0) // LCR, MCR, LSR, MSR
    expect(p.read(UART_SCR, 2)).toBe(0x5a) // the byte past +7 reads 0
  })

  it("a 4-byte THR write sends only the THR byte", () => {
    const p = new Port()
    p.write(UART_RBR_THR, 0x00_00_00_42, 4)
    expect(p.output).toEqual([0x42])
  })
})

describe("purity", () => {
  it("never mutates the state it is given", () => {
    const deepFreeze = (s: Uart16550State): Uart16550State => Object.freeze({ ...s, rx: Object.freeze([...s.rx]) })
    let s = deepFreeze(uartReceive(uartReceive(uartInitial, 1), 2))
    const copy = structuredClone(s)
    for (let reg = 0; reg < 8; reg++) {
      uart16550.read(s, reg, 1)
      uart16550.write(s, reg, 1, 0xff)
    }
    uartReceive(s, 3)
    expect(s).toEqual(copy)
    s = deepFreeze(uartInitial)
    expect(() => uart16550.write(s, UART_IIR_FCR, 1, 0x07)).not.toThrow()
  })
})
