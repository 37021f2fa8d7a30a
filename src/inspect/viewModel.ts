import { describeEvent } from "../events/describe.ts"
import { ExitReason, exitReasonName, ioQualification, kvmExitName } from "../events/exitReasons.ts"
import type { VmEvent } from "../events/VmEvent.ts"
import { deviceAt, kernelDeviceAt, registerName } from "./devices.ts"
import { explainEvent } from "./explain.ts"
import { exitFlows, type ExitFlow } from "./exitFlow.ts"
import type { Inspection } from "./inspection.ts"
import { type ChromeTrace, toChromeTrace } from "./perfetto.ts"

/**
 * What `vmrr view`'s page shows, computed here once and sent as JSON: the timeline is
 * the Perfetto export itself (same lanes, same slices), plus per event its line and its
 * explanation, plus per trip out of the guest the messages of its sequence diagram.
 */

export interface ViewEvent {
  readonly seq: number
  readonly time: number
  readonly kind: string
  readonly line: string
  readonly explain: ReadonlyArray<string>
  /** The trip out of the guest it belongs to (the seq that started it), if any. */
  readonly flow?: number
}

/** One arrow of a sequence diagram: a participant to another (or itself), for one event. */
export interface Message {
  readonly from: string
  readonly to: string
  readonly label: string
  readonly seq: number
}

export interface ViewFlow {
  readonly seq: number
  readonly title: string
  readonly participants: ReadonlyArray<string>
  readonly messages: ReadonlyArray<Message>
}

export interface ViewModel {
  readonly source: string
  readonly note?: string
  readonly timeline: ChromeTrace
  readonly kinds: ReadonlyArray<string>
  readonly events: ReadonlyArray<ViewEvent>
  readonly flows: ReadonlyArray<ViewFlow>
}

const hex = (n: number): string => `0x${(n >>> 0).toString(16)}`
const text = (bytes: Uint8Array): string => JSON.stringify(Buffer.from(bytes).toString("latin1"))

const CORE = ["guest", "KVM", "QEMU"]

/** The sequence diagram of one trip: guest ↔ KVM ↔ QEMU ↔ device (↔ host, for output). */
const sequenceOf = (flow: ExitFlow, inspection: Inspection): ViewFlow => {
  const messages: Message[] = []
  const exit = flow.exit
  if (exit !== undefined) {
    const instruction = inspection.instructions.bySeq.get(exit.seq)
    messages.push({ from: "guest", to: "KVM", label: `VM exit ${exitReasonName(exit.reason)} (${exit.reason})${instruction === undefined ? "" : `: ${instruction.text.replace(/\s+/g, " ")}`}`, seq: exit.seq })
    const port = exit.reason === ExitReason.IO_INSTRUCTION ? ioQualification.port(exit.qualification) : undefined
    const kernelDevice =
      exit.handledIn !== "kernel" ? undefined : port !== undefined ? kernelDeviceAt("io", port) : exit.guestPhysical === undefined ? undefined : kernelDeviceAt("mmio", exit.guestPhysical)
    if (kernelDevice !== undefined) {
      messages.push({ from: "KVM", to: `${kernelDevice.name} (in kernel)`, label: port === undefined ? `access ${hex(exit.guestPhysical ?? 0)}` : `${ioQualification.isIn(exit.qualification) ? "in" : "out"} ${hex(port)}`, seq: exit.seq })
    }
  }
  const access = flow.handling.find((h): h is Extract<VmEvent, { _tag: "Pio" | "Mmio" }> => h._tag === "Pio" || h._tag === "Mmio")
  for (const e of [...(exit === undefined && flow.userspace !== undefined ? [flow.userspace] : []), ...flow.handling]) {
    switch (e._tag) {
      case "UserspaceExit": {
        messages.push({ from: "KVM", to: "QEMU", label: `KVM_RUN returns ${kvmExitName(e.exitReason)}`, seq: e.seq })
        // QEMU's bus calls the device that claims the address.
        const space = access?._tag === "Pio" ? "io" : "mmio"
        const address = access === undefined ? undefined : access._tag === "Pio" ? access.port : access.gpa
        const device = address === undefined ? undefined : deviceAt(inspection.devices, space, address)
        if (access !== undefined && device !== undefined && address !== undefined) {
          const register = registerName(device, address)
          const write = access._tag === "Pio" ? access.direction === "out" : access.op === "write"
          messages.push({ from: "QEMU", to: device.name, label: `${write ? "write" : "read"} ${hex(address)}${register === undefined ? "" : ` (${register})`}`, seq: access.seq })
        }
        break
      }
      case "Pio":
        messages.push({ from: "KVM", to: "KVM", label: `kvm_pio ${e.direction} ${hex(e.port)} = ${e.values.map(hex).join(",")}`, seq: e.seq })
        break
      case "Mmio":
        messages.push({ from: "KVM", to: "KVM", label: `kvm_mmio ${e.op} ${hex(e.gpa)} = ${hex(e.value)}`, seq: e.seq })
        break
      case "PageFault":
        messages.push({ from: "KVM", to: "KVM", label: `kvm_page_fault ${hex(e.gpa)} -> ${e.outcome}`, seq: e.seq })
        break
      case "DeviceOutput":
        messages.push({ from: e.device, to: "host", label: `output ${text(e.bytes)}`, seq: e.seq })
        break
      case "Unassigned":
        messages.push({ from: "QEMU", to: "unassigned", label: `${e.write ? "write" : "read"} ${hex(e.address)}: no device`, seq: e.seq })
        break
      default:
        messages.push({ from: "KVM", to: "KVM", label: describeEvent(e).replace(/^#\d+ t=\d+ vcpu\d+ /, ""), seq: e.seq })
    }
  }
  if (flow.entry !== undefined) {
    if (flow.userspace !== undefined) messages.push({ from: "QEMU", to: "KVM", label: "KVM_RUN", seq: flow.entry.seq })
    messages.push({ from: "KVM", to: "guest", label: `VM entry at ${hex(flow.entry.rip)}`, seq: flow.entry.seq })
  }
  const used = new Set(messages.flatMap((m) => [m.from, m.to]))
  const participants = [...CORE.filter((p) => p !== "QEMU" || used.has(p)), ...[...used].filter((p) => !CORE.includes(p))]
  const title = exit === undefined ? kvmExitName(flow.userspace?.exitReason ?? 0) : `${exitReasonName(exit.reason)} at ${hex(exit.rip)}`
  return { seq: flow.startSeq, title: `#${flow.startSeq} ${title}`, participants, messages }
}

export const viewModel = (inspection: Inspection, source: string, note?: string): ViewModel => {
  const events = inspection.trace.events
  const flows = exitFlows(events)
  const flowOf = new Map<number, number>()
  for (const flow of flows) {
    for (const e of [flow.exit, flow.userspace, ...flow.handling, flow.entry]) if (e !== undefined) flowOf.set(e.seq, flow.startSeq)
  }
  const viewEvents: ViewEvent[] = events.map((e: VmEvent) => {
    const [line, ...explain] = explainEvent(e, inspection, new Set())
    const flow = flowOf.get(e.seq)
    return { seq: e.seq, time: e.time, kind: e._tag, line, explain, ...(flow === undefined ? {} : { flow }) }
  })
  return {
    source,
    ...(note === undefined ? {} : { note }),
    timeline: toChromeTrace(events, inspection.devices, source),
    kinds: [...new Set(events.map((e) => e._tag))],
    events: viewEvents,
    flows: flows.map((f) => sequenceOf(f, inspection))
  }
}
