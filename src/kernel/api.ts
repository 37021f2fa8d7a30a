/**
 * The KVM API as userspace sees it: the ioctls of /dev/kvm, a VM fd and a vCPU fd,
 * and the `struct kvm_run` a vCPU shares with userspace. `src/qemu` uses only this
 * file (its types and the layout of `kvm_run` data) to drive a kernel, so a second
 * implementation (the real /dev/kvm) can stand behind the same interface.
 */
import type { KvmExit } from "../events/exitReasons.ts"

/** `struct kvm_regs`, the 32-bit half of it. */
export interface KvmRegs {
  rax: number
  rbx: number
  rcx: number
  rdx: number
  rsi: number
  rdi: number
  rsp: number
  rbp: number
  rip: number
  rflags: number
}

/** `struct kvm_segment`: a segment register with its hidden descriptor cache. */
export interface KvmSegment {
  base: number
  limit: number
  selector: number
  type: number
  present: boolean
  dpl: number
  /** Default operation size: 1 = 32-bit. */
  db: boolean
  /** Descriptor type: 1 = code/data. */
  s: boolean
  l: boolean
  /** Granularity: the limit counts 4 KiB pages. */
  g: boolean
  avl: boolean
  unusable: boolean
}

/** `struct kvm_dtable`: GDTR or IDTR. */
export interface KvmDtable {
  base: number
  limit: number
}

/** `struct kvm_sregs`, without the fields a 32-bit guest cannot use. */
export interface KvmSregs {
  cs: KvmSegment
  ds: KvmSegment
  es: KvmSegment
  fs: KvmSegment
  gs: KvmSegment
  ss: KvmSegment
  gdt: KvmDtable
  idt: KvmDtable
  cr0: number
  cr2: number
  cr3: number
  cr4: number
}

/** `struct kvm_userspace_memory_region` (KVM_SET_USER_MEMORY_REGION). */
export interface UserspaceMemoryRegion {
  slot: number
  guestPhysAddr: number
  /** The userspace memory backing the slot; its length is the slot's size. */
  memory: Uint8Array
}

/** `struct kvm_cpuid_entry2` (KVM_SET_CPUID2). */
export interface CpuidEntry {
  function: number
  index: number
  /** KVM_CPUID_FLAG_SIGNIFCANT_INDEX: `index` (ECX) selects the subleaf. */
  significantIndex: boolean
  eax: number
  ebx: number
  ecx: number
  edx: number
}

type Code<K extends keyof typeof KvmExit> = (typeof KvmExit)[K]

/**
 * What KVM_RUN returned: `kvm_run.exit_reason` and its union member. Userspace fills
 * `data` of an IN or MMIO read before the next run, which completes the instruction,
 * exactly as with the shared `kvm_run` page.
 */
export type KvmRunExit =
  | {
      readonly _tag: "KVM_EXIT_IO"
      readonly exitReason: Code<"KVM_EXIT_IO">
      readonly direction: "in" | "out"
      readonly port: number
      readonly size: 1 | 2 | 4
      readonly count: number
      /** `size * count` bytes, little-endian: what OUT wrote, or where IN's values go. */
      readonly data: Uint8Array
    }
  | {
      readonly _tag: "KVM_EXIT_MMIO"
      readonly exitReason: Code<"KVM_EXIT_MMIO">
      readonly physAddr: number
      readonly isWrite: boolean
      readonly len: 1 | 2 | 4
      readonly data: Uint8Array
    }
  | { readonly _tag: "KVM_EXIT_HLT"; readonly exitReason: Code<"KVM_EXIT_HLT"> }
  | { readonly _tag: "KVM_EXIT_SHUTDOWN"; readonly exitReason: Code<"KVM_EXIT_SHUTDOWN"> }
  | { readonly _tag: "KVM_EXIT_INTR"; readonly exitReason: Code<"KVM_EXIT_INTR"> }
  | {
      readonly _tag: "KVM_EXIT_INTERNAL_ERROR"
      readonly exitReason: Code<"KVM_EXIT_INTERNAL_ERROR">
      /** `KVM_INTERNAL_ERROR_*`. */
      readonly suberror: number
      /** One line a person can act on: what failed, at which address, with which bytes. */
      readonly detail: string
    }

/** One value of `size` bytes at `offset` in an exit's `data`: little-endian, as `kvm_run` holds it. */
export const readExitData = (data: Uint8Array, offset: number, size: number): number => {
  let value = 0
  for (let i = 0; i < size; i++) value |= data[offset + i] << (8 * i)
  return value >>> 0
}

/** Stores `value` as `size` little-endian bytes at `offset` in an exit's `data`. */
export const writeExitData = (data: Uint8Array, offset: number, size: number, value: number): void => {
  for (let i = 0; i < size; i++) data[offset + i] = (value >>> (8 * i)) & 0xff
}

/** The vCPU fd. */
export interface KvmVcpuApi {
  readonly id: number
  /** KVM_RUN: enter the guest until something needs userspace. */
  run(): KvmRunExit
  getRegs(): KvmRegs
  setRegs(regs: KvmRegs): void
  getSregs(): KvmSregs
  setSregs(sregs: KvmSregs): void
  setCpuid(entries: ReadonlyArray<CpuidEntry>): void
  /**
   * Ask KVM_RUN to return KVM_EXIT_INTR once the guest has retired this many
   * instructions in total: what QEMU does with a signal, at a point in virtual time.
   */
  kickAt(instructionsRetired: number): void
  /** Instructions retired so far: the vCPU's virtual time. */
  readonly instructionsRetired: number
}

/** The VM fd. */
export interface KvmVmApi {
  setUserMemoryRegion(region: UserspaceMemoryRegion): void
  createVcpu(id: number): KvmVcpuApi
}
