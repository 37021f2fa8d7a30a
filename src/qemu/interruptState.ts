/**
 * The checkpoint section for interrupts and timers (see vmstate.ts): what the kernel
 * holds, through KVM_GET/SET_IRQCHIP, KVM_GET/SET_PIT2, KVM_GET/SET_LAPIC,
 * KVM_GET/SET_MP_STATE and the vCPU events, and what QEMU holds, its chips' plain
 * data. Loaded after the vCPU, whose own load clears the interrupt window. Only
 * vmstate.ts imports this file (it is one of its sections).
 */
import * as Schema from "effect/Schema"
import type { LapicState } from "../hw/intc/lapic.ts"
import type { PitState } from "../hw/timer/i8254.ts"
import {
  hasIrqchipVcpu,
  hasIrqchipVm,
  KVM_IRQCHIP_IOAPIC,
  KVM_IRQCHIP_PIC_MASTER,
  KVM_IRQCHIP_PIC_SLAVE,
  type KvmIrqchip
} from "../kernel/api.ts"
import type { StateSection, StatefulMachine } from "./vmstate.ts"
import { VmStateError } from "./vmstate.ts"

/** Chip states are the models' own plain data; the section checks the shape around them. */
const Chip = Schema.Unknown
const InterruptSection = Schema.Struct({
  kernelChips: Schema.optionalWith(Schema.Struct({ irqchips: Schema.Array(Chip), pit: Chip }), { exact: true }),
  lapic: Schema.optionalWith(Chip, { exact: true }),
  mpState: Schema.Literal("runnable", "halted"),
  queuedInterrupt: Schema.Int,
  interruptWindow: Schema.optionalWith(Schema.Literal("kernel", "userspace"), { exact: true }),
  haltedAt: Schema.Number,
  qemu: Schema.Struct({ pic: Chip, ioapic: Chip, pit: Chip, lapic: Chip, rtc: Chip, lines: Schema.Number })
})

const decode = Schema.decodeUnknownSync(InterruptSection, { onExcessProperty: "ignore" })

export const interruptSection: StateSection = {
  name: "interrupts",
  incremental: false,
  save: ({ vm, vcpu, interrupts }) => {
    // null: a kernel without the irqchip ioctls, so no chips anywhere.
    if (interrupts === undefined || !hasIrqchipVm(vm) || !hasIrqchipVcpu(vcpu)) return null
    // Built key by key (no conditional spreads, which V8 copies slowly), in the order the
    // section has always had: optional keys are absent, not undefined.
    const out: Record<string, unknown> = {}
    if (interrupts.mode === "kernel") {
      out.kernelChips = {
        irqchips: [vm.getIrqchip(KVM_IRQCHIP_PIC_MASTER), vm.getIrqchip(KVM_IRQCHIP_PIC_SLAVE), vm.getIrqchip(KVM_IRQCHIP_IOAPIC)],
        pit: vm.getPit2()
      }
    }
    const lapic = vcpu.getLapic()
    if (lapic !== undefined) out.lapic = lapic
    out.mpState = vcpu.getMpState()
    out.queuedInterrupt = vcpu.getVcpuEvents().queuedInterrupt ?? -1
    const { interruptWindow, haltedAt } = vcpu.getEmulationState()
    if (interruptWindow !== undefined) out.interruptWindow = interruptWindow
    out.haltedAt = haltedAt ?? 0
    out.qemu = { pic: interrupts.pic, ioapic: interrupts.ioapic, pit: interrupts.pit, lapic: interrupts.lapic, rtc: interrupts.rtc, lines: interrupts.lines }
    return out
  },
  load: (machine: StatefulMachine, data) => {
    const { vm, vcpu, interrupts } = machine
    if (data === null && interrupts === undefined) return
    if (interrupts === undefined || !hasIrqchipVm(vm) || !hasIrqchipVcpu(vcpu)) {
      throw new VmStateError({ section: "interrupts", reason: "this machine has no interrupt chips to load into" })
    }
    let s: typeof InterruptSection.Type
    try {
      s = decode(data)
    } catch (e) {
      throw new VmStateError({ section: "interrupts", reason: e instanceof Error ? e.message.split("\n")[0]! : String(e) })
    }
    try {
      if (s.kernelChips !== undefined) {
        for (const chip of s.kernelChips.irqchips) vm.setIrqchip(chip as KvmIrqchip)
        vm.setPit2(s.kernelChips.pit as PitState)
      }
      if (s.lapic !== undefined) vcpu.setLapic(s.lapic as LapicState)
      vcpu.setMpState(s.mpState)
      vcpu.setVcpuEvents({ ...vcpu.getVcpuEvents(), queuedInterrupt: s.queuedInterrupt })
      vcpu.setEmulationState({
        ...vcpu.getEmulationState(),
        ...(s.interruptWindow === undefined ? {} : { interruptWindow: s.interruptWindow }),
        haltedAt: s.haltedAt
      })
    } catch (e) {
      throw new VmStateError({ section: "interrupts", reason: e instanceof Error ? e.message : String(e) })
    }
    const q = s.qemu as Record<string, unknown>
    Object.assign(interrupts, { pic: q.pic, ioapic: q.ioapic, pit: q.pit, lapic: q.lapic, rtc: q.rtc, lines: q.lines })
  }
}
