import * as Schema from "effect/Schema"

/**
 * The vocabulary of vmrr: everything that crosses a boundary between the guest, the
 * kernel (kvm.ko) and userspace (QEMU) is one of these. Names follow KVM's tracepoints
 * (`kvm_entry`, `kvm_exit`, `kvm_pio`, `kvm_mmio`, `kvm_page_fault`,
 * `kvm_userspace_exit`, `kvm_set_irq`, `kvm_inj_virq` …) where one fits.
 *
 * Every event carries `seq` (its position in the run), `vcpu` and `time`, the virtual
 * time: guest instructions retired when it happened.
 */

const U8 = Schema.Int.pipe(Schema.between(0, 0xff))
const U16 = Schema.Int.pipe(Schema.between(0, 0xffff))
export const U32 = Schema.Int.pipe(Schema.between(0, 0xffffffff))
const Count = Schema.Int.pipe(Schema.between(0, Number.MAX_SAFE_INTEGER))
const IoSizeSchema = Schema.Literal(1, 2, 4)
const MmioLength = Schema.Literal(1, 2, 4)

const common = {
  seq: Count,
  vcpu: U8,
  time: Count
}

/** `kvm_entry`: KVM_RUN enters (or re-enters) the guest at `rip`. */
export const VmEntry = Schema.TaggedStruct("VmEntry", {
  ...common,
  rip: U32
})
export type VmEntry = typeof VmEntry.Type

/**
 * `kvm_exit`: the CPU left VMX non-root. `reason` is the Intel basic exit reason,
 * `qualification` the exit qualification, `rip`/`instructionLength` the instruction
 * that caused it. `handledIn` says whether KVM finished the job in the kernel or had
 * to return to userspace.
 */
export const VmExit = Schema.TaggedStruct("VmExit", {
  ...common,
  reason: U16,
  qualification: U32,
  guestPhysical: Schema.optionalWith(U32, { exact: true }),
  rip: U32,
  instructionLength: Schema.Int.pipe(Schema.between(0, 15)),
  handledIn: Schema.Literal("kernel", "userspace")
})
export type VmExit = typeof VmExit.Type

/** `kvm_pio`: a port access. For IN the values are those userspace supplied. */
export const Pio = Schema.TaggedStruct("Pio", {
  ...common,
  direction: Schema.Literal("in", "out"),
  port: U16,
  size: IoSizeSchema,
  count: Schema.Int.pipe(Schema.between(1, 4096)),
  values: Schema.Array(U32)
})
export type Pio = typeof Pio.Type

/** `kvm_mmio`: an emulated access to a GPA no memslot covers. An unsatisfied read is one waiting for userspace. */
export const Mmio = Schema.TaggedStruct("Mmio", {
  ...common,
  op: Schema.Literal("read", "write", "unsatisfied-read"),
  gpa: U32,
  length: MmioLength,
  value: U32
})
export type Mmio = typeof Mmio.Type

/** `kvm_page_fault` on an EPT violation: KVM either mapped RAM or found MMIO (and marked it misconfigured). */
export const PageFault = Schema.TaggedStruct("PageFault", {
  ...common,
  gpa: U32,
  errorCode: U32,
  outcome: Schema.Literal("mapped", "mmio")
})
export type PageFault = typeof PageFault.Type

/** `kvm_userspace_exit`: KVM_RUN returns to userspace with `exitReason` (`KVM_EXIT_*`). */
export const UserspaceExit = Schema.TaggedStruct("UserspaceExit", {
  ...common,
  exitReason: U8,
  detail: Schema.optionalWith(Schema.String, { exact: true })
})
export type UserspaceExit = typeof UserspaceExit.Type

/** A device model sent bytes to the host (serial console, debugcon). */
export const DeviceOutput = Schema.TaggedStruct("DeviceOutput", {
  ...common,
  device: Schema.String,
  bytes: Schema.Uint8Array
})
export type DeviceOutput = typeof DeviceOutput.Type

/**
 * An input from the host (bytes typed on the serial console), delivered to the device
 * `source` at exactly `time`. Nothing else in a run depends on the host, so replaying
 * these at their times reproduces the run.
 */
export const HostInput = Schema.TaggedStruct("HostInput", {
  ...common,
  source: Schema.Literal("serial0"),
  bytes: Schema.Uint8Array
})
export type HostInput = typeof HostInput.Type

/**
 * The wall clock the RTC starts from, read from the host when the guest first touches
 * the RTC: a host input like `HostInput`, replayed from the trace.
 */
export const HostClock = Schema.TaggedStruct("HostClock", {
  ...common,
  device: Schema.Literal("rtc"),
  /** Seconds since 1970-01-01 00:00:00 UTC. */
  epochSeconds: Count
})
export type HostClock = typeof HostClock.Type

/**
 * RDTSC, or RDMSR / WRMSR of IA32_TSC, in real-time mode: the host's time-stamp counter
 * the kernel read for the guest (`MachineConfig.tsc`; the guest sees it plus the TSC
 * offset its WRMSR set). A host input like `HostInput`, replayed from the trace.
 */
export const HostTsc = Schema.TaggedStruct("HostTsc", {
  ...common,
  value: Count
})
export type HostTsc = typeof HostTsc.Type

/**
 * In the real-time clock mode (`MachineConfig.clock`), a reading of the host's
 * monotonic clock that the timers (KVM's hrtimers, QEMU's QEMU_CLOCK_VIRTUAL) now
 * follow: taken where a timer could expire (every `CLOCK_POLL_INSNS` instructions while
 * one is armed, and while the vCPU is halted) and kept only if it reached the deadline,
 * or taken for a guest access to a timer register. `ns` counts from power-on. A host
 * input like `HostInput`, replayed from the trace at the same point.
 */
export const HostMonotonicClock = Schema.TaggedStruct("HostMonotonicClock", {
  ...common,
  ns: Count
})
export type HostMonotonicClock = typeof HostMonotonicClock.Type

/** Who hosts a chip: kvm.ko (in-kernel irqchip) or QEMU (userspace irqchip). */
const HostedIn = Schema.Literal("kernel", "userspace")

/** `kvm_set_irq`: a device drives interrupt line `gsi` (KVM_IRQ_LINE, or QEMU's own wiring). */
export const SetIrq = Schema.TaggedStruct("SetIrq", {
  ...common,
  gsi: Schema.Int.pipe(Schema.between(0, 23)),
  level: Schema.Boolean,
  hostedIn: HostedIn
})
export type SetIrq = typeof SetIrq.Type

/** `kvm_pic_set_irq`: the 8259A pair saw line `irq` move; `imr`/`elcr` of its chip, `intr` the CPU's INTR after. */
export const PicSetIrq = Schema.TaggedStruct("PicSetIrq", {
  ...common,
  irq: Schema.Int.pipe(Schema.between(0, 15)),
  level: Schema.Boolean,
  imr: U8,
  elcr: U8,
  intr: Schema.Boolean,
  hostedIn: HostedIn
})
export type PicSetIrq = typeof PicSetIrq.Type

/** `kvm_ioapic_set_irq`: IOAPIC pin `pin` moved; its redirection entry's vector and mask, and whether a message went out. */
export const IoapicSetIrq = Schema.TaggedStruct("IoapicSetIrq", {
  ...common,
  pin: Schema.Int.pipe(Schema.between(0, 23)),
  level: Schema.Boolean,
  vector: U8,
  masked: Schema.Boolean,
  delivered: Schema.Boolean,
  hostedIn: HostedIn
})
export type IoapicSetIrq = typeof IoapicSetIrq.Type

/** `kvm_apic_accept_irq`: a local APIC took an interrupt (from the IOAPIC, an MSI, its timer or an IPI). */
export const ApicAcceptIrq = Schema.TaggedStruct("ApicAcceptIrq", {
  ...common,
  apicId: U8,
  deliveryMode: Schema.Int.pipe(Schema.between(0, 7)),
  level: Schema.Boolean,
  vector: U8,
  hostedIn: HostedIn
})
export type ApicAcceptIrq = typeof ApicAcceptIrq.Type

/**
 * `kvm_inj_virq`: an external interrupt injected at VM entry (the VM-entry
 * interruption-information field). `source` is where the vector came from: the
 * in-kernel PIC or LAPIC, or userspace through KVM_INTERRUPT.
 */
export const InjVirq = Schema.TaggedStruct("InjVirq", {
  ...common,
  vector: U8,
  source: Schema.Literal("pic", "lapic", "KVM_INTERRUPT")
})
export type InjVirq = typeof InjVirq.Type

/**
 * `kvm_inj_exception`: an exception KVM itself injects at VM entry, such as #GP(0) for
 * an MSR it does not emulate. (Exceptions the guest's own instructions raise are
 * delivered by the CPU in non-root mode and are not events.)
 */
export const InjException = Schema.TaggedStruct("InjException", {
  ...common,
  vector: U8,
  errorCode: Schema.optionalWith(U32, { exact: true })
})
export type InjException = typeof InjException.Type

/**
 * Interrupt-window exiting armed: an interrupt is waiting and the guest cannot take it
 * yet (IF = 0, or the shadow of STI / MOV SS). `requestedBy` is KVM itself, or
 * userspace through `kvm_run.request_interrupt_window`. The window opening is a
 * VmExit INTERRUPT_WINDOW (7).
 */
export const IrqWindowRequest = Schema.TaggedStruct("IrqWindowRequest", {
  ...common,
  requestedBy: HostedIn,
  blockedBy: Schema.Literal("if", "shadow")
})
export type IrqWindowRequest = typeof IrqWindowRequest.Type

/** `kvm_eoi`: the guest wrote the local APIC's EOI register, retiring `vector` (-1: nothing was in service). */
export const Eoi = Schema.TaggedStruct("Eoi", {
  ...common,
  apicId: U8,
  vector: Schema.Int.pipe(Schema.between(-1, 255)),
  level: Schema.Boolean,
  hostedIn: HostedIn
})
export type Eoi = typeof Eoi.Type

/** `kvm_ack_irq`: an interrupt controller saw the end of interrupt `pin` (a PIC EOI, or an IOAPIC EOI broadcast). */
export const AckIrq = Schema.TaggedStruct("AckIrq", {
  ...common,
  irqchip: Schema.Literal("pic", "ioapic"),
  pin: Schema.Int.pipe(Schema.between(0, 23)),
  hostedIn: HostedIn
})
export type AckIrq = typeof AckIrq.Type

/** A timer chip reached a deadline in virtual time: `count` expiries (PIT IRQ0 edges, LAPIC timer, RTC flags). */
export const TimerExpiry = Schema.TaggedStruct("TimerExpiry", {
  ...common,
  timer: Schema.Literal("pit", "lapic", "rtc"),
  count: Count,
  hostedIn: HostedIn
})
export type TimerExpiry = typeof TimerExpiry.Type

/**
 * `kvm_vcpu_wakeup`: a halted vCPU woke. No instructions retire in HLT, so virtual
 * time skips to the next timer deadline (QEMU's icount warp); `waited` is how far.
 */
export const VcpuWakeup = Schema.TaggedStruct("VcpuWakeup", {
  ...common,
  waited: Count
})
export type VcpuWakeup = typeof VcpuWakeup.Type

/** An access that no device claims: QEMU reads it as 0 and drops writes. */
export const Unassigned = Schema.TaggedStruct("Unassigned", {
  ...common,
  space: Schema.Literal("io", "mmio"),
  address: U32,
  size: IoSizeSchema,
  write: Schema.Boolean
})
export type Unassigned = typeof Unassigned.Type

/** The registers userspace reads when the run is over (`KVM_GET_REGS` / `KVM_GET_SREGS`). */
export const FinalRegisters = Schema.Struct({
  eax: U32,
  ecx: U32,
  edx: U32,
  ebx: U32,
  esp: U32,
  ebp: U32,
  esi: U32,
  edi: U32,
  eip: U32,
  eflags: U32,
  cr0: U32,
  cr3: U32
})
export type FinalRegisters = typeof FinalRegisters.Type

export const RunEndReason = Schema.Literal("hlt", "debug-exit", "shutdown", "internal-error", "instruction-limit")
export type RunEndReason = typeof RunEndReason.Type

/** The run is over: why, the guest's exit status (isa-debug-exit) if any, and the final registers. */
export const RunEnd = Schema.TaggedStruct("RunEnd", {
  ...common,
  reason: RunEndReason,
  exitCode: Schema.optionalWith(Schema.Int, { exact: true }),
  message: Schema.optionalWith(Schema.String, { exact: true }),
  registers: FinalRegisters
})
export type RunEnd = typeof RunEnd.Type

/**
 * One of the host kernel's own KVM tracepoints for this VM (`kvm_exit`, `kvm_entry`,
 * `kvm_pio`, ...), as tracefs printed it: recorded only on real KVM, where it is the
 * kernel's view of a KVM_RUN that userspace cannot see. `fields` is the tracepoint's
 * text, in the host's own vocabulary (SVM exit codes on AMD, VMX reasons on Intel).
 */
export const Tracepoint = Schema.TaggedStruct("Tracepoint", {
  ...common,
  name: Schema.String,
  fields: Schema.String
})
export type Tracepoint = typeof Tracepoint.Type

export const VmEvent = Schema.Union(
  VmEntry,
  VmExit,
  Pio,
  Mmio,
  PageFault,
  UserspaceExit,
  DeviceOutput,
  HostInput,
  HostClock,
  HostTsc,
  HostMonotonicClock,
  Unassigned,
  SetIrq,
  PicSetIrq,
  IoapicSetIrq,
  ApicAcceptIrq,
  InjVirq,
  InjException,
  IrqWindowRequest,
  Eoi,
  AckIrq,
  TimerExpiry,
  VcpuWakeup,
  RunEnd,
  Tracepoint
)
export type VmEvent = typeof VmEvent.Type
export type VmEventTag = VmEvent["_tag"]

/** What a run takes from the host, and a replay from the recording: serial bytes, the RTC's wall clock, the TSC, the timers' clock. */
export const hostInputTags: ReadonlySet<string> = new Set<VmEventTag>(["HostInput", "HostClock", "HostTsc", "HostMonotonicClock"])
export type RecordedHostInput = HostInput | HostClock | HostTsc | HostMonotonicClock

/** Whether events of kind `tag` are host inputs (RecordedHostInput). */
export const isHostInputTag = (tag: string): boolean => hostInputTags.has(tag)

export const isHostInput = (e: VmEvent): e is RecordedHostInput => hostInputTags.has(e._tag)
