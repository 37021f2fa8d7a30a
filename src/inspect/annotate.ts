import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import type { EventLog } from "../events/EventLog.ts"
import type { TraceHeader } from "../events/trace/schema.ts"
import { eventsEqual } from "../events/trace/equality.ts"
import type { VmEvent } from "../events/VmEvent.ts"
import type { KvmVcpuApi, UserspaceMemoryRegion } from "../kernel/api.ts"
import { Vm } from "../kernel/kvm.ts"
import type { MachineSetupError } from "../qemu/errors.ts"
import { ScheduledHostInput } from "../qemu/hostInput.ts"
import { runMachine } from "../qemu/runMachine.ts"
import { recordedInputs } from "../replay/hostInput.ts"
import { type GuestInstruction, instructionAt } from "./guestCode.ts"

/**
 * The instruction behind each VM exit. Traces do not carry instruction bytes (the guest
 * image and the recorded host inputs determine them), so the trace is re-executed on
 * the model and the instruction is read at the moment each exit is logged: then the
 * vCPU still stands on it, with the CS, paging and memory it executed under, as a
 * handler on the `kvm_exit` tracepoint would see it. Code the guest rewrites later is
 * shown as it was when it exited.
 */
export interface ExitInstructions {
  /** By the seq of the VmExit. */
  readonly bySeq: ReadonlyMap<number, GuestInstruction>
  /**
   * The first event the re-execution did not reproduce (the model changed since the
   * recording): instructions from there on are unknown.
   */
  readonly divergedAt?: number
}

/** A VM whose tracepoint buffer is watched: KVM_SET_USER_MEMORY_REGION and KVM_CREATE_VCPU are seen on the way in. */
class WatchedVm extends Vm {
  private ram: Uint8Array | undefined
  private vcpu: KvmVcpuApi | undefined

  constructor(log: EventLog, found: Map<number, GuestInstruction>) {
    super(log)
    const vmExit = log.vmExit.bind(log)
    log.vmExit = (...exit: Parameters<EventLog["vmExit"]>) => {
      const rip = exit[5]
      if (this.ram !== undefined && this.vcpu !== undefined) {
        const instruction = instructionAt(this.ram, this.vcpu.getSregs(), rip)
        if (instruction !== undefined) found.set(log.nextSeq, instruction)
      }
      vmExit(...exit)
    }
  }

  override setUserMemoryRegion(region: UserspaceMemoryRegion): void {
    // RAM is the slot at guest-physical 0: the machine's only memslot.
    if (region.guestPhysAddr === 0) this.ram = region.memory
    super.setUserMemoryRegion(region)
  }

  override createVcpu(id: number): KvmVcpuApi {
    const vcpu = super.createVcpu(id)
    this.vcpu ??= vcpu
    return vcpu
  }
}

/**
 * Re-executes a recording from its header, feeding back its host inputs, and returns
 * the instruction at each VM exit up to event `until` (the whole run when absent).
 * Every re-executed event is compared with the recorded one, as `vmrr replay` does; the
 * first difference ends the annotation there.
 */
export const annotateExits = (
  header: Pick<TraceHeader, "config" | "image">,
  recorded: ReadonlyArray<VmEvent>,
  until = Number.POSITIVE_INFINITY
): Effect.Effect<ExitInstructions, MachineSetupError> =>
  Effect.suspend(() => {
    const found = new Map<number, GuestInstruction>()
    let divergedAt: number | undefined
    const run = runMachine(header.config, header.image, {
      kernel: (log) => new WatchedVm(log, found),
      input: new ScheduledHostInput(recordedInputs(recorded))
    })
    const checked = Stream.takeWhile(run, (e) => {
      const expected = recorded[e.seq]
      if (expected !== undefined && eventsEqual(expected, e)) return e.seq < until
      divergedAt = e.seq
      return false
    })
    return Stream.runDrain(checked).pipe(
      Effect.map(() => {
        if (divergedAt !== undefined) for (const seq of found.keys()) if (seq >= divergedAt) found.delete(seq)
        return divergedAt === undefined ? { bySeq: found } : { bySeq: found, divergedAt }
      })
    )
  })
