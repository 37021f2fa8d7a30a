import { EptAccess } from "../events/exitReasons.ts"
import { codeGranuleMask, type PhysicalMemory } from "./cpu/bus.ts"
import { FRAME_MMIO, FRAME_NOT_PRESENT, type Memslots } from "./memslots.ts"

/** KVM cannot emulate this: the vCPU leaves with KVM_EXIT_INTERNAL_ERROR (emulation failure). */
export class EmulationFailure extends Error {
  override readonly name = "EmulationFailure"
}

/** What the EPT asks of its vCPU when a guest-physical access cannot complete by itself. */
export interface EptExits {
  /** First touch of a frame: an EPT_VIOLATION. KVM has already installed the entry (`outcome`). */
  eptViolation(gpa: number, access: number, outcome: "mapped" | "mmio"): void
  /** An access to an MMIO frame: emulated, and answered by userspace. May leave the CPU. */
  mmioRead(gpa: number, len: 1 | 2 | 4): number
  mmioWrite(gpa: number, len: 1 | 2 | 4, value: number): void
}

/**
 * Guest-physical memory as one vCPU sees it through EPT. Present RAM frames are read
 * and written directly in the memslot's memory; a frame with no entry is an
 * EPT_VIOLATION, after which KVM maps it (RAM) or marks it MMIO; MMIO frames go to
 * the emulator and, from there, to userspace.
 */
export class Ept implements PhysicalMemory {
  private readonly frames: Uint8Array
  private readonly slotMemory: Uint8Array[]
  private readonly slotBase: number[]
  readonly frameWrites: Uint32Array
  readonly codeWrites: Uint32Array
  readonly codeGranules: Uint32Array

  constructor(
    private readonly memslots: Memslots,
    private readonly exits: EptExits
  ) {
    this.frames = memslots.frames
    this.slotMemory = memslots.slotMemory
    this.slotBase = memslots.slotBase
    this.frameWrites = memslots.frameWrites
    this.codeWrites = memslots.codeWrites
    this.codeGranules = memslots.codeGranules
  }

  fetch8(gpa: number): number {
    const frame = this.frames[gpa >>> 12]
    if (frame !== FRAME_NOT_PRESENT && frame !== FRAME_MMIO) {
      return this.slotMemory[frame - 1][gpa - this.slotBase[frame - 1]]
    }
    if (this.fault(gpa, EptAccess.FETCH) === FRAME_MMIO) {
      throw new EmulationFailure(`instruction fetch from MMIO at guest-physical 0x${gpa.toString(16)}`)
    }
    return this.fetch8(gpa)
  }

  read8(gpa: number): number {
    const frame = this.frames[gpa >>> 12]
    if (frame !== FRAME_NOT_PRESENT && frame !== FRAME_MMIO) {
      return this.slotMemory[frame - 1][gpa - this.slotBase[frame - 1]]
    }
    return this.slowRead(gpa, 1)
  }

  read16(gpa: number): number {
    const frame = this.frames[gpa >>> 12]
    if (frame !== FRAME_NOT_PRESENT && frame !== FRAME_MMIO && (gpa & 0xfff) <= 0xffe) {
      const m = this.slotMemory[frame - 1]
      const i = gpa - this.slotBase[frame - 1]
      return m[i] | (m[i + 1] << 8)
    }
    return this.slowRead(gpa, 2)
  }

  read32(gpa: number): number {
    const frame = this.frames[gpa >>> 12]
    if (frame !== FRAME_NOT_PRESENT && frame !== FRAME_MMIO && (gpa & 0xfff) <= 0xffc) {
      const m = this.slotMemory[frame - 1]
      const i = gpa - this.slotBase[frame - 1]
      return (m[i] | (m[i + 1] << 8) | (m[i + 2] << 16) | (m[i + 3] << 24)) >>> 0
    }
    return this.slowRead(gpa, 4)
  }

  write8(gpa: number, value: number): void {
    const frame = this.frames[gpa >>> 12]
    if (frame !== FRAME_NOT_PRESENT && frame !== FRAME_MMIO) {
      this.slotMemory[frame - 1][gpa - this.slotBase[frame - 1]] = value
      this.frameWrites[gpa >>> 12]++
      if (this.codeGranules[gpa >>> 12] !== 0) this.codeWritten(gpa, gpa)
      return
    }
    this.slowWrite(gpa, 1, value & 0xff)
  }

  write16(gpa: number, value: number): void {
    const frame = this.frames[gpa >>> 12]
    if (frame !== FRAME_NOT_PRESENT && frame !== FRAME_MMIO && (gpa & 0xfff) <= 0xffe) {
      const m = this.slotMemory[frame - 1]
      const i = gpa - this.slotBase[frame - 1]
      m[i] = value
      m[i + 1] = value >>> 8
      this.frameWrites[gpa >>> 12]++
      if (this.codeGranules[gpa >>> 12] !== 0) this.codeWritten(gpa, gpa + 1)
      return
    }
    this.slowWrite(gpa, 2, value & 0xffff)
  }

  write32(gpa: number, value: number): void {
    const frame = this.frames[gpa >>> 12]
    if (frame !== FRAME_NOT_PRESENT && frame !== FRAME_MMIO && (gpa & 0xfff) <= 0xffc) {
      const m = this.slotMemory[frame - 1]
      const i = gpa - this.slotBase[frame - 1]
      m[i] = value
      m[i + 1] = value >>> 8
      m[i + 2] = value >>> 16
      m[i + 3] = value >>> 24
      this.frameWrites[gpa >>> 12]++
      if (this.codeGranules[gpa >>> 12] !== 0) this.codeWritten(gpa, gpa + 3)
      return
    }
    this.slowWrite(gpa, 4, value >>> 0)
  }

  /** A write to bytes `first`..`last` of a frame holding cached code: if it hit code, that code is stale. */
  private codeWritten(first: number, last: number): void {
    const frame = first >>> 12
    if ((this.codeGranules[frame] & codeGranuleMask(first, last)) === 0) return
    this.codeWrites[frame]++
    this.codeGranules[frame] = 0
  }

  private slowRead(gpa: number, len: 1 | 2 | 4): number {
    if (len > 1 && (gpa & 0xfff) > 0x1000 - len) {
      // Crosses a frame boundary: KVM splits it into one fragment per page.
      let value = 0
      for (let k = 0; k < len; k++) value |= this.read8((gpa + k) >>> 0) << (8 * k)
      return value >>> 0
    }
    const frame = this.fault(gpa, EptAccess.READ)
    if (frame === FRAME_MMIO) return this.exits.mmioRead(gpa, len)
    return len === 1 ? this.read8(gpa) : len === 2 ? this.read16(gpa) : this.read32(gpa)
  }

  private slowWrite(gpa: number, len: 1 | 2 | 4, value: number): void {
    if (len > 1 && (gpa & 0xfff) > 0x1000 - len) {
      for (let k = 0; k < len; k++) this.write8((gpa + k) >>> 0, (value >>> (8 * k)) & 0xff)
      return
    }
    const frame = this.fault(gpa, EptAccess.WRITE)
    if (frame === FRAME_MMIO) return this.exits.mmioWrite(gpa, len, value)
    if (len === 1) this.write8(gpa, value)
    else if (len === 2) this.write16(gpa, value)
    else this.write32(gpa, value)
  }

  /** Builds the EPT entry for a frame touched for the first time; returns the frame's entry. */
  private fault(gpa: number, access: number): number {
    const index = gpa >>> 12
    const current = this.frames[index]
    if (current !== FRAME_NOT_PRESENT) return current
    const slot = this.memslots.slotIndexOf(gpa)
    const entry = slot < 0 ? FRAME_MMIO : slot + 1
    this.memslots.setEptEntry(index, entry)
    this.exits.eptViolation(gpa, access | EptAccess.LINEAR_VALID | EptAccess.TRANSLATED, slot < 0 ? "mmio" : "mapped")
    return entry
  }
}
