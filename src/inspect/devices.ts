import * as Either from "effect/Either"
import type { MachineConfig } from "../events/MachineConfig.ts"
import type { MachineSetupError } from "../qemu/errors.ts"
import { createMachine } from "../qemu/machine.ts"

/** A device as QEMU's buses list it: its name, QEMU type, and the range it answers. */
export interface MappedDevice {
  readonly name: string
  readonly kind: string
  readonly base: number
  readonly end: number
}

/** Who answers where, in the machine a trace was recorded on. */
export interface DeviceMap {
  readonly io: ReadonlyArray<MappedDevice>
  readonly mmio: ReadonlyArray<MappedDevice>
}

/** The device at `address` in `space`, if any claims it. */
export const deviceAt = (devices: DeviceMap, space: "io" | "mmio", address: number): MappedDevice | undefined =>
  devices[space].find((d) => address >= d.base && address < d.end)

/** Builds the machine a trace's header describes (nothing runs) and lists its buses. */
export const machineDevices = (config: MachineConfig, image: Uint8Array): Either.Either<DeviceMap, MachineSetupError> =>
  Either.map(createMachine(config, image), (machine) => {
    const list = (entries: ReturnType<typeof machine.pio.list>) =>
      entries.map((e) => ({ name: e.name, kind: e.device.kind, base: e.base, end: e.end }))
    return { io: list(machine.pio.list()), mmio: list(machine.mmio.list()) }
  })

/** 16550 register names by offset; with LCR.DLAB set, offsets 0 and 1 are the divisor latch. */
const uartRegisters = ["RBR/THR or DLL", "IER or DLM", "IIR/FCR", "LCR", "MCR", "LSR", "MSR", "SCR"]

/** The register an access hits, for devices whose registers have well-known names. */
export const registerName = (device: MappedDevice, address: number): string | undefined =>
  device.kind === "isa-serial" ? uartRegisters[address - device.base] : undefined

/**
 * The PC devices KVM can emulate itself with an in-kernel irqchip (KVM_CREATE_IRQCHIP,
 * KVM_CREATE_PIT2), at the addresses every PC has them: an exit to them is handled in
 * the kernel, so QEMU's buses never list them.
 */
const kernelDevices: DeviceMap = {
  io: [
    { name: "8259A PIC (master)", kind: "kvm-i8259", base: 0x20, end: 0x22 },
    { name: "8254 PIT", kind: "kvm-pit", base: 0x40, end: 0x44 },
    { name: "8259A PIC (slave)", kind: "kvm-i8259", base: 0xa0, end: 0xa2 },
    { name: "8259A ELCR", kind: "kvm-i8259", base: 0x4d0, end: 0x4d2 }
  ],
  mmio: [
    { name: "IOAPIC", kind: "kvm-ioapic", base: 0xfec00000, end: 0xfec01000 },
    { name: "local APIC", kind: "kvm-apic", base: 0xfee00000, end: 0xfee01000 }
  ]
}

/** The in-kernel device an exit KVM handled itself went to, if it is one of the PC's. */
export const kernelDeviceAt = (space: "io" | "mmio", address: number): MappedDevice | undefined => deviceAt(kernelDevices, space, address)
