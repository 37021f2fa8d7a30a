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
/** A logging slot's frameWrites at the last KVM_GET_DIRTY_LOG, and byte views for comparing them with the counts now. */
interface DirtyLog {
  readonly first: number
  readonly baseline: Uint32Array
  readonly baselineBytes: Buffer
  readonly writeBytes: Buffer
}

/** Frames per native comparison in KVM_GET_DIRTY_LOG (16 KiB of counts per 16 MiB of guest RAM). */
const DIRTY_CHUNK_FRAMES = 1024

export class Memslots {
  readonly frames = new Uint8Array(1 << 20)
  /** Writes per frame, by any vCPU: the dirty log compares it. */
  readonly frameWrites = new Uint32Array(1 << 20)
  /**
   * Writes per frame that hit code the interpreters cached, and where that code is (see
   * PhysicalMemory.codeWrites). Whatever else writes guest RAM while vCPUs run must count
   * in all three.
   */
  readonly codeWrites = new Uint32Array(1 << 20)
  readonly codeGranules = new Uint32Array(1 << 20)
  readonly slotMemory: Uint8Array[] = []
  readonly slotBase: number[] = []
  private readonly slotIds: number[] = []
  /**
   * Per slot with KVM_MEM_LOG_DIRTY_PAGES, frameWrites of its frames when the log was last
   * read: a frame whose count moved since is dirty. Every guest write already counts
   * there, so dirty logging costs the hot path nothing.
   */
  private readonly dirtyBaseline = new Map<number, DirtyLog>()
  /**
   * The EPT's entries as the last full scan found them, until an entry changes: every
   * checkpoint saves the EPT, and entries are built only on a frame's first touch.
   */
  private eptEntries: Array<[number, number]> | undefined

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
    if (region.logDirtyPages === true) {
      const first = guestPhysAddr >>> 12
      const baseline = this.frameWrites.slice(first, (guestPhysAddr + size) / 4096)
      this.dirtyBaseline.set(slot, {
        first,
        baseline,
        baselineBytes: Buffer.from(baseline.buffer, baseline.byteOffset, baseline.byteLength),
        writeBytes: Buffer.from(this.frameWrites.buffer, this.frameWrites.byteOffset + first * 4, baseline.byteLength)
      })
    }
  }

  /** KVM_GET_DIRTY_LOG: a bit per page of `slot` written since the last call; the log restarts. */
  getDirtyLog(slot: number): Uint8Array {
    const log = this.dirtyBaseline.get(slot)
    if (log === undefined) throw new RangeError(`KVM_GET_DIRTY_LOG: memslot ${slot} does not log dirty pages`)
    const { first, baseline, baselineBytes, writeBytes } = log
    const frames = baseline.length
    // A view into Node's pool, zeroed: a fresh off-heap ArrayBuffer costs about a microsecond, every checkpoint.
    const bytes = (frames + 7) >>> 3
    const pooled = Buffer.allocUnsafe(bytes).fill(0)
    const bitmap = new Uint8Array(pooled.buffer, pooled.byteOffset, bytes)
    // Most logs between checkpoints are empty or name a few pages: compare the counts a
    // chunk at a time natively (memcmp) and look frame by frame only in chunks that differ.
    if (writeBytes.equals(baselineBytes)) return bitmap
    for (let chunk = 0; chunk < frames; chunk += DIRTY_CHUNK_FRAMES) {
      const end = Math.min(frames, chunk + DIRTY_CHUNK_FRAMES)
      if (writeBytes.compare(baselineBytes, chunk * 4, end * 4, chunk * 4, end * 4) === 0) continue
      const writes = this.frameWrites
      for (let i = chunk; i < end; i++) {
        const now = writes[first + i]
        if (now !== baseline[i]) {
          bitmap[i >>> 3] |= 1 << (i & 7)
          baseline[i] = now
        }
      }
    }
    return bitmap
  }

  getEptEntries(): Array<[number, number]> {
    if (this.eptEntries === undefined) {
      const out: Array<[number, number]> = []
      const frames = this.frames
      // Four frames a word: most of the 2^20 are not present (0).
      const words = new Uint32Array(frames.buffer, frames.byteOffset, frames.length >>> 2)
      for (let w = 0; w < words.length; w++) {
        if (words[w] === 0) continue
        for (let i = w << 2; i < (w + 1) << 2; i++) if (frames[i] !== FRAME_NOT_PRESENT) out.push([i, frames[i]])
      }
      this.eptEntries = out
    }
    return this.eptEntries.map(([frame, entry]) => [frame, entry])
  }

  /** Builds one EPT entry (an EPT violation on a frame not present). */
  setEptEntry(frame: number, entry: number): void {
    this.frames[frame] = entry
    this.eptEntries = undefined
  }

  /** Replaces the EPT; the frames' write counts move so that no vCPU keeps code decoded from before. */
  setEptEntries(entries: ReadonlyArray<readonly [number, number]>): void {
    this.frames.fill(FRAME_NOT_PRESENT)
    this.eptEntries = undefined
    for (const [frame, entry] of entries) {
      if (!Number.isInteger(frame) || frame < 0 || frame >= this.frames.length) throw new RangeError(`EPT entry for frame ${frame}: no such frame`)
      if (entry !== FRAME_MMIO && !(entry >= 1 && entry <= this.slotMemory.length)) throw new RangeError(`EPT entry ${entry} for frame ${frame}: no such memslot`)
      this.frames[frame] = entry
    }
    for (let i = 0; i < this.frameWrites.length; i++) {
      this.frameWrites[i]++
      this.codeWrites[i]++
    }
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
