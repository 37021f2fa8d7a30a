import { describe, expect, it } from "vitest"
import { EventLog } from "../../src/events/EventLog.ts"
import { EptAccess, ExitReason, KvmExit } from "../../src/events/exitReasons.ts"
import type { VmEvent } from "../../src/events/VmEvent.ts"
import { hasVcpuState, type KvmSegment, type KvmVcpuApi } from "../../src/kernel/api.ts"
import { createVm } from "../../src/kernel/kvm.ts"

const LOAD = 0x1000

const flat = (selector: number, type: number): KvmSegment => ({
  base: 0, limit: 0xffffffff, selector, type, present: true, dpl: 0, db: true, s: true, l: false, g: true, avl: false, unusable: false
})

/** The kvm-hello-world sequence: a VM, one memslot, one vCPU in flat 32-bit protected mode. */
const boot = (code: number[], memory = 0x10000): { vcpu: KvmVcpuApi; log: EventLog; ram: Uint8Array } => {
  const log = new EventLog()
  const vm = createVm(log)
  const ram = new Uint8Array(memory)
  ram.set(code, LOAD)
  vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memory: ram })
  const vcpu = vm.createVcpu(0)
  const sregs = vcpu.getSregs()
  vcpu.setSregs({ ...sregs, cs: flat(8, 0xb), ds: flat(16, 3), es: flat(16, 3), ss: flat(16, 3), fs: flat(16, 3), gs: flat(16, 3), cr0: sregs.cr0 | 1 })
  vcpu.setRegs({ ...vcpu.getRegs(), rip: LOAD, rsp: LOAD, rflags: 2 })
  return { vcpu, log, ram }
}

const tags = (events: VmEvent[]) => events.map((e) => e._tag)

describe("the KVM-shaped API", () => {
  it("OUT leaves to userspace as KVM_EXIT_IO with the data, RIP still on the instruction", () => {
    // mov al, 0x41; out 0xe9, al; hlt
    const { vcpu, log } = boot([0xb0, 0x41, 0xe6, 0xe9, 0xf4])
    const exit = vcpu.run()
    expect(exit._tag).toBe("KVM_EXIT_IO")
    if (exit._tag !== "KVM_EXIT_IO") return
    expect(exit.exitReason).toBe(KvmExit.KVM_EXIT_IO)
    expect([exit.direction, exit.port, exit.size, exit.count, [...exit.data]]).toEqual(["out", 0xe9, 1, 1, [0x41]])
    expect(vcpu.getRegs().rip).toBe(LOAD + 2)
    const events = log.drainEvents()
    const vmExit = events.find((e) => e._tag === "VmExit" && e.reason === ExitReason.IO_INSTRUCTION)
    // Size 1 (0), OUT (bit 3 clear), immediate operand (bit 6), port 0xe9 in bits 31:16.
    expect(vmExit).toMatchObject({ qualification: (0xe9 << 16) | 0x40, rip: LOAD + 2, instructionLength: 2, handledIn: "userspace" })
    expect(tags(events).slice(-3)).toEqual(["VmExit", "Pio", "UserspaceExit"])

    // The next KVM_RUN completes the OUT and runs on to HLT.
    const halt = vcpu.run()
    expect(halt._tag).toBe("KVM_EXIT_HLT")
    expect(vcpu.getRegs().rip).toBe(LOAD + 5)
    expect(vcpu.instructionsRetired).toBe(3)
  })

  it("an IN or OUT userspace completed retires on the next KVM_RUN as stepping it again would", () => {
    // mov dx, 0x3f8; in al, dx; add al, 1; out dx, al; in ax, dx; in eax, 0x71; out 0x80, eax; hlt
    const code = [0x66, 0xba, 0xf8, 0x03, 0xec, 0x04, 0x01, 0xee, 0x66, 0xed, 0xe5, 0x71, 0xe7, 0x80, 0xf4]
    /** With `restore`, every exit is saved and put back, as a checkpoint restore does: the vCPU then steps the instruction again. */
    const run = (restore: boolean) => {
      const { vcpu, log } = boot(code)
      if (!hasVcpuState(vcpu)) throw new Error("the model's vCPU has the state ioctls")
      let next = 0x11223344
      for (;;) {
        const exit = vcpu.run()
        if (exit._tag !== "KVM_EXIT_IO") return { exit: exit._tag, events: log.drainEvents(), regs: vcpu.getRegs() }
        if (exit.direction === "in") for (let i = 0; i < exit.size; i++) exit.data[i] = (next >>> (8 * i)) & 0xff
        next = (next * 3 + 1) >>> 0
        if (restore) {
          const state = vcpu.getEmulationState()
          vcpu.setRegs(vcpu.getRegs())
          vcpu.setEmulationState(state)
        }
      }
    }
    const fast = run(false)
    expect(fast.exit).toBe("KVM_EXIT_HLT")
    expect(fast.events.filter((e) => e._tag === "UserspaceExit")).toHaveLength(6)
    expect(fast).toEqual(run(true))
  })

  it("RDMSR of an MSR KVM does not emulate: MSR_READ handled in the kernel, #GP(0) injected at the entry", () => {
    // mov ecx, 0x12345; rdmsr — with no IDT the #GP becomes a double and then a triple fault.
    const { vcpu, log } = boot([0xb9, 0x45, 0x23, 0x01, 0x00, 0x0f, 0x32])
    expect(vcpu.run()._tag).toBe("KVM_EXIT_SHUTDOWN")
    const events = log.drainEvents()
    const at = events.findIndex((e) => e._tag === "VmExit" && e.reason === ExitReason.MSR_READ)
    expect(tags(events).slice(at, at + 3)).toEqual(["VmExit", "InjException", "VmEntry"])
    expect(events[at + 1]).toMatchObject({ vector: 13, errorCode: 0 })
  })

  it("KVM_SET_GUEST_DEBUG watchpoints report reads and writes to the debugger, never to the guest", () => {
    // mov eax, [0x2000]; mov [0x3000], eax; mov eax, [0x3000]; hlt
    const { vcpu } = boot([0xa1, 0x00, 0x20, 0, 0, 0xa3, 0x00, 0x30, 0, 0, 0xa1, 0x00, 0x30, 0, 0, 0xf4])
    if (!hasVcpuState(vcpu)) throw new Error("the model offers the state API")
    vcpu.setGuestDebug({
      watchpoints: [
        { linear: 0x2000, length: 4, access: "write" },
        { linear: 0x2002, length: 1, access: "read" },
        { linear: 0x3000, length: 4, access: "read-write" }
      ]
    })
    vcpu.setGuestDebug({ stopAtInstructionsRetired: 1 })
    vcpu.run()
    expect(vcpu.getDebugStatus?.()).toBe(0b010)
    vcpu.setGuestDebug({ stopAtInstructionsRetired: 2 })
    vcpu.run()
    expect(vcpu.getDebugStatus?.()).toBe(0b100)
    vcpu.setGuestDebug({})
    expect(vcpu.run()._tag).toBe("KVM_EXIT_HLT")
    expect(vcpu.getDebugStatus?.()).toBe(0b100)
    expect(vcpu.getDebugStatus?.()).toBe(0)
    // No #DB reached the guest: with no IDT it would have ended in a triple fault, not at HLT.
    expect(vcpu.instructionsRetired).toBe(4)
  })

  it("IN completes on the next KVM_RUN with the data userspace put in kvm_run", () => {
    // mov dx, 0x3fd; in al, dx; hlt
    const { vcpu, log } = boot([0x66, 0xba, 0xfd, 0x03, 0xec, 0xf4])
    const exit = vcpu.run()
    if (exit._tag !== "KVM_EXIT_IO") throw new Error(exit._tag)
    expect([exit.direction, exit.port, exit.size]).toEqual(["in", 0x3fd, 1])
    expect(vcpu.getRegs().rax & 0xff).toBe(0)
    exit.data[0] = 0x60
    log.drainEvents()
    expect(vcpu.run()._tag).toBe("KVM_EXIT_HLT")
    expect(vcpu.getRegs().rax & 0xff).toBe(0x60)
    const pio = log.drainEvents().find((e) => e._tag === "Pio")
    expect(pio).toMatchObject({ direction: "in", port: 0x3fd, size: 1, count: 1, values: [0x60] })
  })

  it("builds EPT lazily: the first touch of a RAM page is an in-kernel EPT_VIOLATION, later touches are silent", () => {
    // mov [0x8000], eax; mov [0x8004], eax; mov eax, [0x9000]; hlt
    const { vcpu, log } = boot([0xa3, 0x00, 0x80, 0, 0, 0xa3, 0x04, 0x80, 0, 0, 0xa1, 0x00, 0x90, 0, 0, 0xf4])
    expect(vcpu.run()._tag).toBe("KVM_EXIT_HLT")
    const events = log.drainEvents()
    const faults = events.filter((e) => e._tag === "PageFault")
    expect(faults.map((e) => e._tag === "PageFault" && [e.gpa, e.errorCode & 7, e.outcome])).toEqual([
      [LOAD, EptAccess.FETCH, "mapped"],
      [0x8000, EptAccess.WRITE, "mapped"],
      [0x9000, EptAccess.READ, "mapped"]
    ])
    const exits = events.filter((e) => e._tag === "VmExit")
    expect(exits.every((e) => e._tag !== "VmExit" || e.reason !== ExitReason.EPT_VIOLATION || e.handledIn === "kernel")).toBe(true)
    expect(events.filter((e) => e._tag === "UserspaceExit")).toHaveLength(1)
  })

  it("MMIO: EPT_VIOLATION on first touch, EPT_MISCONFIG after; a read completes on the next run", () => {
    // mov eax, [0xfebf0000]; mov ebx, eax; mov eax, [0xfebf0000]; hlt
    const read = [0xa1, 0x00, 0x00, 0xbf, 0xfe]
    const { vcpu, log } = boot([...read, 0x89, 0xc3, ...read, 0xf4])
    const first = vcpu.run()
    if (first._tag !== "KVM_EXIT_MMIO") throw new Error(first._tag)
    expect([first.physAddr, first.isWrite, first.len]).toEqual([0xfebf0000, false, 4])
    const firstEvents = log.drainEvents()
    const eptExits = firstEvents.filter((e) => e._tag === "VmExit" && e.reason === ExitReason.EPT_VIOLATION)
    expect(eptExits.map((e) => e._tag === "VmExit" && [e.guestPhysical, e.handledIn])).toEqual([
      [LOAD, "kernel"],
      [0xfebf0000, "userspace"]
    ])
    expect(firstEvents.find((e) => e._tag === "Mmio")).toMatchObject({ op: "unsatisfied-read", gpa: 0xfebf0000, length: 4 })
    first.data.set([0x78, 0x56, 0x34, 0x12])

    const second = vcpu.run()
    if (second._tag !== "KVM_EXIT_MMIO") throw new Error(second._tag)
    expect(vcpu.getRegs().rbx).toBe(0x12345678)
    const secondEvents = log.drainEvents()
    expect(secondEvents[0]).toMatchObject({ _tag: "Mmio", op: "read", value: 0x12345678 })
    expect(secondEvents.find((e) => e._tag === "VmExit")).toMatchObject({ reason: ExitReason.EPT_MISCONFIG, guestPhysical: 0xfebf0000 })
    expect(secondEvents.some((e) => e._tag === "PageFault")).toBe(false)
    second.data.set([1, 0, 0, 0])
    expect(vcpu.run()._tag).toBe("KVM_EXIT_HLT")
    expect(vcpu.getRegs().rax).toBe(1)
  })

  it("a read-modify-write of MMIO leaves twice under one VM exit and retires once", () => {
    // add dword [0xfebf0000], 5; hlt
    const { vcpu, log } = boot([0x83, 0x05, 0x00, 0x00, 0xbf, 0xfe, 0x05, 0xf4])
    const read = vcpu.run()
    if (read._tag !== "KVM_EXIT_MMIO" || read.isWrite) throw new Error("expected an MMIO read")
    read.data.set([10, 0, 0, 0])
    const write = vcpu.run()
    if (write._tag !== "KVM_EXIT_MMIO" || !write.isWrite) throw new Error("expected an MMIO write")
    expect([...write.data]).toEqual([15, 0, 0, 0])
    expect(vcpu.run()._tag).toBe("KVM_EXIT_HLT")
    expect(vcpu.instructionsRetired).toBe(2)
    const exits = log.drainEvents().filter((e) => e._tag === "VmExit" && e.reason !== ExitReason.HLT && e.reason !== ExitReason.EPT_VIOLATION)
    expect(exits).toHaveLength(0)
  })

  it("answers CPUID in the kernel from the table userspace set, with Intel's out-of-range rule", () => {
    // mov eax, 0; cpuid; mov esi, ebx; mov eax, 7; cpuid; hlt
    const { vcpu, log } = boot([0xb8, 0, 0, 0, 0, 0x0f, 0xa2, 0x89, 0xde, 0xb8, 7, 0, 0, 0, 0x0f, 0xa2, 0xf4])
    vcpu.setCpuid([
      { function: 0, index: 0, significantIndex: false, eax: 1, ebx: 0x756e6547, ecx: 0x6c65746e, edx: 0x49656e69 },
      { function: 1, index: 0, significantIndex: false, eax: 0x663, ebx: 0, ecx: 0, edx: 0 }
    ])
    expect(vcpu.run()._tag).toBe("KVM_EXIT_HLT")
    const regs = vcpu.getRegs()
    expect(regs.rsi).toBe(0x756e6547)
    expect(regs.rax).toBe(0x663) // leaf 7 > max basic leaf 1 reads as leaf 1
    const events = log.drainEvents()
    const cpuidExits = events.filter((e) => e._tag === "VmExit" && e.reason === ExitReason.CPUID)
    expect(cpuidExits.map((e) => e._tag === "VmExit" && e.handledIn)).toEqual(["kernel", "kernel"])
    // KVM skips the emulated instruction before it re-enters: each entry is at the instruction after CPUID.
    const entries = cpuidExits.map((exit) => events[events.indexOf(exit) + 1])
    expect(entries.map((e) => e._tag === "VmEntry" && e.rip)).toEqual([LOAD + 7, LOAD + 16])
  })

  it("an instruction the model does not implement is KVM_EXIT_INTERNAL_ERROR naming the bytes and address", () => {
    const { vcpu } = boot([0x90, 0xd9, 0xe8]) // nop; fld1
    const exit = vcpu.run()
    expect(exit._tag).toBe("KVM_EXIT_INTERNAL_ERROR")
    if (exit._tag !== "KVM_EXIT_INTERNAL_ERROR") return
    expect(exit.suberror).toBe(1)
    expect(exit.detail).toMatch(/0x1001/)
    expect(exit.detail).toMatch(/d9 e8/)
  })

  it("fetching an instruction from MMIO is an emulation failure, not a crash", () => {
    const { vcpu } = boot([0xe9, 0xfb, 0xff, 0xbe, 0xfe]) // jmp 0xfebf1000
    const exit = vcpu.run()
    expect(exit._tag).toBe("KVM_EXIT_INTERNAL_ERROR")
    if (exit._tag === "KVM_EXIT_INTERNAL_ERROR") expect(exit.detail).toMatch(/instruction fetch from MMIO at guest-physical 0xfebf1000/)
  })

  it("a triple fault is a TRIPLE_FAULT exit and KVM_EXIT_SHUTDOWN", () => {
    // lidt [zero-limit IDT] then int3: no gate can be read, #GP → #DF → triple fault.
    const { vcpu, log, ram } = boot([0x0f, 0x01, 0x1d, 0x00, 0x20, 0, 0, 0xcc])
    ram.set([0, 0, 0, 0, 0, 0], 0x2000)
    expect(vcpu.run()._tag).toBe("KVM_EXIT_SHUTDOWN")
    expect(log.drainEvents().find((e) => e._tag === "VmExit" && e.reason === ExitReason.TRIPLE_FAULT)).toBeDefined()
  })

  it("kickAt stops KVM_RUN with KVM_EXIT_INTR at that virtual time", () => {
    const { vcpu } = boot([0xeb, 0xfe]) // jmp $
    vcpu.kickAt(1000)
    expect(vcpu.run()._tag).toBe("KVM_EXIT_INTR")
    expect(vcpu.instructionsRetired).toBe(1000)
  })

  it("refuses overlapping memslots and duplicate vCPUs", () => {
    const vm = createVm(new EventLog())
    vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memory: new Uint8Array(0x2000) })
    expect(() => vm.setUserMemoryRegion({ slot: 1, guestPhysAddr: 0x1000, memory: new Uint8Array(0x1000) })).toThrow(/overlaps/)
    expect(() => vm.setUserMemoryRegion({ slot: 2, guestPhysAddr: 0x2800, memory: new Uint8Array(0x1000) })).toThrow(/4 KiB/)
    vm.createVcpu(0)
    expect(() => vm.createVcpu(0)).toThrow(/already exists/)
  })
})
