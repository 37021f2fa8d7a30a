/**
 * QEMU's "isa-serial": a National Semiconductor 16550A UART, eight byte-wide
 * registers (PC16550D datasheet numbering):
 *
 *   +0  RBR (read) / THR (write)          DLL when LCR.DLAB = 1
 *   +1  IER                               DLM when LCR.DLAB = 1
 *   +2  IIR (read) / FCR (write)
 *   +3  LCR   +4 MCR   +5 LSR   +6 MSR   +7 SCR
 *
 * The host side is infinitely fast: a THR write leaves as `output` at once, so
 * the transmitter is always empty (LSR.THRE and LSR.TEMT always read 1) and there
 * is no transmit FIFO to model. Host input arrives through {@link uartReceive}.
 *
 * Deliberate simplifications (each invisible to a guest that follows the datasheet):
 * - No time inside the device: the RX "character timeout" (IIR = 0x0C, raised by
 *   hardware 4 character times after the last byte when the FIFO holds fewer bytes
 *   than the trigger level) is reported at once. Drivers treat 0x0C and 0x04 alike.
 * - Received bytes never carry parity/framing errors or breaks, so LSR bits 2-4 and 7
 *   read 0; the only line status interrupt is an overrun.
 * - Modem inputs never change on their own: MSR reads DCD|DSR|CTS (0xB0), as QEMU
 *   reports for a connected host. MSR delta bits (3:0) are never set, so the modem
 *   status interrupt never fires.
 * - Loopback (MCR bit 4) is modelled only as far as drivers probe it: MSR bits 7:4
 *   follow OUT2, OUT1, DTR, RTS, and THR writes go to the RX FIFO instead of the host.
 * - The interrupt output is not gated by MCR.OUT2 (the PC board's gate), as in QEMU.
 * - Wider accesses are split into byte accesses at offset, offset+1, ... (as QEMU's
 *   memory core does for byte-only devices); bytes past +7 read 0 and are dropped.
 * - A read of RBR with nothing received returns 0.
 * - DLL/DLM are undefined after a datasheet reset; like QEMU we start at 0x000C (9600 baud).
 * - Writes to LSR and MSR (factory test only) are ignored.
 */
import type { Device, DeviceEffects, IoSize, ReadResult, WriteResult } from "./device.ts"

export interface Uart16550State {
  readonly dll: number
  readonly dlm: number
  /** Interrupt enables, bits 3:0 (bits 7:4 read 0 on a 16550A). */
  readonly ier: number
  /** The programmed FCR bits: 0 (FIFO enable), 3 (DMA mode), 7:6 (RX trigger). Bits 1-2 self-clear. */
  readonly fcr: number
  readonly lcr: number
  /** Bits 4:0 (bits 7:5 read 0). */
  readonly mcr: number
  readonly scr: number
  /** LSR.OE, sticky until LSR is read. */
  readonly overrun: boolean
  /** The THR-empty interrupt condition: cleared by reading IIR while it is the one reported, or by writing THR. */
  readonly thrEmptyPending: boolean
  /** RX FIFO, oldest first: up to 16 bytes with FIFOs enabled, 1 (the RBR) without. */
  readonly rx: readonly number[]
}

// Register offsets.
export const UART_RBR_THR = 0
export const UART_IER = 1
export const UART_IIR_FCR = 2
export const UART_LCR = 3
export const UART_MCR = 4
export const UART_LSR = 5
export const UART_MSR = 6
export const UART_SCR = 7

export const IER_RDI = 0x01 // received data available
export const IER_THRI = 0x02 // THR empty
export const IER_RLSI = 0x04 // receiver line status
export const IER_MSI = 0x08 // modem status

export const IIR_NO_INT = 0x01
export const IIR_MSI = 0x00
export const IIR_THRI = 0x02
export const IIR_RDI = 0x04
export const IIR_RLSI = 0x06
export const IIR_CTI = 0x0c // character timeout
export const IIR_FIFO_ENABLED = 0xc0

export const FCR_ENABLE = 0x01
export const FCR_CLEAR_RX = 0x02
export const FCR_CLEAR_TX = 0x04

export const LCR_DLAB = 0x80
export const MCR_LOOP = 0x10

export const LSR_DR = 0x01
export const LSR_OE = 0x02
export const LSR_THRE = 0x20
export const LSR_TEMT = 0x40

export const MSR_CTS = 0x10
export const MSR_DSR = 0x20
export const MSR_RI = 0x40
export const MSR_DCD = 0x80

export const UART_FIFO_DEPTH = 16

const RX_TRIGGER_LEVELS = [1, 4, 8, 14] as const

export const uartInitial: Uart16550State = Object.freeze({
  dll: 0x0c,
  dlm: 0x00,
  ier: 0x00,
  fcr: 0x00,
  lcr: 0x00,
  mcr: 0x00,
  scr: 0x00,
  overrun: false,
  thrEmptyPending: false,
  rx: Object.freeze([]) as readonly number[]
})

const fifoEnabled = (s: Uart16550State): boolean => (s.fcr & FCR_ENABLE) !== 0
const dlab = (s: Uart16550State): boolean => (s.lcr & LCR_DLAB) !== 0

/** IIR bits 3:0: the highest-priority enabled interrupt condition, or 0x01 for none. */
export const uartInterruptId = (s: Uart16550State): number => {
  if ((s.ier & IER_RLSI) !== 0 && s.overrun) return IIR_RLSI
  if ((s.ier & IER_RDI) !== 0 && s.rx.length > 0) {
    if (!fifoEnabled(s)) return IIR_RDI
    return s.rx.length >= RX_TRIGGER_LEVELS[s.fcr >> 6]! ? IIR_RDI : IIR_CTI
  }
  if ((s.ier & IER_THRI) !== 0 && s.thrEmptyPending) return IIR_THRI
  // Modem status (IIR 0x00) needs MSR delta bits, which never set here.
  return IIR_NO_INT
}

/** The level of the UART's interrupt output (the ISA IRQ line it drives). */
export const uartIrqLevel = (s: Uart16550State): boolean => (uartInterruptId(s) & IIR_NO_INT) === 0

/** LSR as the guest would read it (without the read's side effect). */
export const uartLineStatus = (s: Uart16550State): number =>
  LSR_THRE | LSR_TEMT | (s.rx.length > 0 ? LSR_DR : 0) | (s.overrun ? LSR_OE : 0)

/** MSR: a connected host, or in loopback the MCR outputs fed back (OUT2→DCD, OUT1→RI, DTR→DSR, RTS→CTS). */
export const uartModemStatus = (s: Uart16550State): number => {
  if ((s.mcr & MCR_LOOP) === 0) return MSR_DCD | MSR_DSR | MSR_CTS
  return (
    ((s.mcr & 0x08) !== 0 ? MSR_DCD : 0) |
    ((s.mcr & 0x04) !== 0 ? MSR_RI : 0) |
    ((s.mcr & 0x01) !== 0 ? MSR_DSR : 0) |
    ((s.mcr & 0x02) !== 0 ? MSR_CTS : 0)
  )
}

/**
 * A byte arrives on the serial line from the host. With FIFOs enabled, a full
 * 16-byte FIFO keeps its contents and the new byte is lost; without FIFOs the new
 * byte overwrites the unread RBR. Either way LSR.OE is set.
 */
export const uartReceive = (s: Uart16550State, byte: number): Uart16550State => {
  const b = byte & 0xff
  const depth = fifoEnabled(s) ? UART_FIFO_DEPTH : 1
  if (s.rx.length < depth) return { ...s, rx: [...s.rx, b] }
  return fifoEnabled(s) ? { ...s, overrun: true } : { ...s, rx: [b], overrun: true }
}

/**
 * How many bytes the receiver can take without an overrun: QEMU's `serial_can_receive`,
 * which the chardev layer asks before it hands the UART host input.
 */
export const uartRxRoom = (s: Uart16550State): number => (fifoEnabled(s) ? UART_FIFO_DEPTH : 1) - s.rx.length

interface ByteRead {
  readonly state: Uart16550State
  readonly value: number
}

const readRegister = (s: Uart16550State, reg: number): ByteRead => {
  switch (reg) {
    case UART_RBR_THR:
      if (dlab(s)) return { state: s, value: s.dll }
      if (s.rx.length === 0) return { state: s, value: 0 }
      return { state: { ...s, rx: s.rx.slice(1) }, value: s.rx[0]! }
    case UART_IER:
      return { state: s, value: dlab(s) ? s.dlm : s.ier }
    case UART_IIR_FCR: {
      const id = uartInterruptId(s)
      const value = id | (fifoEnabled(s) ? IIR_FIFO_ENABLED : 0)
      // Reading IIR acknowledges the THR-empty interrupt, but only when it is the one reported.
      return { state: id === IIR_THRI ? { ...s, thrEmptyPending: false } : s, value }
    }
    case UART_LCR:
      return { state: s, value: s.lcr }
    case UART_MCR:
      return { state: s, value: s.mcr }
    case UART_LSR:
      return { state: s.overrun ? { ...s, overrun: false } : s, value: uartLineStatus(s) }
    case UART_MSR:
      return { state: s, value: uartModemStatus(s) }
    case UART_SCR:
      return { state: s, value: s.scr }
    default:
      return { state: s, value: 0 }
  }
}

interface ByteWrite {
  readonly state: Uart16550State
  /** The byte transmitted to the host, or -1. */
  readonly sent: number
}

const writeRegister = (s: Uart16550State, reg: number, b: number): ByteWrite => {
  switch (reg) {
    case UART_RBR_THR: {
      if (dlab(s)) return { state: { ...s, dll: b }, sent: -1 }
      // Transmission completes at once, so THR is empty again and the THRE interrupt re-arms.
      if ((s.mcr & MCR_LOOP) !== 0) return { state: { ...uartReceive(s, b), thrEmptyPending: true }, sent: -1 }
      return { state: { ...s, thrEmptyPending: true }, sent: b }
    }
    case UART_IER: {
      if (dlab(s)) return { state: { ...s, dlm: b }, sent: -1 }
      const ier = b & 0x0f
      // Enabling ETBEI while THR is empty (always, here) raises the interrupt at once; disabling drops it.
      const thrEmptyPending =
        ((ier ^ s.ier) & IER_THRI) !== 0 ? (ier & IER_THRI) !== 0 : s.thrEmptyPending
      return { state: { ...s, ier, thrEmptyPending }, sent: -1 }
    }
    case UART_IIR_FCR: {
      const enable = (b & FCR_ENABLE) !== 0
      // Changing FCR0 flushes both FIFOs; FCR1 flushes RX. The TX FIFO is always empty here.
      const flush = enable !== fifoEnabled(s) || (enable && (b & FCR_CLEAR_RX) !== 0)
      // Bits 1-7 are only programmed when bit 0 is written as 1.
      const fcr = enable ? b & 0xc9 : s.fcr & 0xc8
      return { state: { ...s, fcr, rx: flush ? [] : s.rx }, sent: -1 }
    }
    case UART_LCR:
      return { state: { ...s, lcr: b }, sent: -1 }
    case UART_MCR:
      return { state: { ...s, mcr: b & 0x1f }, sent: -1 }
    case UART_SCR:
      return { state: { ...s, scr: b }, sent: -1 }
    default:
      // LSR, MSR (factory test writes) and bytes past the last register.
      return { state: s, sent: -1 }
  }
}

const read = (state: Uart16550State, offset: number, size: IoSize): ReadResult<Uart16550State> => {
  if (size === 1) return readRegister(state, offset)
  let s = state
  let value = 0
  for (let i = 0; i < size; i++) {
    const r = readRegister(s, offset + i)
    s = r.state
    value |= r.value << (8 * i)
  }
  return { state: s, value: value >>> 0 }
}

const write = (state: Uart16550State, offset: number, size: IoSize, value: number): WriteResult<Uart16550State> => {
  if (size === 1) {
    const w = writeRegister(state, offset, value & 0xff)
    return w.sent < 0 ? { state: w.state } : { state: w.state, effects: { output: Uint8Array.of(w.sent) } }
  }
  let s = state
  const sent: number[] = []
  for (let i = 0; i < size; i++) {
    const w = writeRegister(s, offset + i, (value >>> (8 * i)) & 0xff)
    s = w.state
    if (w.sent >= 0) sent.push(w.sent)
  }
  const effects: DeviceEffects | undefined = sent.length > 0 ? { output: Uint8Array.from(sent) } : undefined
  return effects ? { state: s, effects } : { state: s }
}

export const uart16550: Device<Uart16550State> = Object.freeze({
  kind: "isa-serial",
  initial: uartInitial,
  read,
  write
})

/** The 8-byte I/O window of a 16550. COM1 sits at 0x3f8 (IRQ 4), COM2 at 0x2f8 (IRQ 3). */
export const UART_IO_SIZE = 8
export const COM1_BASE = 0x3f8
export const COM2_BASE = 0x2f8
