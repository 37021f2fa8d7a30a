/**
 * The Motorola MC146818 real-time clock and CMOS RAM (QEMU hw/rtc/mc146818rtc.c):
 * index port 0x70 (bit 7 disables NMI, bits 6-0 select a byte), data port 0x71.
 * Bytes 0-9 are the time, date and alarm, 0x0a-0x0d the status registers A-D, the
 * rest battery-backed RAM (0x32 is the century, as PC firmware uses it).
 *
 * The wall clock is a host input: the caller gives the time (seconds since the Unix
 * epoch, UTC) at creation, and from then the clock runs on virtual time through the
 * 32.768 kHz time base, so a replay sees the same seconds at the same instruction.
 * The clock is kept as a count of seconds (`seconds` at 32 kHz tick `baseTick`); the
 * time registers are computed from it on each read, in BCD or binary and 12/24 h as
 * register B says. So switching DM or 24/12 converts the registers, as QEMU does,
 * and an out-of-range value the guest writes (31 February) is normalised.
 *
 * Register A: rate select (bits 3-0) and divider (bits 6-4) are stored; the divider
 * bits do not stop the clock (everything runs as with the normal 010). UIP (bit 7)
 * is simplified to: set during the last 244 us (8 ticks of 32 kHz) before each
 * second's update, never while SET is on.
 * Register C: PF, AF, UF and IRQF; a read clears them and lowers IRQ8.
 * The periodic flag is set at every period of the rate in register A, counted from
 * virtual time 0, whether or not PIE is set. UF is set at each second's update and AF
 * when the new time matches the alarm (0xc0-0xff in an alarm byte matches any value).
 * When several seconds pass in one `rtcAdvance` (the host only stops at seconds while
 * UIE or AIE is on), the alarm is compared with the last one only.
 * Daylight saving (register B bit 0) and the square-wave output are not modelled.
 */
import { insnsForTick, ticksAt, type IoSize } from "../clock.ts"

export const RTC_HZ = 32768
export const RTC_PORT_INDEX = 0x70
export const RTC_PORT_DATA = 0x71

export const RTC_SECONDS = 0x00
export const RTC_SECONDS_ALARM = 0x01
export const RTC_MINUTES = 0x02
export const RTC_MINUTES_ALARM = 0x03
export const RTC_HOURS = 0x04
export const RTC_HOURS_ALARM = 0x05
export const RTC_DAY_OF_WEEK = 0x06
export const RTC_DAY_OF_MONTH = 0x07
export const RTC_MONTH = 0x08
export const RTC_YEAR = 0x09
export const RTC_REG_A = 0x0a
export const RTC_REG_B = 0x0b
export const RTC_REG_C = 0x0c
export const RTC_REG_D = 0x0d
export const RTC_CENTURY = 0x32

export const REG_A_UIP = 0x80
export const REG_B_SET = 0x80
export const REG_B_PIE = 0x40
export const REG_B_AIE = 0x20
export const REG_B_UIE = 0x10
export const REG_B_DM = 0x04 // 1 = binary
export const REG_B_24H = 0x02
export const REG_C_IRQF = 0x80
export const REG_C_PF = 0x40
export const REG_C_AF = 0x20
export const REG_C_UF = 0x10
export const REG_D_VRT = 0x80

/** The 8 ticks (244 us) before an update during which UIP reads 1. */
const UIP_TICKS = 8

export interface RtcState {
  readonly shift: number
  /** 128 bytes of CMOS; the time bytes here are unused (computed from `seconds`). */
  readonly cmos: readonly number[]
  readonly index: number
  readonly nmiDisabled: boolean
  /** The clock: `seconds` (Unix time) at 32 kHz tick `baseTick`; while SET, held still. */
  readonly seconds: number
  readonly baseTick: number
  readonly regC: number
  /** 32 kHz tick up to which flags have been computed. */
  readonly tick: number
}

export interface RtcConfig {
  /** `-icount shift`: one instruction is 2^shift ns. */
  readonly shift: number
  /** The host's wall clock at `now`, in seconds since 1970-01-01 00:00:00 UTC. */
  readonly epochSeconds: number
  /** Instruction count at which `epochSeconds` holds (usually 0). */
  readonly now?: number
}

/** A powered-on RTC: 24-hour BCD (QEMU's register B 0x02), 1024 Hz rate (register A 0x26). */
export const rtcCreate = (config: RtcConfig): RtcState => {
  const cmos = new Array<number>(128).fill(0)
  cmos[RTC_REG_A] = 0x26
  cmos[RTC_REG_B] = REG_B_24H
  const tick = ticksAt(config.now ?? 0, config.shift, RTC_HZ)
  return { shift: config.shift, cmos, index: 0, nmiDisabled: false, seconds: Math.floor(config.epochSeconds), baseTick: tick, regC: 0, tick }
}

// Calendar arithmetic on days since 1970-01-01 (proleptic Gregorian), written out so
// the chip depends on no host date library.
const daysFromCivil = (y0: number, m: number, d: number): number => {
  const y = m <= 2 ? y0 - 1 : y0
  const era = Math.floor(y / 400)
  const yoe = y - era * 400
  const doy = Math.floor((153 * (m + (m > 2 ? -3 : 9)) + 2) / 5) + d - 1
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
}

const civilFromDays = (z0: number): { year: number; month: number; day: number } => {
  const z = z0 + 719468
  const era = Math.floor(z / 146097)
  const doe = z - era * 146097
  const yoe = Math.floor((doe - Math.floor(doe / 1460) + Math.floor(doe / 36524) - Math.floor(doe / 146096)) / 365)
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100))
  const mp = Math.floor((5 * doy + 2) / 153)
  const day = doy - Math.floor((153 * mp + 2) / 5) + 1
  const month = mp < 10 ? mp + 3 : mp - 9
  return { year: yoe + era * 400 + (month <= 2 ? 1 : 0), month, day }
}

interface Fields {
  sec: number
  min: number
  hour: number
  wday: number // 1 = Sunday
  day: number
  month: number
  year: number
}

const fieldsOf = (t: number): Fields => {
  const days = Math.floor(t / 86400)
  const rem = t - days * 86400
  const { year, month, day } = civilFromDays(days)
  // 1970-01-01 was a Thursday (5 with Sunday = 1).
  const wday = ((((days + 4) % 7) + 7) % 7) + 1
  return { sec: rem % 60, min: Math.floor(rem / 60) % 60, hour: Math.floor(rem / 3600), wday, day, month, year }
}

const secondsOf = (f: Fields): number =>
  daysFromCivil(f.year, f.month, f.day) * 86400 + f.hour * 3600 + f.min * 60 + f.sec

const binary = (s: RtcState): boolean => (s.cmos[RTC_REG_B]! & REG_B_DM) !== 0
const setMode = (s: RtcState): boolean => (s.cmos[RTC_REG_B]! & REG_B_SET) !== 0

const toReg = (s: RtcState, v: number): number => (binary(s) ? v : ((Math.floor(v / 10) % 10) << 4) | v % 10)
const fromReg = (s: RtcState, v: number): number => (binary(s) ? v : (v >> 4) * 10 + (v & 0xf))

const hourToReg = (s: RtcState, h: number): number => {
  if ((s.cmos[RTC_REG_B]! & REG_B_24H) !== 0) return toReg(s, h)
  // 12-hour: 12, 1, ..., 11 with bit 7 = PM.
  return toReg(s, h % 12 === 0 ? 12 : h % 12) | (h >= 12 ? 0x80 : 0)
}

const hourFromReg = (s: RtcState, v: number): number => {
  if ((s.cmos[RTC_REG_B]! & REG_B_24H) !== 0) return fromReg(s, v)
  const h = fromReg(s, v & 0x7f) % 12
  return (v & 0x80) !== 0 ? h + 12 : h
}

/** The clock's seconds at 32 kHz tick `tick`. */
const secondsAt = (s: RtcState, tick: number): number =>
  setMode(s) ? s.seconds : s.seconds + Math.floor((tick - s.baseTick) / RTC_HZ)

/** The current time in seconds since the epoch, as the registers show it (for tests and tracing). */
export const rtcSeconds = (s: RtcState): number => secondsAt(s, s.tick)

const periodTicks = (s: RtcState): number => {
  const rs = s.cmos[RTC_REG_A]! & 0x0f
  if (rs === 0) return 0
  // Rates 1 and 2 are the 256 Hz and 128 Hz of rates 8 and 9 (datasheet table, as QEMU).
  return 1 << ((rs <= 2 ? rs + 7 : rs) - 1)
}

const alarmMatches = (s: RtcState, t: number): boolean => {
  const f = fieldsOf(t)
  const m = (reg: number, v: number): boolean => {
    const a = s.cmos[reg]!
    return (a & 0xc0) === 0xc0 || a === v
  }
  return m(RTC_SECONDS_ALARM, toReg(s, f.sec)) && m(RTC_MINUTES_ALARM, toReg(s, f.min)) && m(RTC_HOURS_ALARM, hourToReg(s, f.hour))
}

/** IRQF = PF.PIE + AF.AIE + UF.UIE (the enable bits line up with the flag bits). */
const withIrqf = (s: RtcState, c: number): RtcState => {
  const enabled = s.cmos[RTC_REG_B]! & (REG_B_PIE | REG_B_AIE | REG_B_UIE)
  const regC = (c & 0x70) | ((c & enabled) !== 0 ? REG_C_IRQF : 0)
  return regC === s.regC ? s : { ...s, regC }
}

const withFlags = (s: RtcState, flags: number): RtcState => (flags === 0 ? s : withIrqf(s, s.regC | flags))

/** Bring the RTC to instruction count `now`: sets PF/UF/AF (and IRQF) for what happened since. */
export const rtcAdvance = (s: RtcState, now: number): RtcState => {
  const tick = ticksAt(now, s.shift, RTC_HZ)
  if (tick <= s.tick) return s
  let flags = 0
  const p = periodTicks(s)
  if (p !== 0 && Math.floor(tick / p) > Math.floor(s.tick / p)) flags |= REG_C_PF
  if (!setMode(s)) {
    const before = secondsAt(s, s.tick)
    const after = secondsAt(s, tick)
    if (after > before) flags |= REG_C_UF | (alarmMatches(s, after) ? REG_C_AF : 0)
  }
  return withFlags({ ...s, tick }, flags)
}

/** The instruction count of the next event that can raise IRQ8, or undefined. */
export const rtcNextDeadline = (s: RtcState): number | undefined => {
  const b = s.cmos[RTC_REG_B]!
  let next: number | undefined
  const p = periodTicks(s)
  if ((b & REG_B_PIE) !== 0 && p !== 0) next = (Math.floor(s.tick / p) + 1) * p
  if ((b & (REG_B_UIE | REG_B_AIE)) !== 0 && !setMode(s)) {
    const sinceBase = s.tick - s.baseTick
    const update = s.baseTick + (Math.floor(sinceBase / RTC_HZ) + 1) * RTC_HZ
    next = next === undefined ? update : Math.min(next, update)
  }
  return next === undefined ? undefined : insnsForTick(next, s.shift, RTC_HZ)
}

/** The IRQ8 output: high while register C's IRQF is set (until the guest reads C). */
export const rtcIrqLevel = (s: RtcState): boolean => (s.regC & REG_C_IRQF) !== 0

/** Port 0x70 bit 7: the NMI mask the chipset keeps in the index register's write. */
export const rtcNmiDisabled = (s: RtcState): boolean => s.nmiDisabled

const readReg = (s: RtcState, reg: number): { state: RtcState; value: number } => {
  const f = fieldsOf(secondsAt(s, s.tick))
  switch (reg) {
    case RTC_SECONDS:
      return { state: s, value: toReg(s, f.sec) }
    case RTC_MINUTES:
      return { state: s, value: toReg(s, f.min) }
    case RTC_HOURS:
      return { state: s, value: hourToReg(s, f.hour) }
    case RTC_DAY_OF_WEEK:
      return { state: s, value: toReg(s, f.wday) }
    case RTC_DAY_OF_MONTH:
      return { state: s, value: toReg(s, f.day) }
    case RTC_MONTH:
      return { state: s, value: toReg(s, f.month) }
    case RTC_YEAR:
      return { state: s, value: toReg(s, f.year % 100) }
    case RTC_CENTURY:
      return { state: s, value: toReg(s, Math.floor(f.year / 100)) }
    case RTC_REG_A: {
      const sub = (s.tick - s.baseTick) % RTC_HZ
      const uip = !setMode(s) && sub >= RTC_HZ - UIP_TICKS
      return { state: s, value: (s.cmos[RTC_REG_A]! & 0x7f) | (uip ? REG_A_UIP : 0) }
    }
    case RTC_REG_C:
      return { state: s.regC === 0 ? s : { ...s, regC: 0 }, value: s.regC }
    case RTC_REG_D:
      return { state: s, value: REG_D_VRT }
    default:
      return { state: s, value: s.cmos[reg]! }
  }
}

const setTime = (s: RtcState, seconds: number): RtcState =>
  // Outside SET mode a write takes effect at once and the second restarts (QEMU's rtc_set_time).
  setMode(s) ? { ...s, seconds } : { ...s, seconds, baseTick: s.tick }

const writeReg = (s: RtcState, reg: number, v: number): RtcState => {
  const f = fieldsOf(secondsAt(s, s.tick))
  const put = (g: Partial<Fields>): RtcState => setTime(s, secondsOf({ ...f, ...g }))
  switch (reg) {
    case RTC_SECONDS:
      return put({ sec: fromReg(s, v) })
    case RTC_MINUTES:
      return put({ min: fromReg(s, v) })
    case RTC_HOURS:
      return put({ hour: hourFromReg(s, v) })
    case RTC_DAY_OF_WEEK:
      return s // derived from the date
    case RTC_DAY_OF_MONTH:
      return put({ day: fromReg(s, v) })
    case RTC_MONTH:
      return put({ month: fromReg(s, v) })
    case RTC_YEAR:
      return put({ year: Math.floor(f.year / 100) * 100 + fromReg(s, v) })
    case RTC_CENTURY:
      return put({ year: fromReg(s, v) * 100 + (f.year % 100) })
    case RTC_REG_A: {
      const cmos = [...s.cmos]
      cmos[RTC_REG_A] = v & 0x7f
      return { ...s, cmos }
    }
    case RTC_REG_B: {
      const cmos = [...s.cmos]
      // Setting SET clears UIE (datasheet): no update-ended interrupts while the time is being set.
      cmos[RTC_REG_B] = (v & REG_B_SET) !== 0 ? v & ~REG_B_UIE : v
      const wasSet = setMode(s)
      // Entering SET freezes the clock at its current second; leaving it restarts from there.
      const seconds = secondsAt(s, s.tick)
      const next = { ...s, cmos, seconds, baseTick: wasSet ? s.tick : s.baseTick }
      // Enabling an interrupt whose flag is already up raises IRQ8; disabling it lowers it (as QEMU).
      if (!wasSet && (v & REG_B_SET) === 0) return withIrqf({ ...next, seconds: s.seconds }, s.regC)
      return withIrqf((v & REG_B_SET) === 0 ? { ...next, baseTick: s.tick } : next, s.regC)
    }
    case RTC_REG_C:
    case RTC_REG_D:
      return s // read-only
    default: {
      const cmos = [...s.cmos]
      cmos[reg] = v
      return { ...s, cmos }
    }
  }
}

/** True for the ports this model answers. */
export const rtcHandlesPort = (port: number): boolean => port === RTC_PORT_INDEX || port === RTC_PORT_DATA

/** A guest IN at instruction count `now`. Port 0x70 reads 0xff (write-only on PIIX). */
export const rtcIoRead = (s0: RtcState, port: number, now: number, _size: IoSize = 1): { readonly state: RtcState; readonly value: number } => {
  const s = rtcAdvance(s0, now)
  if (port !== RTC_PORT_DATA) return { state: s, value: 0xff }
  return readReg(s, s.index)
}

/** A guest OUT at instruction count `now`. */
export const rtcIoWrite = (s0: RtcState, port: number, value: number, now: number, _size: IoSize = 1): RtcState => {
  const s = rtcAdvance(s0, now)
  const v = value & 0xff
  if (port === RTC_PORT_INDEX) return { ...s, index: v & 0x7f, nmiDisabled: (v & 0x80) !== 0 }
  if (port === RTC_PORT_DATA) return writeReg(s, s.index, v)
  return s
}
