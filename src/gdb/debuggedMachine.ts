/**
 * A live machine a debugger can stop at any instruction count, as QEMU's gdbstub stops
 * a KVM vCPU: KVM_SET_GUEST_DEBUG asks for KVM_EXIT_DEBUG at the debugger's point, a
 * stop (and re-entry) the kernel does not trace. So a run stopped a thousand times logs
 * exactly what it logs unstopped.
 */
import * as Either from "effect/Either"
import type { MachineConfig } from "../events/MachineConfig.ts"
import type { VmEvent } from "../events/VmEvent.ts"
import { hasVcpuState, hasVmState, type KvmDebugWatchpoint, type KvmVcpuApi, type KvmVcpuStateApi, type KvmVmStateApi } from "../kernel/api.ts"
import { cpuExecOnce, logRunEnd, type RunOutcome } from "../qemu/cpuExec.ts"
import { MachineSetupError } from "../qemu/errors.ts"
import type { HostInputPort } from "../qemu/hostInput.ts"
import { createMachine, type Machine } from "../qemu/machine.ts"
import { physicalRanges } from "./guestMemory.ts"

export class DebuggedMachine {
  /** How the run ended, once RunEnd is logged. */
  outcome: RunOutcome | undefined

  private constructor(
    readonly machine: Machine,
    private readonly vm: KvmVmStateApi,
    private readonly vcpu: KvmVcpuApi & KvmVcpuStateApi,
    private readonly onEvents: (events: ReadonlyArray<VmEvent>) => void
  ) {}

  /** `onEvents` receives the run's events in order, as they are produced. */
  static create(
    config: MachineConfig,
    image: Uint8Array,
    input: HostInputPort,
    onEvents: (events: ReadonlyArray<VmEvent>) => void
  ): Either.Either<DebuggedMachine, MachineSetupError> {
    return Either.flatMap(createMachine(config, image, undefined, input), (machine) => {
      const { vm, vcpu } = machine
      return hasVcpuState(vcpu) && hasVmState(vm)
        ? Either.right(new DebuggedMachine(machine, vm, vcpu, onEvents))
        : Either.left(new MachineSetupError({ reason: "this kernel has no KVM_SET_GUEST_DEBUG: gdb cannot stop its vCPU" }))
    })
  }

  /** Instructions retired: where the debugger stands. */
  get position(): number {
    return this.vcpu.instructionsRetired
  }

  /** Runs until `target` instructions have retired, or the run ends first. */
  runTo(target: number): void {
    this.vcpu.setGuestDebug({ stopAtInstructionsRetired: target })
    try {
      while (this.position < target && this.outcome === undefined) {
        const outcome = cpuExecOnce(this.machine)
        if (outcome !== undefined) {
          logRunEnd(this.machine, outcome)
          this.outcome = outcome
        }
        const events = this.machine.log.drainEvents()
        if (events.length > 0) this.onEvents(events)
      }
    } finally {
      this.vcpu.setGuestDebug({})
    }
  }

  /** KVM_SET_GUEST_DEBUG's data watchpoints (reads, or reads and writes, of linear ranges). */
  watchAccesses(watchpoints: ReadonlyArray<KvmDebugWatchpoint>): void {
    this.vcpu.setGuestDebug({ watchpoints })
  }

  /** One bit per watchpoint accessed since the last call. */
  accessHits(): number {
    return this.vcpu.getDebugStatus?.() ?? 0
  }

  /**
   * Writes guest RAM at linear addresses, as gdb's `M` does; false (nothing written) if
   * a byte is unmapped. The interpreter must not run instructions it decoded from the old
   * bytes: setting the EPT again counts as a write to every frame, which drops them
   * (KVM_SET_VCPU state would too, but would also put the untraced re-entry in the trace).
   */
  writeMemory(linear: number, bytes: Uint8Array): boolean {
    const ram = this.machine.ram
    const ranges = physicalRanges(ram, this.vcpu.getSregs(), linear, bytes.length)
    if (ranges === undefined) return false
    for (const r of ranges) ram.set(bytes.subarray(r.offset, r.offset + r.length), r.physical)
    this.vm.setEptEntries(this.vm.getEptEntries())
    return true
  }
}
