/**
 * Virtual time for the chip models. Time is the count of retired guest instructions
 * (`now`), turned into nanoseconds as QEMU's `-icount shift` does: one instruction is
 * 2^shift ns. Every chip clock (the PIT's 1.193182 MHz crystal, the RTC's 32.768 kHz
 * crystal, the APIC bus) is a free-running counter of that time, so every conversion
 * here is exact integer arithmetic (BigInt, or doubles where exact, inside; safe integers
 * outside): the same `now` always gives the same tick, on every machine.
 *
 * In real-time clock mode the chips are made with shift 0 and `now` is a recorded
 * reading of the host's monotonic clock in ns: the same arithmetic, on host time.
 */

/** Access width, as on the buses (structurally the same type the CPU's bus uses). */
export type IoSize = 1 | 2 | 4

const NS_PER_SEC = 1_000_000_000n

/** Nanoseconds of virtual time at instruction count `now`. */
export const nsAt = (now: number, shift: number): number => now * 2 ** shift

/** The first instruction count at which `ns` nanoseconds have passed. */
export const insnsForNs = (ns: number, shift: number): number => Math.ceil(ns / 2 ** shift)

/** Whole ticks of an `hz` clock elapsed at instruction count `now` (floor). */
export const ticksAt = (now: number, shift: number, hz: number): number => {
  // In doubles (BigInt costs microseconds) while ns × hz is a safe integer, as for the
  // PIT's first 7.5 s: it is exact then, and so is the floor of its quotient (below 2^24,
  // within half an ulp of the true one, which is at least 1e-9 from the next integer).
  // BigInt beyond, and for 0 (no -0).
  const scaled = now * 2 ** shift * hz
  if (scaled > 0 && scaled <= Number.MAX_SAFE_INTEGER && Number.isSafeInteger(now) && Number.isSafeInteger(shift) && shift >= 0 && Number.isSafeInteger(hz)) {
    return Math.floor(scaled / 1e9)
  }
  return Number(((BigInt(now) << BigInt(shift)) * BigInt(hz)) / NS_PER_SEC)
}

/**
 * The first instruction count at which tick `tick` of an `hz` clock has happened,
 * i.e. the least n with ticksAt(n) >= tick. So a deadline computed here is exactly
 * the instruction at which `advance` sees the event.
 */
export const insnsForTick = (tick: number, shift: number, hz: number): number => {
  const num = BigInt(tick) * NS_PER_SEC
  const den = BigInt(hz) << BigInt(shift)
  return Number((num + den - 1n) / den)
}

/** The smaller of two optional deadlines. */
export const earliest = (a: number | undefined, b: number | undefined): number | undefined =>
  a === undefined ? b : b === undefined ? a : Math.min(a, b)
