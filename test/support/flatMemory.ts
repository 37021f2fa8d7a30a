import { type PhysicalMemory, LEAVE_CPU } from "../../src/kernel/cpu/bus.ts"

/**
 * Flat guest RAM for interpreter tests. `leaveAt` makes the next access touching
 * an address throw LEAVE_CPU once, as an MMIO exit would; `leaveOnWriteAt` does
 * the same for writes only (to make the second access of a read-modify-write leave).
 */
export class FlatMemory implements PhysicalMemory {
  readonly bytes: Uint8Array
  readonly leaveAt = new Set<number>()
  readonly leaveOnWriteAt = new Set<number>()
  reads = 0
  writes = 0

  constructor(size = 0x110000) {
    this.bytes = new Uint8Array(size)
  }

  load(address: number, data: ArrayLike<number>): void {
    this.bytes.set(data, address)
  }

  private touch(address: number, size: number, write = false): void {
    for (let i = 0; i < size; i++) {
      const a = address + i
      if (a >= this.bytes.length) throw new RangeError(`test memory has no address 0x${a.toString(16)}`)
      if (this.leaveAt.delete(a)) throw LEAVE_CPU
      if (write && this.leaveOnWriteAt.delete(a)) throw LEAVE_CPU
    }
  }

  fetch8(gpa: number): number {
    this.touch(gpa, 1)
    return this.bytes[gpa]
  }
  read8(gpa: number): number {
    this.touch(gpa, 1)
    this.reads++
    return this.bytes[gpa]
  }
  read16(gpa: number): number {
    this.touch(gpa, 2)
    this.reads++
    return this.bytes[gpa] | (this.bytes[gpa + 1] << 8)
  }
  read32(gpa: number): number {
    this.touch(gpa, 4)
    this.reads++
    return (this.bytes[gpa] | (this.bytes[gpa + 1] << 8) | (this.bytes[gpa + 2] << 16) | (this.bytes[gpa + 3] << 24)) >>> 0
  }
  write8(gpa: number, value: number): void {
    this.touch(gpa, 1, true)
    this.writes++
    this.bytes[gpa] = value
  }
  write16(gpa: number, value: number): void {
    this.touch(gpa, 2, true)
    this.writes++
    this.bytes[gpa] = value
    this.bytes[gpa + 1] = value >>> 8
  }
  write32(gpa: number, value: number): void {
    this.touch(gpa, 4, true)
    this.writes++
    this.bytes[gpa] = value
    this.bytes[gpa + 1] = value >>> 8
    this.bytes[gpa + 2] = value >>> 16
    this.bytes[gpa + 3] = value >>> 24
  }

  peek16(address: number): number {
    return this.bytes[address] | (this.bytes[address + 1] << 8)
  }
  peek32(address: number): number {
    return (this.bytes[address] | (this.bytes[address + 1] << 8) | (this.bytes[address + 2] << 16) | (this.bytes[address + 3] << 24)) >>> 0
  }
}
