/**
 * Interrupt injection through the KVM-shaped API, as a VMM drives it: KVM_INTERRUPT,
 * `request_interrupt_window` / `ready_for_interrupt_injection`, HLT with and without
 * an in-kernel irqchip, KVM_IRQ_LINE, and the state ioctls a checkpoint uses.
 */
import { describe, expect, it } from "vitest"
import { EventLog } from "../../src/events/EventLog.ts"
import { ExitReason, KvmExit } from "../../src/events/exitReasons.ts"
import type { VmEvent } from "../../src/events/VmEvent.ts"
import { lapicCreate } from "../../src/hw/intc/lapic.ts"
import { insnsForTick } from "../../src/hw/clock.ts"
import { PIT_HZ } from "../../src/hw/timer/i8254.ts"
import { KVM_IRQCHIP_IOAPIC, KVM_IRQCHIP_PIC_MASTER, type KvmIrqchipVcpuApi, type KvmSegment, type KvmVcpuApi } from "../../src/kernel/api.ts"
import { Vm } from "../../src/kernel/kvm.ts"

const CODE = 0x1000
const HANDLER = 0x1100
const STACK = 0x8000
/** The handler reports itself on port 0x80, which no chip claims: a KVM_EXIT_IO. */
const handler = [0xb0, 0x55, 0xe6, 0x80, 0xcf] // mov al, 0x55; out 0x80, al; iret

const real = (type: number): KvmSegment => ({
  base: 0, limit: 0xffff, selector: 0, type, present: true, dpl: 0, db: false, s: true, l: false, g: false, avl: false, unusable: false
})

const outb = (port: number, value: number): number[] => [0xb0, value, 0xe6, port]
/** The master 8259A as a BIOS leaves it: vectors 0x08-0x0f, all lines unmasked. */
const programPic = [...outb(0x20, 0x11), ...outb(0x21, 0x08), ...outb(0x21, 0x04), ...outb(0x21, 0x01), ...outb(0x21, 0x00)]
const STI = 0xfb
const NOP = 0x90
const HLT = 0xf4

interface Booted {
  readonly vm: Vm
  readonly vcpu: KvmVcpuApi & KvmIrqchipVcpuApi
  readonly log: EventLog
  readonly ram: Uint8Array
}

/** A real-mode vCPU at CODE with every interrupt vector pointing at the handler. */
const boot = (code: number[], setup: (vm: Vm) => void = () => {}, rflags = 0x2): Booted => {
  const log = new EventLog()
  const vm = new Vm(log)
  const ram = new Uint8Array(0x10000)
  for (let v = 0; v < 256; v++) ram.set([HANDLER & 0xff, HANDLER >> 8, 0, 0], v * 4)
  ram.set(code, CODE)
  ram.set(handler, HANDLER)
  vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memory: ram })
  setup(vm)
  const vcpu = vm.createVcpu(0) as KvmVcpuApi & KvmIrqchipVcpuApi
  const sregs = vcpu.getSregs()
  vcpu.setSregs({ ...sregs, cs: real(0xb), ds: real(3), es: real(3), ss: real(3), fs: real(3), gs: real(3), idt: { base: 0, limit: 0x3ff } })
  vcpu.setRegs({ ...vcpu.getRegs(), rip: CODE, rsp: STACK, rflags })
  vcpu.kickAt(10_000_000)
  return { vm, vcpu, log, ram }
}

const expectHandlerExit = (b: Booted): void => {
  const exit = b.vcpu.run()
  expect(exit._tag).toBe("KVM_EXIT_IO")
  if (exit._tag === "KVM_EXIT_IO") expect(exit.port).toBe(0x80)
}

/** The IP the interrupt pushed (real mode: IP, CS, FLAGS below STACK). */
const pushedIp = (b: Booted): number => b.ram[STACK - 6] | (b.ram[STACK - 5] << 8)

const ofTag = <T extends VmEvent["_tag"]>(events: VmEvent[], tag: T) => events.filter((e): e is Extract<VmEvent, { _tag: T }> => e._tag === tag)

describe("KVM_INTERRUPT (userspace irqchip)", () => {
  it("a queued vector is injected at the next entry when IF = 1, returning to the interrupted instruction", () => {
    const b = boot([NOP, NOP, HLT], undefined, 0x202)
    expect(b.vcpu.readyForInterruptInjection).toBe(true)
    b.vcpu.interrupt(0x20)
    expect(b.vcpu.readyForInterruptInjection).toBe(false)
    expectHandlerExit(b)
    expect(pushedIp(b)).toBe(CODE)
    const events = b.log.drainEvents()
    // Injected before the entry; delivery then touches the IVT and stack pages (EPT violations).
    expect(events[0]?._tag).toBe("InjVirq")
    expect(ofTag(events, "InjVirq")[0]).toMatchObject({ vector: 0x20, source: "KVM_INTERRUPT" })
    expect(() => {
      b.vcpu.interrupt(0x21)
      b.vcpu.interrupt(0x22)
    }).toThrow(/still waiting/)
  })

  it("with IF = 0, request_interrupt_window exits with KVM_EXIT_IRQ_WINDOW_OPEN after STI's shadow", () => {
    const b = boot([NOP, NOP, STI, NOP, NOP, HLT])
    expect([b.vcpu.ifFlag, b.vcpu.readyForInterruptInjection]).toEqual([false, false])
    b.vcpu.requestInterruptWindow = true
    const exit = b.vcpu.run()
    expect(exit._tag).toBe("KVM_EXIT_IRQ_WINDOW_OPEN")
    // Not after STI (its shadow covers the next instruction), but after the NOP that follows it.
    expect(b.vcpu.getRegs().rip).toBe(CODE + 4)
    expect([b.vcpu.ifFlag, b.vcpu.readyForInterruptInjection]).toEqual([true, true])
    const events = b.log.drainEvents()
    expect(ofTag(events, "IrqWindowRequest")).toMatchObject([{ requestedBy: "userspace", blockedBy: "if" }])
    expect(ofTag(events, "VmExit").at(-1)).toMatchObject({ reason: ExitReason.INTERRUPT_WINDOW, rip: CODE + 4, instructionLength: 0, handledIn: "userspace" })
    expect(ofTag(events, "UserspaceExit").at(-1)?.exitReason).toBe(KvmExit.KVM_EXIT_IRQ_WINDOW_OPEN)
    b.vcpu.requestInterruptWindow = false
    b.vcpu.interrupt(0x20)
    expectHandlerExit(b)
    expect(pushedIp(b)).toBe(CODE + 4)
  })

  it("HLT exits to userspace; handed back halted, the vCPU's time runs to the kick, and KVM_INTERRUPT wakes it", () => {
    const b = boot([HLT, NOP], undefined, 0x202)
    expect(b.vcpu.run()._tag).toBe("KVM_EXIT_HLT")
    expect(b.vcpu.instructionsRetired).toBe(1)
    b.vcpu.setMpState("halted")
    b.vcpu.kickAt(5000)
    expect(b.vcpu.run()._tag).toBe("KVM_EXIT_INTR")
    expect(b.vcpu.instructionsRetired).toBe(5000)
    expect(b.vcpu.getMpState()).toBe("halted")
    b.vcpu.interrupt(0x20)
    b.vcpu.kickAt(10_000)
    expectHandlerExit(b)
    expect(b.vcpu.getMpState()).toBe("runnable")
    expect(pushedIp(b)).toBe(CODE + 1)
    expect(ofTag(b.log.drainEvents(), "VcpuWakeup")).toMatchObject([{ time: 5000, waited: 4999 }])
  })
})

describe("the in-kernel irqchip (KVM_CREATE_IRQCHIP, KVM_CREATE_PIT2)", () => {
  const kernelChips = (vm: Vm) => {
    vm.createIrqchip()
    vm.createPit2()
  }

  it("HLT with IF = 1 blocks in the kernel until the PIT's deadline, then the PIC's vector is injected", () => {
    // PIT channel 0, mode 2, 1000 clocks; then sti; hlt.
    const pit = [...outb(0x43, 0x34), ...outb(0x40, 1000 & 0xff), ...outb(0x40, 1000 >> 8)]
    const b = boot([...programPic, ...pit, STI, HLT, NOP], kernelChips)
    expectHandlerExit(b)
    const deadline = insnsForTick(1000, 0, PIT_HZ)
    expect(b.vcpu.instructionsRetired).toBe(deadline + 1) // the handler's MOV retired before its OUT
    const events = b.log.drainEvents()
    // The PIC and PIT ports never reached userspace, nor did the HLT.
    expect(ofTag(events, "UserspaceExit").map((e) => e.exitReason)).toEqual([KvmExit.KVM_EXIT_IO])
    expect(ofTag(events, "VmExit").filter((e) => e.reason === ExitReason.HLT)).toMatchObject([{ handledIn: "kernel" }])
    expect(ofTag(events, "TimerExpiry")).toMatchObject([{ timer: "pit", time: deadline, hostedIn: "kernel" }])
    expect(ofTag(events, "InjVirq")).toMatchObject([{ vector: 0x08, source: "pic", time: deadline }])
    expect(ofTag(events, "VcpuWakeup")[0]?.time).toBe(deadline)
  })

  it("HLT with IF = 0 does not wait for the PIT: nothing can wake the vCPU, so KVM_RUN returns KVM_EXIT_HLT", () => {
    const b = boot([HLT], kernelChips)
    expect(b.vcpu.run()._tag).toBe("KVM_EXIT_HLT")
    expect(b.vcpu.instructionsRetired).toBe(1)
  })

  it("KVM_IRQ_LINE raises a PIC line; the vector waits for the window while IF = 0 and comes after STI's shadow", () => {
    // Program the PIC, then five NOPs with IF = 0, STI, NOP, HLT.
    const b = boot([...programPic, NOP, NOP, NOP, NOP, NOP, STI, NOP, HLT], kernelChips)
    b.vcpu.kickAt(12) // the PIC programmed (10 instructions), in the NOPs
    expect(b.vcpu.run()._tag).toBe("KVM_EXIT_INTR")
    b.vm.irqLine(4, true)
    b.vcpu.kickAt(10_000)
    expectHandlerExit(b)
    const sti = CODE + programPic.length + 5
    expect(pushedIp(b)).toBe(sti + 2)
    const events = b.log.drainEvents()
    expect(ofTag(events, "SetIrq")).toMatchObject([{ gsi: 4, level: true, hostedIn: "kernel" }])
    expect(ofTag(events, "PicSetIrq")).toMatchObject([{ irq: 4, level: true, imr: 0, intr: true }])
    // GSI 4 is IOAPIC pin 4, masked after reset.
    expect(ofTag(events, "IoapicSetIrq")).toMatchObject([{ pin: 4, masked: true, delivered: false }])
    expect(ofTag(events, "IrqWindowRequest")).toMatchObject([{ requestedBy: "kernel", blockedBy: "if" }])
    const order = events.filter((e) => e._tag === "InjVirq" || (e._tag === "VmExit" && e.reason === ExitReason.INTERRUPT_WINDOW))
    expect(order).toMatchObject([{ _tag: "VmExit", handledIn: "kernel", rip: sti + 2 }, { _tag: "InjVirq", vector: 0x0c }])
  })

  it("GSI 0 reaches IOAPIC pin 2 (QEMU's PC routing), and PIC/IOAPIC/PIT/LAPIC state round-trips through the state ioctls", () => {
    const b = boot([...programPic, HLT], kernelChips)
    expect(b.vcpu.run()._tag).toBe("KVM_EXIT_HLT")
    b.vm.irqLine(0, true)
    expect(ofTag(b.log.drainEvents(), "IoapicSetIrq")).toMatchObject([{ pin: 2 }])
    const master = b.vm.getIrqchip(KVM_IRQCHIP_PIC_MASTER)
    if (!("pic" in master)) throw new Error("expected the PIC")
    expect([master.pic.irqBase, master.pic.irr]).toEqual([0x08, 1])
    b.vm.setIrqchip({ chipId: KVM_IRQCHIP_PIC_MASTER, pic: { ...master.pic, imr: 0xff } })
    expect(b.vm.getIrqchip(KVM_IRQCHIP_PIC_MASTER)).toMatchObject({ pic: { imr: 0xff } })
    const ioapic = b.vm.getIrqchip(KVM_IRQCHIP_IOAPIC)
    b.vm.setIrqchip(ioapic)
    expect(b.vm.getIrqchip(KVM_IRQCHIP_IOAPIC)).toEqual(ioapic)
    const pit = b.vm.getPit2()
    b.vm.setPit2(pit)
    expect(b.vm.getPit2()).toBe(pit)
    const lapic = b.vcpu.getLapic()!
    b.vcpu.setLapic({ ...lapic, tpr: 0x20 })
    expect(b.vcpu.getLapic()?.tpr).toBe(0x20)
  })

  it("refuses what KVM refuses: KVM_IRQ_LINE without an irqchip, KVM_CREATE_IRQCHIP after a vCPU, KVM_SET_LAPIC without one", () => {
    const b = boot([HLT])
    expect(() => b.vm.irqLine(0, true)).toThrow(/KVM_CREATE_IRQCHIP/)
    expect(() => b.vm.createIrqchip()).toThrow(/before the first KVM_CREATE_VCPU/)
    expect(() => b.vcpu.setLapic(lapicCreate({ shift: 0 }))).toThrow(/no in-kernel LAPIC/)
  })
})
