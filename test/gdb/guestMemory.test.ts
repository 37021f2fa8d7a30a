import { describe, expect, it } from "vitest"
import { debugTranslate, physicalRanges, readLinear } from "../../src/gdb/guestMemory.ts"

const put32 = (ram: Uint8Array, at: number, value: number) => new DataView(ram.buffer).setUint32(at, value >>> 0, true)

/** 1 MiB of RAM with a page directory at 0x1000: 4 KiB pages through a table at 0x2000, one 4 MiB page, holes. */
const machine = () => {
  const ram = new Uint8Array(1 << 20)
  put32(ram, 0x1000 + 0 * 4, 0x2000 | 0x7) // 0x00000000–0x003fffff: page table
  put32(ram, 0x2000 + 0x10 * 4, 0x50000 | 0x7) // 0x00010000 → 0x50000
  put32(ram, 0x2000 + 0x11 * 4, 0x30000 | 0x7) // 0x00011000 → 0x30000 (not contiguous)
  put32(ram, 0x1000 + 2 * 4, 0x00000000 | 0x87) // 0x00800000–0x00bfffff: a 4 MiB page at 0
  ram.set([1, 2, 3, 4], 0x50ffe) // 3 and 4 are in the next physical frame, not the next linear page
  ram.set([5, 6], 0x30000)
  return { ram, sregs: { cr0: 0x80000011, cr3: 0x1000, cr4: 0x10 } }
}

describe("guest memory as gdb reads it", () => {
  it("is the identity without paging", () => {
    const { ram } = machine()
    expect(debugTranslate(ram, { cr0: 0x11, cr3: 0, cr4: 0 }, 0x12345)).toBe(0x12345)
  })

  it("walks 4 KiB and 4 MiB pages, and finds holes", () => {
    const { ram, sregs } = machine()
    expect(debugTranslate(ram, sregs, 0x10abc)).toBe(0x50abc)
    expect(debugTranslate(ram, sregs, 0x80_1234)).toBe(0x1234)
    expect(debugTranslate(ram, sregs, 0x12000)).toBeUndefined()
    expect(debugTranslate(ram, sregs, 0x40_0000)).toBeUndefined()
    // Without CR4.PSE the 4 MiB entry is a page-table pointer (to 0, whose entries are not present).
    expect(debugTranslate(ram, { ...sregs, cr4: 0 }, 0x80_5000)).toBeUndefined()
  })

  it("reads across a page boundary into a frame elsewhere, and sets no accessed or dirty bit", () => {
    const { ram, sregs } = machine()
    const before = ram.slice()
    expect(readLinear(ram, sregs, 0x10ffe, 4)).toEqual(Uint8Array.of(1, 2, 5, 6))
    expect(physicalRanges(ram, sregs, 0x10ffe, 4)).toEqual([
      { physical: 0x50ffe, offset: 0, length: 2 },
      { physical: 0x30000, offset: 2, length: 2 }
    ])
    expect(readLinear(ram, sregs, 0x11ffe, 4)).toBeUndefined()
    expect(ram).toEqual(before)
  })
})
