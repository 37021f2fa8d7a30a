import * as Schema from "effect/Schema"

/**
 * Everything the machine is built from, apart from the guest image. A trace's header
 * carries it, so a replay rebuilds exactly the same machine.
 */
export const CpuMode = Schema.Literal("real", "pm32")
export type CpuMode = typeof CpuMode.Type

/**
 * Where the interrupt controllers and the PIT live (QEMU's `-machine kernel_irqchip=`):
 * `kernel` PIC, IOAPIC, LAPIC and PIT in kvm.ko; `split` the LAPIC in kvm.ko, the rest
 * in QEMU; `userspace` all in QEMU. The RTC is always in QEMU.
 */
export const IrqchipMode = Schema.Literal("kernel", "split", "userspace")
export type IrqchipMode = typeof IrqchipMode.Type
export const defaultIrqchip: IrqchipMode = "kernel"

export const MachineConfig = Schema.Struct({
  /** Guest RAM in MiB, one memslot at guest-physical 0. */
  memoryMiB: Schema.Int.pipe(Schema.between(1, 3072)),
  /** Guest-physical address the image is loaded at. */
  loadAddress: Schema.Int.pipe(Schema.between(0, 0xffffffff)),
  /** Where the vCPU starts: CS:IP = 0:entry in real mode, EIP = entry in pm32. */
  entry: Schema.Int.pipe(Schema.between(0, 0xffffffff)),
  mode: CpuMode,
  /** Stop after this many instructions (a runaway guest still ends, and deterministically). */
  instructionLimit: Schema.Int.pipe(Schema.between(1, Number.MAX_SAFE_INTEGER)),
  /** Absent in traces from before the chips were wired: `kernel`. */
  irqchip: Schema.optionalWith(IrqchipMode, { exact: true }),
  /**
   * What the TSC (RDTSC, RDMSR of IA32_TSC) counts: `virtual` (absent), one tick per
   * retired instruction; `realtime`, the host's counter, taken through the host-input
   * service and recorded as HostTsc.
   */
  tsc: Schema.optionalWith(Schema.Literal("virtual", "realtime"), { exact: true }),
  /**
   * What the timers (PIT, LAPIC timer, RTC) count: `virtual` (absent), instructions
   * retired at 2^icountShift ns each, as QEMU's `-icount`; `realtime`, the host's
   * monotonic clock, as QEMU without `-icount`, read through the host-input service and
   * recorded as HostMonotonicClock (then icountShift, the rate of virtual time, must be absent).
   */
  clock: Schema.optionalWith(Schema.Literal("virtual", "realtime"), { exact: true }),
  /** One instruction is 2^shift ns of virtual time (QEMU's `-icount shift`); absent: 0. */
  icountShift: Schema.optionalWith(Schema.Int.pipe(Schema.between(0, 10)), { exact: true })
})
export type MachineConfig = typeof MachineConfig.Type

export const defaultInstructionLimit = 100_000_000
