import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { insnsForTick } from "../../src/hw/clock.ts"
import {
  RTC_HZ,
  rtcAdvance,
  rtcCreate,
  rtcIoRead,
  rtcIoWrite,
  rtcIrqLevel,
  rtcNextDeadline,
  rtcNmiDisabled,
  rtcSeconds,
  type RtcState
} from "../../src/hw/rtc/mc146818.ts"

// Test-side only: the host's notion of a date, to give the chip its initial time.
const utc = (y: number, mo: number, d: number, h: number, mi: number, s: number): number =>
  Date.UTC(y, mo - 1, d, h, mi, s) / 1000

const SEC = 1_000_000_000 // instructions per second with shift 0

class Rtc {
  s: RtcState
  constructor(epochSeconds: number, shift = 0) {
    this.s = rtcCreate({ shift, epochSeconds })
  }
  read(reg: number, now = 0): number {
    this.s = rtcIoWrite(this.s, 0x70, reg, now)
    const r = rtcIoRead(this.s, 0x71, now)
    this.s = r.state
    return r.value
  }
  write(reg: number, v: number, now = 0): this {
    this.s = rtcIoWrite(rtcIoWrite(this.s, 0x70, reg, now), 0x71, v, now)
    return this
  }
  time(now = 0): number[] {
    return [9, 8, 7, 4, 2, 0].map((r) => this.read(r, now))
  }
}

describe("MC146818 time registers", () => {
  it("read the host's initial time in BCD, 24-hour (register B 0x02), with the century at 0x32", () => {
    const r = new Rtc(utc(2024, 2, 29, 23, 59, 58))
    expect(r.time()).toEqual([0x24, 0x02, 0x29, 0x23, 0x59, 0x58])
    expect(r.read(0x32)).toBe(0x20)
    expect(r.read(6)).toBe(5) // Thursday, with Sunday = 1
    expect(r.read(0x0b)).toBe(0x02)
    expect(r.read(0x0d)).toBe(0x80)
  })

  it("run on virtual time: two seconds later it is 1 March (2024 is a leap year)", () => {
    const r = new Rtc(utc(2024, 2, 29, 23, 59, 58))
    expect(r.time(2 * SEC - 1)).toEqual([0x24, 0x02, 0x29, 0x23, 0x59, 0x59])
    expect(r.time(2 * SEC)).toEqual([0x24, 0x03, 0x01, 0x00, 0x00, 0x00])
    expect(r.read(6, 2 * SEC)).toBe(6)
  })

  it("follow -icount shift: with shift 2 a second is 250 000 000 instructions", () => {
    const r = new Rtc(utc(2000, 1, 1, 0, 0, 0), 2)
    expect(r.read(0, 250_000_000)).toBe(0x01)
  })

  it("read binary when register B's DM bit is set", () => {
    const r = new Rtc(utc(2024, 12, 31, 13, 45, 30)).write(0x0b, 0x06)
    expect(r.time()).toEqual([24, 12, 31, 13, 45, 30])
  })

  it("read 12-hour with bit 7 for PM when register B bit 1 is clear", () => {
    const r = new Rtc(utc(2024, 1, 1, 23, 0, 0)).write(0x0b, 0x00)
    expect(r.read(4)).toBe(0x91) // 11 PM
    expect(new Rtc(utc(2024, 1, 1, 0, 30, 0)).write(0x0b, 0x00).read(4)).toBe(0x12) // 12 AM
    expect(new Rtc(utc(2024, 1, 1, 12, 30, 0)).write(0x0b, 0x00).read(4)).toBe(0x92) // 12 PM
    expect(new Rtc(utc(2024, 1, 1, 12, 30, 0)).write(0x0b, 0x04).read(4)).toBe(0x8c) // binary 12 PM
  })

  it("are set with SET held: the clock stands still, then runs from the written time", () => {
    const r = new Rtc(utc(2024, 1, 1, 0, 0, 0))
    r.write(0x0b, 0x82, SEC / 2)
    r.write(0x09, 0x99, SEC).write(0x08, 0x12, SEC).write(0x07, 0x31, SEC)
    r.write(0x04, 0x23, SEC).write(0x02, 0x59, SEC).write(0x00, 0x50, SEC).write(0x32, 0x19, SEC)
    expect(r.time(5 * SEC)).toEqual([0x99, 0x12, 0x31, 0x23, 0x59, 0x50])
    r.write(0x0b, 0x02, 5 * SEC)
    expect(r.time(15 * SEC)).toEqual([0x00, 0x01, 0x01, 0x00, 0x00, 0x00])
    expect(r.read(0x32, 15 * SEC)).toBe(0x20)
    expect(rtcSeconds(r.s)).toBe(utc(2000, 1, 1, 0, 0, 0))
  })
})

describe("MC146818 status registers and interrupts", () => {
  it("register A resets to 0x26 and UIP is set only in the 244 us before each update", () => {
    const r = new Rtc(utc(2024, 1, 1, 0, 0, 0))
    expect(r.read(0x0a)).toBe(0x26)
    expect(r.read(0x0a, insnsForTick(RTC_HZ - 9, 0, RTC_HZ)) & 0x80).toBe(0)
    expect(r.read(0x0a, insnsForTick(RTC_HZ - 8, 0, RTC_HZ)) & 0x80).toBe(0x80)
    expect(r.read(0x0a, SEC) & 0x80).toBe(0)
  })

  it("the periodic interrupt fires on IRQ8 at the register A rate (rate 6 = 1024 Hz) and reading C clears it", () => {
    const r = new Rtc(utc(2024, 1, 1, 0, 0, 0)).write(0x0b, 0x42)
    // 32 ticks of 32.768 kHz = 976562.5 ns: the first interrupt at instruction 976563.
    expect(rtcNextDeadline(r.s)).toBe(976_563)
    r.s = rtcAdvance(r.s, 976_562)
    expect(rtcIrqLevel(r.s)).toBe(false)
    r.s = rtcAdvance(r.s, 976_563)
    expect(rtcIrqLevel(r.s)).toBe(true)
    expect(r.read(0x0c, 976_563)).toBe(0xc0)
    expect(rtcIrqLevel(r.s)).toBe(false)
    expect(r.read(0x0c, 976_563)).toBe(0)
  })

  it("rates 1 and 2 are 256 Hz and 128 Hz; rate 15 is 2 Hz", () => {
    for (const [rate, ticks] of [[1, 128], [2, 256], [3, 4], [15, 16384]] as const) {
      const r = new Rtc(0).write(0x0a, 0x20 | rate).write(0x0b, 0x42)
      expect(rtcNextDeadline(r.s)).toBe(insnsForTick(ticks, 0, RTC_HZ))
    }
  })

  it("PF is set without PIE, but IRQ8 stays low; enabling PIE then raises it", () => {
    const r = new Rtc(0)
    r.s = rtcAdvance(r.s, SEC / 100)
    expect(rtcNextDeadline(r.s)).toBeUndefined()
    expect(rtcIrqLevel(r.s)).toBe(false)
    r.write(0x0b, 0x42, SEC / 100)
    expect(rtcIrqLevel(r.s)).toBe(true)
    expect(r.read(0x0c, SEC / 100)).toBe(0xc0)
  })

  it("the update-ended interrupt fires at each second; the alarm when the time matches", () => {
    const r = new Rtc(utc(2024, 1, 1, 10, 20, 30)).write(0x0a, 0x20).write(0x0b, 0x12) // no periodic rate; UIE
    expect(rtcNextDeadline(r.s)).toBe(SEC)
    r.s = rtcAdvance(r.s, SEC)
    expect(r.read(0x0c, SEC)).toBe(0x90)
    r.write(0x01, 0x33, SEC).write(0x03, 0xff, SEC).write(0x05, 0xff, SEC).write(0x0b, 0x22, SEC) // AIE, xx:xx:33
    r.s = rtcAdvance(r.s, 2 * SEC)
    expect(rtcIrqLevel(r.s)).toBe(false)
    expect(r.read(0x0c, 2 * SEC)).toBe(0x10) // UF without UIE: flag only
    r.s = rtcAdvance(r.s, 3 * SEC)
    expect(r.read(0x0c, 3 * SEC)).toBe(0xb0)
  })

  it("port 0x70 bit 7 masks NMI; CMOS RAM keeps its bytes", () => {
    const r = new Rtc(0)
    r.s = rtcIoWrite(r.s, 0x70, 0x80 | 0x10, 0)
    expect(rtcNmiDisabled(r.s)).toBe(true)
    r.write(0x10, 0x5a).write(0x7f, 0xa5)
    expect(rtcNmiDisabled(r.s)).toBe(false)
    expect([r.read(0x10), r.read(0x7f)]).toEqual([0x5a, 0xa5])
  })

  it("nextDeadline is never in the past, and advancing to it (not one before) raises IRQ8", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 15 }),
        fc.constantFrom(0x40, 0x10, 0x50),
        fc.integer({ min: 0, max: 4 }),
        fc.array(fc.integer({ min: 0, max: 400_000_000 }), { maxLength: 8 }),
        (rate, enables, shift, steps) => {
          const r = new Rtc(1_700_000_000, shift).write(0x0a, 0x20 | rate).write(0x0b, 0x02 | enables)
          let now = 0
          for (const step of steps) {
            const d = rtcNextDeadline(r.s)!
            expect(d).toBeGreaterThan(now)
            const target = Math.min(d - 1, now + step)
            r.s = rtcAdvance(r.s, target)
            expect(rtcIrqLevel(r.s)).toBe(false)
            now = target
            if (target === d - 1) {
              r.s = rtcAdvance(r.s, d)
              expect(rtcIrqLevel(r.s)).toBe(true)
              r.read(0x0c, d)
              now = d
            }
          }
        }
      )
    )
  })
})
