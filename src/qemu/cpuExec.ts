import type { FinalRegisters, RunEndReason } from "../events/VmEvent.ts"
import { readExitData, writeExitData, type KvmRunExit } from "../kernel/api.ts"
import type { BusAccess } from "./bus.ts"
import { uartIrqLevel, uartReceive, uartRxRoom, type Uart16550State } from "./devices/uart16550.ts"
import { type HostInputDelivery, noHostInput } from "./hostInput.ts"
import type { Machine } from "./machine.ts"

/** How a run ended, from userspace's point of view. */
export interface RunOutcome {
  readonly reason: RunEndReason
  readonly exitCode?: number
  readonly message?: string
}

/**
 * QEMU's `kvm_cpu_exec`, one iteration: KVM_RUN, then dispatch the exit to the port
 * or MMIO bus (filling `kvm_run` data for reads), and act on what the devices asked
 * for. Returns how the run ended, or undefined to run again.
 */
export const cpuExecOnce = (machine: Machine): RunOutcome | undefined => {
  const interrupts = machine.interrupts
  // QEMU's timers that are due, then kvm_arch_pre_run's injection.
  interrupts?.advance()
  interrupts?.beforeRun()
  armKick(machine)
  const exit = machine.vcpu.run()
  switch (exit._tag) {
    case "KVM_EXIT_IO": {
      const outcome = dispatch(machine, exit)
      // Only serial0's own registers move its interrupt output (host input updates it as it arrives).
      if (machine.pio.nameAt(exit.port) === SERIAL) updateSerialIrq(machine)
      return outcome
    }
    case "KVM_EXIT_MMIO":
      return dispatch(machine, exit)
    case "KVM_EXIT_HLT":
      // With IF = 0 (or no chips at all) nothing can wake the vCPU: the run is over.
      return interrupts?.onHlt() === true ? undefined : { reason: "hlt" }
    case "KVM_EXIT_IRQ_WINDOW_OPEN":
      // The guest can take an interrupt now: the next pre-run injects it.
      return undefined
    case "KVM_EXIT_IOAPIC_EOI":
      interrupts?.onIoapicEoi(exit.vector)
      return undefined
    case "KVM_EXIT_SHUTDOWN":
      return { reason: "shutdown", message: "triple fault: the guest could not deliver an exception" }
    case "KVM_EXIT_INTR":
      // Either the instruction limit or a stop for host input (delivered before the next run).
      if (machine.vcpu.instructionsRetired < machine.config.instructionLimit) return undefined
      return { reason: "instruction-limit", message: `stopped after ${machine.config.instructionLimit} ${machine.vcpu.clock ?? "instructions"}` }
    case "KVM_EXIT_INTERNAL_ERROR":
      return { reason: "internal-error", message: exit.detail }
    case "KVM_EXIT_DEBUG":
      // A replay debugger's stop (src/replay/session.ts): it looks at the machine, then runs it on.
      return undefined
  }
}

const SERIAL = "serial0"

/** Bytes serial0 can take now, for input that waits for room (a replay's does not: its times are recorded). */
const serialRoom = (machine: Machine): number => {
  if (machine.input.paced !== true) return 0
  const state = machine.pio.stateOf(SERIAL)
  return state._tag === "Right" ? uartRxRoom(state.right as Uart16550State) : 0
}

/**
 * Before each KVM_RUN: deliver host input that is due now, then ask KVM to stop at the
 * next delivery, the next deadline of a timer QEMU hosts, or the instruction limit,
 * whichever comes first.
 */
const armKick = (machine: Machine): void => {
  const input = machine.input
  const interrupts = machine.interrupts
  const clock = interrupts?.clock
  // In real time QEMU's timers wait for the host clock, which KVM watches for them.
  if (clock !== undefined) clock.userspaceDeadline = interrupts!.nextDeadline()
  const timers = clock === undefined ? interrupts?.nextDeadline() : undefined
  const limit = Math.min(machine.config.instructionLimit, timers ?? Number.POSITIVE_INFINITY)
  if (input === noHostInput) return machine.vcpu.kickAt(limit)
  const now = machine.vcpu.instructionsRetired
  // A vCPU halted in real time retires nothing: live input for it cannot wait for a later virtual time.
  const idle = clock !== undefined && interrupts!.halted
  let due = input.nextDelivery(now, serialRoom(machine), idle)
  while (due !== undefined && due <= now && now < machine.config.instructionLimit) {
    deliverHostInput(machine, input.deliver(now, serialRoom(machine)))
    due = input.nextDelivery(now, serialRoom(machine), idle)
  }
  machine.vcpu.kickAt(due === undefined ? limit : Math.min(due, limit))
}

/** serial0's interrupt output drives IRQ4 (GSI 4), as the ISA serial port's `qemu_set_irq`. */
const SERIAL_GSI = 4
const updateSerialIrq = (machine: Machine): void => {
  const interrupts = machine.interrupts
  if (interrupts === undefined) return
  const state = machine.pio.stateOf(SERIAL)
  if (state._tag === "Right") interrupts.driveLine(SERIAL_GSI, uartIrqLevel(state.right as Uart16550State))
}

/** The input reaches the device (as QEMU's chardev calls `serial_receive1`) and the log. */
const deliverHostInput = (machine: Machine, delivery: HostInputDelivery): void => {
  const log = machine.log
  const time = machine.vcpu.instructionsRetired
  log.push({ _tag: "HostInput", seq: log.nextSeq, vcpu: machine.vcpu.id, time, source: delivery.source, bytes: delivery.bytes })
  for (const b of delivery.bytes) machine.pio.update(delivery.source, (s: Uart16550State) => uartReceive(s, b))
  updateSerialIrq(machine)
}

/** Port I/O loops over `count` in one place, as kvmtool does; MMIO is one access. */
const dispatch = (
  machine: Machine,
  exit: Extract<KvmRunExit, { _tag: "KVM_EXIT_IO" | "KVM_EXIT_MMIO" }>
): RunOutcome | undefined => {
  const isIo = exit._tag === "KVM_EXIT_IO"
  const space = isIo ? "io" : "mmio"
  const bus = isIo ? machine.pio : machine.mmio
  const address = isIo ? exit.port : exit.physAddr
  const size = isIo ? exit.size : exit.len
  const count = isIo ? exit.count : 1
  const write = isIo ? exit.direction === "out" : exit.isWrite
  const chips = machine.interrupts?.claims(space, address) === true ? machine.interrupts : undefined
  let outcome: RunOutcome | undefined
  for (let i = 0; i < count; i++) {
    const offset = i * size
    if (chips !== undefined) {
      // An interrupt or timer chip QEMU hosts: it needs the virtual time, which the buses do not carry.
      if (write) chips.write(space, address, size, readExitData(exit.data, offset, size))
      else writeExitData(exit.data, offset, size, chips.read(space, address, size))
      continue
    }
    const access = write ? bus.write(address, size, readExitData(exit.data, offset, size)) : bus.read(address, size)
    if (!write) writeExitData(exit.data, offset, size, access.value)
    outcome = afterAccess(machine, access, space, address, size, write) ?? outcome
  }
  return outcome
}

const afterAccess = (
  machine: Machine,
  access: BusAccess,
  space: "io" | "mmio",
  address: number,
  size: 1 | 2 | 4,
  write: boolean
): RunOutcome | undefined => {
  const log = machine.log
  const time = machine.vcpu.instructionsRetired
  if (access._tag === "Unassigned") {
    log.unassigned(machine.vcpu.id, time, space, address, size, write)
    return undefined
  }
  const effects = access.effects
  if (effects === undefined) return undefined
  if (effects.output !== undefined && effects.output.length > 0) {
    log.push({ _tag: "DeviceOutput", seq: log.nextSeq, vcpu: machine.vcpu.id, time, device: access.name, bytes: effects.output })
  }
  return effects.exitCode === undefined ? undefined : { reason: "debug-exit", exitCode: effects.exitCode }
}

/** KVM_GET_REGS + KVM_GET_SREGS, as the run-end event reports them. */
export const finalRegisters = (machine: Machine): FinalRegisters => {
  const r = machine.vcpu.getRegs()
  const s = machine.vcpu.getSregs()
  return {
    eax: r.rax, ecx: r.rcx, edx: r.rdx, ebx: r.rbx, esp: r.rsp, ebp: r.rbp, esi: r.rsi, edi: r.rdi,
    eip: r.rip, eflags: r.rflags, cr0: s.cr0, cr3: s.cr3
  }
}

/** Logs the run-end event; the run is over. */
export const logRunEnd = (machine: Machine, outcome: RunOutcome): void => {
  const log = machine.log
  log.push({
    _tag: "RunEnd",
    seq: log.nextSeq,
    vcpu: machine.vcpu.id,
    time: machine.vcpu.instructionsRetired,
    reason: outcome.reason,
    ...(outcome.exitCode === undefined ? {} : { exitCode: outcome.exitCode }),
    ...(outcome.message === undefined ? {} : { message: outcome.message }),
    registers: finalRegisters(machine)
  })
}
