import * as Either from "effect/Either"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import { EventLog } from "../events/EventLog.ts"
import { defaultIrqchip, MachineConfig } from "../events/MachineConfig.ts"
import { hasHostTsc, hasIrqchipVcpu, hasIrqchipVm, hasTimerClock, type KvmSegment, type KvmSregs, type KvmVcpuApi, type KvmVmApi } from "../kernel/api.ts"
import { createVm } from "../kernel/kvm.ts"
import { Bus, type BusInsertError } from "./bus.ts"
import { qemu32CpuidTable } from "./cpuid.ts"
import { debugcon, DEBUGCON_BASE, DEBUGCON_IO_SIZE } from "./devices/debugcon.ts"
import type { Device } from "./devices/device.ts"
import { DEBUG_EXIT_BASE, DEBUG_EXIT_IO_SIZE, isaDebugExit } from "./devices/isaDebugExit.ts"
import { COM1_BASE, UART_IO_SIZE, uart16550 } from "./devices/uart16550.ts"
import { MachineSetupError } from "./errors.ts"
import { type HostInputPort, HostTimerClock, noHostInput } from "./hostInput.ts"
import { QemuInterrupts } from "./interrupts.ts"

const MiB = 1 << 20

/** A built machine: the VM and vCPU in the kernel, RAM, the two buses, and the event log they share. */
export interface Machine {
  readonly config: MachineConfig
  readonly log: EventLog
  readonly vm: KvmVmApi
  readonly vcpu: KvmVcpuApi
  readonly ram: Uint8Array
  /** Port I/O space (64 KiB, unassigned reads are all ones as on a PC). */
  readonly pio: Bus
  /** MMIO space: every guest-physical address outside RAM (unassigned reads are 0). */
  readonly mmio: Bus
  /** Where host input (the serial console) comes from: live, replayed, or nothing. */
  readonly input: HostInputPort
  /** The interrupt chips QEMU hosts in the config's irqchip mode; undefined on a kernel without the irqchip ioctls. */
  readonly interrupts: QemuInterrupts | undefined
}

/**
 * Creates the VM through the KVM-shaped API, as QEMU's `kvm_init` + machine init do.
 * `allocateRam` is where guest RAM comes from (QEMU's RAM backend): a kernel that maps
 * it into a real guest needs host memory it can map; the default is a plain array.
 */
export type KernelFactory = ((log: EventLog) => KvmVmApi) & { readonly allocateRam?: (bytes: number) => Uint8Array }

interface IsaDevice {
  readonly name: string
  readonly base: number
  readonly size: number
  readonly device: Device<any>
}

/** The ISA devices of the machine, at the ports a PC (and QEMU's defaults) put them. */
const isaDevices: ReadonlyArray<IsaDevice> = [
  { name: "serial0", base: COM1_BASE, size: UART_IO_SIZE, device: uart16550 },
  { name: "debugcon", base: DEBUGCON_BASE, size: DEBUGCON_IO_SIZE, device: debugcon },
  { name: "isa-debug-exit", base: DEBUG_EXIT_BASE, size: DEBUG_EXIT_IO_SIZE, device: isaDebugExit }
]

const segment = (selector: number, type: number, big: boolean): KvmSegment => ({
  base: 0,
  limit: big ? 0xffffffff : 0xffff,
  selector,
  type,
  present: true,
  dpl: 0,
  db: big,
  s: true,
  l: false,
  g: big,
  avl: false,
  unusable: false
})

const CODE_EXEC_READ_ACCESSED = 0xb
const DATA_READ_WRITE_ACCESSED = 0x3
const CR0_PE = 1
/** What KVM gives a vCPU at reset: CD | NW | ET. */
const CR0_RESET = 0x60000010

/**
 * Real mode as a BIOS leaves it for a boot sector (CS = DS = ES = SS = 0), or flat
 * 32-bit protected mode with the hidden segment caches set directly, as the KVM
 * "hello world" examples do: no GDT in guest memory is needed.
 */
const initialSregs = (base: KvmSregs, mode: MachineConfig["mode"]): KvmSregs => {
  const big = mode === "pm32"
  const code = segment(big ? 0x08 : 0, CODE_EXEC_READ_ACCESSED, big)
  const data = segment(big ? 0x10 : 0, DATA_READ_WRITE_ACCESSED, big)
  return { ...base, cs: code, ds: data, es: data, fs: data, gs: data, ss: data, cr0: big ? CR0_RESET | CR0_PE : CR0_RESET }
}

const check = (ok: boolean, reason: string): Either.Either<void, MachineSetupError> =>
  ok ? Either.void : Either.left(new MachineSetupError({ reason }))

const hex = (n: number): string => `0x${n.toString(16)}`

const decodeConfig = Schema.decodeUnknownEither(MachineConfig, { errors: "first" })

/** The config is decoded (it may come from a trace or the command line) and checked against the image. */
const validate = (input: MachineConfig, image: Uint8Array): Either.Either<MachineConfig, MachineSetupError> =>
  Either.gen(function* () {
    const config = yield* Either.mapLeft(decodeConfig(input), (e) => {
      const issue = ParseResult.ArrayFormatter.formatErrorSync(e)[0]
      return new MachineSetupError({ reason: `bad machine config: ${issue?.path.join(".")}: ${issue?.message}` })
    })
    const ramBytes = config.memoryMiB * MiB
    yield* check(image.length > 0, "the guest image is empty")
    yield* check(
      config.loadAddress + image.length <= ramBytes,
      `the image (${image.length} bytes at ${hex(config.loadAddress)}) does not fit in ${config.memoryMiB} MiB of RAM`
    )
    yield* check(
      config.mode !== "real" || (config.entry <= 0xffff && config.loadAddress <= 0xffff),
      `real mode starts at CS = 0, so the load address and entry must be below 0x10000 (got load ${hex(config.loadAddress)}, entry ${hex(config.entry)})`
    )
    yield* check(
      config.clock !== "realtime" || (config.icountShift ?? 0) === 0,
      "--icount-shift sets the rate of virtual time, which the timers do not follow with --clock realtime"
    )
    return config
  })

const busError = (e: BusInsertError): MachineSetupError => new MachineSetupError({ reason: e.message })

/** Builds the machine from its config and loads the guest image, ready for the first KVM_RUN. */
export const createMachine = (
  input: MachineConfig,
  image: Uint8Array,
  kernel: KernelFactory = createVm,
  hostInput: HostInputPort = noHostInput
): Either.Either<Machine, MachineSetupError> =>
  Either.gen(function* () {
    const config = yield* validate(input, image)
    const log = new EventLog()
    const vm = kernel(log)
    const ram = kernel.allocateRam?.(config.memoryMiB * MiB) ?? new Uint8Array(config.memoryMiB * MiB)
    ram.set(image, config.loadAddress)
    // Dirty logging lets a recording checkpoint only the pages written since the last checkpoint.
    vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memory: ram, logDirtyPages: true })

    const pio = new Bus({ unassignedRead: "ones", limit: 0x10000 })
    for (const d of isaDevices) yield* Either.mapLeft(pio.insert(d.base, d.size, d.name, d.device), busError)
    const mmio = new Bus({ unassignedRead: "zeros", limit: 2 ** 32 })

    // As QEMU's kvm_irqchip_create (kernel_irqchip=on|split|off), before any vCPU.
    const irqchip = config.irqchip ?? defaultIrqchip
    const chips = hasIrqchipVm(vm)
    // Real time: every timer follows the host clock, read only through the host-input port; the chips count its ns.
    let clockVcpu: KvmVcpuApi | undefined
    const timerClock =
      config.clock === "realtime"
        ? new HostTimerClock(hostInput, log, () => ({ vcpu: clockVcpu?.id ?? 0, time: clockVcpu?.instructionsRetired ?? 0 }))
        : undefined
    if (timerClock !== undefined) {
      if (hostInput.monotonicClock === undefined) return yield* Either.left(new MachineSetupError({ reason: "--clock realtime needs a host clock, and this run's host input has none" }))
      if (!hasTimerClock(vm)) return yield* Either.left(new MachineSetupError({ reason: "this kernel cannot run the timers on a recorded host clock (--clock realtime)" }))
      vm.setTimerClock(timerClock)
    }
    const shift = timerClock === undefined ? (config.icountShift ?? 0) : 0
    if (chips) {
      vm.setIcountShift(shift)
      if (irqchip === "kernel") {
        vm.createIrqchip()
        vm.createPit2()
      } else if (irqchip === "split") vm.enableSplitIrqchip()
    }
    const vcpu = vm.createVcpu(0)
    clockVcpu = vcpu
    const interrupts = chips && hasIrqchipVcpu(vcpu) ? new QemuInterrupts(irqchip, shift, log, vm, vcpu, hostInput, timerClock) : undefined
    vcpu.setCpuid(qemu32CpuidTable)
    vcpu.setSregs(initialSregs(vcpu.getSregs(), config.mode))
    // The stack starts just below the image, growing down.
    vcpu.setRegs({ rax: 0, rbx: 0, rcx: 0, rdx: 0, rsi: 0, rdi: 0, rbp: 0, rsp: config.loadAddress, rip: config.entry, rflags: 0x2 })
    vcpu.kickAt(config.instructionLimit)
    // Real-time RDTSC reads the host's counter, which only the host-input service may read.
    const hostTsc = hostInput.hostTsc?.bind(hostInput)
    if (config.tsc === "realtime" && hostTsc !== undefined && hasHostTsc(vcpu)) vcpu.setHostTsc(hostTsc)
    return { config, log, vm, vcpu, ram, pio, mmio, input: hostInput, interrupts }
  })
