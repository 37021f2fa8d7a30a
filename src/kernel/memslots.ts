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
  /** Every page reads written at the next KVM_GET_DIRTY_LOG (the EPT was replaced: see setEptEntries). */
  allWritten: boolean
}

/** Frames per native comparison in KVM_GET_DIRTY_LOG (16 KiB of counts per 16 MiB of guest RAM). */
const DIRTY_CHUNK_FRAMES = 1024

/** A view into Node's pool, zeroed: a fresh off-heap ArrayBuffer costs about a microsecond. */
const freshBitmap = (bytes: number): Uint8Array => {
  const pooled = Buffer.allocUnsafe(bytes).fill(0)
  return new Uint8Array(pooled.buffer, pooled.byteOffset, bytes)
}

/**
 * A VM's per-frame tables, 13 MB: a replay session's restore reuses those of the
 * machine before (Memslots.takeTables) rather than allocating them, which costs
 * milliseconds, mostly in GC.
 */
export interface FrameTables {
  readonly frames: Uint8Array
  readonly frameWrites: Uint32Array
  readonly codeWrites: Uint32Array
  readonly codeGranules: Uint32Array
}

const newFrameTables = (): FrameTables => ({
  frames: new Uint8Array(1 << 20),
  frameWrites: new Uint32Array(1 << 20),
  codeWrites: new Uint32Array(1 << 20),
  codeGranules: new Uint32Array(1 << 20)
})

export class Memslots {
  readonly frames: Uint8Array
  /** Writes per frame, by any vCPU: the dirty log compares it. */
  readonly frameWrites: Uint32Array
  /**
   * Writes per frame that hit code the interpreters cached, and where that code is (see
   * PhysicalMemory.codeWrites). Whatever else writes guest RAM while vCPUs run must count
   * in all three.
   */
  readonly codeWrites: Uint32Array
  readonly codeGranules: Uint32Array
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
   * The frames with an EPT entry, in the order they got one: every checkpoint saves the
   * EPT, and finding its entries by a scan of the 2^20 frames costs milliseconds.
   */
  private present: number[] = []
  /** The EPT's entries by frame, until an entry is built. */
  private eptEntries: Array<[number, number]> | undefined
  /** Frames whose entry setEptEntries dropped, for takeTables. */
  private readonly unmapped = new Set<number>()

  /** `tables`: zeroed, as new ones are (takeTables). */
  constructor(tables: FrameTables = newFrameTables()) {
    this.frames = tables.frames
    this.frameWrites = tables.frameWrites
    this.codeWrites = tables.codeWrites
    this.codeGranules = tables.codeGranules
  }

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
        writeBytes: Buffer.from(this.frameWrites.buffer, this.frameWrites.byteOffset + first * 4, baseline.byteLength),
        allWritten: false
      })
    }
  }

  /**
   * KVM_GET_DIRTY_LOG: a bit per page of `slot` written since the last call; the log
   * restarts. Into `into` when given, as the ioctl fills the caller's buffer: a checkpoint
   * reuses one, where allocating costs it ~10 µs with the caches cold.
   */
  getDirtyLog(slot: number, into?: Uint8Array): Uint8Array {
    const log = this.dirtyBaseline.get(slot)
    if (log === undefined) throw new RangeError(`KVM_GET_DIRTY_LOG: memslot ${slot} does not log dirty pages`)
    const { first, baseline, baselineBytes, writeBytes } = log
    const frames = baseline.length
    const bytes = (frames + 7) >>> 3
    if (into !== undefined && into.length !== bytes) {
      throw new RangeError(`KVM_GET_DIRTY_LOG: memslot ${slot} needs a ${bytes}-byte bitmap, not ${into.length} bytes`)
    }
    const bitmap = into === undefined ? freshBitmap(bytes) : into.fill(0)
    if (log.allWritten) {
      log.allWritten = false
      baseline.set(this.frameWrites.subarray(first, first + frames))
      bitmap.fill(0xff, 0, frames >>> 3)
      if ((frames & 7) !== 0) bitmap[frames >>> 3] = (1 << (frames & 7)) - 1
      return bitmap
    }
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
      const frames = this.frames
      // Sorted natively (a typed array sorts numerically without a comparator).
      const sorted = Uint32Array.from(this.present).sort()
      const entries: Array<[number, number]> = []
      for (let i = 0; i < sorted.length; i++) entries.push([sorted[i], frames[sorted[i]]])
      this.eptEntries = entries
    }
    // Copies, by index: destructuring runs the iterator protocol, slow in code run this rarely.
    const cached = this.eptEntries
    const out: Array<[number, number]> = []
    for (let i = 0; i < cached.length; i++) out.push([cached[i][0], cached[i][1]])
    return out
  }

  /** Builds one EPT entry (an EPT violation on a frame not present). */
  setEptEntry(frame: number, entry: number): void {
    if (this.frames[frame] === FRAME_NOT_PRESENT) this.present.push(frame)
    this.frames[frame] = entry
    this.eptEntries = undefined
  }

  /**
   * Replaces the EPT, and counts as a write to every frame: no vCPU keeps code decoded
   * from before, and the dirty logs name every page. Only a frame with an entry, before
   * or now, can hold decoded code (decoding fetches through the EPT, and a cached
   * instruction then hits without it): only those frames' codeWrites need to move, not
   * all 2^20 of them.
   */
  setEptEntries(entries: ReadonlyArray<readonly [number, number]>): void {
    const frames = this.frames
    for (const frame of this.present) {
      frames[frame] = FRAME_NOT_PRESENT
      this.codeWrites[frame]++
      this.unmapped.add(frame)
    }
    this.present = []
    this.eptEntries = undefined
    for (const [frame, entry] of entries) {
      if (!Number.isInteger(frame) || frame < 0 || frame >= frames.length) throw new RangeError(`EPT entry for frame ${frame}: no such frame`)
      if (entry !== FRAME_MMIO && !(entry >= 1 && entry <= this.slotMemory.length)) throw new RangeError(`EPT entry ${entry} for frame ${frame}: no such memslot`)
      if (frames[frame] === FRAME_NOT_PRESENT) {
        this.present.push(frame)
        this.codeWrites[frame]++
      }
      frames[frame] = entry
    }
    for (const log of this.dirtyBaseline.values()) log.allWritten = true
  }

  /**
   * The tables, zeroed, for a VM built after this one (which must not be used again).
   * Clearing only the frames that can be non-zero costs microseconds, not the
   * milliseconds of 13 MB: the model touches a frame's entries only while the frame has
   * an EPT entry (a fault builds one before the access), and whatever else writes guest
   * RAM counts its writes in guest RAM's frames.
   */
  takeTables(): FrameTables {
    const { frames, frameWrites, codeWrites, codeGranules } = this
    for (let i = 0; i < this.slotBase.length; i++) {
      const first = this.slotBase[i] / 4096
      const end = first + this.slotMemory[i].length / 4096
      frameWrites.fill(0, first, end)
      codeWrites.fill(0, first, end)
      codeGranules.fill(0, first, end)
    }
    for (const touched of [this.present, this.unmapped]) {
      for (const frame of touched) {
        frames[frame] = FRAME_NOT_PRESENT
        frameWrites[frame] = 0
        codeWrites[frame] = 0
        codeGranules[frame] = 0
      }
    }
    return { frames, frameWrites, codeWrites, codeGranules }
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
