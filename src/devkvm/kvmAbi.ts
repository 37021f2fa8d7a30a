/**
 * The /dev/kvm ABI for x86-64 hosts, as linux/kvm.h and asm/kvm.h spell it: ioctl
 * numbers built with the _IO/_IOR/_IOW/_IOWR macros of asm-generic/ioctl.h, and the
 * byte offsets of the structs those ioctls and the shared `struct kvm_run` carry.
 */

const _IOC_NONE = 0
const _IOC_WRITE = 1
const _IOC_READ = 2

const _IOC = (dir: number, type: number, nr: number, size: number): number =>
  ((dir << 30) | (size << 16) | (type << 8) | nr) >>> 0
const _IO = (type: number, nr: number): number => _IOC(_IOC_NONE, type, nr, 0)
const _IOR = (type: number, nr: number, size: number): number => _IOC(_IOC_READ, type, nr, size)
const _IOW = (type: number, nr: number, size: number): number => _IOC(_IOC_WRITE, type, nr, size)
const _IOWR = (type: number, nr: number, size: number): number => _IOC(_IOC_READ | _IOC_WRITE, type, nr, size)

export const KVMIO = 0xae
export const KVM_API_VERSION = 12

/** sizeof of the structs named in the ioctl numbers. */
export const SIZEOF_KVM_USERSPACE_MEMORY_REGION = 32
export const SIZEOF_KVM_REGS = 18 * 8
export const SIZEOF_KVM_SREGS = 312
/** `struct kvm_cpuid2` without its flexible `entries[]`. */
export const SIZEOF_KVM_CPUID2 = 8
export const SIZEOF_KVM_CPUID_ENTRY2 = 40
/** `struct kvm_irq_level` { u32 irq; u32 level }. */
export const SIZEOF_KVM_IRQ_LEVEL = 8
/** `struct kvm_pit_config` { u32 flags; u32 pad[15] }. */
export const SIZEOF_KVM_PIT_CONFIG = 64
/** `struct kvm_mp_state` { u32 mp_state }. */
export const SIZEOF_KVM_MP_STATE = 4
/** `struct kvm_interrupt` { u32 irq }. */
export const SIZEOF_KVM_INTERRUPT = 4

// System ioctls (/dev/kvm).
export const KVM_GET_API_VERSION = _IO(KVMIO, 0x00)
export const KVM_CREATE_VM = _IO(KVMIO, 0x01)
export const KVM_GET_VCPU_MMAP_SIZE = _IO(KVMIO, 0x04)
export const KVM_GET_SUPPORTED_CPUID = _IOWR(KVMIO, 0x05, SIZEOF_KVM_CPUID2)

// VM ioctls.
export const KVM_CREATE_VCPU = _IO(KVMIO, 0x41)
export const KVM_SET_USER_MEMORY_REGION = _IOW(KVMIO, 0x46, SIZEOF_KVM_USERSPACE_MEMORY_REGION)
export const KVM_SET_TSS_ADDR = _IO(KVMIO, 0x47)
export const KVM_CREATE_IRQCHIP = _IO(KVMIO, 0x60)
export const KVM_IRQ_LINE = _IOW(KVMIO, 0x61, SIZEOF_KVM_IRQ_LEVEL)
export const KVM_CREATE_PIT2 = _IOW(KVMIO, 0x77, SIZEOF_KVM_PIT_CONFIG)

// vCPU ioctls.
export const KVM_RUN = _IO(KVMIO, 0x80)
export const KVM_GET_REGS = _IOR(KVMIO, 0x81, SIZEOF_KVM_REGS)
export const KVM_SET_REGS = _IOW(KVMIO, 0x82, SIZEOF_KVM_REGS)
export const KVM_GET_SREGS = _IOR(KVMIO, 0x83, SIZEOF_KVM_SREGS)
export const KVM_SET_SREGS = _IOW(KVMIO, 0x84, SIZEOF_KVM_SREGS)
export const KVM_INTERRUPT = _IOW(KVMIO, 0x86, SIZEOF_KVM_INTERRUPT)
export const KVM_SET_CPUID2 = _IOW(KVMIO, 0x90, SIZEOF_KVM_CPUID2)
export const KVM_GET_MP_STATE = _IOR(KVMIO, 0x98, SIZEOF_KVM_MP_STATE)
export const KVM_SET_MP_STATE = _IOW(KVMIO, 0x99, SIZEOF_KVM_MP_STATE)

/** `kvm_pit_config.flags`: the kernel also answers port 0x61 (channel 2's gate and output), as the model's in-kernel PIT does. */
export const KVM_PIT_SPEAKER_DUMMY = 1
export const KVM_MP_STATE_RUNNABLE = 0
export const KVM_MP_STATE_HALTED = 3

export const KVM_CPUID_FLAG_SIGNIFCANT_INDEX = 1

/** `struct kvm_regs`: rax rbx rcx rdx rsi rdi rsp rbp r8..r15 rip rflags, all u64. */
export const KvmRegsOffset = {
  rax: 0, rbx: 8, rcx: 16, rdx: 24, rsi: 32, rdi: 40, rsp: 48, rbp: 56, rip: 128, rflags: 136
} as const

/** `struct kvm_segment` (24 bytes). */
export const KvmSegmentOffset = {
  base: 0, limit: 8, selector: 12, type: 14, present: 15, dpl: 16, db: 17, s: 18, l: 19, g: 20, avl: 21, unusable: 22
} as const
export const SIZEOF_KVM_SEGMENT = 24

/** `struct kvm_sregs`: eight segments, two `struct kvm_dtable` {u64 base; u16 limit; u16 pad[3]}, control registers. */
export const KvmSregsOffset = {
  cs: 0, ds: 24, es: 48, fs: 72, gs: 96, ss: 120, tr: 144, ldt: 168,
  gdt: 192, idt: 208,
  cr0: 224, cr2: 232, cr3: 240, cr4: 248, cr8: 256, efer: 264, apic_base: 272, interrupt_bitmap: 280
} as const

/** `struct kvm_userspace_memory_region`. */
export const KvmUserspaceMemoryRegionOffset = { slot: 0, flags: 4, guest_phys_addr: 8, memory_size: 16, userspace_addr: 24 } as const

/** `struct kvm_cpuid_entry2`. */
export const KvmCpuidEntry2Offset = { function: 0, index: 4, flags: 8, eax: 12, ebx: 16, ecx: 20, edx: 24 } as const

/** `struct kvm_run`: the header, then the exit-reason union at 32. */
export const KvmRunOffset = {
  request_interrupt_window: 0,
  immediate_exit: 1,
  exit_reason: 8,
  ready_for_interrupt_injection: 12,
  if_flag: 13,
  flags: 14,
  cr8: 16,
  apic_base: 24,
  /** union { struct { u8 direction, size; u16 port; u32 count; u64 data_offset } io; ... } */
  io_direction: 32,
  io_size: 33,
  io_port: 34,
  io_count: 36,
  io_data_offset: 40,
  /** struct { u64 phys_addr; u8 data[8]; u32 len; u8 is_write } mmio */
  mmio_phys_addr: 32,
  mmio_data: 40,
  mmio_len: 48,
  mmio_is_write: 52,
  /** struct { u64 hardware_entry_failure_reason; u32 cpu } fail_entry */
  fail_entry_hardware_entry_failure_reason: 32,
  fail_entry_cpu: 40,
  /** struct { u32 suberror; u32 ndata; u64 data[16] } internal */
  internal_suberror: 32,
  internal_ndata: 36,
  internal_data: 40,
  /** struct { u64 hardware_exit_reason } hw (KVM_EXIT_UNKNOWN) */
  hw_hardware_exit_reason: 32,
  /** struct { u32 exception; u32 error_code } ex (KVM_EXIT_EXCEPTION) */
  ex_exception: 32,
  ex_error_code: 36
} as const

export const KVM_EXIT_IO_IN = 0
export const KVM_EXIT_IO_OUT = 1
