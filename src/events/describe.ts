import { exitReasonName, ioQualification, kvmExitName, ExitReason, EptAccess } from "./exitReasons.ts"
import type { VmEvent } from "./VmEvent.ts"

const hex = (n: number, width = 0): string => `0x${(n >>> 0).toString(16).padStart(width, "0")}`

const ioDetail = (q: number): string => {
  const dir = ioQualification.isIn(q) ? "in" : "out"
  const flags = `${ioQualification.isString(q) ? " string" : ""}${ioQualification.isRep(q) ? " rep" : ""}`
  return `${dir} port ${hex(ioQualification.port(q), 4)} size ${ioQualification.size(q)}${flags}`
}

const eptDetail = (q: number): string =>
  [q & EptAccess.READ ? "read" : "", q & EptAccess.WRITE ? "write" : "", q & EptAccess.FETCH ? "fetch" : ""].filter(Boolean).join("|") ||
  "none"

const printable = (bytes: Uint8Array): string =>
  JSON.stringify(Array.from(bytes, (b) => String.fromCharCode(b)).join(""))

/** The body of a one-line description, after the common `#seq t=time` prefix. */
const body = (e: VmEvent): string => {
  switch (e._tag) {
    case "VmEntry":
      return `kvm_entry rip ${hex(e.rip)}`
    case "VmExit": {
      const name = exitReasonName(e.reason)
      const detail =
        e.reason === ExitReason.IO_INSTRUCTION
          ? ` ${ioDetail(e.qualification)}`
          : e.reason === ExitReason.EPT_VIOLATION
            ? ` ${eptDetail(e.qualification)} gpa ${hex(e.guestPhysical ?? 0)}`
            : e.guestPhysical !== undefined
              ? ` gpa ${hex(e.guestPhysical)}`
              : ""
      const length = e.instructionLength === 0 ? "" : ` len ${e.instructionLength}`
      return `kvm_exit ${name} (${e.reason})${detail} rip ${hex(e.rip)}${length} -> ${e.handledIn}`
    }
    case "Pio":
      return `kvm_pio ${e.direction} port ${hex(e.port, 4)} size ${e.size} count ${e.count} val ${e.values.map((v) => hex(v)).join(",")}`
    case "Mmio":
      return `kvm_mmio ${e.op} gpa ${hex(e.gpa)} len ${e.length} val ${hex(e.value)}`
    case "PageFault":
      return `kvm_page_fault gpa ${hex(e.gpa)} error ${hex(e.errorCode)} -> ${e.outcome}`
    case "UserspaceExit":
      return `kvm_userspace_exit ${kvmExitName(e.exitReason)} (${e.exitReason})${e.detail === undefined ? "" : `: ${e.detail}`}`
    case "DeviceOutput":
      return `device ${e.device} output ${printable(e.bytes)}`
    case "HostInput":
      return `host input ${e.source} ${printable(e.bytes)}`
    case "HostTsc":
      return `host tsc ${e.value}`
    case "HostMonotonicClock":
      return `host monotonic clock ${e.ns} ns`
    case "HostClock":
      return `host clock ${e.device} ${e.epochSeconds} s since the epoch`
    case "SetIrq":
      return `kvm_set_irq gsi ${e.gsi} level ${e.level ? 1 : 0} (${e.hostedIn})`
    case "PicSetIrq":
      return `kvm_pic_set_irq irq ${e.irq} level ${e.level ? 1 : 0} imr ${hex(e.imr, 2)} elcr ${hex(e.elcr, 2)} intr ${e.intr ? 1 : 0} (${e.hostedIn})`
    case "IoapicSetIrq":
      return `kvm_ioapic_set_irq pin ${e.pin} level ${e.level ? 1 : 0} vec ${hex(e.vector, 2)}${e.masked ? " masked" : ""}${e.delivered ? " delivered" : ""} (${e.hostedIn})`
    case "ApicAcceptIrq":
      return `kvm_apic_accept_irq apicid ${e.apicId} dm ${e.deliveryMode} ${e.level ? "level" : "edge"} vec ${hex(e.vector, 2)} (${e.hostedIn})`
    case "InjVirq":
      return `kvm_inj_virq vec ${hex(e.vector, 2)} from ${e.source}`
    case "InjException":
      return `kvm_inj_exception vec ${hex(e.vector, 2)}${e.errorCode === undefined ? "" : ` error ${hex(e.errorCode)}`}`
    case "IrqWindowRequest":
      return `interrupt window requested by ${e.requestedBy} (blocked by ${e.blockedBy === "if" ? "IF=0" : "the interrupt shadow"})`
    case "Eoi":
      return `kvm_eoi apicid ${e.apicId} vec ${e.vector < 0 ? "none" : hex(e.vector, 2)} ${e.level ? "level" : "edge"} (${e.hostedIn})`
    case "AckIrq":
      return `kvm_ack_irq ${e.irqchip} pin ${e.pin} (${e.hostedIn})`
    case "TimerExpiry":
      return `timer ${e.timer} expired${e.count === 1 ? "" : ` x${e.count}`} (${e.hostedIn})`
    case "VcpuWakeup":
      return `kvm_vcpu_wakeup after ${e.waited} halted`
    case "Unassigned":
      return `unassigned ${e.space} ${e.write ? "write" : "read"} ${hex(e.address)} size ${e.size}`
    case "Tracepoint":
      return `host ${e.name}: ${e.fields}`
    case "RunEnd": {
      const r = e.registers
      const status = e.exitCode === undefined ? "" : ` status ${e.exitCode}`
      const message = e.message === undefined ? "" : ` (${e.message})`
      return `run end: ${e.reason}${status}${message} eip ${hex(r.eip)} eflags ${hex(r.eflags)}`
    }
  }
}

/** One line per event, in the words of KVM's tracepoints: `#seq t=time vcpu0 ...`. */
export const describeEvent = (e: VmEvent): string => `#${e.seq} t=${e.time} vcpu${e.vcpu} ${body(e)}`
