/**
 * The local APIC in xAPIC mode (MMIO at 0xfee00000), as KVM (arch/x86/kvm/lapic.c) and
 * QEMU (hw/intc/apic.c) model it for one vCPU: ID, version, TPR/PPR, EOI, LDR/DFR, SVR,
 * the 256-bit ISR/TMR/IRR, the LVT (timer, thermal, performance, LINT0, LINT1, error),
 * the timer with its divide configuration, and the ICR.
 *
 * The vCPU loop asks `lapicPendingVector` before VM entry (what may be injected given
 * PPR), calls `lapicAcknowledge` when it injects (IRR -> ISR), and `lapicAdvance` /
 * `lapicNextDeadline` for the timer. Messages from the IOAPIC and IPIs come in through
 * `lapicAcceptIrq`. A guest EOI is reported back (`eoi`) so the host can broadcast
 * level-triggered ones to the IOAPIC (`KVM_EXIT_IOAPIC_EOI` in split mode).
 *
 * The timer counts APIC bus cycles of 1 ns (KVM's APIC_BUS_CYCLE_NS = 1; QEMU's apic
 * counts in ns too), divided by the divide configuration, on virtual time.
 *
 * Choices and simplifications:
 * - One vCPU: an IPI that targets others is returned as a message (`ipi`) for the
 *   host; one that targets this APIC (self, all-including-self, or a destination that
 *   matches) is accepted here. INIT, SIPI and SMI are not acted on.
 * - Fixed and lowest-priority interrupts are dropped while the APIC is software
 *   disabled (SVR bit 8 = 0), as KVM does; NMIs are kept in `nmiPending`.
 * - ExtINT is not a vector: when LINT0 is ExtINT (or the APIC is hardware disabled) the
 *   PIC's INTR goes to the CPU directly; `lapicAcceptsPicInterrupts` says when.
 * - At reset the BSP's LINT0 is ExtINT and unmasked, as both QEMU and KVM set it up
 *   (the firmware's job on real boards), so the PIC works without touching the APIC.
 * - ESR reads 0: illegal-vector and other errors are not detected.
 * - TSC-deadline mode (LVT timer mode 2) is stored but its timer does not run.
 * - Writes must be 4 bytes at a register's offset (others are dropped, as KVM);
 *   reads of 1, 2 or 4 bytes inside the register's first dword are allowed.
 * - Changing the divide configuration keeps the current count and counts on at the new rate.
 * - Directed EOI and the spurious-interrupt delivery path are not modelled.
 */
import { insnsForNs, nsAt, type IoSize } from "../clock.ts"
import { DM_EXTINT, DM_FIXED, DM_INIT, DM_LOWEST, DM_NMI, type ApicMessage } from "./ioapic.ts"

export const LAPIC_BASE = 0xfee00000
export const LAPIC_SIZE = 0x1000

export const APIC_ID = 0x20
export const APIC_LVR = 0x30
export const APIC_TPR = 0x80
export const APIC_APR = 0x90
export const APIC_PPR = 0xa0
export const APIC_EOI = 0xb0
export const APIC_LDR = 0xd0
export const APIC_DFR = 0xe0
export const APIC_SVR = 0xf0
export const APIC_ISR = 0x100
export const APIC_TMR = 0x180
export const APIC_IRR = 0x200
export const APIC_ESR = 0x280
export const APIC_ICR = 0x300
export const APIC_ICR2 = 0x310
export const APIC_LVTT = 0x320
export const APIC_LVTTHMR = 0x330
export const APIC_LVTPC = 0x340
export const APIC_LVT0 = 0x350
export const APIC_LVT1 = 0x360
export const APIC_LVTERR = 0x370
export const APIC_TMICT = 0x380
export const APIC_TMCCT = 0x390
export const APIC_TDCR = 0x3e0

/** Version 0x14 (integrated APIC) with 6 LVT entries (max LVT index 5 in bits 23-16). */
export const APIC_VERSION = 0x00050014
export const APIC_SVR_ENABLE = 1 << 8
export const APIC_LVT_MASKED = 1 << 16
export const APIC_LVT_LEVEL = 1 << 15
export const APIC_TIMER_PERIODIC = 1 << 17
export const APIC_TIMER_TSC_DEADLINE = 2 << 17
export const MSR_APIC_BASE_ENABLE = 1 << 11
export const MSR_APIC_BASE_BSP = 1 << 8

/** LVT indices in `lvt`, in register order 0x320..0x370. */
export const LVT_TIMER = 0
export const LVT_THERMAL = 1
export const LVT_PERF = 2
export const LVT_LINT0 = 3
export const LVT_LINT1 = 4
export const LVT_ERROR = 5

const LVT_BASE_BITS = APIC_LVT_MASKED | 0xff
const MODE_BITS = 7 << 8
const LVT_WRITABLE = [
  LVT_BASE_BITS | (3 << 17), // timer: mode
  LVT_BASE_BITS | MODE_BITS,
  LVT_BASE_BITS | MODE_BITS,
  LVT_BASE_BITS | MODE_BITS | (1 << 13) | APIC_LVT_LEVEL, // LINT0: mode, polarity, trigger
  LVT_BASE_BITS | MODE_BITS | (1 << 13) | APIC_LVT_LEVEL,
  LVT_BASE_BITS
] as const

export interface LapicState {
  readonly shift: number
  /** IA32_APIC_BASE MSR value (base address, enable bit 11, BSP bit 8). */
  readonly apicBase: number
  readonly id: number
  readonly tpr: number
  readonly ldr: number
  readonly dfr: number
  readonly svr: number
  /** 256-bit registers, 8 dwords each, dword i holding vectors 32i..32i+31. */
  readonly isr: readonly number[]
  readonly tmr: readonly number[]
  readonly irr: readonly number[]
  readonly icrLow: number
  readonly icrHigh: number
  readonly lvt: readonly number[]
  readonly initialCount: number
  readonly divideConfig: number
  /** Virtual ns at which the current count period began. */
  readonly timerLoadNs: number
  /** Virtual ns up to which timer expiries have been taken. */
  readonly ns: number
  readonly nmiPending: boolean
}

export interface LapicConfig {
  readonly shift: number
  readonly id?: number
  /** The boot processor: LINT0 starts as unmasked ExtINT (QEMU and KVM). */
  readonly bsp?: boolean
}

const zero256 = Object.freeze([0, 0, 0, 0, 0, 0, 0, 0]) as readonly number[]

/** The local APIC after reset (hardware enabled at 0xfee00000, software disabled: SVR 0xff). */
export const lapicCreate = (config: LapicConfig): LapicState => {
  const bsp = config.bsp ?? true
  const lvt = new Array<number>(6).fill(APIC_LVT_MASKED)
  if (bsp) lvt[LVT_LINT0] = DM_EXTINT << 8
  return {
    shift: config.shift,
    apicBase: (LAPIC_BASE | MSR_APIC_BASE_ENABLE | (bsp ? MSR_APIC_BASE_BSP : 0)) >>> 0,
    id: config.id ?? 0,
    tpr: 0,
    ldr: 0,
    dfr: 0xffffffff,
    svr: 0xff,
    isr: zero256,
    tmr: zero256,
    irr: zero256,
    icrLow: 0,
    icrHigh: 0,
    lvt,
    initialCount: 0,
    divideConfig: 0,
    timerLoadNs: 0,
    ns: 0,
    nmiPending: false
  }
}

const hasBit = (set: readonly number[], v: number): boolean => ((set[v >> 5]! >>> (v & 31)) & 1) !== 0
const withBit = (set: readonly number[], v: number, on: boolean): readonly number[] => {
  const next = [...set]
  next[v >> 5] = (on ? next[v >> 5]! | (1 << (v & 31)) : next[v >> 5]! & ~(1 << (v & 31))) >>> 0
  return next
}
/** The highest vector set, or -1. */
const highest = (set: readonly number[]): number => {
  for (let i = 7; i >= 0; i--) if (set[i] !== 0) return i * 32 + 31 - Math.clz32(set[i]!)
  return -1
}

export const lapicHwEnabled = (s: LapicState): boolean => (s.apicBase & MSR_APIC_BASE_ENABLE) !== 0
export const lapicSwEnabled = (s: LapicState): boolean => (s.svr & APIC_SVR_ENABLE) !== 0

/** PPR: the TPR, or the class of the highest in-service vector if that is higher (SDM 10.8.3.1). */
export const lapicPpr = (s: LapicState): number => {
  const isrv = Math.max(highest(s.isr), 0)
  return (s.tpr & 0xf0) >= (isrv & 0xf0) ? s.tpr & 0xff : isrv & 0xf0
}

/** The vector the APIC would deliver to the CPU now (highest IRR above PPR's class), or -1. */
export const lapicPendingVector = (s: LapicState): number => {
  if (!lapicHwEnabled(s)) return -1
  const v = highest(s.irr)
  return v >= 0 && (v & 0xf0) > (lapicPpr(s) & 0xf0) ? v : -1
}

/** The interrupt is taken (injected): its IRR bit moves to ISR. */
export const lapicAcknowledge = (s: LapicState): { readonly state: LapicState; readonly vector: number } => {
  const vector = lapicPendingVector(s)
  if (vector < 0) return { state: s, vector }
  return { state: { ...s, irr: withBit(s.irr, vector, false), isr: withBit(s.isr, vector, true) }, vector }
}

/** The NMI was injected. */
export const lapicAcknowledgeNmi = (s: LapicState): LapicState => (s.nmiPending ? { ...s, nmiPending: false } : s)

/** KVM's kvm_apic_accept_pic_intr: the PIC's INTR reaches the CPU (LINT0 unmasked ExtINT, or APIC off). */
export const lapicAcceptsPicInterrupts = (s: LapicState): boolean => {
  if (!lapicHwEnabled(s)) return true
  const lvt0 = s.lvt[LVT_LINT0]!
  return (lvt0 & APIC_LVT_MASKED) === 0 && ((lvt0 >> 8) & 7) === DM_EXTINT
}

/** Whether a message's destination names this APIC (flat or cluster logical, or physical; 0xff broadcasts). */
export const lapicMatchDest = (s: LapicState, logical: boolean, dest: number): boolean => {
  if (dest === 0xff) return true
  if (!logical) return dest === s.id
  const ldr = s.ldr >>> 24
  if (s.dfr >>> 28 === 0xf) return (ldr & dest) !== 0
  // Cluster model: high nibble the cluster, low nibble a bitmap within it.
  return ldr >> 4 === dest >> 4 && (ldr & dest & 0xf) !== 0
}

const accept = (s: LapicState, deliveryMode: number, vector: number, level: boolean): LapicState => {
  switch (deliveryMode) {
    case DM_FIXED:
    case DM_LOWEST:
      if (!lapicSwEnabled(s) || !lapicHwEnabled(s)) return s
      return { ...s, irr: withBit(s.irr, vector & 0xff, true), tmr: withBit(s.tmr, vector & 0xff, level) }
    case DM_NMI:
      return s.nmiPending ? s : { ...s, nmiPending: true }
    default:
      return s
  }
}

/** An interrupt message for this APIC (from the IOAPIC or an IPI): `kvm_apic_accept_irq`. */
export const lapicAcceptIrq = (s: LapicState, msg: ApicMessage): LapicState =>
  accept(s, msg.deliveryMode, msg.vector, msg.level)

/**
 * An edge on LINT0 or LINT1 (0 or 1): delivered as its LVT entry says. ExtINT does
 * nothing here (the PIC path, see `lapicAcceptsPicInterrupts`).
 */
export const lapicLint = (s: LapicState, lint: 0 | 1): LapicState => {
  const e = s.lvt[LVT_LINT0 + lint]!
  if ((e & APIC_LVT_MASKED) !== 0) return s
  return accept(s, (e >> 8) & 7, e & 0xff, (e & APIC_LVT_LEVEL) !== 0)
}

// --- Timer -------------------------------------------------------------------

/** Bus cycles per timer count: divide configuration bits 3, 1, 0 -> 2, 4, ..., 128, 1. */
export const lapicDivisor = (dcr: number): number => 1 << ((((dcr & 3) | ((dcr & 8) >> 1)) + 1) & 7)

const timerMode = (s: LapicState): number => (s.lvt[LVT_TIMER]! >> 17) & 3
/** ns per timer period, or 0 when the timer is stopped. */
const periodNs = (s: LapicState): number =>
  s.initialCount === 0 || timerMode(s) === 2 ? 0 : s.initialCount * lapicDivisor(s.divideConfig)

/** Expiries in (load, load + elapsed]. */
const expiriesUpTo = (s: LapicState, elapsed: number): number => {
  const p = periodNs(s)
  if (p === 0 || elapsed < p) return 0
  return timerMode(s) === 1 ? Math.floor(elapsed / p) : 1
}

/** Bring the timer to instruction count `now`: an expiry sets the LVT timer vector in IRR (unless masked). */
export const lapicAdvance = (s: LapicState, now: number): LapicState => {
  const ns = nsAt(now, s.shift)
  if (ns <= s.ns) return s
  const fired = expiriesUpTo(s, ns - s.timerLoadNs) - expiriesUpTo(s, s.ns - s.timerLoadNs)
  const next = { ...s, ns }
  const lvtt = s.lvt[LVT_TIMER]!
  if (fired === 0 || (lvtt & APIC_LVT_MASKED) !== 0) return next
  return accept(next, DM_FIXED, lvtt & 0xff, false)
}

/** The instruction count of the next timer expiry, or undefined. */
export const lapicNextDeadline = (s: LapicState): number | undefined => {
  const p = periodNs(s)
  if (p === 0) return undefined
  const elapsed = s.ns - s.timerLoadNs
  const k = Math.floor(elapsed / p) + 1
  if (timerMode(s) !== 1 && k > 1) return undefined // one-shot already fired
  return insnsForNs(s.timerLoadNs + k * p, s.shift)
}

/** The current count register at the state's time. */
export const lapicCurrentCount = (s: LapicState): number => {
  const p = periodNs(s)
  if (p === 0) return 0
  const cycles = Math.floor((s.ns - s.timerLoadNs) / lapicDivisor(s.divideConfig))
  if (timerMode(s) === 1) return s.initialCount - (cycles % s.initialCount)
  return cycles >= s.initialCount ? 0 : s.initialCount - cycles
}

// --- Registers -----------------------------------------------------------------

const readRegister = (s: LapicState, reg: number): number => {
  if (reg >= APIC_ISR && reg < APIC_ISR + 0x80) return s.isr[(reg - APIC_ISR) >> 4]!
  if (reg >= APIC_TMR && reg < APIC_TMR + 0x80) return s.tmr[(reg - APIC_TMR) >> 4]!
  if (reg >= APIC_IRR && reg < APIC_IRR + 0x80) return s.irr[(reg - APIC_IRR) >> 4]!
  if (reg >= APIC_LVTT && reg <= APIC_LVTERR) return s.lvt[(reg - APIC_LVTT) >> 4]!
  switch (reg) {
    case APIC_ID:
      return (s.id << 24) >>> 0
    case APIC_LVR:
      return APIC_VERSION
    case APIC_TPR:
      return s.tpr
    case APIC_PPR:
      return lapicPpr(s)
    case APIC_LDR:
      return s.ldr
    case APIC_DFR:
      return s.dfr
    case APIC_SVR:
      return s.svr
    case APIC_ICR:
      return s.icrLow // delivery status (bit 12) always idle
    case APIC_ICR2:
      return s.icrHigh
    case APIC_TMICT:
      return s.initialCount
    case APIC_TMCCT:
      return lapicCurrentCount(s)
    case APIC_TDCR:
      return s.divideConfig
    default:
      return 0 // APR, EOI (write-only), ESR, reserved
  }
}

export interface LapicWriteResult {
  readonly state: LapicState
  /** A guest EOI: the vector it retired (-1 if ISR was empty) and whether it was level-triggered (TMR). */
  readonly eoi?: { readonly vector: number; readonly level: boolean }
  /** An IPI for other CPUs (the ICR's destination is not only this APIC). */
  readonly ipi?: ApicMessage
}

const eoi = (s: LapicState): LapicWriteResult => {
  const vector = highest(s.isr)
  if (vector < 0) return { state: s, eoi: { vector, level: false } }
  return { state: { ...s, isr: withBit(s.isr, vector, false) }, eoi: { vector, level: hasBit(s.tmr, vector) } }
}

const sendIpi = (s: LapicState): LapicWriteResult => {
  const lo = s.icrLow
  const msg: ApicMessage = {
    vector: lo & 0xff,
    deliveryMode: (lo >> 8) & 7,
    logical: (lo & (1 << 11)) !== 0,
    dest: s.icrHigh >>> 24,
    level: (lo & APIC_LVT_LEVEL) !== 0,
    pin: -1
  }
  // A level-triggered INIT de-assert is only a synchronisation message: nothing to deliver.
  if (msg.deliveryMode === DM_INIT && (lo & (1 << 14)) === 0) return { state: s }
  // Interrupts sent by IPI are edge-triggered as far as TMR is concerned (SDM: fixed IPIs are edge).
  const toSelf = (st: LapicState): LapicState => accept(st, msg.deliveryMode, msg.vector, false)
  switch ((lo >> 18) & 3) {
    case 1: // self
      return { state: toSelf(s) }
    case 2: // all including self
      return { state: toSelf(s), ipi: msg }
    case 3: // all excluding self
      return { state: s, ipi: msg }
    default: {
      const self = lapicMatchDest(s, msg.logical, msg.dest)
      const others = msg.dest === 0xff || msg.logical || msg.dest !== s.id
      return others ? { state: self ? toSelf(s) : s, ipi: msg } : { state: toSelf(s) }
    }
  }
}

const writeRegister = (s: LapicState, reg: number, v: number): LapicWriteResult => {
  if (reg >= APIC_LVTT && reg <= APIC_LVTERR) {
    const i = (reg - APIC_LVTT) >> 4
    const lvt = [...s.lvt]
    // While software disabled, LVT entries stay masked (SDM 10.4.7.2).
    lvt[i] = ((v & LVT_WRITABLE[i]!) | (lapicSwEnabled(s) ? 0 : APIC_LVT_MASKED)) >>> 0
    return { state: { ...s, lvt } }
  }
  switch (reg) {
    case APIC_ID:
      return { state: { ...s, id: v >>> 24 } }
    case APIC_TPR:
      return { state: { ...s, tpr: v & 0xff } }
    case APIC_EOI:
      return eoi(s)
    case APIC_LDR:
      return { state: { ...s, ldr: (v & 0xff000000) >>> 0 } }
    case APIC_DFR:
      return { state: { ...s, dfr: (v | 0x0fffffff) >>> 0 } }
    case APIC_SVR: {
      const svr = v & 0x1ff
      // Software disable masks every LVT entry.
      const lvt = (svr & APIC_SVR_ENABLE) === 0 ? s.lvt.map((e) => (e | APIC_LVT_MASKED) >>> 0) : s.lvt
      return { state: { ...s, svr, lvt } }
    }
    case APIC_ICR2:
      return { state: { ...s, icrHigh: (v & 0xff000000) >>> 0 } }
    case APIC_ICR:
      // Bits kept: vector, mode, dest mode, level, trigger, shorthand.
      return sendIpi({ ...s, icrLow: v & 0x000ccfff })
    case APIC_TMICT:
      // Writing the initial count (re)starts the count from it, now.
      return { state: { ...s, initialCount: v >>> 0, timerLoadNs: s.ns } }
    case APIC_TDCR: {
      const divideConfig = v & 0xb
      const p = periodNs(s)
      if (p === 0) return { state: { ...s, divideConfig } }
      // Keep the current count: rebase the load time as if counting had always been at the new rate.
      const elapsedCounts = s.initialCount - lapicCurrentCount(s)
      return { state: { ...s, divideConfig, timerLoadNs: s.ns - elapsedCounts * lapicDivisor(divideConfig) } }
    }
    default:
      return { state: s } // read-only and reserved registers, ESR
  }
}

/** The timer's registers (LVT timer, initial and current count, divide): the accesses that depend on the time. */
export const lapicTimerRegister = (offset: number): boolean => {
  const reg = offset & 0xff0
  return reg === APIC_LVTT || reg === APIC_TMICT || reg === APIC_TMCCT || reg === APIC_TDCR
}

/** A guest MMIO read at `offset` from the APIC base, at instruction count `now`. */
export const lapicRead = (s0: LapicState, offset: number, size: IoSize, now: number): { readonly state: LapicState; readonly value: number } => {
  const s = lapicAdvance(s0, now)
  const within = offset & 0xf
  if (within + size > 4) return { state: s, value: 0 }
  const value = readRegister(s, offset & 0xff0) >>> (8 * within)
  return { state: s, value: size === 4 ? value >>> 0 : value & (size === 2 ? 0xffff : 0xff) }
}

/** A guest MMIO write at `offset` from the APIC base, at instruction count `now`. */
export const lapicWrite = (s0: LapicState, offset: number, size: IoSize, value: number, now: number): LapicWriteResult => {
  const s = lapicAdvance(s0, now)
  if (size !== 4 || (offset & 0xf) !== 0) return { state: s }
  return writeRegister(s, offset, value >>> 0)
}

/** A write to IA32_APIC_BASE (MSR 0x1b): base address, BSP and the global enable. */
export const lapicSetApicBase = (s: LapicState, value: number): LapicState => ({ ...s, apicBase: value >>> 0 })
