import { describe, expect, it } from "vitest"
import { EventLog } from "../../../src/events/EventLog.ts"
import { ExitReason } from "../../../src/events/exitReasons.ts"
import type { KvmSegment } from "../../../src/kernel/api.ts"
import { AC, IF, TF } from "../../../src/kernel/cpu/alu.ts"
import { CpuStop, Reg, Seg } from "../../../src/kernel/cpu/cpu.ts"
import { createVm } from "../../../src/kernel/kvm.ts"
import { CODE, hex, type Machine, protectedMode, SEL, setGate, STACK_TOP } from "../../support/cpuHarness.ts"
import { le32 } from "../../support/programs.ts"

const HANDLER = 0x4000

/** Ring 3 without a TSS switch: handlers tested here stay at CPL 3 through a conforming ring-0 code segment. */
const toRing3 = (m: Machine): void => {
  for (let s = 0; s < 6; s++) {
    m.cpu.segSelector[s] = 0x4b
    m.cpu.segAttr[s] = 0xc0f3
  }
  m.cpu.segSelector[Seg.CS] = 0x43
  m.cpu.segAttr[Seg.CS] = 0xc0fb
}

describe("RDMSR/WRMSR/RDTSC as VM exits the kernel handles", () => {
  const flat = (selector: number, type: number): KvmSegment => ({
    base: 0, limit: 0xffffffff, selector, type, present: true, dpl: 0, db: true, s: true, l: false, g: true, avl: false, unusable: false
  })
  const boot = (code: number[]) => {
    const log = new EventLog()
    const vm = createVm(log)
    const ram = new Uint8Array(0x10000)
    ram.set(code, 0x1000)
    // GDT at 0x500: null, flat code (8), flat data (0x10); IDT at 0x800 with #GP → 0x3000 (hlt).
    ram.set([0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0x9a, 0xcf, 0, 0xff, 0xff, 0, 0, 0, 0x92, 0xcf, 0], 0x500)
    ram.set([0x00, 0x30, 0x08, 0x00, 0x00, 0x8e, 0x00, 0x00], 0x800 + 13 * 8)
    ram[0x3000] = 0xf4
    vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memory: ram })
    const vcpu = vm.createVcpu(0)
    const sregs = vcpu.getSregs()
    vcpu.setSregs({
      ...sregs, cs: flat(8, 0xb), ds: flat(16, 3), es: flat(16, 3), ss: flat(16, 3), fs: flat(16, 3), gs: flat(16, 3),
      gdt: { base: 0x500, limit: 0x17 }, idt: { base: 0x800, limit: 0x7ff }, cr0: sregs.cr0 | 1
    })
    vcpu.setRegs({ ...vcpu.getRegs(), rip: 0x1000, rsp: 0x8000, rflags: 2 })
    return { vcpu, log }
  }

  it("the SYSENTER MSRs round-trip, RDTSC counts retired instructions, a TSC write sets the offset; each is an exit handled in the kernel", () => {
    // mov ecx,0x175; mov eax,0x12345678; xor edx,edx; wrmsr; xor eax,eax; rdmsr; mov ebx,eax; rdtsc; mov esi,eax;
    // mov ecx,0x10; mov eax,1000; wrmsr; rdtsc; hlt
    const { vcpu, log } = boot(hex("b9 75 01 00 00 b8 78 56 34 12 31 d2 0f 30 31 c0 0f 32 89 c3 0f 31 89 c6 b9 10 00 00 00 b8 e8 03 00 00 0f 30 0f 31 f4"))
    expect(vcpu.run()._tag).toBe("KVM_EXIT_HLT")
    const r = vcpu.getRegs()
    expect(r.rbx).toBe(0x12345678)
    // RDTSC was the 8th instruction: 7 retired before it.
    expect(r.rsi).toBe(7)
    // WRMSR TSC=1000 at 11 retired; RDTSC one instruction later.
    expect(r.rax).toBe(1001)
    expect(r.rdx).toBe(0)
    const exits = log.drainEvents().filter((e) => e._tag === "VmExit" && e.reason !== ExitReason.EPT_VIOLATION)
    expect(exits.map((e) => (e._tag === "VmExit" ? [e.reason, e.handledIn] : []))).toEqual([
      [ExitReason.MSR_WRITE, "kernel"],
      [ExitReason.MSR_READ, "kernel"],
      [ExitReason.RDTSC, "kernel"],
      [ExitReason.MSR_WRITE, "kernel"],
      [ExitReason.RDTSC, "kernel"],
      [ExitReason.HLT, "userspace"]
    ])
  })

  it("an MSR the kernel does not know is #GP(0) in the guest, as KVM injects it", () => {
    // mov ecx, 0xc0000080; rdmsr
    const { vcpu } = boot(hex("b9 80 00 00 c0 0f 32"))
    expect(vcpu.run()._tag).toBe("KVM_EXIT_HLT")
    expect(vcpu.getRegs().rip).toBe(0x3001)
  })

  it("RDMSR/WRMSR at CPL 3 are #GP(0) without an exit; RDTSC at CPL 3 faults only with CR4.TSD", () => {
    for (const code of ["0f 32", "0f 30"]) {
      const m = protectedMode(hex(code))
      toRing3(m)
      // The #GP itself cannot be delivered (no TSS for the ring switch): what matters is that no exit happened.
      m.cpu.run(1)
      expect(m.exits.msrAccesses).toEqual([])
    }
    const t = protectedMode(hex("0f 31 0f 31"))
    t.exits.tsc = 0x1_0000_0002n
    t.cpu.run(1)
    expect([t.cpu.regs[Reg.EAX], t.cpu.regs[Reg.EDX]]).toEqual([2, 1])
    t.cpu.cr4 = 1 << 2
    toRing3(t)
    t.cpu.run(1)
    expect(t.exits.msrAccesses).toHaveLength(1)
  })
})

describe("SYSENTER/SYSEXIT", () => {
  it("enter ring 0 at SYSENTER_EIP/ESP with flat CS/SS from SYSENTER_CS, and leave to ring 3 at EDX/ECX", () => {
    const m = protectedMode(hex("0f 34"))
    toRing3(m)
    m.cpu.sysenterCs = 0x08
    m.cpu.sysenterEsp = 0x7000
    m.cpu.sysenterEip = HANDLER
    m.mem.load(HANDLER, hex("0f 35"))
    m.cpu.setEflags(0x2 | IF)
    m.cpu.run(1)
    expect([m.cpu.segSelector[Seg.CS], m.cpu.segSelector[Seg.SS]]).toEqual([0x08, 0x10])
    expect([m.cpu.segAttr[Seg.CS], m.cpu.segAttr[Seg.SS]]).toEqual([0xc09b, 0xc093])
    expect([m.cpu.eip, m.cpu.regs[Reg.ESP]]).toEqual([HANDLER, 0x7000])
    expect(m.cpu.getEflags() & IF).toBe(0)
    m.cpu.regs[Reg.EDX] = CODE + 2
    m.cpu.regs[Reg.ECX] = 0x6000
    m.cpu.run(1)
    expect([m.cpu.segSelector[Seg.CS], m.cpu.segSelector[Seg.SS]]).toEqual([0x1b, 0x23])
    expect([m.cpu.segAttr[Seg.CS], m.cpu.segAttr[Seg.SS]]).toEqual([0xc0fb, 0xc0f3])
    expect([m.cpu.eip, m.cpu.regs[Reg.ESP]]).toEqual([CODE + 2, 0x6000])
  })

  it("SYSENTER with a null SYSENTER_CS, and SYSEXIT at CPL 3, are #GP(0)", () => {
    const m = protectedMode(hex("0f 34"))
    setGate(m, 13, HANDLER)
    m.cpu.run(1)
    expect(m.cpu.eip).toBe(HANDLER)
    expect(m.mem.peek32(STACK_TOP - 16)).toBe(0)
  })
})

describe("debug registers, INT1 and single-step", () => {
  it("MOV to/from DR0-7 stores values with the fixed bits; DR4/5 alias DR6/7; CR4.DE makes them #UD; CPL 3 #GP", () => {
    // mov dr0, eax; mov ebx, dr0; mov dr7, eax; mov ecx, dr5; mov dr6, eax; mov edx, dr6
    const m = protectedMode(hex("0f 23 c0 0f 21 c3 0f 23 f8 0f 21 e9 0f 23 f0 0f 21 f2"))
    m.cpu.regs[Reg.EAX] = 0xffffffff
    m.cpu.run(6)
    expect(m.cpu.regs[Reg.EBX]).toBe(0xffffffff)
    expect(m.cpu.regs[Reg.ECX]).toBe(0xffff27ff)
    expect(m.cpu.regs[Reg.EDX]).toBe(0xffffefff)
    expect(m.cpu.dr[0]).toBe(0xffffffff)
    const de = protectedMode(hex("0f 21 e0"))
    de.cpu.cr4 = 1 << 3
    setGate(de, 6, HANDLER)
    de.cpu.run(1)
    expect(de.cpu.eip).toBe(HANDLER)
  })

  it("INT1 delivers #DB through the IDT as a trap (return address after F1)", () => {
    const m = protectedMode(hex("f1"))
    setGate(m, 1, HANDLER)
    m.cpu.run(1)
    expect(m.cpu.eip).toBe(HANDLER)
    expect(m.mem.peek32(STACK_TOP - 12)).toBe(CODE + 1)
  })

  it("TF traps after each instruction with DR6.BS; the handler runs with TF clear", () => {
    const m = protectedMode(hex("90 90"))
    setGate(m, 1, HANDLER)
    m.cpu.setEflags(0x2 | TF)
    m.cpu.run(1)
    expect(m.cpu.eip).toBe(HANDLER)
    expect(m.mem.peek32(STACK_TOP - 12)).toBe(CODE + 1)
    expect(m.mem.peek32(STACK_TOP - 4) & TF).toBe(TF)
    expect(m.cpu.getEflags() & TF).toBe(0)
    expect(m.cpu.dr[6] & (1 << 14)).toBe(1 << 14)
  })

  it("a rep string instruction traps after each iteration, with EIP still on it", () => {
    const m = protectedMode(hex("f3 a4"))
    setGate(m, 1, HANDLER)
    m.cpu.regs[Reg.ECX] = 3
    m.cpu.regs[Reg.ESI] = 0x2000
    m.cpu.regs[Reg.EDI] = 0x3000
    m.cpu.setEflags(0x2 | TF)
    m.cpu.run(1)
    expect(m.cpu.eip).toBe(HANDLER)
    expect(m.mem.peek32(STACK_TOP - 12)).toBe(CODE)
    expect(m.cpu.regs[Reg.ECX]).toBe(2)
  })

  it("POPF that clears TF still traps after itself; MOV SS defers the trap past the next instruction; INT n does not trap", () => {
    // popfd of an image with TF clear
    const q = protectedMode(hex("9d 90"))
    setGate(q, 1, HANDLER)
    q.cpu.regs[Reg.ESP] = STACK_TOP - 4
    q.mem.load(STACK_TOP - 4, le32(2))
    q.cpu.setEflags(0x2 | TF)
    q.cpu.run(1)
    expect(q.cpu.eip).toBe(HANDLER)
    expect(q.mem.peek32(STACK_TOP - 12)).toBe(CODE + 1)
    // mov ss, ax; nop: one trap, after the nop.
    const s = protectedMode(hex("8e d0 90 90"))
    setGate(s, 1, HANDLER)
    s.cpu.regs[Reg.EAX] = SEL.data32
    s.cpu.setEflags(0x2 | TF)
    s.cpu.run(1)
    expect(s.cpu.eip).toBe(CODE + 2)
    s.cpu.run(1)
    expect(s.cpu.eip).toBe(HANDLER)
    expect(s.mem.peek32(STACK_TOP - 12)).toBe(CODE + 3)
    // int 0x20 with TF: the handler is entered, no #DB on top.
    const i = protectedMode(hex("cd 20"))
    setGate(i, 0x20, 0x4100)
    setGate(i, 1, HANDLER)
    i.cpu.setEflags(0x2 | TF)
    i.cpu.run(1)
    expect(i.cpu.eip).toBe(0x4100)
  })
})

describe("the interrupt shadow", () => {
  it("STI that sets IF blocks for one instruction; STI with IF already set does not", () => {
    const m = protectedMode(hex("fb 90 fb"))
    m.cpu.run(1)
    expect(m.cpu.interruptShadow).toBe(1)
    m.cpu.run(1)
    expect(m.cpu.interruptShadow).toBe(0)
    m.cpu.run(1)
    expect(m.cpu.interruptShadow).toBe(0)
  })

  it("MOV SS and POP SS block for one instruction (blocking by MOV SS); LSS does not", () => {
    // mov ss, ax; nop; push eax; pop ss; lss esp, [0x2000]
    const m = protectedMode(hex("8e d0 90 50 17 0f b2 25 00 20 00 00"))
    m.mem.load(0x2000, [...le32(0x7000), SEL.data32, 0])
    m.cpu.regs[Reg.EAX] = SEL.data32
    m.cpu.run(1)
    expect(m.cpu.interruptShadow).toBe(2)
    m.cpu.run(1)
    expect(m.cpu.interruptShadow).toBe(0)
    m.cpu.run(2)
    expect(m.cpu.interruptShadow).toBe(2)
    m.cpu.run(1)
    expect(m.cpu.interruptShadow).toBe(0)
    expect(m.cpu.regs[Reg.ESP]).toBe(0x7000)
  })
})

describe("#AC and the double-fault rules", () => {
  it("#AC(0) on a misaligned access at CPL 3 with CR0.AM and EFLAGS.AC; not at CPL 0, nor with either bit clear", () => {
    const run = (ring3: boolean, am: boolean, ac: boolean, code = "8b 05 01 20 00 00") => {
      const m = protectedMode(hex(code))
      if (ring3) {
        toRing3(m)
        // A conforming ring-0 handler keeps CPL 3: no TSS needed.
        m.mem.load(0x500 + SEL.executeOnly, [0xff, 0xff, 0, 0, 0, 0x9e, 0xcf, 0])
      }
      setGate(m, 17, HANDLER, 0xe, 0, ring3 ? SEL.executeOnly : SEL.code32)
      if (am) m.cpu.cr0 = (m.cpu.cr0 | (1 << 18)) >>> 0
      m.cpu.setEflags(0x2 | (ac ? AC : 0))
      m.cpu.run(1)
      return m
    }
    const hit = run(true, true, true)
    expect(hit.cpu.eip).toBe(HANDLER)
    expect(hit.mem.peek32(STACK_TOP - 16)).toBe(0)
    expect(hit.mem.peek32(STACK_TOP - 12)).toBe(CODE)
    expect(run(false, true, true).cpu.eip).toBe(CODE + 6)
    expect(run(true, false, true).cpu.eip).toBe(CODE + 6)
    expect(run(true, true, false).cpu.eip).toBe(CODE + 6)
    // Aligned: no fault.
    expect(run(true, true, true, "8b 05 04 20 00 00").cpu.eip).toBe(CODE + 6)
    // SGDT to a 4-aligned address is aligned as a whole (its base part at +2 is not checked on its own).
    expect(run(true, true, true, "0f 01 05 04 20 00 00").cpu.eip).toBe(CODE + 7)
    expect(run(true, true, true, "0f 01 05 02 20 00 00").cpu.eip).toBe(HANDLER)
    // CMPXCHG8B needs 8-byte alignment.
    expect(run(true, true, true, "0f c7 0d 04 20 00 00").cpu.eip).toBe(HANDLER)
    expect(run(true, true, true, "0f c7 0d 08 20 00 00").cpu.eip).toBe(CODE + 7)
  })

  it("#PF whose gate is not present becomes #DF (error code 0); with no #DF gate, a triple fault", () => {
    const m = protectedMode(hex("a1 00 00 40 00"))
    // Paging with an empty directory except an identity map of the first 4 MiB.
    const PD = 0x10000
    const PT = 0x11000
    for (let i = 0; i < 0x110; i++) m.mem.load(PT + i * 4, le32((i << 12) | 3))
    m.mem.load(PD, le32(PT | 3))
    m.cpu.cr3 = PD
    m.cpu.cr0 = 0xe0000011
    setGate(m, 8, HANDLER)
    m.mem.bytes[0x800 + 14 * 8 + 5] = 0x0e
    m.cpu.run(1)
    expect(m.cpu.eip).toBe(HANDLER)
    expect(m.cpu.cr2).toBe(0x400000)
    expect(m.mem.peek32(STACK_TOP - 16)).toBe(0)
    const t = protectedMode(hex("a1 00 00 40 00"))
    for (let i = 0; i < 0x110; i++) t.mem.load(PT + i * 4, le32((i << 12) | 3))
    t.mem.load(PD, le32(PT | 3))
    t.cpu.cr3 = PD
    t.cpu.cr0 = 0xe0000011
    expect(t.cpu.run(1)).toBe(CpuStop.TripleFault)
  })
})

describe("DR7 breakpoints, LOCK validity, #NM and the IRET task-return checks", () => {
  it("an execute breakpoint is a #DB fault before the instruction (RF pushed set); IRET with RF then runs it once", () => {
    // nop; nop(bp); hlt — handler: iret
    const m = protectedMode(hex("90 90 f4"))
    setGate(m, 1, HANDLER)
    m.mem.load(HANDLER, hex("cf"))
    m.cpu.dr[0] = CODE + 1
    m.cpu.dr[7] = 0x401
    m.cpu.debugRegistersChanged()
    m.cpu.run(2)
    expect(m.cpu.eip).toBe(HANDLER)
    expect(m.mem.peek32(STACK_TOP - 12)).toBe(CODE + 1)
    expect(m.mem.peek32(STACK_TOP - 4) & (1 << 16)).toBe(1 << 16)
    expect(m.cpu.dr[6] & 0xf).toBe(1)
    // iret restores RF: the breakpointed nop runs, then RF clears and hlt follows.
    expect(m.cpu.run(10)).toBe(CpuStop.Stop)
    expect(m.cpu.eip).toBe(CODE + 3)
    expect(m.cpu.getEflags() & (1 << 16)).toBe(0)
  })

  it("a write breakpoint traps after the writing instruction, not on a read; the write is done", () => {
    // mov eax, [0x2000]; mov dword [0x2000], 0x77; nop
    const m = protectedMode(hex("a1 00 20 00 00 c7 05 00 20 00 00 77 00 00 00 90"))
    setGate(m, 1, HANDLER)
    // DR1 = 0x2002, length 4 (aligned down to 0x2000), R/W = 01, L1.
    m.cpu.dr[1] = 0x2002
    m.cpu.dr[7] = 0x00d00404
    m.cpu.debugRegistersChanged()
    m.cpu.run(1)
    expect(m.cpu.eip).toBe(CODE + 5)
    m.cpu.run(1)
    expect(m.cpu.eip).toBe(HANDLER)
    expect(m.mem.peek32(STACK_TOP - 12)).toBe(CODE + 15)
    expect(m.mem.peek32(0x2000)).toBe(0x77)
    expect(m.cpu.dr[6] & 0xf).toBe(2)
  })

  it("LOCK is #UD on a register destination, a non-RMW instruction or CMP; accepted on a memory RMW", () => {
    for (const code of ["f0 90", "f0 01 cb", "f0 39 03", "f0 8b 03", "f0 0f a3 03"]) {
      const m = protectedMode(hex(code))
      setGate(m, 6, HANDLER)
      m.cpu.regs[Reg.EBX] = 0x2000
      m.cpu.run(1)
      expect(m.cpu.eip, code).toBe(HANDLER)
    }
    for (const code of ["f0 01 03", "f0 0f c1 03", "f0 ff 03", "f0 0f ba 2b 01", "f0 87 03"]) {
      const m = protectedMode(hex(code))
      m.cpu.regs[Reg.EBX] = 0x2000
      m.cpu.run(1)
      expect(m.cpu.eip, code).toBe(CODE + hex(code).length)
    }
  })

  it("#NM: FWAIT with CR0.MP and TS; an x87 instruction with EM or TS", () => {
    const w = protectedMode(hex("9b"))
    setGate(w, 7, HANDLER)
    w.cpu.cr0 = (w.cpu.cr0 | 0xa) >>> 0
    w.cpu.run(1)
    expect(w.cpu.eip).toBe(HANDLER)
    const x = protectedMode(hex("d9 e8"))
    setGate(x, 7, HANDLER)
    x.cpu.cr0 = (x.cpu.cr0 | 0x4) >>> 0
    x.cpu.run(1)
    expect(x.cpu.eip).toBe(HANDLER)
  })

  it("IRET with NT set checks the TSS back link: #TS(link) unless it is a busy TSS", () => {
    const m = protectedMode(hex("cf"))
    setGate(m, 10, HANDLER)
    m.cpu.trBase = 0x9000
    m.mem.load(0x9000, [SEL.data32, 0])
    m.cpu.setEflags(0x2 | (1 << 14))
    m.cpu.run(1)
    expect(m.cpu.eip).toBe(HANDLER)
    expect(m.mem.peek32(STACK_TOP - 16)).toBe(SEL.data32)
  })
})

