/**
 * The irqchip mode decides who emulates the chips and which exits that costs, never
 * what the guest sees: for any PIT reload value and icount shift, guests/pit.bin
 * prints the same thing in all three modes (its last line is the PIT's count latched
 * after an interrupt waited for the window, so the timing of every injection shows).
 */
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { guestConfig, guestImage, irqchipModes, runGuest } from "../support/interruptGuests.ts"

/** guests/pit.bin with its `reload` (offset 2) and `wanted` (offset 4) words patched. */
const pitImage = (reload: number, wanted: number): Uint8Array => {
  const image = guestImage("pit").slice()
  image.set([reload & 0xff, reload >> 8, wanted & 0xff, wanted >> 8], 2)
  return image
}

describe("guests/pit.bin across irqchip modes", () => {
  it("prints the same in kernel, split and userspace mode for any reload value and icount shift", () => {
    fc.assert(
      fc.property(fc.integer({ min: 30, max: 0xffff }), fc.integer({ min: 1, max: 4 }), fc.integer({ min: 0, max: 3 }), (reload, wanted, shift) => {
        const image = pitImage(reload, wanted)
        const runs = irqchipModes.map((mode) => runGuest(guestConfig("pit", mode, shift), image))
        for (const r of runs) {
          expect(r.end.reason).toBe("debug-exit")
          expect(r.badInjections).toEqual([])
        }
        expect(runs[0]!.output).toContain(`reload ${reload}\r\n`)
        expect(runs[1]!.output).toBe(runs[0]!.output)
        expect(runs[2]!.output).toBe(runs[0]!.output)
        // The same virtual time too: every injection came at the same instruction.
        const times = runs.map((r) => r.events.flatMap((e) => (e._tag === "InjVirq" ? [e.time] : [])))
        expect(times[1]).toEqual(times[0])
        expect(times[2]).toEqual(times[0])
      }),
      { numRuns: 15 }
    )
  })
})
