/** The options that describe a machine and its guest, shared by `vmrr run` and `vmrr conform`. */
import { Args, Options } from "@effect/cli"
import * as Option from "effect/Option"
import { defaultIrqchip, defaultInstructionLimit, type MachineConfig } from "../events/MachineConfig.ts"
import { addressOption, integerOption } from "./options.ts"

export const image = Args.file({ name: "IMAGE", exists: "yes" }).pipe(Args.withDescription("flat guest image, loaded at --load and entered at --entry"))
export const mode = Options.choice("mode", ["real", "pm32"]).pipe(
  Options.withDefault("real" as const),
  Options.withDescription("real mode (CS:IP = 0:entry) or flat 32-bit protected mode")
)
export const load = addressOption("load").pipe(
  Options.withDefault(0x7c00),
  Options.withDescription("guest-physical load address (default 0x7c00)")
)
export const entry = addressOption("entry").pipe(
  Options.optional,
  Options.withDescription("entry point (default: the load address)")
)
export const mem = integerOption("mem", 1, 3072).pipe(Options.withDefault(16), Options.withDescription("guest RAM in MiB (default 16)"))
export const limit = integerOption("limit", 1, Number.MAX_SAFE_INTEGER).pipe(
  Options.withDefault(defaultInstructionLimit),
  Options.withDescription(`stop after this many instructions (default ${defaultInstructionLimit}; on --backend kvm, KVM_RUN calls)`)
)

export const irqchip = Options.choice("irqchip", ["kernel", "split", "userspace"]).pipe(
  Options.withDefault(defaultIrqchip),
  Options.withDescription("where the PIC, IOAPIC, LAPIC and PIT live: all in KVM, the LAPIC only (split), or all in QEMU (default kernel)")
)
export const icountShift = integerOption("icount-shift", 0, 10).pipe(
  Options.withDefault(0),
  Options.withDescription("one instruction is 2^N ns of virtual time, as QEMU's -icount shift=N (default 0)")
)

/** The machine config those options describe. */
export const machineConfigOf = (args: {
  readonly mode: MachineConfig["mode"]
  readonly load: number
  readonly entry: Option.Option<number>
  readonly mem: number
  readonly limit: number
  readonly irqchip?: MachineConfig["irqchip"]
  readonly icountShift?: number
}): MachineConfig => ({
  memoryMiB: args.mem,
  loadAddress: args.load,
  entry: Option.getOrElse(args.entry, () => args.load),
  mode: args.mode,
  instructionLimit: args.limit,
  // Only what differs from the defaults, so that traces of default machines stay byte-identical to older ones.
  ...(args.irqchip === undefined || args.irqchip === defaultIrqchip ? {} : { irqchip: args.irqchip }),
  ...(args.icountShift === undefined || args.icountShift === 0 ? {} : { icountShift: args.icountShift })
})
