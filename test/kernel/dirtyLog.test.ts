import { describe, expect, it } from "vitest"
import { Memslots } from "../../src/kernel/memslots.ts"

/** The bitmap as the frame numbers it names. */
const framesOf = (bitmap: Uint8Array): number[] => {
  const out: number[] = []
  for (let i = 0; i < bitmap.length * 8; i++) if ((bitmap[i >>> 3] & (1 << (i & 7))) !== 0) out.push(i)
  return out
}

describe("KVM_GET_DIRTY_LOG", () => {
  // 5000 frames: more than one comparison chunk, the last one partial, the bitmap's last byte half used.
  const frames = 5000
  const setup = (base = 0x200000) => {
    const slots = new Memslots()
    slots.setUserMemoryRegion({ slot: 3, guestPhysAddr: base, memory: new Uint8Array(frames * 4096), logDirtyPages: true })
    return { slots, first: base >>> 12 }
  }

  it("names the frames written since the last call, in every chunk, and restarts", () => {
    const { slots, first } = setup()
    expect(slots.getDirtyLog(3).length).toBe(Math.ceil(frames / 8))
    expect(framesOf(slots.getDirtyLog(3))).toEqual([])
    for (const f of [0, 7, 8, 1023, 1024, 2047, 3000, frames - 1]) slots.frameWrites[first + f]++
    slots.frameWrites[first + 3000] += 5
    // Frames outside the slot are not its pages.
    slots.frameWrites[first - 1]++
    slots.frameWrites[first + frames]++
    expect(framesOf(slots.getDirtyLog(3))).toEqual([0, 7, 8, 1023, 1024, 2047, 3000, frames - 1])
    expect(framesOf(slots.getDirtyLog(3))).toEqual([])
    slots.frameWrites[first + 4096]++
    expect(framesOf(slots.getDirtyLog(3))).toEqual([4096])
  })

  it("hands out a fresh, zeroed bitmap each call", () => {
    const { slots, first } = setup(0)
    slots.frameWrites[first + 9]++
    const a = slots.getDirtyLog(3)
    a.fill(0xff)
    const b = slots.getDirtyLog(3)
    expect(framesOf(b)).toEqual([])
    expect(b).toBeInstanceOf(Uint8Array)
    expect(a.every((x) => x === 0xff)).toBe(true)
  })

  it("fills the caller's bitmap when given one, as the ioctl does, and refuses one of the wrong size", () => {
    const { slots, first } = setup(0)
    const bitmap = new Uint8Array(Math.ceil(frames / 8)).fill(0xff)
    slots.frameWrites[first + 9]++
    expect(slots.getDirtyLog(3, bitmap)).toBe(bitmap)
    expect(framesOf(bitmap)).toEqual([9])
    expect(framesOf(slots.getDirtyLog(3, bitmap))).toEqual([])
    expect(() => slots.getDirtyLog(3, new Uint8Array(bitmap.length + 1))).toThrow(RangeError)
  })

  it("names every page once after the EPT is replaced (a write to every frame)", () => {
    const { slots, first } = setup(0)
    slots.setEptEntries([[2, 1]])
    slots.frameWrites[first + 9]++
    const all = slots.getDirtyLog(3)
    expect(framesOf(all)).toEqual(Array.from({ length: frames }, (_, i) => i))
    expect(all.length).toBe(Math.ceil(frames / 8))
    expect(framesOf(slots.getDirtyLog(3))).toEqual([])
    slots.frameWrites[first + 9]++
    expect(framesOf(slots.getDirtyLog(3))).toEqual([9])
  })

  it("refuses a slot that does not log", () => {
    const slots = new Memslots()
    slots.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memory: new Uint8Array(4096) })
    expect(() => slots.getDirtyLog(0)).toThrow(RangeError)
  })
})
