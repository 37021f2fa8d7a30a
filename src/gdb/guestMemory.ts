/**
 * Guest memory as a debugger sees it: linear addresses through the guest's own paging,
 * walked in guest RAM without touching anything the guest could notice (no A/D bits,
 * no TLB fill, no EPT fault, no #PF), as QEMU's gdbstub does with
 * `cpu_get_phys_page_debug`. Only RAM is readable; MMIO would have side effects.
 */
import type { KvmSregs } from "../kernel/api.ts"

const CR0_PG = 0x80000000
const CR4_PSE = 1 << 4
const PRESENT = 1
const PAGE_SIZE_BIT = 1 << 7

const ramRead32 = (ram: Uint8Array, pa: number): number | undefined =>
  pa + 4 > ram.length ? undefined : (ram[pa] | (ram[pa + 1] << 8) | (ram[pa + 2] << 16) | (ram[pa + 3] << 24)) >>> 0

/** The guest-physical address of `linear`, or undefined when the guest's paging does not map it. */
export const debugTranslate = (ram: Uint8Array, sregs: Pick<KvmSregs, "cr0" | "cr3" | "cr4">, linear: number): number | undefined => {
  linear >>>= 0
  if ((sregs.cr0 & CR0_PG) === 0) return linear
  const pde = ramRead32(ram, ((sregs.cr3 & 0xfffff000) | ((linear >>> 20) & 0xffc)) >>> 0)
  if (pde === undefined || (pde & PRESENT) === 0) return undefined
  if ((pde & PAGE_SIZE_BIT) !== 0 && (sregs.cr4 & CR4_PSE) !== 0) return ((pde & 0xffc00000) | (linear & 0x3fffff)) >>> 0
  const pte = ramRead32(ram, ((pde & 0xfffff000) | ((linear >>> 10) & 0xffc)) >>> 0)
  if (pte === undefined || (pte & PRESENT) === 0) return undefined
  return ((pte & 0xfffff000) | (linear & 0xfff)) >>> 0
}

/** Guest-physical addresses `bytes` would go to, or undefined if any is unmapped or outside RAM. */
export const physicalRanges = (
  ram: Uint8Array,
  sregs: Pick<KvmSregs, "cr0" | "cr3" | "cr4">,
  linear: number,
  length: number
): Array<{ readonly physical: number; readonly offset: number; readonly length: number }> | undefined => {
  const out: Array<{ physical: number; offset: number; length: number }> = []
  for (let i = 0; i < length; ) {
    const at = (linear + i) >>> 0
    const pa = debugTranslate(ram, sregs, at)
    const n = Math.min(length - i, 0x1000 - (at & 0xfff))
    if (pa === undefined || pa + n > ram.length) return undefined
    out.push({ physical: pa, offset: i, length: n })
    i += n
  }
  return out
}

/** `length` bytes from `linear` on; undefined if any byte is unmapped or outside RAM. */
export const readLinear = (ram: Uint8Array, sregs: Pick<KvmSregs, "cr0" | "cr3" | "cr4">, linear: number, length: number): Uint8Array | undefined => {
  const ranges = physicalRanges(ram, sregs, linear, length)
  if (ranges === undefined) return undefined
  const out = new Uint8Array(length)
  for (const r of ranges) out.set(ram.subarray(r.physical, r.physical + r.length), r.offset)
  return out
}
