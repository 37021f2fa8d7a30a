import { EptAccess, ExitReason, exitReasonName, ioQualification, KvmExit, kvmExitName } from "../events/exitReasons.ts"
import { describeEvent } from "../events/describe.ts"
import type { VmEvent, VmEventTag } from "../events/VmEvent.ts"
import type { ExitInstructions } from "./annotate.ts"
import { deviceAt, type DeviceMap, kernelDeviceAt, registerName } from "./devices.ts"
import { type ExitFlow, exitFlows } from "./exitFlow.ts"
import { glossary, type Term } from "./glossary.ts"
import { hexBytes } from "./guestCode.ts"

/**
 * `vmrr explain`: the exit flow told event by event, for someone learning how a guest,
 * KVM and QEMU take turns. Each event kind has its own sentences; a kind without them
 * (one added since) is still shown by its one-line description, never dropped.
 */

/** One sentence and the glossary terms it uses. */
interface Sentence {
  readonly text: string
  readonly terms?: ReadonlyArray<Term>
}

/** What sentences may look at besides the event: the whole trip out of the guest, the instructions, the devices. */
export interface ExplainContext {
  readonly instructions: ExitInstructions
  readonly devices: DeviceMap
  /** The trip out of the guest each event belongs to (by seq), for the exit and entry that frame it. */
  readonly flows: ReadonlyMap<number, ExitFlow>
  /** The VM exit explained just before this one on the same vCPU, so a repeat can be told briefly. */
  readonly previousExit?: (e: Extract<VmEvent, { _tag: "VmExit" }>) => Extract<VmEvent, { _tag: "VmExit" }> | undefined
}

const hex = (n: number, width = 0): string => `0x${(n >>> 0).toString(16).padStart(width, "0")}`
const plural = (n: number, word: string): string => `${n} ${word}${n === 1 ? "" : "s"}`
const quoted = (bytes: Uint8Array): string => JSON.stringify(Array.from(bytes, (b) => String.fromCharCode(b)).join(""))
const charOf = (v: number): string => (v >= 0x20 && v < 0x7f ? ` (${JSON.stringify(String.fromCharCode(v))})` : "")

type Explainer<K extends VmEventTag> = (e: Extract<VmEvent, { _tag: K }>, ctx: ExplainContext) => ReadonlyArray<Sentence>

/** Where an access lands in QEMU: the device and, where known, the register. */
const target = (ctx: ExplainContext, space: "io" | "mmio", address: number): string => {
  const device = deviceAt(ctx.devices, space, address)
  if (device === undefined) return `no device claims ${space === "io" ? "port" : "address"} ${hex(address)}`
  const register = registerName(device, address)
  return `${space === "io" ? "port" : "address"} ${hex(address)} is ${device.name} (${device.kind})${register === undefined ? "" : `, register ${register}`}`
}

const ioQualificationWords = (q: number): string => {
  const parts = [
    `${ioQualification.isIn(q) ? "IN" : "OUT"} of ${plural(ioQualification.size(q), "byte")} ${ioQualification.isIn(q) ? "from" : "to"} port ${hex(ioQualification.port(q))}`,
    ioQualification.isString(q) ? `a string instruction (${ioQualification.isIn(q) ? "INS" : "OUTS"})` : "",
    ioQualification.isRep(q) ? "with a REP prefix" : "",
    ioQualification.isImmediate(q) ? "the port is an immediate operand" : "the port is in DX"
  ]
  return parts.filter(Boolean).join(", ")
}

const eptAccessWords = (q: number): string =>
  [q & EptAccess.READ ? "a data read" : "", q & EptAccess.WRITE ? "a data write" : "", q & EptAccess.FETCH ? "an instruction fetch" : ""]
    .filter(Boolean)
    .join(" and ") || "an access"

/** Why the CPU left, in words, from the exit reason and its qualification. */
const exitCause = (e: Extract<VmEvent, { _tag: "VmExit" }>): ReadonlyArray<Sentence> => {
  const q = hex(e.qualification, 8)
  switch (e.reason) {
    case ExitReason.IO_INSTRUCTION:
      return [{ text: `The exit qualification ${q} reads: ${ioQualificationWords(e.qualification)}.`, terms: ["exit qualification", "port I/O"] }]
    case ExitReason.EPT_VIOLATION:
      return [
        {
          text: `The exit qualification ${q} reads: ${eptAccessWords(e.qualification)} at guest-physical ${hex(e.guestPhysical ?? 0)}, which the EPT does not map yet${e.qualification & EptAccess.LINEAR_VALID ? "; the guest linear address is valid" : ""}.`,
          terms: ["exit qualification", "EPT", "EPT violation"]
        }
      ]
    case ExitReason.EPT_MISCONFIG:
      return [
        {
          text: `KVM had marked the EPT entry for guest-physical ${hex(e.guestPhysical ?? 0)} misconfigured, so this MMIO access exits at once, without a page walk.`,
          terms: ["EPT misconfiguration", "MMIO"]
        }
      ]
    case ExitReason.CPUID:
      return [{ text: "CPUID always exits in VMX non-root mode: the hypervisor decides what the guest sees." }]
    case ExitReason.HLT:
      return [{ text: "HLT exits because KVM sets HLT exiting: a halted vCPU must not hold a host CPU." }]
    case ExitReason.INTERRUPT_WINDOW:
      return [{ text: "The guest can take interrupts again (IF = 1 and no STI or MOV SS shadow): the exit KVM asked for, to inject the pending interrupt now.", terms: ["interrupt window"] }]
    case ExitReason.TRIPLE_FAULT:
      return [{ text: "The guest could not deliver an exception, nor the double fault that followed: the processor shuts down." }]
    default:
      return e.qualification === 0 ? [] : [{ text: `The exit qualification is ${q}.`, terms: ["exit qualification"] }]
  }
}

/** What happens to the exiting instruction when the guest is entered again at its address. */
const resumeAtExit = (exit: Extract<VmEvent, { _tag: "VmExit" }>, flow: ExitFlow): string => {
  if (exit.reason === ExitReason.IO_INSTRUCTION && ioQualification.isRep(exit.qualification)) {
    return "the same instruction runs again, for the next iteration of the REP string instruction"
  }
  // The model re-executes the instruction with QEMU's answer queued, as KVM's complete_userspace_io finishes it.
  if (exit.handledIn === "userspace") {
    const read = flow.handling.some((h) => (h._tag === "Pio" && h.direction === "in") || (h._tag === "Mmio" && h.op !== "write"))
    return read
      ? "KVM first finishes the instruction with QEMU's answer, then the guest goes on after it"
      : "QEMU has carried the access out, so KVM completes the instruction and the guest goes on after it"
  }
  if (exit.reason === ExitReason.EPT_VIOLATION) return "the same instruction runs again, and this time its access succeeds"
  return exit.instructionLength > 0 ? "KVM emulated the instruction in the kernel, so the guest goes on after it" : "the guest goes on from there"
}

/** For an exit KVM finished itself: the in-kernel device it went to, if any. */
const inKernelDevice = (e: Extract<VmEvent, { _tag: "VmExit" }>): string => {
  const device =
    e.reason === ExitReason.IO_INSTRUCTION
      ? kernelDeviceAt("io", ioQualification.port(e.qualification))
      : e.guestPhysical !== undefined
        ? kernelDeviceAt("mmio", e.guestPhysical)
        : undefined
  return device === undefined ? "" : ` The ${device.name} is emulated in the kernel (the in-kernel irqchip).`
}

const explainers: { readonly [K in VmEventTag]?: Explainer<K> } = {
  VmExit: (e, ctx) => {
    const instruction = ctx.instructions.bySeq.get(e.seq)
    const previous = ctx.previousExit?.(e)
    if (previous !== undefined && previous.rip === e.rip && previous.reason === e.reason && previous.qualification === e.qualification) {
      return [{ text: `Again${instruction === undefined ? "" : ` \`${instruction.text}\``} at rip ${hex(e.rip)}: the same ${exitReasonName(e.reason)} exit as #${previous.seq}.` }]
    }
    const executed: Sentence =
      instruction === undefined
        ? { text: `The guest was at rip ${hex(e.rip)} (its instruction is not known: see the note at the top).` }
        : {
            text: `The guest executed \`${instruction.text}\` at rip ${hex(e.rip)}${instruction.linear === e.rip ? "" : ` (linear ${hex(instruction.linear)})`}, bytes ${hexBytes(instruction.bytes)}.`
          }
    return [
      executed,
      {
        text: `The CPU left VMX non-root mode: exit reason ${exitReasonName(e.reason)}, basic exit reason ${e.reason} in the Intel SDM (Vol. 3C, Appendix C).`,
        terms: ["VMX non-root mode", "VM exit"]
      },
      ...exitCause(e),
      e.handledIn === "kernel"
        ? { text: `KVM can handle this exit itself, in the kernel: QEMU never hears of it.${inKernelDevice(e)}` }
        : { text: "KVM cannot finish this one in the kernel: KVM_RUN will return to QEMU.", terms: ["KVM_RUN"] }
    ]
  },
  PageFault: (e) =>
    e.outcome === "mapped"
      ? [{ text: `KVM's page-fault handler finds guest RAM at ${hex(e.gpa)} in a memslot and maps its page in the EPT (error code ${hex(e.errorCode)}); the next access to the page runs at full speed.`, terms: ["memslot"] }]
      : [{ text: `No memslot covers ${hex(e.gpa)}, so it is MMIO: KVM marks the EPT entry misconfigured for next time and emulates the access.`, terms: ["memslot", "MMIO", "EPT misconfiguration"] }],
  Pio: (e) => {
    const values = e.values.map((v) => `${hex(v)}${e.size === 1 ? charOf(v) : ""}`).join(", ")
    return e.direction === "out"
      ? [{ text: `KVM reads the access from the exit: OUT to port ${hex(e.port)}, ${plural(e.size, "byte")}${e.count > 1 ? ` x ${e.count}` : ""}, value ${values}.` }]
      : [{ text: `KVM completes the IN from port ${hex(e.port)} (${plural(e.size, "byte")}${e.count > 1 ? ` x ${e.count}` : ""}) with the value userspace supplied: ${values}.` }]
  },
  Mmio: (e) => {
    switch (e.op) {
      case "write":
        return [{ text: `KVM decodes the instruction: a ${e.length}-byte MMIO write of ${hex(e.value)} to ${hex(e.gpa)}, for userspace to perform.`, terms: ["MMIO"] }]
      case "unsatisfied-read":
        return [{ text: `KVM decodes the instruction: a ${e.length}-byte MMIO read from ${hex(e.gpa)}; only userspace can supply the value, so the read waits.`, terms: ["MMIO"] }]
      case "read":
        return [{ text: `On the next KVM_RUN, KVM completes the read with the value QEMU left in kvm_run.mmio.data: ${hex(e.value)}.` }]
    }
  },
  UserspaceExit: (e, ctx) => {
    const name = kvmExitName(e.exitReason)
    const back: Sentence = { text: `KVM_RUN returns to QEMU with ${name} (${e.exitReason}); QEMU's vCPU loop (kvm_cpu_exec) takes over.`, terms: ["KVM_RUN"] }
    const flow = ctx.flows.get(e.seq)
    const pio = flow?.handling.find((h): h is Extract<VmEvent, { _tag: "Pio" }> => h._tag === "Pio")
    const mmio = flow?.handling.find((h): h is Extract<VmEvent, { _tag: "Mmio" }> => h._tag === "Mmio")
    switch (e.exitReason) {
      case KvmExit.KVM_EXIT_IO:
        return pio === undefined ? [back] : [back, { text: `It dispatches the access on its I/O bus: ${target(ctx, "io", pio.port)}.` }]
      case KvmExit.KVM_EXIT_MMIO:
        return mmio === undefined ? [back] : [back, { text: `It dispatches the access on its memory bus: ${target(ctx, "mmio", mmio.gpa)}.` }]
      case KvmExit.KVM_EXIT_INTR:
        return [back, { text: `Nothing to emulate: the vCPU was kicked${e.detail === undefined ? "" : ` (${e.detail})`}.`, terms: ["vCPU kick"] }]
      case KvmExit.KVM_EXIT_HLT:
        return [back, { text: "The guest halted; with no interrupt to wake it, QEMU stops the vCPU." }]
      case KvmExit.KVM_EXIT_SHUTDOWN:
        return [back, { text: "The guest triple-faulted: QEMU resets or, as here, stops the machine." }]
      default:
        return [back, ...(e.detail === undefined ? [] : [{ text: `KVM says: ${e.detail}.` }])]
    }
  },
  DeviceOutput: (e) => [{ text: `The device ${e.device} sends ${quoted(e.bytes)} to the host (the terminal).` }],
  Unassigned: (e) => [
    {
      text: `No device claims ${e.space === "io" ? "port" : "address"} ${hex(e.address)}: QEMU ${e.write ? "drops the write" : `reads it as ${e.space === "io" ? "all ones" : "0"}`}.`
    }
  ],
  HostInput: (e) => [
    { text: `The host hands ${quoted(e.bytes)} to ${e.source} at exactly t=${e.time}; the trace records when, so a replay delivers it at the same point.`, terms: ["host input", "virtual time"] }
  ],
  VmEntry: (e, ctx) => {
    const flow = ctx.flows.get(e.seq)
    const exit = flow?.exit
    if (flow === undefined) return [{ text: `KVM_RUN enters the guest for the first time (VMLAUNCH) at rip ${hex(e.rip)}.`, terms: ["VM entry", "KVM_RUN"] }]
    const injected = flow.handling.some((h) => h._tag === "InjVirq")
    const where =
      exit === undefined
        ? `at rip ${hex(e.rip)}, where it stopped`
        : e.rip === exit.rip
          ? `at rip ${hex(e.rip)}: ${resumeAtExit(exit, flow)}`
          : e.rip === exit.rip + exit.instructionLength
            ? `at rip ${hex(e.rip)}, just past the instruction, which is now complete`
            : `at rip ${hex(e.rip)}`
    return [
      injected
        ? { text: `KVM enters the guest again (VMRESUME) at rip ${hex(e.rip)}, the first instruction of the handler of the injected interrupt.`, terms: ["VM entry"] }
        : { text: `KVM enters the guest again (VMRESUME) ${where}. Nothing is injected.`, terms: ["VM entry"] }
    ]
  },
  InjVirq: (e) => [
    { text: `At this entry KVM injects vector ${hex(e.vector, 2)} (from ${e.source}): the guest takes the interrupt before its next instruction.`, terms: ["interrupt injection"] }
  ],
  InjException: (e) => [
    {
      text: `At this entry KVM injects exception vector ${hex(e.vector, 2)}${e.errorCode === undefined ? "" : ` with error code ${hex(e.errorCode)}`}: the instruction that exited did not complete, and the guest's handler runs instead.`,
      terms: ["exception injection"]
    }
  ],
  IrqWindowRequest: (e) => [
    {
      text: `An interrupt is pending but the guest cannot take it (${e.blockedBy === "if" ? "IF = 0" : "the interrupt shadow of STI or MOV SS"}): ${e.requestedBy === "kernel" ? "KVM" : "QEMU"} asks for an exit when the interrupt window opens.`,
      terms: ["interrupt window"]
    }
  ],
  SetIrq: (e) => [{ text: `A device ${e.level ? "raises" : "lowers"} interrupt line GSI ${e.gsi}; the interrupt controllers are in ${e.hostedIn === "kernel" ? "the kernel (KVM's irqchip)" : "QEMU"}.` }],
  PicSetIrq: (e) => [
    { text: `The 8259A PIC sees IRQ ${e.irq} go ${e.level ? "high" : "low"}${e.imr & (1 << (e.irq & 7)) ? ", but that line is masked" : ""}; its INTR output to the CPU is ${e.intr ? "high" : "low"}.` }
  ],
  TimerExpiry: (e) => [
    { text: `The ${e.timer.toUpperCase()} reaches its deadline in virtual time, or on the host clock in real-time mode${e.count === 1 ? "" : ` (${e.count} periods)`}.`, terms: ["virtual time"] }
  ],
  HostMonotonicClock: (e) => [
    {
      text: `The timers' clock takes a reading of the host's monotonic clock, ${e.ns} ns since power-on, at t=${e.time}; the trace keeps it, so a replay gives the timers the same time at the same point.`,
      terms: ["real-time clock mode", "host input"]
    }
  ],
  VcpuWakeup: (e) => [{ text: `The halted vCPU wakes; no instructions retire in HLT, so virtual time jumps ${e.waited} ahead to the next timer deadline.`, terms: ["virtual time"] }],
  RunEnd: (e) => [
    {
      text: `The run ends: ${e.reason}${e.exitCode === undefined ? "" : `, guest status ${e.exitCode}`}${e.message === undefined ? "" : ` (${e.message})`}, after ${plural(e.time, "instruction")}.`
    }
  ]
}

const sentencesOf = (e: VmEvent, ctx: ExplainContext): ReadonlyArray<Sentence> => {
  const explain = explainers[e._tag] as Explainer<typeof e._tag> | undefined
  return explain === undefined ? [] : explain(e as never, ctx)
}

/** Indexes each event by the trip out of the guest it belongs to, entry included. */
export const flowsBySeq = (events: ReadonlyArray<VmEvent>): Map<number, ExitFlow> => {
  const bySeq = new Map<number, ExitFlow>()
  for (const flow of exitFlows(events)) {
    for (const e of [flow.userspace, ...flow.handling, flow.entry]) if (e !== undefined) bySeq.set(e.seq, flow)
  }
  return bySeq
}

/** The narrative of one event: its description line, then its sentences; glossary lines for terms not yet in `seen`. */
export const explainEvent = (e: VmEvent, ctx: ExplainContext, seen: Set<Term>): string[] => {
  const lines = [describeEvent(e)]
  const fresh: Term[] = []
  for (const s of sentencesOf(e, ctx)) {
    lines.push(`  ${s.text}`)
    for (const term of s.terms ?? []) if (!seen.has(term) && !fresh.includes(term)) fresh.push(term)
  }
  for (const term of fresh) {
    seen.add(term)
    lines.push(`    ~ ${term}: ${glossary[term]}.`)
  }
  return lines
}

/** Explains `events` (a slice of the run that `ctx` describes), one block per event, glossary on first use. */
export const explainEvents = (events: ReadonlyArray<VmEvent>, ctx: ExplainContext): string[] => {
  const seen = new Set<Term>()
  const lastExit = new Map<number, Extract<VmEvent, { _tag: "VmExit" }>>()
  const told: ExplainContext = { ...ctx, previousExit: (e) => lastExit.get(e.vcpu) }
  return events.flatMap((e) => {
    const lines = explainEvent(e, told, seen)
    if (e._tag === "VmExit") lastExit.set(e.vcpu, e)
    return lines
  })
}
