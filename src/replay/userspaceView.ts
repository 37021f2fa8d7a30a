/**
 * What userspace sees of a run, the part on which the model and the real /dev/kvm can be
 * held to the same stream: `kvm_run` exits and their data, what the devices did with
 * them, host input and the final registers. Kernel-internal events (entries, exits KVM
 * handles itself, EPT faults) exist only in the model; the host's tracepoints only on
 * KVM, in the host's vocabulary (SVM codes on AMD). Neither is compared.
 */
import type { RunEnd, VmEvent, VmEventTag } from "../events/VmEvent.ts"
import { eventsEqual } from "../events/trace/equality.ts"
import { KvmExit } from "../events/exitReasons.ts"

const visible: ReadonlySet<VmEventTag> = new Set<VmEventTag>(["Pio", "Mmio", "UserspaceExit", "DeviceOutput", "HostInput", "HostClock", "Unassigned", "RunEnd"])

export const isUserspaceVisible = (e: VmEvent): boolean => visible.has(e._tag)

/**
 * An event with what only one backend can say taken out: the position (`seq`) and time
 * (instructions on the model, KVM_RUN calls on KVM), and the free text each backend
 * writes for an exit or a run end.
 */
const comparable = (e: VmEvent): VmEvent => {
  const base = { ...e, seq: 0, time: 0 }
  if (base._tag === "UserspaceExit") delete base.detail
  if (base._tag === "RunEnd") delete base.message
  return base
}

/**
 * Compares two userspace-visible streams event by event. One known difference is let
 * through: a run that ends on the exit of a port OUT (isa-debug-exit). KVM has completed
 * the OUT before KVM_EXIT_IO reaches userspace (RIP is past it); the model executes it
 * again on the next KVM_RUN (EIP is on it), so EIP is not compared at that run end.
 */
export class UserspaceComparison {
  private previous: VmEvent | undefined
  private lastExitWasOut = false

  /** Whether `recorded` and `produced` match; call once per pair, in order. */
  equal(recorded: VmEvent, produced: VmEvent): boolean {
    const x = comparable(recorded)
    const y = comparable(produced)
    const same =
      this.lastExitWasOut && x._tag === "RunEnd" && y._tag === "RunEnd" && x.reason === "debug-exit"
        ? eventsEqual(withoutEip(x), withoutEip(y))
        : eventsEqual(x, y)
    if (recorded._tag === "UserspaceExit") {
      const p = this.previous
      this.lastExitWasOut = recorded.exitReason === KvmExit.KVM_EXIT_IO && p?._tag === "Pio" && p.direction === "out"
    }
    this.previous = recorded
    return same
  }
}

const withoutEip = (e: RunEnd): RunEnd => ({ ...e, registers: { ...e.registers, eip: 0 } })
