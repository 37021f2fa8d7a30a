import { describe, expect, it } from "vitest"
import { FRAME_MMIO, Memslots } from "../../src/kernel/memslots.ts"

describe("the EPT's entries (saved by every checkpoint)", () => {
  const setup = () => {
    const slots = new Memslots()
    slots.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memory: new Uint8Array(64 * 4096) })
    return slots
  }

  it("are by frame whatever order the faults built them in, and copies", () => {
    const slots = setup()
    for (const frame of [40, 3, 0xfee00, 17]) slots.setEptEntry(frame, frame === 0xfee00 ? FRAME_MMIO : 1)
    const entries = slots.getEptEntries()
    expect(entries).toEqual([[3, 1], [17, 1], [40, 1], [0xfee00, FRAME_MMIO]])
    entries[0][1] = 7
    slots.setEptEntry(5, 1)
    expect(slots.getEptEntries()).toEqual([[3, 1], [5, 1], [17, 1], [40, 1], [0xfee00, FRAME_MMIO]])
  })

  it("are what setEptEntries gave, once each, and grow from there", () => {
    const slots = setup()
    slots.setEptEntry(1, 1)
    slots.setEptEntries([[9, 1], [2, FRAME_MMIO], [9, 1]])
    expect(slots.getEptEntries()).toEqual([[2, FRAME_MMIO], [9, 1]])
    slots.setEptEntry(4, 1)
    expect(slots.getEptEntries()).toEqual([[2, FRAME_MMIO], [4, 1], [9, 1]])
    // A refused list leaves the entries it set before the bad one.
    expect(() => slots.setEptEntries([[6, 1], [7, 99]])).toThrow(RangeError)
    expect(slots.getEptEntries()).toEqual([[6, 1]])
  })

  it("when replaced, move the code write counts of every frame mapped before or now, so no decoded code survives", () => {
    const slots = setup()
    slots.setEptEntry(1, 1)
    slots.setEptEntry(3, 1)
    slots.setEptEntries([[3, 1], [5, FRAME_MMIO]])
    for (const frame of [1, 3, 5]) expect(slots.codeWrites[frame], `frame ${frame}`).toBeGreaterThan(0)
    expect(slots.codeWrites[2]).toBe(0)
    expect(slots.frames[1]).toBe(0)
  })
})

describe("the per-frame tables taken for a new VM", () => {
  it("are zeroed, as new ones are, wherever the VM touched them", () => {
    const slots = new Memslots()
    slots.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0x10000, memory: new Uint8Array(16 * 4096), logDirtyPages: true })
    slots.setEptEntry(0x12, 1)
    slots.setEptEntry(0xfee00, FRAME_MMIO)
    // The MMIO frame's entry goes, and its code write count moved.
    slots.setEptEntries([[0x13, 1], [0xfec00, FRAME_MMIO]])
    slots.frameWrites[0x13]++
    slots.codeGranules[0x13] = 1
    // Writes from outside the vCPUs count in guest RAM's frames, mapped or not.
    slots.frameWrites[0x1f]++
    slots.codeWrites[0x1f]++
    const tables = slots.takeTables()
    expect(tables.frames).toBe(slots.frames)
    for (const table of [tables.frames, tables.frameWrites, tables.codeWrites, tables.codeGranules]) {
      expect(table.length).toBe(1 << 20)
      expect(table.findIndex((x: number) => x !== 0)).toBe(-1)
    }
    expect(new Memslots(tables).getEptEntries()).toEqual([])
  })
})
