import { describe, expect, it } from "vitest"
import { IF, IOPL, ZF } from "../../../src/kernel/cpu/alu.ts"
import { CpuStop, Reg, Seg } from "../../../src/kernel/cpu/cpu.ts"
import { CODE, descriptor, GDT, hex, type Machine, protectedMode, SEL, setGate, STACK_TOP, testGdt } from "../../support/cpuHarness.ts"
import { le32 } from "../../support/programs.ts"

const TSS = 0x9000
const LDT = 0xa000
const RING0_STACK = 0x7000
const HANDLER = 0x4000
const IO_MAP = 0x68
/** The bitmap covers ports 0-255, then the trailing all-ones byte. */
const TSS_LIMIT = IO_MAP + 32
const R3 = { code: 0x43, data: 0x4b, tss: 0x50, gate: 0x5b, ldt: 0x60 } as const

const callGate = (selector: number, offset: number, dpl: number, count: number): number[] => [
  ...le32(((selector & 0xffff) << 16) | (offset & 0xffff)),
  ...le32((offset & 0xffff0000) | 0x8000 | (dpl << 13) | (0xc << 8) | count)
]

/** Flat PM with ring-3 code/data, a 32-bit TSS (ESP0 0x7000, SS0 data32, an I/O bitmap) in TR, a call gate and an LDT descriptor. */
const ring3 = (code: string, ring = 3): Machine => {
  const m = protectedMode(hex(code))
  const gdt = [
    ...testGdt(),
    ...descriptor(0, 0xfffff, 0xfa, 0xc),
    ...descriptor(0, 0xfffff, 0xf2, 0xc),
    ...descriptor(TSS, TSS_LIMIT, 0x89, 0),
    ...callGate(SEL.code32, HANDLER, 3, 2),
    ...descriptor(LDT, 0xf, 0x82, 0)
  ]
  m.mem.load(GDT, gdt)
  m.cpu.gdtrLimit = gdt.length - 1
  m.mem.load(TSS + 4, le32(RING0_STACK))
  m.mem.load(TSS + 8, le32(SEL.data32))
  m.mem.load(TSS + 0x66, [IO_MAP, 0])
  m.mem.load(TSS + TSS_LIMIT, [0xff])
  m.cpu.trSelector = R3.tss
  m.cpu.trBase = TSS
  m.cpu.trLimit = TSS_LIMIT
  m.cpu.trAttr = 0x8b
  if (ring === 3) {
    for (let s = 0; s < 6; s++) {
      m.cpu.segSelector[s] = R3.data
      m.cpu.segAttr[s] = 0xc0f3
    }
    m.cpu.segSelector[Seg.CS] = R3.code
    m.cpu.segAttr[Seg.CS] = 0xc0fb
  }
  return m
}

describe("privilege levels and the TSS", () => {
  it("INT n from ring 3 through a DPL-3 gate switches to SS0:ESP0 and pushes SS, ESP, EFLAGS, CS, EIP; IRET returns to ring 3", () => {
    // ring 3: int 0x80; handler: mov ds, 0x10 (via ax); iret
    const m = ring3("cd 80 f4")
    setGate(m, 0x80, HANDLER, 0xe, 3)
    m.mem.load(HANDLER, hex("66 b8 10 00 8e d8 cf"))
    m.cpu.setEflags(0x2 | IF)
    m.cpu.run(1)
    expect(m.cpu.segSelector[Seg.CS]).toBe(SEL.code32)
    expect(m.cpu.segSelector[Seg.SS]).toBe(SEL.data32)
    expect(m.cpu.eip).toBe(HANDLER)
    expect(m.cpu.regs[Reg.ESP]).toBe(RING0_STACK - 20)
    expect([16, 12, 8, 4, 0].map((o) => m.mem.peek32(RING0_STACK - 20 + o))).toEqual([R3.data, STACK_TOP, 0x2 | IF, R3.code, CODE + 2])
    expect(m.cpu.getEflags() & IF).toBe(0)
    // The data segments keep their ring-3 selectors.
    expect(m.cpu.segSelector[Seg.ES]).toBe(R3.data)
    m.cpu.run(3)
    expect(m.cpu.segSelector[Seg.CS]).toBe(R3.code)
    expect(m.cpu.segSelector[Seg.SS]).toBe(R3.data)
    expect(m.cpu.regs[Reg.ESP]).toBe(STACK_TOP)
    expect(m.cpu.eip).toBe(CODE + 2)
    expect(m.cpu.getEflags() & IF).toBe(IF)
    // DS held a DPL-0 segment: IRET to ring 3 made it null; ES (DPL 3) stays.
    expect(m.cpu.segSelector[Seg.DS]).toBe(0)
    expect(m.cpu.segSelector[Seg.ES]).toBe(R3.data)
  })

  it("INT n through a DPL-0 gate from ring 3 is #GP(vector*8+2); an exception ignores the gate DPL", () => {
    const m = ring3("cd 80")
    setGate(m, 0x80, HANDLER, 0xe, 0)
    setGate(m, 13, 0x4100)
    m.cpu.run(1)
    expect(m.cpu.eip).toBe(0x4100)
    expect(m.cpu.regs[Reg.ESP]).toBe(RING0_STACK - 24)
    expect(m.mem.peek32(RING0_STACK - 24)).toBe(0x80 * 8 + 2)
    expect(m.mem.peek32(RING0_STACK - 20)).toBe(CODE)

    const u = ring3("0f 0b")
    setGate(u, 6, HANDLER, 0xe, 0)
    u.cpu.run(1)
    expect(u.cpu.eip).toBe(HANDLER)
    expect(u.cpu.segSelector[Seg.SS]).toBe(SEL.data32)
  })

  it("a bad SS0 in the TSS is #TS(SS0 selector, EXT); a TSS too short for ESP0 is #TS(TR)", () => {
    const m = ring3("0f 0b")
    setGate(m, 6, HANDLER, 0xe, 0)
    setGate(m, 10, 0x4200, 0xe, 0)
    m.mem.load(TSS + 8, le32(SEL.code32))
    // #UD → stack switch fails (#TS), which is contributory but #UD is benign: #TS is delivered, and fails the same way → #DF → no gate → triple fault.
    expect(m.cpu.run(1)).toBe(CpuStop.TripleFault)

    const n = ring3("0f 0b")
    setGate(n, 6, HANDLER, 0xe, 0)
    n.cpu.trLimit = 8
    expect(n.cpu.run(1)).toBe(CpuStop.TripleFault)
  })

  it("a far CALL through a call gate to ring 0 copies the parameters; RETF n returns to ring 3", () => {
    // push 0x11111111; push 0x22222222; call far 0x5b:0; hlt — handler: retf 8
    const m = ring3("68 11 11 11 11 68 22 22 22 22 9a 00 00 00 00 5b 00 f4")
    m.mem.load(HANDLER, hex("ca 08 00"))
    m.cpu.run(3)
    expect(m.cpu.segSelector[Seg.CS]).toBe(SEL.code32)
    expect(m.cpu.segSelector[Seg.SS]).toBe(SEL.data32)
    expect(m.cpu.eip).toBe(HANDLER)
    const sp = RING0_STACK - 24
    expect(m.cpu.regs[Reg.ESP]).toBe(sp)
    expect([0, 4, 8, 12, 16, 20].map((o) => m.mem.peek32(sp + o))).toEqual([CODE + 17, R3.code, 0x22222222, 0x11111111, STACK_TOP - 8, R3.data])
    m.cpu.run(1)
    expect(m.cpu.segSelector[Seg.CS]).toBe(R3.code)
    expect(m.cpu.segSelector[Seg.SS]).toBe(R3.data)
    expect(m.cpu.eip).toBe(CODE + 17)
    expect(m.cpu.regs[Reg.ESP]).toBe(STACK_TOP)
  })

  it("at ring 0, a far JMP through a call gate goes to the gate's target; a far CALL pushes CS:EIP with no stack switch", () => {
    const j = ring3("ea 00 00 00 00 58 00", 0)
    j.cpu.run(1)
    expect([j.cpu.segSelector[Seg.CS], j.cpu.eip, j.cpu.regs[Reg.ESP]]).toEqual([SEL.code32, HANDLER, STACK_TOP])
    const c = ring3("9a 00 00 00 00 58 00", 0)
    c.cpu.run(1)
    expect([c.cpu.segSelector[Seg.CS], c.cpu.eip, c.cpu.regs[Reg.ESP]]).toEqual([SEL.code32, HANDLER, STACK_TOP - 8])
    expect([c.mem.peek32(STACK_TOP - 8), c.mem.peek32(STACK_TOP - 4)]).toEqual([CODE + 7, SEL.code32])
    // A not-present gate is #NP(gate).
    const n = ring3("9a 00 00 00 00 58 00", 0)
    setGate(n, 11, 0x4100)
    n.mem.bytes[GDT + 0x58 + 5] &= 0x7f
    n.cpu.run(1)
    expect(n.cpu.eip).toBe(0x4100)
    expect(n.mem.peek32(STACK_TOP - 16)).toBe(0x58)
  })

  it("a far JMP through a call gate to a non-conforming ring-0 segment from ring 3 is #GP(target)", () => {
    const m = ring3("ea 00 00 00 00 5b 00")
    setGate(m, 13, 0x4100)
    m.cpu.run(1)
    expect(m.cpu.eip).toBe(0x4100)
    expect(m.mem.peek32(RING0_STACK - 24)).toBe(SEL.code32)
  })

  it("the I/O permission bitmap allows a port whose bit is clear and faults on a set bit or past the TSS limit", () => {
    // out 0x80, al; in al, 0x81
    const m = ring3("e6 80 e4 81")
    setGate(m, 13, 0x4100)
    m.mem.load(TSS + IO_MAP + 0x10, [0x02])
    m.cpu.run(1)
    expect(m.exits.ports).toHaveLength(1)
    expect(m.cpu.eip).toBe(CODE + 2)
    m.cpu.run(1)
    expect(m.cpu.eip).toBe(0x4100)
    expect(m.mem.peek32(RING0_STACK - 24)).toBe(0)
    expect(m.exits.ports).toHaveLength(1)
    // Port 0x3f8 is past the bitmap: #GP. With IOPL 3 the bitmap is not consulted.
    const n = ring3("66 ba f8 03 ee")
    setGate(n, 13, 0x4100)
    n.cpu.run(2)
    expect(n.cpu.eip).toBe(0x4100)
    const o = ring3("66 ba f8 03 ee")
    o.cpu.setEflags(0x2 | IOPL)
    o.cpu.run(2)
    expect(o.exits.ports).toEqual([expect.objectContaining({ direction: "out", port: 0x3f8 })])
    // A word access needs both ports' bits clear.
    const w = ring3("66 e7 7f")
    setGate(w, 13, 0x4100)
    w.mem.load(TSS + IO_MAP + 0x10, [0x01])
    w.cpu.run(1)
    expect(w.cpu.eip).toBe(0x4100)
  })

  it("LTR marks the TSS busy and STR reads TR; LLDT loads the LDT and TI=1 selectors use it; SLDT reads LDTR", () => {
    // mov ax, 0x50; ltr ax; str bx; mov ax, 0x60; lldt ax; sldt ecx; mov ax, 0x0c; mov es, ax
    const m = ring3("66 b8 50 00 0f 00 d8 0f 00 cb 66 b8 60 00 0f 00 d0 0f 00 c1 66 b8 0c 00 8e c0", 0)
    m.cpu.trSelector = 0
    m.cpu.regs[Reg.ECX] = 0xffffffff
    m.mem.load(LDT + 8, descriptor(0x20000, 0xff, 0x92, 0x4))
    m.cpu.run(8)
    expect(m.cpu.trSelector).toBe(R3.tss)
    expect([m.cpu.trBase, m.cpu.trLimit, m.cpu.trAttr]).toEqual([TSS, TSS_LIMIT, 0x8b])
    expect(m.mem.bytes[GDT + R3.tss + 5]).toBe(0x8b)
    expect(m.cpu.regs[Reg.EBX] & 0xffff).toBe(R3.tss)
    expect(m.cpu.ldtrSelector).toBe(R3.ldt)
    expect(m.cpu.regs[Reg.ECX]).toBe(R3.ldt)
    expect(m.cpu.segBase[Seg.ES]).toBe(0x20000)
    expect(m.cpu.segLimit[Seg.ES]).toBe(0xff)
    // The accessed bit was set in the LDT.
    expect(m.mem.bytes[LDT + 8 + 5]).toBe(0x93)
    // LTR of a busy TSS is #GP(selector).
    const n = ring3("66 b8 50 00 0f 00 d8", 0)
    setGate(n, 13, 0x4100)
    n.mem.bytes[GDT + R3.tss + 5] = 0x8b
    n.cpu.run(2)
    expect(n.cpu.eip).toBe(0x4100)
    expect(n.mem.peek32(STACK_TOP - 16)).toBe(R3.tss)
  })

  it("LAR/LSL/VERR/VERW report visibility in ZF; ARPL raises an RPL", () => {
    // lar eax, ecx; lsl edx, ecx
    const m = ring3("0f 02 c1 0f 03 d1", 0)
    m.cpu.regs[Reg.ECX] = SEL.smallData
    m.cpu.run(2)
    expect(m.cpu.regs[Reg.EAX]).toBe(0x00409200)
    expect(m.cpu.regs[Reg.EDX]).toBe(0xff)
    expect(m.cpu.getEflags() & ZF).toBe(ZF)
    // From ring 3 a DPL-0 data segment is invisible: ZF = 0, destination unchanged.
    const r3 = ring3("0f 03 d1 0f 00 e1 0f 00 e9")
    r3.cpu.regs[Reg.ECX] = SEL.data32
    r3.cpu.regs[Reg.EDX] = 0x1234
    r3.cpu.run(1)
    expect(r3.cpu.getEflags() & ZF).toBe(0)
    expect(r3.cpu.regs[Reg.EDX]).toBe(0x1234)
    // verr/verw on the ring-3 data segment: readable and writable.
    r3.cpu.regs[Reg.ECX] = R3.data
    r3.cpu.run(1)
    expect(r3.cpu.getEflags() & ZF).toBe(ZF)
    r3.cpu.regs[Reg.ECX] = R3.code
    r3.cpu.run(1)
    expect(r3.cpu.getEflags() & ZF).toBe(0)
    // LSL on a TSS works; on a call gate it does not (LAR does).
    const s = ring3("0f 03 d1 0f 03 d3 0f 02 c3", 0)
    s.cpu.regs[Reg.ECX] = R3.tss
    s.cpu.regs[Reg.EBX] = R3.gate & ~3
    s.cpu.run(1)
    expect(s.cpu.regs[Reg.EDX]).toBe(TSS_LIMIT)
    s.cpu.run(1)
    expect(s.cpu.getEflags() & ZF).toBe(0)
    s.cpu.run(1)
    expect(s.cpu.getEflags() & ZF).toBe(ZF)
    expect(s.cpu.regs[Reg.EAX]).toBe(0x0000ec00)
    // arpl ax, bx
    const a = ring3("63 d8 63 d8", 0)
    a.cpu.regs[Reg.EAX] = 0x10
    a.cpu.regs[Reg.EBX] = 0x3
    a.cpu.run(1)
    expect(a.cpu.regs[Reg.EAX]).toBe(0x13)
    expect(a.cpu.getEflags() & ZF).toBe(ZF)
    a.cpu.run(1)
    expect(a.cpu.getEflags() & ZF).toBe(0)
  })

  it("a push onto the new stack past its limit is #SS(new SS) with the old SS:ESP intact; IRET to a bad SS is #GP(SS)", () => {
    const m = ring3("cd 80")
    setGate(m, 0x80, HANDLER, 0xe, 3)
    // SS0 = 0x68: a ring-0 data segment whose limit (0x6000) is below ESP0.
    m.mem.load(GDT + 0x68, descriptor(0, 0x6000, 0x92, 0x4))
    m.cpu.gdtrLimit = 0x6f
    m.mem.load(TSS + 8, le32(0x68))
    // #SS goes to a conforming ring-0 segment: no stack switch, so it lands on the ring-3 stack for the test to read.
    m.mem.load(GDT + SEL.executeOnly, descriptor(0, 0xfffff, 0x9e, 0xc))
    setGate(m, 12, 0x4100, 0xe, 0, SEL.executeOnly)
    m.cpu.run(1)
    expect(m.cpu.eip).toBe(0x4100)
    expect(m.cpu.segSelector[Seg.SS]).toBe(R3.data)
    expect(m.cpu.regs[Reg.ESP]).toBe(STACK_TOP - 16)
    expect(m.mem.peek32(STACK_TOP - 16)).toBe(0x68)
    expect(m.mem.peek32(STACK_TOP - 12)).toBe(CODE)

    // IRET from ring 0 to ring 3 with an SS whose RPL is not 3.
    const r = ring3("cf", 0)
    setGate(r, 13, 0x4100)
    r.cpu.regs[Reg.ESP] = 0x7000 - 20
    r.mem.load(0x7000 - 20, [...le32(CODE), ...le32(R3.code), ...le32(2), ...le32(STACK_TOP), ...le32(R3.data & ~3)])
    r.cpu.run(1)
    expect(r.cpu.eip).toBe(0x4100)
    expect(r.mem.peek32(0x7000 - 20 - 16)).toBe(R3.data & ~3)
  })

  describe("paging from ring 3", () => {
    const PD = 0x10000
    const PT0 = 0x11000
    /** Identity map of 0-1 MiB: user pages except the GDT/IDT page (0) and the TSS page (9), which are supervisor-only. */
    const pagedRing3 = (code: string): Machine => {
      const m = ring3(code)
      for (let i = 0; i < 0x100; i++) m.mem.load(PT0 + i * 4, le32((i << 12) | 0x7))
      m.mem.load(PT0, le32(0x3))
      m.mem.load(PT0 + 9 * 4, le32(0x9003))
      m.mem.load(PT0 + 0x30 * 4, le32(0x30003))
      m.mem.load(PT0 + 0x31 * 4, le32(0x31005))
      m.mem.load(PT0 + 0x32 * 4, le32(0))
      m.mem.load(PD, le32(PT0 | 0x7))
      setGate(m, 14, HANDLER, 0xe, 0)
      m.mem.load(HANDLER, hex("f4"))
      m.cpu.cr3 = PD
      m.cpu.cr0 = 0xe0010011
      return m
    }
    for (const [what, code, cr2, error] of [
      ["a user read of a supervisor page", "a1 00 00 03 00", 0x30000, 5],
      ["a user write to a read-only user page", "89 1d 10 10 03 00", 0x31010, 7],
      ["a user read of a not-present page", "a1 08 20 03 00", 0x32008, 4],
      ["a user write to a not-present page", "89 1d 04 20 03 00", 0x32004, 6]
    ] as const) {
      it(`#PF for ${what}: error code ${error}, pushed on the ring-0 stack; the IDT, GDT and TSS pages are read as supervisor`, () => {
        const m = pagedRing3(code)
        expect(m.cpu.run(2)).toBe(CpuStop.Stop)
        expect(m.cpu.eip).toBe(HANDLER + 1)
        expect(m.cpu.cr2).toBe(cr2)
        expect(m.cpu.regs[Reg.ESP]).toBe(RING0_STACK - 24)
        expect(m.mem.peek32(RING0_STACK - 24)).toBe(error)
        expect(m.mem.peek32(RING0_STACK - 20)).toBe(CODE)
      })
    }
    it("ring 3 reads its own pages", () => {
      const m = pagedRing3("a1 00 10 03 00")
      m.mem.load(0x31000, le32(0xabcd))
      m.cpu.run(1)
      expect(m.cpu.regs[Reg.EAX]).toBe(0xabcd)
    })
  })
})
