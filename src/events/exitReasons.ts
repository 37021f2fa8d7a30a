/**
 * The numbers people already know. Intel SDM Vol. 3C Appendix C "VMX Basic Exit
 * Reasons" for what the CPU reports to KVM, and `KVM_EXIT_*` from linux/kvm.h for
 * what KVM reports to userspace.
 */

/** Intel VMX basic exit reasons (the low 16 bits of the VM-exit reason field). */
export const ExitReason = {
  EXCEPTION_NMI: 0,
  EXTERNAL_INTERRUPT: 1,
  TRIPLE_FAULT: 2,
  INTERRUPT_WINDOW: 7,
  HLT_PLACEHOLDER: -1,
  CPUID: 10,
  HLT: 12,
  RDTSC: 16,
  CR_ACCESS: 28,
  IO_INSTRUCTION: 30,
  MSR_READ: 31,
  MSR_WRITE: 32,
  EPT_VIOLATION: 48,
  EPT_MISCONFIG: 49
} as const
export type ExitReasonName = keyof typeof ExitReason

/** KVM's userspace exit reasons (`struct kvm_run.exit_reason`). */
export const KvmExit = {
  KVM_EXIT_UNKNOWN: 0,
  KVM_EXIT_EXCEPTION: 1,
  KVM_EXIT_IO: 2,
  KVM_EXIT_HYPERCALL: 3,
  KVM_EXIT_DEBUG: 4,
  KVM_EXIT_HLT: 5,
  KVM_EXIT_MMIO: 6,
  KVM_EXIT_IRQ_WINDOW_OPEN: 7,
  KVM_EXIT_SHUTDOWN: 8,
  KVM_EXIT_FAIL_ENTRY: 9,
  KVM_EXIT_INTR: 10,
  KVM_EXIT_INTERNAL_ERROR: 17,
  KVM_EXIT_IOAPIC_EOI: 26
} as const
export type KvmExitName = keyof typeof KvmExit

/** `KVM_INTERNAL_ERROR_*` sub-reasons carried by `KVM_EXIT_INTERNAL_ERROR`. */
export const KvmInternalError = {
  KVM_INTERNAL_ERROR_EMULATION: 1,
  KVM_INTERNAL_ERROR_SIMUL_EX: 2,
  KVM_INTERNAL_ERROR_DELIVERY_EV: 3,
  KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON: 4
} as const

const invert = <T extends Record<string, number>>(table: T): ReadonlyMap<number, keyof T & string> =>
  new Map(Object.entries(table).map(([name, code]) => [code, name as keyof T & string]))

const exitReasonNames = invert(ExitReason)
const kvmExitNames = invert(KvmExit)

export const exitReasonName = (code: number): string => exitReasonNames.get(code) ?? `EXIT_REASON_${code}`
export const kvmExitName = (code: number): string => kvmExitNames.get(code) ?? `KVM_EXIT_${code}`

/**
 * Exit qualification for I/O instructions (SDM Vol. 3C Table 28-5): bits 2:0 size - 1,
 * bit 3 direction (1 = IN), bit 4 string, bit 5 REP, bit 6 immediate operand, bits 31:16 port.
 */
export const ioQualification = {
  size: (q: number): 1 | 2 | 4 => ((q & 7) + 1) as 1 | 2 | 4,
  isIn: (q: number): boolean => (q & 8) !== 0,
  isString: (q: number): boolean => (q & 16) !== 0,
  isRep: (q: number): boolean => (q & 32) !== 0,
  isImmediate: (q: number): boolean => (q & 64) !== 0,
  port: (q: number): number => q >>> 16
}

/**
 * Exit qualification for EPT violations (SDM Vol. 3C Table 28-7): bit 0 data read,
 * bit 1 data write, bit 2 instruction fetch; bits 5:3 what the EPT entry allowed
 * (always 0 here: the entry was not present); bit 7 the guest linear address is valid;
 * bit 8 the access was to the translation of that linear address (not to a paging
 * structure, which cannot happen without guest paging).
 */
export const EptAccess = { READ: 1, WRITE: 2, FETCH: 4, LINEAR_VALID: 0x80, TRANSLATED: 0x100 } as const
