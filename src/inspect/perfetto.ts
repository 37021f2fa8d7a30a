import { describeEvent } from "../events/describe.ts"
import { ExitReason, exitReasonName, ioQualification, kvmExitName } from "../events/exitReasons.ts"
import type { VmEvent } from "../events/VmEvent.ts"
import { deviceAt, type DeviceMap, kernelDeviceAt, registerName } from "./devices.ts"
import { type ExitFlow, exitFlows } from "./exitFlow.ts"

/**
 * A trace as Chrome trace-event JSON (the "JSON trace format" Perfetto UI and
 * chrome://tracing open). Per vCPU, one process with three threads: the guest, KVM and
 * QEMU; one more process holds a thread per device. VM exits are complete ("X")
 * slices on the KVM thread named by exit reason; the userspace part of an exit is a
 * slice on the QEMU thread, the device's work a slice on its thread; flow arrows join
 * exit → QEMU → device and QEMU → guest; an exit KVM finished at one of its own
 * devices (the in-kernel PIC, PIT, IOAPIC, LAPIC) gets a slice on that device's track;
 * EPT faults, injections and other kernel events are instants.
 *
 * Timestamps are virtual time: instruction t is microsecond t. Handling an exit takes
 * no guest instructions, so the events logged at the same t are spread evenly inside
 * that microsecond, in order: the integer part of every timestamp is its virtual time.
 */

export interface TraceEvent {
  readonly name: string
  readonly ph: "X" | "i" | "s" | "f" | "M"
  readonly ts: number
  readonly pid: number
  readonly tid: number
  readonly dur?: number
  readonly s?: "t" | "p" | "g"
  readonly id?: number
  readonly cat?: string
  readonly bp?: "e"
  readonly args?: Readonly<Record<string, unknown>>
}

export interface ChromeTrace {
  readonly traceEvents: ReadonlyArray<TraceEvent>
  readonly displayTimeUnit: "ns" | "ms"
  readonly otherData: Readonly<Record<string, string>>
}

const GUEST = 1
const KVM = 2
const QEMU = 3
const DEVICES_PID = 1000

const hex = (n: number): string => `0x${(n >>> 0).toString(16)}`

/** seq → timestamp: events at the same virtual time share its microsecond in order. */
const timestamps = (events: ReadonlyArray<VmEvent>): Map<number, number> => {
  const out = new Map<number, number>()
  let i = 0
  while (i < events.length) {
    let j = i
    while (j < events.length && events[j].time === events[i].time) j++
    for (let k = i; k < j; k++) out.set(events[k].seq, events[k].time + (k - i) / (j - i))
    i = j
  }
  return out
}

const flowStart = (flow: ExitFlow): VmEvent => flow.exit ?? (flow.userspace as VmEvent)

/** Builds the Chrome trace of a run; `devices` names the tracks of the machine's devices. */
export const toChromeTrace = (events: ReadonlyArray<VmEvent>, devices: DeviceMap, source: string): ChromeTrace => {
  const ts = timestamps(events)
  const at = (e: VmEvent): number => ts.get(e.seq) ?? e.time
  const end = events.length === 0 ? 0 : at(events[events.length - 1]) + 1
  const out: TraceEvent[] = []
  const vcpus = [...new Set(events.map((e) => e.vcpu))].sort((a, b) => a - b)
  const deviceTids = new Map<string, number>()
  const deviceTrack = (name: string): number => {
    let tid = deviceTids.get(name)
    if (tid === undefined) {
      tid = deviceTids.size + 1
      deviceTids.set(name, tid)
    }
    return tid
  }
  let nextFlowId = 1
  const arrow = (name: string, from: { pid: number; tid: number; ts: number }, to: { pid: number; tid: number; ts: number }) => {
    const id = nextFlowId++
    out.push({ name, cat: "flow", ph: "s", id, ...from })
    out.push({ name, cat: "flow", ph: "f", bp: "e", id, ...to })
  }

  // Guest execution: from each entry to the moment the vCPU next leaves (or the run ends).
  const flows = exitFlows(events)
  const leaves = new Map<number, number[]>()
  for (const flow of flows) {
    const list = leaves.get(flow.vcpu) ?? []
    list.push(at(flowStart(flow)))
    leaves.set(flow.vcpu, list)
  }
  const nextLeave = new Map<number, number>()
  for (const e of events) {
    if (e._tag !== "VmEntry") continue
    const start = at(e)
    const list = leaves.get(e.vcpu) ?? []
    let i = nextLeave.get(e.vcpu) ?? 0
    while (i < list.length && list[i] <= start) i++
    nextLeave.set(e.vcpu, i)
    const leave = list[i] ?? end
    out.push({ name: "guest", ph: "X", ts: start, dur: leave - start, pid: 1 + e.vcpu, tid: GUEST, args: { seq: e.seq, rip: hex(e.rip), instructions: Math.floor(leave) - e.time } })
  }

  const runEnd = events.find((e) => e._tag === "RunEnd")
  for (const flow of flows) {
    const pid = 1 + flow.vcpu
    const start = at(flowStart(flow))
    const stop = flow.entry !== undefined ? at(flow.entry) : runEnd !== undefined ? at(runEnd) : end
    const exit = flow.exit
    out.push({
      name: exit === undefined ? kvmExitName(flow.userspace?.exitReason ?? 0) : exitReasonName(exit.reason),
      cat: "kvm_exit",
      ph: "X",
      ts: start,
      dur: stop - start,
      pid,
      tid: KVM,
      args: exit === undefined
        ? { seq: flowStart(flow).seq, event: describeEvent(flowStart(flow)) }
        : { seq: exit.seq, rip: hex(exit.rip), qualification: hex(exit.qualification), handledIn: exit.handledIn, event: describeEvent(exit) }
    })
    for (const e of flow.handling) {
      if (e._tag === "UserspaceExit" || e._tag === "DeviceOutput" || e._tag === "Unassigned") continue
      out.push({ name: e._tag === "PageFault" ? "kvm_page_fault" : e._tag === "InjVirq" ? "kvm_inj_virq" : e._tag, ph: "i", s: "t", ts: at(e), pid, tid: KVM, args: { seq: e.seq, event: describeEvent(e) } })
    }
    // An exit KVM finished itself at an in-kernel device (PIC, PIT, IOAPIC, LAPIC): that device's turn, inside the KVM slice.
    const kernelDevice =
      exit === undefined || exit.handledIn !== "kernel"
        ? undefined
        : exit.reason === ExitReason.IO_INSTRUCTION
          ? kernelDeviceAt("io", ioQualification.port(exit.qualification))
          : exit.guestPhysical === undefined
            ? undefined
            : kernelDeviceAt("mmio", exit.guestPhysical)
    if (kernelDevice !== undefined && exit !== undefined) {
      const tid = deviceTrack(`${kernelDevice.name} (in kernel)`)
      const d0 = start + (stop - start) / 4
      out.push({ name: exitReasonName(exit.reason), cat: "device", ph: "X", ts: d0, dur: (stop - start) / 2, pid: DEVICES_PID, tid, args: { seq: exit.seq, event: describeEvent(exit) } })
      arrow("in-kernel device", { pid, tid: KVM, ts: d0 }, { pid: DEVICES_PID, tid, ts: d0 })
    }
    const userspace = flow.userspace
    if (userspace === undefined) continue
    const u = at(userspace)
    out.push({ name: kvmExitName(userspace.exitReason), cat: "kvm_userspace_exit", ph: "X", ts: u, dur: stop - u, pid, tid: QEMU, args: { seq: userspace.seq, event: describeEvent(userspace) } })
    if (exit !== undefined) arrow("to userspace", { pid, tid: KVM, ts: start }, { pid, tid: QEMU, ts: u })
    if (flow.entry !== undefined) arrow("back to the guest", { pid, tid: QEMU, ts: u }, { pid, tid: GUEST, ts: at(flow.entry) })

    // The device's turn: inside the QEMU slice, where QEMU's bus calls it.
    const pio = flow.handling.find((h): h is Extract<VmEvent, { _tag: "Pio" }> => h._tag === "Pio")
    const mmio = flow.handling.find((h): h is Extract<VmEvent, { _tag: "Mmio" }> => h._tag === "Mmio")
    const access = pio !== undefined ? { seq: pio.seq, space: "io" as const, address: pio.port, what: `${pio.direction} ${hex(pio.port)}`, value: pio.values.map(hex).join(",") } :
      mmio !== undefined ? { seq: mmio.seq, space: "mmio" as const, address: mmio.gpa, what: `${mmio.op === "write" ? "write" : "read"} ${hex(mmio.gpa)}`, value: hex(mmio.value) } : undefined
    if (access === undefined) continue
    const device = deviceAt(devices, access.space, access.address)
    const register = device === undefined ? undefined : registerName(device, access.address)
    const tid = deviceTrack(device?.name ?? "unassigned")
    const d0 = u + (stop - u) / 4
    const outputs = flow.handling.filter((h): h is Extract<VmEvent, { _tag: "DeviceOutput" }> => h._tag === "DeviceOutput")
    out.push({
      name: `${access.what}${register === undefined ? "" : ` ${register}`}`,
      cat: "device",
      ph: "X",
      ts: d0,
      dur: (stop - u) / 2,
      pid: DEVICES_PID,
      tid,
      args: { seq: access.seq, value: access.value, ...(outputs.length === 0 ? {} : { output: outputs.map((o) => Buffer.from(o.bytes).toString("latin1")).join("") }) }
    })
    arrow("bus access", { pid, tid: QEMU, ts: d0 }, { pid: DEVICES_PID, tid, ts: d0 })
  }
  for (const e of events) {
    if (e._tag === "HostInput") {
      out.push({ name: "host input", ph: "i", s: "t", ts: at(e), pid: DEVICES_PID, tid: deviceTrack(e.source), args: { seq: e.seq, event: describeEvent(e) } })
    } else if (e._tag === "RunEnd") {
      out.push({ name: `run end: ${e.reason}`, ph: "i", s: "p", ts: at(e), pid: 1 + e.vcpu, tid: QEMU, args: { seq: e.seq, event: describeEvent(e) } })
    }
  }

  const meta: TraceEvent[] = []
  for (const vcpu of vcpus) {
    const pid = 1 + vcpu
    meta.push({ name: "process_name", ph: "M", ts: 0, pid, tid: 0, args: { name: `vCPU ${vcpu}` } })
    meta.push({ name: "process_sort_index", ph: "M", ts: 0, pid, tid: 0, args: { sort_index: pid } })
    for (const [tid, name] of [[GUEST, "guest (VMX non-root)"], [KVM, "KVM (kernel)"], [QEMU, "QEMU (userspace)"]] as const) {
      meta.push({ name: "thread_name", ph: "M", ts: 0, pid, tid, args: { name } })
      meta.push({ name: "thread_sort_index", ph: "M", ts: 0, pid, tid, args: { sort_index: tid } })
    }
  }
  if (deviceTids.size > 0) {
    meta.push({ name: "process_name", ph: "M", ts: 0, pid: DEVICES_PID, tid: 0, args: { name: "devices (QEMU)" } })
    meta.push({ name: "process_sort_index", ph: "M", ts: 0, pid: DEVICES_PID, tid: 0, args: { sort_index: DEVICES_PID } })
    for (const [name, tid] of deviceTids) meta.push({ name: "thread_name", ph: "M", ts: 0, pid: DEVICES_PID, tid, args: { name } })
  }
  // Each track in time order: viewers expect it, and the validator checks it.
  const sorted = out.map((e, i) => [e, i] as const).sort(([a, i], [b, j]) => a.ts - b.ts || i - j).map(([e]) => e)
  return { traceEvents: [...meta, ...sorted], displayTimeUnit: "ns", otherData: { source, clock: "virtual time: 1 us = 1 guest instruction retired" } }
}
