import type { CpuidEntry } from "../kernel/api.ts"

/** Four ASCII characters as the little-endian register CPUID returns them in. */
const reg = (s: string): number => (s.charCodeAt(0) | (s.charCodeAt(1) << 8) | (s.charCodeAt(2) << 16) | (s.charCodeAt(3) << 24)) >>> 0

const leaf = (fn: number, eax: number, ebx: number, ecx: number, edx: number): CpuidEntry => ({
  function: fn,
  index: 0,
  significantIndex: false,
  eax,
  ebx,
  ecx,
  edx
})

const brand = "vmrr virtual CPU".padEnd(48, "\0")
const brandLeaf = (fn: number, part: number): CpuidEntry => {
  const s = brand.slice(part * 16, part * 16 + 16)
  return leaf(fn, reg(s.slice(0, 4)), reg(s.slice(4, 8)), reg(s.slice(8, 12)), reg(s.slice(12, 16)))
}

/**
 * The CPUID table userspace hands KVM (KVM_SET_CPUID2), shaped like QEMU's `qemu32`
 * model: GenuineIntel, family 6 model 6 stepping 3, and KVM's hypervisor leaves.
 * Feature bits advertise only what the interpreter implements: none of the optional
 * ones yet, so a guest that checks will not try x87, TSC or MSRs; CPUID.1:ECX[31]
 * says it runs under a hypervisor.
 */
export const qemu32CpuidTable: ReadonlyArray<CpuidEntry> = [
  leaf(0, 1, reg("Genu"), reg("ntel"), reg("ineI")),
  leaf(1, 0x663, 0, 1 << 31, 0),
  leaf(0x40000000, 0x40000001, reg("KVMK"), reg("VMKV"), reg("M\0\0\0")),
  leaf(0x40000001, 0, 0, 0, 0),
  leaf(0x80000000, 0x80000004, 0, 0, 0),
  leaf(0x80000001, 0, 0, 0, 0),
  brandLeaf(0x80000002, 0),
  brandLeaf(0x80000003, 1),
  brandLeaf(0x80000004, 2)
]
