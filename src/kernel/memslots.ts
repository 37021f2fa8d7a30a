import type { UserspaceMemoryRegion } from "./api.ts"

/** Frame-table value for an MMIO page: KVM's "misconfigured" SPTE that makes later touches EPT_MISCONFIG. */
export const FRAME_MMIO = 0xff
/** Frame-table value for a page with no EPT entry yet. */
export const FRAME_NOT_PRESENT = 0
/** The most memslots a VM can have (frame-table values 1..254 name slot + 1). */
export const MAX_MEMSLOTS = 254

/**
 * The VM's guest-physical address space: KVM's memslots, and the EPT built from them
 * on demand. One byte per 4 KiB guest frame (a 32-bit guest-physical space is 2^20
 * frames): not present, mapped to memslot k (as k + 1), or MMIO.
 */
export class Memslots {
  readonly frames = new Uint8Array(1 << 20)
  /**
   * Writes per frame, by any vCPU (see PhysicalMemory.frameWrites): the interpreters' decoded-
   * instruction caches compare it. Whatever else writes guest RAM while vCPUs run must count here.
   */
  readonly frameWrites = new Uint32Array(1 << 20)
  readonly slotMemory: Uint8Array[] = []
  readonly slotBase: number[] = []
  private readonly slotIds: number[] = []

  /** KVM_SET_USER_MEMORY_REGION. Slots are page-aligned and never overlap. */
  setUserMemoryRegion(region: UserspaceMemoryRegion): void {
    const { slot, guestPhysAddr, memory } = region
    const size = memory.length
    if ((guestPhysAddr & 0xfff) !== 0 || (size & 0xfff) !== 0 || size === 0) {
      throw new RangeError(`memslot ${slot}: base 0x${guestPhysAddr.toString(16)} and size ${size} must be non-zero multiples of 4 KiB`)
    }
    if (guestPhysAddr + size > 2 ** 32) throw new RangeError(`memslot ${slot} ends beyond 4 GiB`)
    if (this.slotIds.includes(slot)) throw new RangeError(`memslot ${slot} already exists (changing slots is not modelled)`)
    for (let i = 0; i < this.slotBase.length; i++) {
      const base = this.slotBase[i]
      if (guestPhysAddr < base + this.slotMemory[i].length && base < guestPhysAddr + size) {
        throw new RangeError(`memslot ${slot} overlaps memslot ${this.slotIds[i]}`)
      }
    }
    if (this.slotIds.length >= MAX_MEMSLOTS) throw new RangeError(`at most ${MAX_MEMSLOTS} memslots`)
    this.slotIds.push(slot)
    this.slotMemory.push(memory)
    this.slotBase.push(guestPhysAddr)
  }

  /** The index of the slot holding `gpa`, or -1 when it is MMIO. */
  slotIndexOf(gpa: number): number {
    for (let i = 0; i < this.slotBase.length; i++) {
      const offset = gpa - this.slotBase[i]
      if (offset >= 0 && offset < this.slotMemory[i].length) return i
    }
    return -1
  }
}
