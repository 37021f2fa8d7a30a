/**
 * The KVM API as userspace sees it: the ioctls of /dev/kvm, a VM fd and a vCPU fd,
 * and the `struct kvm_run` a vCPU shares with userspace. `src/qemu` uses only this
 * file (its types and the layout of `kvm_run` data) to drive a kernel, so a second
 * implementation (the real /dev/kvm) can stand behind the same interface.
 */
import type { KvmExit } from "../events/exitReasons.ts"
import type { Pic8259State } from "../hw/intc/i8259.ts"
import type { IoapicState } from "../hw/intc/ioapic.ts"
import type { LapicState } from "../hw/intc/lapic.ts"
import type { PitState } from "../hw/timer/i8254.ts"

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
  /** TR and LDTR with their caches; a backend that cannot give them leaves them out (and keeps its own on set). */
  tr?: KvmSegment
  ldt?: KvmSegment
}

/** `struct kvm_debugregs` (KVM_GET/SET_DEBUGREGS): DR0-DR3, DR6, DR7. */
export interface KvmDebugRegs {
  db: [number, number, number, number]
  dr6: number
  dr7: number
}

/** One `struct kvm_msr_entry` (KVM_GET/SET_MSRS); `data` fits in a double (the TSC is 53-bit at most here). */
export interface KvmMsrEntry {
  index: number
  data: number
}

export const MSR_IA32_TSC = 0x10
export const MSR_IA32_SYSENTER_CS = 0x174
export const MSR_IA32_SYSENTER_ESP = 0x175
export const MSR_IA32_SYSENTER_EIP = 0x176
/** The MSRs QEMU saves for this CPU model (its `kvm_put_msrs` list, cut to what a 32-bit guest has). */
export const savedMsrs: ReadonlyArray<number> = [MSR_IA32_TSC, MSR_IA32_SYSENTER_CS, MSR_IA32_SYSENTER_ESP, MSR_IA32_SYSENTER_EIP]

/**
 * `struct kvm_vcpu_events` (KVM_GET/SET_VCPU_EVENTS): what is in flight between two
 * instructions. Exceptions are delivered inside the instruction that raised them here
 * and nothing injects interrupts yet, so the interrupt shadow is all there is.
 */
export interface KvmVcpuEvents {
  /** KVM_X86_SHADOW_INT_MOV_SS (2) / KVM_X86_SHADOW_INT_STI (1), as the VMCS interruptibility state. */
  interruptShadow: number
  /** `interrupt.injected` / `interrupt.nr`: the vector KVM_INTERRUPT queued and not yet injected, -1 for none (absent: none). */
  queuedInterrupt?: number
}

/** A userspace answer the emulator keeps for an instruction that is executed again. */
export interface KvmCompletion {
  kind: "pio" | "mmio"
  address: number
  size: number
  isWrite: boolean
  value: number
}

/**
 * The model's own part of a vCPU's state, with no ioctl in KVM: virtual time, and an
 * instruction that is half way through a userspace round trip. KVM makes userspace
 * finish such an instruction (KVM_RUN with `immediate_exit`) before it saves a vCPU;
 * that run would be visible in the event stream, so the model hands the in-flight
 * emulation over instead, and a checkpoint can be taken after any exit without adding events.
 */
export interface KvmEmulationState {
  instructionsRetired: number
  /** The exit userspace has answered (IN and MMIO read data filled in), completed on the next KVM_RUN. */
  pendingExit: KvmRunExit | undefined
  /** Earlier answers for the same instruction, replayed when it executes again. */
  completions: ReadonlyArray<KvmCompletion>
  emulating: boolean
  /** Interrupt-window exiting armed, and by whom (absent: not armed). */
  interruptWindow?: "kernel" | "userspace"
  /** When a halted vCPU halted (for its `kvm_vcpu_wakeup`); absent: 0. */
  haltedAt?: number
  /** The last KVM_RUN ended in a debugger's stop (KVM_EXIT_DEBUG), so the next entry is not traced; absent: false. */
  debugStopped?: boolean
}

/**
 * KVM_SET_GUEST_DEBUG, as the model offers it to a replay debugger: stop KVM_RUN with
 * KVM_EXIT_DEBUG once this many instructions have retired. Like rr's stops, such a stop
 * and the re-entry after it are not traced: the event stream stays that of the
 * undisturbed run.
 */
export interface KvmGuestDebug {
  stopAtInstructionsRetired?: number
  /**
   * KVM_GUESTDBG_USE_HW_BP's data watchpoints, at linear addresses: an access of the kind
   * sets the watchpoint's bit in the debug status (as DR6's B0-B3) instead of raising #DB
   * in the guest. Left out: the watchpoints stay as they are.
   */
  watchpoints?: ReadonlyArray<KvmDebugWatchpoint>
}

export interface KvmDebugWatchpoint {
  readonly linear: number
  readonly length: number
  readonly access: "write" | "read" | "read-write"
}

/** `struct kvm_userspace_memory_region` (KVM_SET_USER_MEMORY_REGION). */
export interface UserspaceMemoryRegion {
  slot: number
  guestPhysAddr: number
  /** The userspace memory backing the slot; its length is the slot's size. */
  memory: Uint8Array
  /** KVM_MEM_LOG_DIRTY_PAGES: track the pages the guest writes (see KVM_GET_DIRTY_LOG). */
  logDirtyPages?: boolean
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
  /** `request_interrupt_window` was set and the guest can now take an interrupt (userspace irqchip). */
  | { readonly _tag: "KVM_EXIT_IRQ_WINDOW_OPEN"; readonly exitReason: Code<"KVM_EXIT_IRQ_WINDOW_OPEN"> }
  /** Split irqchip: the guest's EOI retired a level-triggered `vector`; userspace's IOAPIC must see it. */
  | { readonly _tag: "KVM_EXIT_IOAPIC_EOI"; readonly exitReason: Code<"KVM_EXIT_IOAPIC_EOI">; readonly vector: number }
  | { readonly _tag: "KVM_EXIT_SHUTDOWN"; readonly exitReason: Code<"KVM_EXIT_SHUTDOWN"> }
  | { readonly _tag: "KVM_EXIT_INTR"; readonly exitReason: Code<"KVM_EXIT_INTR"> }
  | { readonly _tag: "KVM_EXIT_DEBUG"; readonly exitReason: Code<"KVM_EXIT_DEBUG"> }
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
  /**
   * What the virtual time counts: instructions (the model, the default), or, on the real
   * /dev/kvm, which counts no instructions, KVM_RUN calls (`instructionsRetired` and
   * `kickAt` are then in those units).
   */
  readonly clock?: "instructions" | "exits"
}

/**
 * The vCPU ioctls QEMU uses to save and restore a vCPU (snapshots, migration). A
 * backend without them cannot take or restore checkpoints (see `hasVcpuState`).
 */
export interface KvmVcpuStateApi {
  getDebugRegs(): KvmDebugRegs
  setDebugRegs(regs: KvmDebugRegs): void
  /** KVM_GET_MSRS for `indices`; an MSR the vCPU does not have is left out. */
  getMsrs(indices: ReadonlyArray<number>): KvmMsrEntry[]
  setMsrs(entries: ReadonlyArray<KvmMsrEntry>): void
  getVcpuEvents(): KvmVcpuEvents
  setVcpuEvents(events: KvmVcpuEvents): void
  getEmulationState(): KvmEmulationState
  /** Also drops everything the interpreter cached (TLB, decoded instructions): state set from outside is new. */
  setEmulationState(state: KvmEmulationState): void
  setGuestDebug(debug: KvmGuestDebug): void
  /** The debugger's watchpoints accessed since the last call, one bit each (as DR6's B0-B3 in kvm_debug_exit_arch); reading clears it. */
  getDebugStatus?(): number
}

/**
 * The model's real-time TSC: on hardware, RDTSC in the guest reads the host's counter
 * (plus the TSC offset) without an exit. The model's kernel reads nothing from the
 * host, so userspace hands it the counter of its host-input service, which records
 * every reading. Undefined: the TSC counts retired instructions (the default).
 */
export interface KvmHostTscApi {
  setHostTsc(read: (() => number) | undefined): void
}

export const hasHostTsc = (vcpu: KvmVcpuApi): vcpu is KvmVcpuApi & KvmHostTscApi =>
  typeof (vcpu as Partial<KvmHostTscApi>).setHostTsc === "function"

/**
 * The model's real-time clock mode: KVM's timers (hrtimers) and QEMU's follow the host's
 * monotonic clock. The model's kernel reads nothing from the host, so userspace hands
 * the VM one clock, read through its host-input service, which records every reading
 * it delivers. Both sides see the same `now`; `read` moves it.
 */
export interface KvmTimerClock {
  /** The timers' time: the latest reading delivered, in ns since power-on. */
  readonly now: number
  /**
   * Reads the host clock and delivers the reading only if it has reached `due`, so that
   * a reading which would change nothing is not recorded; true if one was delivered.
   * `halted`: a halted vCPU is waiting for it.
   */
  read(due: number, halted: boolean): boolean
  /**
   * QEMU's next timer deadline on this clock, set by userspace before KVM_RUN: KVM_RUN
   * returns KVM_EXIT_INTR once a reading reaches it (QEMU's timer signalling the vCPU
   * thread). +Infinity: none.
   */
  userspaceDeadline: number
}

/** The VM call that switches the timers to the host clock, before any chip is created. */
export interface KvmTimerClockApi {
  setTimerClock(clock: KvmTimerClock): void
}

export const hasTimerClock = (vm: KvmVmApi): vm is KvmVmApi & KvmTimerClockApi =>
  typeof (vm as Partial<KvmTimerClockApi>).setTimerClock === "function"

export const hasVcpuState = (vcpu: KvmVcpuApi): vcpu is KvmVcpuApi & KvmVcpuStateApi =>
  typeof (vcpu as Partial<KvmVcpuStateApi>).getEmulationState === "function"

/** The VM fd. */
export interface KvmVmApi {
  setUserMemoryRegion(region: UserspaceMemoryRegion): void
  createVcpu(id: number): KvmVcpuApi
}

/** The VM ioctls a checkpoint needs: the dirty log, and (the model's own) the EPT built so far. */
export interface KvmVmStateApi {
  /**
   * KVM_GET_DIRTY_LOG: one bit per page of the slot (bit i of byte i >> 3), set for
   * pages the guest wrote since the last call or since logging was enabled; reading
   * clears it. A slot without KVM_MEM_LOG_DIRTY_PAGES is refused (RangeError). Written
   * into `into` when given (as the ioctl fills the caller's buffer), which must be the
   * bitmap's size, (pages + 7) >> 3 bytes; else into a fresh bitmap.
   */
  getDirtyLog(slot: number, into?: Uint8Array): Uint8Array
  /**
   * The frames the EPT maps, as [frame number, entry] pairs. No KVM ioctl saves the EPT
   * (KVM rebuilds it on demand after a restore); the model's EPT faults are events in
   * the trace, so its EPT is part of the state.
   */
  getEptEntries(): Array<[number, number]>
  setEptEntries(entries: ReadonlyArray<readonly [number, number]>): void
}

export const hasVmState = (vm: KvmVmApi): vm is KvmVmApi & KvmVmStateApi =>
  typeof (vm as Partial<KvmVmStateApi>).getDirtyLog === "function"

// ---- interrupts: KVM_CREATE_IRQCHIP, KVM_IRQ_LINE, KVM_INTERRUPT, … ----------------

/** `chip_id` of `struct kvm_irqchip` (KVM_GET_IRQCHIP / KVM_SET_IRQCHIP). */
export const KVM_IRQCHIP_PIC_MASTER = 0
export const KVM_IRQCHIP_PIC_SLAVE = 1
export const KVM_IRQCHIP_IOAPIC = 2

/** `struct kvm_irqchip`: one in-kernel chip's state, the same plain data the chip model keeps. */
export type KvmIrqchip =
  | { readonly chipId: typeof KVM_IRQCHIP_PIC_MASTER | typeof KVM_IRQCHIP_PIC_SLAVE; readonly pic: Pic8259State }
  | { readonly chipId: typeof KVM_IRQCHIP_IOAPIC; readonly ioapic: IoapicState }

/** `struct kvm_msi` (KVM_SIGNAL_MSI): an interrupt message as the APIC bus carries it. */
export interface KvmMsi {
  /** 0xfee00000 | destination << 12 | logical (bit 2). */
  readonly address: number
  /** vector | delivery mode << 8 | level-triggered (bit 15). */
  readonly data: number
}

/** `kvm_mp_state`: KVM_MP_STATE_RUNNABLE or KVM_MP_STATE_HALTED. */
export type KvmMpState = "runnable" | "halted"

/**
 * The VM ioctls of an in-kernel irqchip. `setIcountShift` is the model's own: the
 * rate of its virtual clock (one instruction is 2^shift ns, QEMU's `-icount shift`),
 * set before any chip is created; a real KVM runs on the host's clock.
 */
export interface KvmIrqchipVmApi {
  setIcountShift(shift: number): void
  /** KVM_CREATE_IRQCHIP: PIC pair and IOAPIC in the kernel, and a LAPIC in every vCPU created after. */
  createIrqchip(): void
  /** KVM_ENABLE_CAP(KVM_CAP_SPLIT_IRQCHIP): only the LAPICs in the kernel; EOIs of level vectors exit to userspace. */
  enableSplitIrqchip(): void
  /** KVM_CREATE_PIT2: the 8254 in the kernel, wired to GSI 0. */
  createPit2(): void
  /** KVM_IRQ_LINE: drive GSI `irq` (QEMU's PC routing: GSI 0 is PIC IRQ0 and IOAPIC pin 2). */
  irqLine(irq: number, level: boolean): void
  /** KVM_SIGNAL_MSI: deliver a message to the in-kernel LAPICs (split irqchip: from userspace's IOAPIC). */
  signalMsi(msi: KvmMsi): void
  getIrqchip(chipId: KvmIrqchip["chipId"]): KvmIrqchip
  setIrqchip(chip: KvmIrqchip): void
  /** KVM_GET_PIT2 / KVM_SET_PIT2. */
  getPit2(): PitState
  setPit2(state: PitState): void
}

/**
 * The vCPU side: KVM_INTERRUPT and the `kvm_run` fields a userspace irqchip uses,
 * KVM_GET_LAPIC / KVM_SET_LAPIC and KVM_GET_MP_STATE / KVM_SET_MP_STATE.
 */
export interface KvmIrqchipVcpuApi {
  /** KVM_INTERRUPT: queue `vector` for injection at the next entry (no in-kernel PIC). */
  interrupt(vector: number): void
  /** `kvm_run.request_interrupt_window` (in): exit with KVM_EXIT_IRQ_WINDOW_OPEN once the guest can take an interrupt. */
  requestInterruptWindow: boolean
  /** `kvm_run.ready_for_interrupt_injection` (out): KVM_INTERRUPT now would be injected at once. */
  readonly readyForInterruptInjection: boolean
  /** `kvm_run.if_flag` (out): the guest's EFLAGS.IF. */
  readonly ifFlag: boolean
  getLapic(): LapicState | undefined
  setLapic(state: LapicState): void
  getMpState(): KvmMpState
  setMpState(state: KvmMpState): void
}

export const hasIrqchipVm = (vm: KvmVmApi): vm is KvmVmApi & KvmIrqchipVmApi =>
  typeof (vm as Partial<KvmIrqchipVmApi>).createIrqchip === "function"

export const hasIrqchipVcpu = (vcpu: KvmVcpuApi): vcpu is KvmVcpuApi & KvmIrqchipVcpuApi =>
  typeof (vcpu as Partial<KvmIrqchipVcpuApi>).interrupt === "function"

/** An MSI for an IOAPIC redirection entry's message (how QEMU's split-irqchip IOAPIC reaches the kernel). */
export const msiOf = (vector: number, deliveryMode: number, logical: boolean, dest: number, level: boolean): KvmMsi => ({
  address: (0xfee00000 | ((dest & 0xff) << 12) | (logical ? 4 : 0)) >>> 0,
  data: (vector & 0xff) | ((deliveryMode & 7) << 8) | (level ? 0x8000 : 0)
})
