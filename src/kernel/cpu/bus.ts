/**
 * What the interpreter sees outside itself, as a CPU in VMX non-root mode does:
 * guest-physical memory (through EPT) and the instructions that cause VM exits.
 * The kernel's vCPU implements both; the interpreter knows nothing of KVM.
 *
 * Leaving the CPU: any method here may throw {@link LEAVE_CPU} (port I/O says so by
 * its result instead: an exception is slow and port I/O exits are frequent). The
 * interpreter then abandons the instruction (or the current iteration of a rep string
 * instruction) with EIP at its first byte, exactly as a VM exit or a fault leaves
 * it, and returns from `run`. When the kernel has the data the access needed
 * (an MMIO read value, a port read value, a completed write), it steps the same
 * instruction again and the access returns normally. For this to be exact, an
 * instruction performs every memory access and every call below before it
 * commits any architectural state (registers, flags, EIP, segments).
 */
export interface PhysicalMemory {
  /** An instruction byte: the same memory as `read8`, but EPT reports the access as a fetch. */
  fetch8(gpa: number): number
  read8(gpa: number): number
  read16(gpa: number): number
  read32(gpa: number): number
  write8(gpa: number, value: number): void
  write16(gpa: number, value: number): void
  write32(gpa: number, value: number): void
  /**
   * Self-modifying-code detection, as QEMU's code bitmaps do it: per 4 KiB guest frame, a
   * bit per 128-byte piece holding code the CPU has cached (`codeGranules`, set by the
   * CPU), and a count of writes that hit such a piece (`codeWrites`: the memory
   * increments it and clears the frame's bits), whoever writes. A changed count makes
   * the frame's cached instructions stale; data next to code (a real-mode stack below
   * its code) does not. Without them the CPU decodes every instruction.
   */
  readonly codeWrites?: Uint32Array
  readonly codeGranules?: Uint32Array
}

/** Bytes of guest memory per bit of `PhysicalMemory.codeGranules`: 32 pieces a frame. */
export const CODE_GRANULE_SHIFT = 7

/** The `codeGranules` bits covering bytes `first`..`last` of one frame. */
export const codeGranuleMask = (first: number, last: number): number =>
  (-1 >>> (31 - ((last >>> CODE_GRANULE_SHIFT) & 31))) & (-1 << ((first >>> CODE_GRANULE_SHIFT) & 31))

/** I/O access size in bytes. */
export type IoSize = 1 | 2 | 4

/** What `portIn` returns for an access userspace must complete: the instruction leaves the CPU. */
export const PORT_IO_LEAVES = -1

export interface ExitingInstructions {
  /**
   * IN/INS: the value read, or {@link PORT_IO_LEAVES} when userspace must complete the
   * access. `qualification` is the Intel exit qualification for I/O instructions (SDM Vol. 3C, Table 28-5).
   */
  portIn(port: number, size: IoSize, qualification: number): number
  /** OUT/OUTS: true when userspace must complete the access. */
  portOut(port: number, size: IoSize, value: number, qualification: number): boolean
  /** CPUID: reads EAX/ECX from the CPU state and writes EAX, EBX, ECX, EDX back. */
  cpuid(): void
  /** HLT, called before the instruction retires. */
  hlt(): void
  /**
   * RDMSR at CPL 0 (the MSR index is ECX): the kernel writes EDX:EAX into the CPU state
   * and returns true, or returns false for an MSR it does not emulate, which the CPU
   * turns into #GP(0) (KVM injects #GP for unknown MSRs).
   */
  rdmsr(index: number): boolean
  /** WRMSR at CPL 0 of EDX:EAX (`high`:`low`); false injects #GP(0). */
  wrmsr(index: number, low: number, high: number): boolean
  /** RDTSC (when CR4.TSD allows it): the kernel writes EDX:EAX. */
  rdtsc(): void
}

/** Thrown (never constructed per access) to leave the interpreter mid-instruction. */
export class LeaveCpu {
  readonly _tag = "LeaveCpu"
}
export const LEAVE_CPU = new LeaveCpu()
