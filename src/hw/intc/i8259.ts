/**
 * A cascaded pair of Intel 8259A programmable interrupt controllers, as on every PC:
 * master at 0x20/0x21 delivering INTR to the CPU, slave at 0xa0/0xa1 cascaded into the
 * master's IRQ2, and the PIIX edge/level control registers (ELCR) at 0x4d0/0x4d1.
 * (QEMU hw/intc/i8259.c, KVM arch/x86/kvm/i8259.c.)
 *
 * Pure: every function takes a state and returns a new one. The host (KVM's in-kernel
 * irqchip or QEMU) raises lines with `picSetIrq`, reads `picIntr` before VM entry, and
 * runs `picInterruptAcknowledge` (the INTA cycle) when it injects.
 *
 * Choices where the datasheet leaves room, following QEMU and KVM:
 * - ICW1.LTIM (level mode for all inputs) is ignored: on PIIX the ELCR decides edge or
 *   level per line, and the PIIX datasheet says LTIM must be 0.
 * - ICW3 is accepted and ignored: the cascade is fixed (slave on master IRQ2).
 * - Buffered mode (ICW4 bits 2-3) and 8080 mode (ICW4 bit 0 = 0) have no effect.
 * - Rotation (OCW2 rotate commands, set priority) is modelled: it is one number.
 * - Poll mode (OCW3 bit 2) is modelled per chip: the next read of the command port
 *   acknowledges the highest request of that chip and returns 0x80 | irq (0 if none).
 * - Level-triggered lines are not cleared from IRR by INTA; they stay requested while
 *   the line is high, so an EOI with the line still high requests again.
 */
import type { IoSize } from "../clock.ts"

export interface Pic8259State {
  /** The input line levels as last seen (edge detection). */
  readonly lastIrr: number
  readonly irr: number
  readonly imr: number
  readonly isr: number
  /** Rotation: the line with the highest priority is `priorityAdd` (0 = fixed, IRQ0 highest). */
  readonly priorityAdd: number
  /** ICW2: vector of IRQ0 on this chip (low 3 bits 0). */
  readonly irqBase: number
  /** OCW3 RR/RIS: a command-port read returns ISR (true) or IRR (false). */
  readonly readIsr: boolean
  readonly poll: boolean
  readonly specialMask: boolean
  /** 0: operational; 1, 2, 3: waiting for ICW2, ICW3, ICW4. */
  readonly initState: number
  readonly autoEoi: boolean
  readonly rotateOnAutoEoi: boolean
  readonly specialFullyNested: boolean
  readonly init4: boolean
  readonly singleMode: boolean
  /** ELCR: 1 bits are level-triggered lines. */
  readonly elcr: number
  /** The ELCR bits that can be set (PIIX: 0xf8 master, 0xde slave: IRQ0, 1, 2, 8, 13 are always edge). */
  readonly elcrMask: number
}

export interface PicPairState {
  readonly master: Pic8259State
  readonly slave: Pic8259State
}

export const PIC_MASTER_CMD = 0x20
export const PIC_MASTER_DATA = 0x21
export const PIC_SLAVE_CMD = 0xa0
export const PIC_SLAVE_DATA = 0xa1
export const PIC_ELCR_MASTER = 0x4d0
export const PIC_ELCR_SLAVE = 0x4d1
/** The master input the slave's INT output drives. */
export const PIC_CASCADE_IRQ = 2

const chipInitial = (elcrMask: number): Pic8259State =>
  Object.freeze({
    lastIrr: 0,
    irr: 0,
    imr: 0,
    isr: 0,
    priorityAdd: 0,
    irqBase: 0,
    readIsr: false,
    poll: false,
    specialMask: false,
    initState: 0,
    autoEoi: false,
    rotateOnAutoEoi: false,
    specialFullyNested: false,
    init4: false,
    singleMode: false,
    elcr: 0,
    elcrMask
  })

/** Power-on state (QEMU's reset: IMR 0, vector bases 0, until the guest programs ICW1-4). */
export const picInitial: PicPairState = Object.freeze({ master: chipInitial(0xf8), slave: chipInitial(0xde) })

/** Priority (0 = highest) of the highest-priority bit in `mask`, 8 if none. */
const priorityOf = (s: Pic8259State, mask: number): number => {
  if ((mask & 0xff) === 0) return 8
  let p = 0
  while ((mask & (1 << ((p + s.priorityAdd) & 7))) === 0) p++
  return p
}

/** The line this chip would signal on INT now, or -1. */
const chipPendingIrq = (s: Pic8259State, isMaster: boolean): number => {
  const p = priorityOf(s, s.irr & ~s.imr)
  if (p === 8) return -1
  // In service lines block equal and lower priorities. Special mask mode lets masked
  // in-service lines stop blocking; special fully nested mode lets the slave interrupt
  // the master's in-service IRQ2 (so a higher slave line can nest).
  let inService = s.isr
  if (s.specialMask) inService &= ~s.imr
  if (s.specialFullyNested && isMaster) inService &= ~(1 << PIC_CASCADE_IRQ)
  return p < priorityOf(s, inService) ? (p + s.priorityAdd) & 7 : -1
}

const chipSetLine = (s: Pic8259State, irq: number, level: boolean): Pic8259State => {
  const mask = 1 << irq
  if ((s.elcr & mask) !== 0) {
    // Level: requested exactly while the line is high.
    return level
      ? { ...s, irr: s.irr | mask, lastIrr: s.lastIrr | mask }
      : { ...s, irr: s.irr & ~mask, lastIrr: s.lastIrr & ~mask }
  }
  // Edge: a rising edge latches a request; lowering the line does not withdraw it.
  if (level) {
    const rising = (s.lastIrr & mask) === 0
    return { ...s, irr: rising ? s.irr | mask : s.irr, lastIrr: s.lastIrr | mask }
  }
  return (s.lastIrr & mask) === 0 ? s : { ...s, lastIrr: s.lastIrr & ~mask }
}

/** The slave's INT output feeds master IRQ2; call after anything that may change it. */
const cascade = (pair: PicPairState): PicPairState => {
  const level = chipPendingIrq(pair.slave, false) >= 0
  const master = chipSetLine(pair.master, PIC_CASCADE_IRQ, level)
  return master === pair.master ? pair : { master, slave: pair.slave }
}

/** The INTA of one chip for `irq`: into ISR (unless auto-EOI), out of IRR if edge. */
const chipIntack = (s: Pic8259State, irq: number): Pic8259State => {
  const mask = 1 << irq
  let next: Pic8259State = s
  if (s.autoEoi) {
    if (s.rotateOnAutoEoi) next = { ...next, priorityAdd: (irq + 1) & 7 }
  } else {
    next = { ...next, isr: next.isr | mask }
  }
  if ((s.elcr & mask) === 0) next = { ...next, irr: next.irr & ~mask }
  return next
}

/**
 * Drive input line 0-15 (8-15 are the slave's) to `level`. Edge-triggered lines
 * latch a request on a rising edge; level-triggered (ELCR) ones follow the level.
 */
export const picSetIrq = (pair: PicPairState, line: number, level: boolean): PicPairState => {
  if (line < 0 || line > 15) return pair
  if (line < 8) return { master: chipSetLine(pair.master, line, level), slave: pair.slave }
  return cascade({ master: pair.master, slave: chipSetLine(pair.slave, line - 8, level) })
}

/** The master's INT output: the CPU's INTR pin. */
export const picIntr = (pair: PicPairState): boolean => chipPendingIrq(pair.master, true) >= 0

/**
 * The INTA cycle: the vector the CPU gets and the state after it. If the request went
 * away (a masked or lowered line), the chip answers with its lowest-priority line,
 * IRQ7 (or IRQ15 on the slave), without setting ISR: the spurious interrupt.
 */
export const picInterruptAcknowledge = (pair: PicPairState): { readonly state: PicPairState; readonly vector: number } => {
  const irq = chipPendingIrq(pair.master, true)
  if (irq < 0) return { state: pair, vector: pair.master.irqBase + 7 }
  const master = chipIntack(pair.master, irq)
  if (irq !== PIC_CASCADE_IRQ) return { state: { master, slave: pair.slave }, vector: pair.master.irqBase + irq }
  const irq2 = chipPendingIrq(pair.slave, false)
  if (irq2 < 0) return { state: cascade({ master, slave: pair.slave }), vector: pair.slave.irqBase + 7 }
  const slave = chipIntack(pair.slave, irq2)
  return { state: cascade({ master, slave }), vector: pair.slave.irqBase + irq2 }
}

/** The highest pending line 0-15 as INTA would see it, or -1 (for tracing: `kvm_pic_set_irq`). */
export const picPendingIrq = (pair: PicPairState): number => {
  const irq = chipPendingIrq(pair.master, true)
  if (irq !== PIC_CASCADE_IRQ) return irq
  const irq2 = chipPendingIrq(pair.slave, false)
  return irq2 < 0 ? -1 : irq2 + 8
}

const chipInitReset = (s: Pic8259State): Pic8259State => ({
  ...chipInitial(s.elcrMask),
  // Level requests survive ICW1 (the line is still high); edge history does not.
  irr: s.irr & s.elcr,
  elcr: s.elcr
})

const eoiLine = (s: Pic8259State, irq: number, rotate: boolean): Pic8259State => ({
  ...s,
  isr: s.isr & ~(1 << irq),
  priorityAdd: rotate ? (irq + 1) & 7 : s.priorityAdd
})

const writeCommand = (s: Pic8259State, v: number): Pic8259State => {
  if ((v & 0x10) !== 0) {
    // ICW1: starts the init sequence; ICW2 (vector base) comes next on the data port.
    return { ...chipInitReset(s), initState: 1, init4: (v & 0x01) !== 0, singleMode: (v & 0x02) !== 0 }
  }
  if ((v & 0x08) !== 0) {
    // OCW3.
    let next: Pic8259State = s
    if ((v & 0x04) !== 0) next = { ...next, poll: true }
    if ((v & 0x02) !== 0) next = { ...next, readIsr: (v & 0x01) !== 0 }
    if ((v & 0x40) !== 0) next = { ...next, specialMask: (v & 0x20) !== 0 }
    return next
  }
  // OCW2: bits 7-5 are R, SL, EOI.
  switch (v >> 5) {
    case 0: // rotate in automatic EOI mode: clear
    case 4: // ... set
      return { ...s, rotateOnAutoEoi: v >> 5 === 4 }
    case 1: // non-specific EOI
    case 5: {
      // rotate on non-specific EOI
      const p = priorityOf(s, s.isr)
      return p === 8 ? s : eoiLine(s, (p + s.priorityAdd) & 7, v >> 5 === 5)
    }
    case 3: // specific EOI
    case 7: // rotate on specific EOI
      return eoiLine(s, v & 7, v >> 5 === 7)
    case 6: // set priority: line v&7 becomes the lowest
      return { ...s, priorityAdd: (v + 1) & 7 }
    default: // 2: no operation
      return s
  }
}

const writeData = (s: Pic8259State, v: number): Pic8259State => {
  switch (s.initState) {
    case 0:
      return { ...s, imr: v }
    case 1:
      return { ...s, irqBase: v & 0xf8, initState: s.singleMode ? (s.init4 ? 3 : 0) : 2 }
    case 2:
      return { ...s, initState: s.init4 ? 3 : 0 }
    default:
      // ICW4: bit 1 AEOI, bit 4 SFNM.
      return { ...s, autoEoi: (v & 0x02) !== 0, specialFullyNested: (v & 0x10) !== 0, initState: 0 }
  }
}

const readCommand = (s: Pic8259State, isMaster: boolean): { state: Pic8259State; value: number } => {
  if (s.poll) {
    const irq = chipPendingIrq(s, isMaster)
    const state = { ...s, poll: false }
    return irq < 0 ? { state, value: 0 } : { state: chipIntack(state, irq), value: 0x80 | irq }
  }
  return { state: s, value: s.readIsr ? s.isr : s.irr }
}

type Which = "master" | "slave"

const withChip = (pair: PicPairState, which: Which, chip: Pic8259State): PicPairState =>
  cascade(which === "master" ? { master: chip, slave: pair.slave } : { master: pair.master, slave: chip })

/** True for the ports this model answers: 0x20-0x21, 0xa0-0xa1, 0x4d0-0x4d1. */
export const picHandlesPort = (port: number): boolean =>
  port === 0x20 || port === 0x21 || port === 0xa0 || port === 0xa1 || port === 0x4d0 || port === 0x4d1

/** A guest IN from `port` (absolute). Each register is a byte; wider reads see the byte zero-extended. */
export const picIoRead = (pair: PicPairState, port: number, _size: IoSize = 1): { readonly state: PicPairState; readonly value: number } => {
  switch (port) {
    case PIC_MASTER_CMD:
    case PIC_SLAVE_CMD: {
      const which: Which = port === PIC_MASTER_CMD ? "master" : "slave"
      const r = readCommand(pair[which], which === "master")
      return { state: r.state === pair[which] ? pair : withChip(pair, which, r.state), value: r.value }
    }
    case PIC_MASTER_DATA:
      return { state: pair, value: pair.master.imr }
    case PIC_SLAVE_DATA:
      return { state: pair, value: pair.slave.imr }
    case PIC_ELCR_MASTER:
      return { state: pair, value: pair.master.elcr }
    case PIC_ELCR_SLAVE:
      return { state: pair, value: pair.slave.elcr }
    default:
      return { state: pair, value: 0xff }
  }
}

/** A guest OUT to `port` (absolute); only the low byte counts. */
export const picIoWrite = (pair: PicPairState, port: number, value: number, _size: IoSize = 1): PicPairState => {
  const v = value & 0xff
  switch (port) {
    case PIC_MASTER_CMD:
      return withChip(pair, "master", writeCommand(pair.master, v))
    case PIC_SLAVE_CMD:
      return withChip(pair, "slave", writeCommand(pair.slave, v))
    case PIC_MASTER_DATA:
      return withChip(pair, "master", writeData(pair.master, v))
    case PIC_SLAVE_DATA:
      return withChip(pair, "slave", writeData(pair.slave, v))
    case PIC_ELCR_MASTER:
      return withChip(pair, "master", { ...pair.master, elcr: v & pair.master.elcrMask })
    case PIC_ELCR_SLAVE:
      return withChip(pair, "slave", { ...pair.slave, elcr: v & pair.slave.elcrMask })
    default:
      return pair
  }
}
