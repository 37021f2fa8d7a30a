import type { UserspaceExit, VmEntry, VmEvent, VmExit } from "../events/VmEvent.ts"

/**
 * One trip out of the guest: from the moment the vCPU leaves non-root mode (a VM exit,
 * or KVM_RUN returning without one, as for a kick) to the VM entry that resumes it.
 * This is the unit `perf kvm stat` times and the unit a person follows when reading
 * the exit flow.
 */
export interface ExitFlow {
  readonly vcpu: number
  /** The VM exit that started the trip; absent when KVM_RUN returned without one (KVM_EXIT_INTR). */
  readonly exit?: VmExit
  /** What happened while the guest was out, in order, between the exit and the entry. */
  readonly handling: ReadonlyArray<VmEvent>
  /** Where KVM_RUN returned to userspace, if it did. */
  readonly userspace?: UserspaceExit
  /** The entry that ended the trip; absent when the run ended first. */
  readonly entry?: VmEntry
  /** Virtual time the guest left, and the seq of the event that says so. */
  readonly start: number
  readonly startSeq: number
}

/** Virtual time from leaving the guest to re-entering it (undefined while the run ended outside). */
export const flowDuration = (flow: ExitFlow): number | undefined => (flow.entry === undefined ? undefined : flow.entry.time - flow.start)

/** Cuts a run into trips out of the guest, per vCPU, in the order they started. */
export const exitFlows = (events: Iterable<VmEvent>): ExitFlow[] => {
  const flows: ExitFlow[] = []
  const open = new Map<number, { exit?: VmExit; handling: VmEvent[]; userspace?: UserspaceExit; start: number; startSeq: number }>()
  const inGuest = new Set<number>()
  for (const e of events) {
    const current = open.get(e.vcpu)
    if (e._tag === "VmEntry") {
      if (current !== undefined) {
        flows.push({ vcpu: e.vcpu, ...current, entry: e })
        open.delete(e.vcpu)
      }
      inGuest.add(e.vcpu)
    } else if (e._tag === "VmExit" || (e._tag === "UserspaceExit" && current === undefined && inGuest.has(e.vcpu))) {
      if (current !== undefined) flows.push({ vcpu: e.vcpu, ...current })
      inGuest.delete(e.vcpu)
      open.set(e.vcpu, e._tag === "VmExit"
        ? { exit: e, handling: [], start: e.time, startSeq: e.seq }
        : { handling: [], userspace: e, start: e.time, startSeq: e.seq })
    } else if (current !== undefined) {
      current.handling.push(e)
      if (e._tag === "UserspaceExit" && current.userspace === undefined) current.userspace = e
    }
  }
  for (const [vcpu, rest] of open) flows.push({ vcpu, ...rest })
  return flows.sort((a, b) => a.startSeq - b.startSeq)
}
