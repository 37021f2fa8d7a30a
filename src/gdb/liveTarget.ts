/**
 * A live run as a gdb target: forward only, like QEMU's gdbstub. The debugger's stops
 * leave no trace in the events. It may change registers and memory, except in a run
 * being recorded: such a change is not an event, so the trace would no longer replay.
 */
import * as Either from "effect/Either"
import { describeEvent } from "../events/describe.ts"
import type { MachineConfig } from "../events/MachineConfig.ts"
import type { VmEvent } from "../events/VmEvent.ts"
import type { KvmDebugWatchpoint } from "../kernel/api.ts"
import type { MachineSetupError } from "../qemu/errors.ts"
import type { HostInputPort } from "../qemu/hostInput.ts"
import { DebuggedMachine } from "./debuggedMachine.ts"
import { readLinear } from "./guestMemory.ts"
import { type GeneralRegisters, kvmRegsOf, readGeneralRegisters } from "./i386.ts"
import type { Target, TargetEnd } from "./target.ts"

export class LiveTarget implements Target {
  readonly history = undefined
  private last: VmEvent | undefined

  private constructor(
    private readonly machine: DebuggedMachine,
    readonly writable: boolean
  ) {}

  /** `onEvents` receives the run's events as they happen (to print, count and record them). */
  static create(
    config: MachineConfig,
    image: Uint8Array,
    input: HostInputPort,
    onEvents: (events: ReadonlyArray<VmEvent>) => void,
    options: { readonly recorded: boolean }
  ): Either.Either<LiveTarget, MachineSetupError> {
    let target: LiveTarget | undefined
    const sink = (events: ReadonlyArray<VmEvent>) => {
      target!.last = events.at(-1)
      onEvents(events)
    }
    return Either.map(DebuggedMachine.create(config, image, input, sink), (machine) => (target = new LiveTarget(machine, !options.recorded)))
  }

  get position(): number {
    return this.machine.position
  }

  get end(): TargetEnd | undefined {
    const outcome = this.machine.outcome
    return outcome === undefined ? undefined : { _tag: "Exited", outcome }
  }

  registers(): GeneralRegisters {
    const vcpu = this.machine.machine.vcpu
    return readGeneralRegisters(vcpu.getRegs(), vcpu.getSregs())
  }

  watchAccesses(watchpoints: ReadonlyArray<KvmDebugWatchpoint>): void {
    this.machine.watchAccesses(watchpoints)
  }

  accessHits(): number {
    return this.machine.accessHits()
  }

  pc(): number {
    const vcpu = this.machine.machine.vcpu
    return (vcpu.getSregs().cs.base + vcpu.getRegs().rip) >>> 0
  }

  readMemory(linear: number, length: number): Uint8Array | undefined {
    return readLinear(this.machine.machine.ram, this.machine.machine.vcpu.getSregs(), linear, length)
  }

  writeRegisters(registers: GeneralRegisters): void {
    this.machine.machine.vcpu.setRegs(kvmRegsOf(registers))
  }

  writeMemory(linear: number, bytes: Uint8Array): boolean {
    return this.machine.writeMemory(linear, bytes)
  }

  runTo(position: number): void {
    this.machine.runTo(position)
  }

  monitor(command: string): string | undefined {
    switch (command.trim()) {
      case "event":
        return `instruction ${this.position}\nlast: ${this.last === undefined ? "(none yet)" : describeEvent(this.last)}\n`
      case "help":
        return "monitor event     the instructions retired and the last event of the run\n"
      default:
        return undefined
    }
  }
}
