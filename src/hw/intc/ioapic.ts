/**
 * The I/O APIC, version 0x11 with 24 pins, as QEMU (hw/intc/ioapic.c) and KVM
 * (arch/x86/kvm/ioapic.c) model the 82093AA: MMIO at 0xfec00000 with IOREGSEL (+0x00)
 * selecting a 32-bit register read and written through IOWIN (+0x10).
 *
 *   0x00 ID (bits 27-24)   0x01 version (0x00170011)   0x02 arbitration ID
 *   0x10 + 2n, 0x11 + 2n   redirection entry n (low, high)
 *
 * A redirection entry turns a pin into an interrupt message for the local APICs
 * (`ApicMessage`), which the host hands to `lapicAcceptIrq`. Level-triggered pins set
 * Remote IRR when delivered and deliver nothing more until the local APIC's EOI for
 * that vector is broadcast back (`ioapicEoi`); if the line is still high then, it is
 * delivered again.
 *
 * Choices, following QEMU where the datasheet leaves room:
 * - `level` is "asserted"; the polarity bit (13) is stored but not applied (the board
 *   wiring, not the guest, decides what asserted means).
 * - An edge that arrives while its pin is masked stays pending and is delivered when
 *   the entry is unmasked (QEMU keeps it in IRR).
 * - Writing an entry delivers at once if its pin is pending and now deliverable, and
 *   switching an entry to edge clears its Remote IRR (as KVM).
 * - Delivery Status (bit 12) always reads 0: delivery is instantaneous.
 * - IOWIN accesses narrower than 4 bytes are ignored (read 0); IOREGSEL takes its low byte.
 */
import type { IoSize } from "../clock.ts"

export const IOAPIC_BASE = 0xfec00000
export const IOAPIC_SIZE = 0x1000
export const IOAPIC_NUM_PINS = 24
export const IOAPIC_IOREGSEL = 0x00
export const IOAPIC_IOWIN = 0x10
export const IOAPIC_REG_ID = 0x00
export const IOAPIC_REG_VER = 0x01
export const IOAPIC_REG_ARB = 0x02
export const IOAPIC_REG_REDTBL = 0x10
export const IOAPIC_VERSION = 0x11

export const RTE_MASKED = 1 << 16
export const RTE_TRIGGER_LEVEL = 1 << 15
export const RTE_REMOTE_IRR = 1 << 14
const RTE_WRITABLE_LOW = 0xff | (7 << 8) | (1 << 11) | (1 << 13) | RTE_TRIGGER_LEVEL | RTE_MASKED

/** APIC delivery modes (SDM vol. 3, ICR and redirection entries). */
export const DM_FIXED = 0
export const DM_LOWEST = 1
export const DM_SMI = 2
export const DM_NMI = 4
export const DM_INIT = 5
export const DM_STARTUP = 6
export const DM_EXTINT = 7

/** An interrupt message on the APIC bus (what the IOAPIC and IPIs send to local APICs). */
export interface ApicMessage {
  readonly vector: number
  readonly deliveryMode: number
  /** false: physical destination (APIC ID); true: logical (matched against LDR/DFR). */
  readonly logical: boolean
  readonly dest: number
  readonly level: boolean
  /** The IOAPIC pin that sent it, or -1 for an IPI. */
  readonly pin: number
}

export interface IoapicState {
  readonly id: number
  readonly ioregsel: number
  /** Low dwords of the redirection entries (Remote IRR lives in bit 14). */
  readonly rteLow: readonly number[]
  /** High dwords: destination in bits 31-24. */
  readonly rteHigh: readonly number[]
  /** Pending requests, one bit per pin (level pins: asserted; edge pins: an undelivered edge). */
  readonly irr: number
  /** Input line levels, for edge detection. */
  readonly lines: number
}

/** Reset: every entry masked, edge, vector 0 (82093AA). */
export const ioapicInitial: IoapicState = Object.freeze({
  id: 0,
  ioregsel: 0,
  rteLow: Object.freeze(new Array<number>(IOAPIC_NUM_PINS).fill(RTE_MASKED)),
  rteHigh: Object.freeze(new Array<number>(IOAPIC_NUM_PINS).fill(0)),
  irr: 0,
  lines: 0
})

export interface IoapicResult {
  readonly state: IoapicState
  /** Messages to deliver to the local APICs, in pin order. */
  readonly messages: readonly ApicMessage[]
}

const messageOf = (s: IoapicState, pin: number): ApicMessage => {
  const lo = s.rteLow[pin]!
  return {
    vector: lo & 0xff,
    deliveryMode: (lo >> 8) & 7,
    logical: (lo & (1 << 11)) !== 0,
    dest: s.rteHigh[pin]! >>> 24,
    level: (lo & RTE_TRIGGER_LEVEL) !== 0,
    pin
  }
}

/** Deliver every pending, unmasked pin that may be delivered (QEMU's ioapic_service). */
const service = (s0: IoapicState): IoapicResult => {
  let s = s0
  const messages: ApicMessage[] = []
  for (let pin = 0; pin < IOAPIC_NUM_PINS; pin++) {
    const bit = 1 << pin
    if ((s.irr & bit) === 0) continue
    const lo = s.rteLow[pin]!
    if ((lo & RTE_MASKED) !== 0) continue
    if ((lo & RTE_TRIGGER_LEVEL) !== 0) {
      if ((lo & RTE_REMOTE_IRR) !== 0) continue
      const rteLow = [...s.rteLow]
      rteLow[pin] = lo | RTE_REMOTE_IRR
      s = { ...s, rteLow }
    } else {
      s = { ...s, irr: s.irr & ~bit }
    }
    messages.push(messageOf(s, pin))
  }
  return { state: s, messages }
}

/** Drive pin 0-23 to `level` (asserted or not). */
export const ioapicSetIrq = (s: IoapicState, pin: number, level: boolean): IoapicResult => {
  if (pin < 0 || pin >= IOAPIC_NUM_PINS) return { state: s, messages: [] }
  const bit = 1 << pin
  const isLevel = (s.rteLow[pin]! & RTE_TRIGGER_LEVEL) !== 0
  const lines = level ? s.lines | bit : s.lines & ~bit
  let irr = s.irr
  if (isLevel) irr = level ? irr | bit : irr & ~bit
  else if (level && (s.lines & bit) === 0) irr |= bit
  if (irr === s.irr && lines === s.lines) return { state: s, messages: [] }
  return service({ ...s, irr, lines })
}

/**
 * A local APIC's EOI for `vector` was broadcast (level-triggered interrupts): clear
 * Remote IRR of the level entries with that vector, and deliver again those still asserted.
 */
export const ioapicEoi = (s: IoapicState, vector: number): IoapicResult => {
  let rteLow: number[] | undefined
  for (let pin = 0; pin < IOAPIC_NUM_PINS; pin++) {
    const lo = s.rteLow[pin]!
    if ((lo & 0xff) !== vector || (lo & RTE_REMOTE_IRR) === 0) continue
    rteLow ??= [...s.rteLow]
    rteLow[pin] = lo & ~RTE_REMOTE_IRR
  }
  return rteLow === undefined ? { state: s, messages: [] } : service({ ...s, rteLow })
}

const readRegister = (s: IoapicState, index: number): number => {
  switch (index) {
    case IOAPIC_REG_ID:
    case IOAPIC_REG_ARB: // the arbitration ID is loaded from the ID (KVM; QEMU reads 0)
      return (s.id & 0xf) << 24
    case IOAPIC_REG_VER:
      return (((IOAPIC_NUM_PINS - 1) << 16) | IOAPIC_VERSION) >>> 0
    default: {
      const n = (index - IOAPIC_REG_REDTBL) >> 1
      if (index < IOAPIC_REG_REDTBL || n >= IOAPIC_NUM_PINS) return 0
      return (index & 1) === 0 ? s.rteLow[n]! : s.rteHigh[n]!
    }
  }
}

/** A guest MMIO read at `offset` from the IOAPIC base. */
export const ioapicRead = (s: IoapicState, offset: number, size: IoSize): { readonly state: IoapicState; readonly value: number } => {
  if (offset === IOAPIC_IOREGSEL) return { state: s, value: s.ioregsel }
  if (offset === IOAPIC_IOWIN && size === 4) return { state: s, value: readRegister(s, s.ioregsel) >>> 0 }
  return { state: s, value: 0 }
}

/** A guest MMIO write at `offset` from the IOAPIC base. */
export const ioapicWrite = (s: IoapicState, offset: number, size: IoSize, value: number): IoapicResult => {
  if (offset === IOAPIC_IOREGSEL) return { state: { ...s, ioregsel: value & 0xff }, messages: [] }
  if (offset !== IOAPIC_IOWIN || size !== 4) return { state: s, messages: [] }
  const index = s.ioregsel
  if (index === IOAPIC_REG_ID) return { state: { ...s, id: (value >>> 24) & 0xf }, messages: [] }
  const n = (index - IOAPIC_REG_REDTBL) >> 1
  if (index < IOAPIC_REG_REDTBL || n >= IOAPIC_NUM_PINS) return { state: s, messages: [] }
  if ((index & 1) === 1) {
    const rteHigh = [...s.rteHigh]
    rteHigh[n] = value & 0xff000000
    return { state: { ...s, rteHigh: rteHigh.map((v) => v >>> 0) }, messages: [] }
  }
  const old = s.rteLow[n]!
  let lo = (value & RTE_WRITABLE_LOW) | (old & RTE_REMOTE_IRR)
  if ((lo & RTE_TRIGGER_LEVEL) === 0) lo &= ~RTE_REMOTE_IRR
  const rteLow = [...s.rteLow]
  rteLow[n] = lo
  // The trigger mode decides what IRR means for the pin: a level pin is pending while its line is high.
  const bit = 1 << n
  const wasLevel = (old & RTE_TRIGGER_LEVEL) !== 0
  const irr = (lo & RTE_TRIGGER_LEVEL) !== 0 ? (s.irr & ~bit) | (s.lines & bit) : wasLevel ? s.irr & ~bit : s.irr
  return service({ ...s, rteLow, irr })
}
