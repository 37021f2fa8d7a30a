/**
 * The Intel 8254 programmable interval timer (QEMU hw/timer/i8254.c, KVM
 * arch/x86/kvm/i8254.c): three 16-bit down counters clocked at 1.193182 MHz, ports
 * 0x40-0x42 (counters) and 0x43 (control word), plus port 0x61 (PC speaker/NMI status:
 * bit 0 channel 2 gate, bit 1 speaker data, bit 4 refresh toggle, bit 5 OUT2), which
 * both QEMU (pcspk) and KVM (the in-kernel PIT's speaker port) handle next to the PIT.
 *
 * Counters are not ticked one by one: each channel keeps the virtual-time tick at which
 * its count was loaded, and count and output are functions of the ticks since then.
 * The crystal is free running from virtual time 0, so a count written at instruction n
 * starts at tick `ticksAt(n)`.
 *
 * Channel 0's OUT drives IRQ0. Its rising edges are what the PIC (edge triggered) sees;
 * `pitAdvance` and every access report how many there were since the last call, so the
 * host pulses IRQ0 that many times (KVM's in-kernel PIT does exactly that), then may
 * leave the line at `pitOut(state, 0)`.
 *
 * Choices and simplifications, following QEMU where the datasheet leaves room:
 * - A count takes effect on the tick it is written (no extra load clock).
 * - Mode 3 counts down by two per clock, as the chip does; the count read is QEMU's
 *   `count - (2 * d) % count`. OUT is high for ceil(N/2) clocks and low for floor(N/2).
 * - Modes 1 and 5 (hardware triggered) start counting at the count write and restart
 *   on a rising gate, as QEMU does; only channel 2 has a gate the guest controls.
 * - The gate only restarts modes 1, 2, 3, 5 on a rising edge; a low gate does not
 *   freeze modes 0/4 or force OUT high in modes 2/3 (QEMU and KVM do the same).
 * - Writing the control word resets the channel (datasheet): OUT takes the mode's
 *   initial level (low in mode 0, high otherwise) and nothing counts until the new count
 *   is written; a read meanwhile returns the old reload value. In mode 0 the first byte
 *   of a two-byte count does not stop a running count (as QEMU).
 * - The status byte's NULL COUNT bit (6) always reads 0.
 * - BCD counting is supported: counts are read and written in BCD and wrap at 10000.
 * - Port 0x61 bit 4 (refresh) toggles every 2^14 ns of virtual time, as KVM derives it
 *   from the clock.
 * - Reset is QEMU's: every channel in mode 3 with count 65536 (0), running; gates of
 *   channels 0 and 1 high, channel 2's low.
 */
import { insnsForTick, nsAt, ticksAt, type IoSize } from "../clock.ts"

export const PIT_HZ = 1_193_182

/** Access modes of the control word, bits 5-4 (RW). */
export const RW_LATCH = 0
export const RW_LSB = 1
export const RW_MSB = 2
export const RW_WORD = 3

export interface PitChannelState {
  /** The reload value: 1..65536 (1..10000 in BCD). */
  readonly count: number
  readonly mode: number
  readonly bcd: boolean
  /** RW access mode from the control word. */
  readonly rwMode: number
  readonly gate: boolean
  /** Absolute PIT tick at which `count` was loaded. */
  readonly loadTick: number
  /** False after a control word until the count is written: OUT holds the mode's initial level. */
  readonly armed: boolean
  /** Next byte of a 16-bit read: false = LSB. */
  readonly readMsb: boolean
  /** Next byte of a 16-bit write: false = LSB. */
  readonly writeMsb: boolean
  readonly writeLatch: number
  /** A latched count: the value, and which bytes are still to be read (RW_* or 0 for none). */
  readonly latched: number
  readonly latchedRw: number
  /** A latched status byte, or -1. */
  readonly status: number
}

export interface PitState {
  /** `-icount shift`: one instruction is 2^shift ns. */
  readonly shift: number
  readonly channels: readonly [PitChannelState, PitChannelState, PitChannelState]
  /** Port 0x61 bit 1: speaker data enable (kept for the guest to read back). */
  readonly speakerData: boolean
  /** PIT tick up to which channel 0's edges have been reported. */
  readonly tick: number
}

const channelReset = (gate: boolean): PitChannelState => ({
  count: 0x10000,
  mode: 3,
  bcd: false,
  rwMode: RW_WORD,
  gate,
  loadTick: 0,
  armed: true,
  readMsb: false,
  writeMsb: false,
  writeLatch: 0,
  latched: 0,
  latchedRw: 0,
  status: -1
})

/** The PIT after reset at virtual time 0 with the given `-icount shift`. */
export const pitCreate = (shift: number): PitState => ({
  shift,
  channels: [channelReset(true), channelReset(true), channelReset(false)],
  speakerData: false,
  tick: 0
})

const toBcd = (v: number): number =>
  (v % 10) | (Math.floor(v / 10) % 10 << 4) | (Math.floor(v / 100) % 10 << 8) | (Math.floor(v / 1000) % 10 << 12)
const fromBcd = (v: number): number =>
  (v & 0xf) + ((v >> 4) & 0xf) * 10 + ((v >> 8) & 0xf) * 100 + ((v >> 12) & 0xf) * 1000

/** The counter value `d` ticks after load (as the counting element holds it, in binary). */
const countAfter = (c: PitChannelState, d: number): number => {
  if (!c.armed) return c.count & 0xffff
  const wrap = c.bcd ? 10000 : 0x10000
  switch (c.mode) {
    case 0:
    case 1:
    case 4:
    case 5:
      return (((c.count - d) % wrap) + wrap) % wrap
    case 3:
      return c.count - ((2 * d) % c.count)
    default:
      return c.count - (d % c.count)
  }
}

/** OUT `d` ticks after load. */
const outAfter = (c: PitChannelState, d: number): boolean => {
  if (!c.armed) return c.mode !== 0
  switch (c.mode) {
    case 0:
      return d >= c.count // low while counting, high at terminal count, stays high
    case 1:
      return d >= c.count // one-shot: low from trigger to terminal count
    case 2:
      return c.count === 1 || d % c.count !== c.count - 1 // low for the clock where the count is 1
    case 3:
      return d % c.count < (c.count + 1) >> 1
    default:
      return d !== c.count // 4, 5: strobe: low for the one clock at count 0
  }
}

/** Rising edges of OUT in ticks (0, d] after load. */
const edgesUpTo = (c: PitChannelState, d: number): number => {
  if (!c.armed || d <= 0) return 0
  switch (c.mode) {
    case 0:
    case 1:
      return d >= c.count ? 1 : 0
    case 2:
    case 3:
      return Math.floor(d / c.count)
    default:
      return d >= c.count + 1 ? 1 : 0
  }
}

/** Offset after load of the first rising edge strictly after `d`, or undefined. */
const nextEdgeAfter = (c: PitChannelState, d: number): number | undefined => {
  if (!c.armed) return undefined
  switch (c.mode) {
    case 0:
    case 1:
      return d < c.count ? c.count : undefined
    case 2:
    case 3:
      return (Math.floor(Math.max(d, 0) / c.count) + 1) * c.count
    default:
      return d < c.count + 1 ? c.count + 1 : undefined
  }
}

const setChannel = (s: PitState, i: number, c: PitChannelState): PitState => {
  const channels = [...s.channels] as [PitChannelState, PitChannelState, PitChannelState]
  channels[i] = c
  return { ...s, channels }
}

export interface PitAdvance {
  readonly state: PitState
  /** Rising edges of channel 0's OUT (IRQ0) since the previous call. */
  readonly irq0Edges: number
}

/** Bring the PIT to instruction count `now` (never earlier than the last call). */
export const pitAdvance = (s: PitState, now: number): PitAdvance => {
  const tick = ticksAt(now, s.shift, PIT_HZ)
  if (tick <= s.tick) return { state: s, irq0Edges: 0 }
  const c = s.channels[0]
  const irq0Edges = edgesUpTo(c, tick - c.loadTick) - edgesUpTo(c, s.tick - c.loadTick)
  return { state: { ...s, tick }, irq0Edges }
}

/** The instruction count of channel 0's next IRQ0 edge, or undefined if none is coming. */
export const pitNextDeadline = (s: PitState): number | undefined => {
  const c = s.channels[0]
  const d = nextEdgeAfter(c, s.tick - c.loadTick)
  return d === undefined ? undefined : insnsForTick(c.loadTick + d, s.shift, PIT_HZ)
}

/** OUT of channel `i` at the state's time (IRQ0 level for channel 0; port 0x61 bit 5 for 2). */
export const pitOut = (s: PitState, i: number): boolean => {
  const c = s.channels[i]!
  return outAfter(c, s.tick - c.loadTick)
}

/** The current count of channel `i` as a latch would capture it (BCD-encoded in BCD mode). */
export const pitCount = (s: PitState, i: number): number => {
  const c = s.channels[i]!
  const v = countAfter(c, s.tick - c.loadTick) & 0xffff
  return c.bcd ? toBcd(v % 10000) : v
}

const latchCount = (s: PitState, i: number): PitState => {
  const c = s.channels[i]!
  // A second latch before the first is read is ignored (datasheet).
  return c.latchedRw !== 0 ? s : setChannel(s, i, { ...c, latched: pitCount(s, i), latchedRw: c.rwMode })
}

const latchStatus = (s: PitState, i: number): PitState => {
  const c = s.channels[i]!
  if (c.status >= 0) return s
  const status = (pitOut(s, i) ? 0x80 : 0) | (c.rwMode << 4) | (c.mode << 1) | (c.bcd ? 1 : 0)
  return setChannel(s, i, { ...c, status })
}

const loadCount = (s: PitState, i: number, raw: number): PitState => {
  const c = s.channels[i]!
  const v = c.bcd ? fromBcd(raw) : raw
  const count = v === 0 ? (c.bcd ? 10000 : 0x10000) : v
  return setChannel(s, i, { ...c, count, loadTick: s.tick, armed: true })
}

const writeControl = (s: PitState, v: number): PitState => {
  const sel = v >> 6
  if (sel === 3) {
    // Read-back: bits 3-1 select channels, bit 5 = 0 latches counts, bit 4 = 0 latches status.
    let next = s
    for (let i = 0; i < 3; i++) {
      if ((v & (2 << i)) === 0) continue
      if ((v & 0x20) === 0) next = latchCount(next, i)
      if ((v & 0x10) === 0) next = latchStatus(next, i)
    }
    return next
  }
  const rw = (v >> 4) & 3
  if (rw === RW_LATCH) return latchCount(s, sel)
  const m = (v >> 1) & 7
  const c = s.channels[sel]!
  return setChannel(s, sel, {
    ...c,
    rwMode: rw,
    mode: m >= 6 ? m & 3 : m,
    bcd: (v & 1) !== 0,
    armed: false,
    readMsb: false,
    writeMsb: false,
    // A new mode discards a pending latch.
    latchedRw: 0
  })
}

const readCounter = (s: PitState, i: number): { state: PitState; value: number } => {
  const c = s.channels[i]!
  if (c.status >= 0) return { state: setChannel(s, i, { ...c, status: -1 }), value: c.status }
  if (c.latchedRw !== 0) {
    switch (c.latchedRw) {
      case RW_LSB:
        return { state: setChannel(s, i, { ...c, latchedRw: 0 }), value: c.latched & 0xff }
      case RW_MSB:
        return { state: setChannel(s, i, { ...c, latchedRw: 0 }), value: (c.latched >> 8) & 0xff }
      default:
        // Word: LSB now, MSB on the next read.
        return { state: setChannel(s, i, { ...c, latchedRw: RW_MSB }), value: c.latched & 0xff }
    }
  }
  const count = pitCount(s, i)
  switch (c.rwMode) {
    case RW_LSB:
      return { state: s, value: count & 0xff }
    case RW_MSB:
      return { state: s, value: (count >> 8) & 0xff }
    default:
      return {
        state: setChannel(s, i, { ...c, readMsb: !c.readMsb }),
        value: c.readMsb ? (count >> 8) & 0xff : count & 0xff
      }
  }
}

const writeCounter = (s: PitState, i: number, v: number): PitState => {
  const c = s.channels[i]!
  switch (c.rwMode) {
    case RW_LSB:
      return loadCount(s, i, v)
    case RW_MSB:
      return loadCount(s, i, v << 8)
    default:
      if (!c.writeMsb) return setChannel(s, i, { ...c, writeLatch: v, writeMsb: true })
      return loadCount(setChannel(s, i, { ...c, writeMsb: false }), i, c.writeLatch | (v << 8))
  }
}

const setGate2 = (s: PitState, gate: boolean): PitState => {
  const c = s.channels[2]
  const restart = gate && !c.gate && c.mode !== 0 && c.mode !== 4
  return setChannel(s, 2, { ...c, gate, loadTick: restart ? s.tick : c.loadTick })
}

export const PIT_PORT_SPEAKER = 0x61

/** True for the ports this model answers: 0x40-0x43 and 0x61. */
export const pitHandlesPort = (port: number): boolean => (port >= 0x40 && port <= 0x43) || port === PIT_PORT_SPEAKER

export interface PitAccess extends PitAdvance {
  readonly value: number
}

/** A guest IN from `port` at instruction count `now`. Byte registers; wider reads zero-extend. */
export const pitIoRead = (s0: PitState, port: number, now: number, _size: IoSize = 1): PitAccess => {
  const { state: s, irq0Edges } = pitAdvance(s0, now)
  if (port >= 0x40 && port <= 0x42) {
    const r = readCounter(s, port - 0x40)
    return { state: r.state, value: r.value, irq0Edges }
  }
  if (port === PIT_PORT_SPEAKER) {
    const refresh = Math.floor(nsAt(now, s.shift) / 16384) % 2 === 1
    const value =
      (s.channels[2].gate ? 0x01 : 0) | (s.speakerData ? 0x02 : 0) | (refresh ? 0x10 : 0) | (pitOut(s, 2) ? 0x20 : 0)
    return { state: s, value, irq0Edges }
  }
  // The control word register is write-only: a read floats high.
  return { state: s, value: 0xff, irq0Edges }
}

/** A guest OUT to `port` at instruction count `now`. */
export const pitIoWrite = (s0: PitState, port: number, value: number, now: number, _size: IoSize = 1): PitAdvance => {
  const { state: s, irq0Edges } = pitAdvance(s0, now)
  const v = value & 0xff
  if (port >= 0x40 && port <= 0x42) return { state: writeCounter(s, port - 0x40, v), irq0Edges }
  if (port === 0x43) return { state: writeControl(s, v), irq0Edges }
  if (port === PIT_PORT_SPEAKER) return { state: { ...setGate2(s, (v & 1) !== 0), speakerData: (v & 2) !== 0 }, irq0Edges }
  return { state: s, irq0Edges }
}
