import * as Schema from "effect/Schema"

/**
 * The vocabulary of vmrr: everything that crosses a boundary between the guest, the
 * kernel (kvm.ko) and userspace (QEMU) is one of these. Names follow KVM's tracepoints
 * (`kvm_entry`, `kvm_exit`, `kvm_pio`, `kvm_mmio`, `kvm_page_fault`,
 * `kvm_userspace_exit`) where one fits.
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

export const VmEvent = Schema.Union(VmEntry, VmExit, Pio, Mmio, PageFault, UserspaceExit, DeviceOutput, HostInput, Unassigned, RunEnd)
export type VmEvent = typeof VmEvent.Type
export type VmEventTag = VmEvent["_tag"]
