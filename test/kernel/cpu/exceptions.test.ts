import { describe, expect, it } from "vitest"
import { AC, IF, OF, RF, TF } from "../../../src/kernel/cpu/alu.ts"
import { CpuStop, Reg, Seg } from "../../../src/kernel/cpu/cpu.ts"
import { CODE, hex, protectedMode, realMode, SEL, setGate, setVector, STACK_TOP } from "../../support/cpuHarness.ts"

const HANDLER = 0x4000

describe("real mode: interrupts and exceptions through the IVT", () => {
  it("INT n pushes FLAGS, CS, IP (after the instruction), clears IF/TF/AC; IRET returns", () => {
    const m = realMode(hex("cd 21 f4"))
    setVector(m, 0x21, 0x0300, 0x0010)
    m.mem.load(0x3010, hex("cf"))
    m.cpu.setEflags(0x2 | IF | TF | AC | 0x1)
    m.cpu.run(1)
    expect(m.cpu.segSelector[Seg.CS]).toBe(0x300)
    expect(m.cpu.segBase[Seg.CS]).toBe(0x3000)
    expect(m.cpu.eip).toBe(0x10)
    expect(m.cpu.getEflags() & (IF | TF | AC)).toBe(0)
    expect(m.cpu.regs[Reg.ESP]).toBe(STACK_TOP - 6)
    expect(m.mem.peek16(STACK_TOP - 2)).toBe(0x2 | IF | TF | 0x1)
    expect(m.mem.peek16(STACK_TOP - 4)).toBe(0)
    expect(m.mem.peek16(STACK_TOP - 6)).toBe(CODE + 2)
    m.cpu.run(1)
    expect(m.cpu.eip).toBe(CODE + 2)
    expect(m.cpu.segBase[Seg.CS]).toBe(0)
    expect(m.cpu.getEflags() & 0xffff).toBe(0x2 | IF | TF | 0x1)
    expect(m.cpu.regs[Reg.ESP]).toBe(STACK_TOP)
  })

  it("#DE on division by zero and on quotient overflow returns to the faulting instruction", () => {
    for (const [code, ax, bx] of [
      ["f6 f3", 0x1234, 0],
      ["f6 f3", 0x1000, 0x10],
      ["f6 fb", 0xff80, 0xff]
    ] as const) {
      const m = realMode(hex(code))
      setVector(m, 0, 0, HANDLER)
      m.cpu.regs[Reg.EAX] = ax
      m.cpu.regs[Reg.EBX] = bx
      expect(m.cpu.run(1)).toBe(CpuStop.Budget)
      expect(m.cpu.eip).toBe(HANDLER)
      expect(m.mem.peek16(STACK_TOP - 6)).toBe(CODE)
      expect(m.cpu.regs[Reg.EAX]).toBe(ax)
    }
  })

  it("#DE on a 64/32 quotient that does not fit; a fitting one divides", () => {
    const m = protectedMode(hex("f7 f1"))
    setGate(m, 0, HANDLER)
    m.cpu.regs[Reg.EDX] = 1
    m.cpu.regs[Reg.EAX] = 0
    m.cpu.regs[Reg.ECX] = 1
    m.cpu.run(1)
    expect(m.cpu.eip).toBe(HANDLER)
    // 0x1_0000_0005 / 3 = 0x5555_5557 rem 0
    const ok = protectedMode(hex("f7 f1 f7 f9"))
    ok.cpu.regs[Reg.EDX] = 1
    ok.cpu.regs[Reg.EAX] = 5
    ok.cpu.regs[Reg.ECX] = 3
    ok.cpu.run(1)
    expect([ok.cpu.regs[Reg.EAX], ok.cpu.regs[Reg.EDX]]).toEqual([0x55555557, 0])
    // idiv: -7 / 2 = -3 rem -1
    ok.cpu.regs[Reg.EDX] = 0xffffffff
    ok.cpu.regs[Reg.EAX] = -7 >>> 0
    ok.cpu.regs[Reg.ECX] = 2
    ok.cpu.run(1)
    expect([ok.cpu.regs[Reg.EAX], ok.cpu.regs[Reg.EDX]]).toEqual([-3 >>> 0, -1 >>> 0])
  })

  it("UD2 and undefined opcodes raise #UD; INT3 and INTO are traps (return after the instruction)", () => {
    for (const code of ["0f 0b", "0f ff", "fe f8", "8e c8"]) {
      const m = realMode(hex(code))
      setVector(m, 6, 0, HANDLER)
      m.cpu.run(1)
      expect(m.cpu.eip, code).toBe(HANDLER)
      expect(m.mem.peek16(STACK_TOP - 6)).toBe(CODE)
    }
    const bp = realMode(hex("cc"))
    setVector(bp, 3, 0, HANDLER)
    bp.cpu.run(1)
    expect(bp.cpu.eip).toBe(HANDLER)
    expect(bp.mem.peek16(STACK_TOP - 6)).toBe(CODE + 1)

    const into = realMode(hex("ce ce"))
    setVector(into, 4, 0, HANDLER)
    into.cpu.run(1)
    expect(into.cpu.eip).toBe(CODE + 1)
    into.cpu.setEflags(into.cpu.getEflags() | OF)
    into.cpu.run(1)
    expect(into.cpu.eip).toBe(HANDLER)
    expect(into.mem.peek16(STACK_TOP - 6)).toBe(CODE + 2)
  })

  it("HLT calls the bus, retires with EIP after it, and the stop request ends the run", () => {
    const m = realMode(hex("90 f4 90"))
    expect(m.cpu.run(100)).toBe(CpuStop.Stop)
    expect(m.exits.halts).toBe(1)
    expect(m.cpu.eip).toBe(CODE + 2)
    expect(m.cpu.retired).toBe(2)
  })
})

describe("protected mode: exceptions through the IDT", () => {
  it("#GP from a selector beyond the GDT limit is delivered through an interrupt gate with its error code", () => {
    const m = protectedMode(hex("8e d8"))
    setGate(m, 13, HANDLER)
    m.cpu.regs[Reg.EAX] = 0x80
    m.cpu.setEflags(0x2 | IF)
    expect(m.cpu.run(1)).toBe(CpuStop.Budget)
    expect(m.cpu.eip).toBe(HANDLER)
    expect(m.cpu.regs[Reg.ESP]).toBe(STACK_TOP - 16)
    expect(m.mem.peek32(STACK_TOP - 16)).toBe(0x80)
    expect(m.mem.peek32(STACK_TOP - 12)).toBe(CODE)
    expect(m.mem.peek32(STACK_TOP - 8)).toBe(SEL.code32)
    // A fault pushes EFLAGS with RF set; the interrupt gate clears IF.
    expect(m.mem.peek32(STACK_TOP - 4)).toBe(0x2 | IF | RF)
    expect(m.cpu.getEflags() & IF).toBe(0)
    expect(m.cpu.segSelector[Seg.DS]).toBe(SEL.data32)
  })

  it("INT n through a trap gate keeps IF and pushes no error code", () => {
    const m = protectedMode(hex("cd 40"))
    setGate(m, 0x40, HANDLER, 0xf)
    m.cpu.setEflags(0x2 | IF)
    m.cpu.run(1)
    expect(m.cpu.eip).toBe(HANDLER)
    expect(m.cpu.getEflags() & IF).toBe(IF)
    expect(m.cpu.regs[Reg.ESP]).toBe(STACK_TOP - 12)
    expect(m.mem.peek32(STACK_TOP - 12)).toBe(CODE + 2)
    expect(m.mem.peek32(STACK_TOP - 4)).toBe(0x2 | IF)
  })

  it("IRET returns from a same-privilege handler", () => {
    const m = protectedMode(hex("cd 40 f4"))
    setGate(m, 0x40, HANDLER)
    m.mem.load(HANDLER, hex("cf"))
    m.cpu.setEflags(0x2 | IF | 0x1)
    expect(m.cpu.run(10)).toBe(CpuStop.Stop)
    expect(m.cpu.eip).toBe(CODE + 3)
    expect(m.cpu.getEflags()).toBe(0x2 | IF | 0x1)
    expect(m.cpu.regs[Reg.ESP]).toBe(STACK_TOP)
  })

  it("segment faults: read-only write, null SS, null DS use, not-present segment", () => {
    const run = (code: string, setup: (m: ReturnType<typeof protectedMode>) => void) => {
      const m = protectedMode(hex(code))
      for (const v of [11, 12, 13]) setGate(m, v, HANDLER + v)
      setup(m)
      m.cpu.run(1)
      return { vector: m.cpu.eip - HANDLER, code: m.mem.peek32(m.cpu.regs[Reg.ESP]) }
    }
    // mov ds, ax (read-only data) ; mov [ebx], eax
    expect(run("8e d8 89 03", (m) => {
      m.cpu.regs[Reg.EAX] = SEL.readOnly
      m.cpu.run(1)
    })).toEqual({ vector: 13, code: 0 })
    // mov ss, ax with a null selector
    expect(run("8e d0", (m) => (m.cpu.regs[Reg.EAX] = 0))).toEqual({ vector: 13, code: 0 })
    // mov ds, ax with null: allowed; the next access faults
    expect(run("8e d8 8b 03", (m) => {
      m.cpu.regs[Reg.EAX] = 0
      m.cpu.run(1)
      expect(m.cpu.segSelector[Seg.DS]).toBe(0)
    })).toEqual({ vector: 13, code: 0 })
    // not present: #NP(selector)
    expect(run("8e d8", (m) => (m.cpu.regs[Reg.EAX] = SEL.notPresent))).toEqual({ vector: 11, code: SEL.notPresent })
    // loading SS with a read-only data segment: #GP(selector)
    expect(run("8e d0", (m) => (m.cpu.regs[Reg.EAX] = SEL.readOnly))).toEqual({ vector: 13, code: SEL.readOnly })
    // reading through an execute-only code segment: #GP(0)
    expect(run("8e d8", (m) => (m.cpu.regs[Reg.EAX] = SEL.executeOnly))).toEqual({ vector: 13, code: SEL.executeOnly })
  })

  it("a fault while delivering a fault becomes #DF with error code 0", () => {
    const m = protectedMode(hex("0f 0b"))
    // #UD is benign: its missing gate (#NP) is delivered normally; #NP's missing gate then causes #DF.
    setGate(m, 8, HANDLER)
    m.cpu.run(1)
    expect(m.cpu.eip).toBe(HANDLER)
    expect(m.mem.peek32(m.cpu.regs[Reg.ESP])).toBe(0)
    expect(m.mem.peek32(m.cpu.regs[Reg.ESP] + 4)).toBe(CODE)
  })

  it("a fault while delivering #DF is a triple fault", () => {
    const m = protectedMode(hex("90 8e d8"))
    m.cpu.idtrLimit = 0
    m.cpu.regs[Reg.EAX] = 0x80
    expect(m.cpu.run(10)).toBe(CpuStop.TripleFault)
    expect(m.cpu.eip).toBe(CODE + 1)
    expect(m.cpu.retired).toBe(1)
  })

  it("real mode: a stack that cannot take the frame escalates to a triple fault", () => {
    const m = realMode(hex("cd 21"))
    // A word pushed at SP 0xffff crosses the 64 KiB limit: #SS, which cannot be delivered either.
    m.cpu.regs[Reg.ESP] = 1
    expect(m.cpu.run(10)).toBe(CpuStop.TripleFault)
  })
})

describe("internal error for valid instructions the model does not implement", () => {
  it("x87 fld1 stops with its linear address and bytes; nothing is committed", () => {
    const m = realMode(hex("90 d9 e8"))
    m.cpu.segSelector[Seg.CS] = 0x100
    m.cpu.segBase[Seg.CS] = 0x1000
    m.cpu.eip = 0
    m.mem.load(0x1000, hex("90 d9 e8"))
    expect(m.cpu.run(10)).toBe(CpuStop.InternalError)
    expect(m.cpu.eip).toBe(1)
    expect(m.cpu.instructionStart).toBe(1)
    expect(m.cpu.retired).toBe(1)
    expect(m.cpu.internalError).toMatchObject({ address: 0x1001, bytes: [0xd9, 0xe8] })
    expect(m.cpu.internalError?.reason).toMatch(/x87/)
  })

  it("records prefixes, ModRM and displacement (fadd dword [ebx+0x12345678] with a segment override)", () => {
    const m = protectedMode(hex("64 d8 83 78 56 34 12"))
    expect(m.cpu.run(1)).toBe(CpuStop.InternalError)
    expect(m.cpu.internalError?.bytes).toEqual(hex("64 d8 83 78 56 34 12"))
    expect(m.cpu.internalError?.address).toBe(CODE)
  })

  it("RDPMC and SSE instructions stop too", () => {
    expect(protectedMode(hex("0f 33")).cpu.run(1)).toBe(CpuStop.InternalError)
    const sse = protectedMode(hex("0f 28 c1"))
    expect(sse.cpu.run(1)).toBe(CpuStop.InternalError)
    expect(sse.cpu.internalError?.bytes).toEqual(hex("0f 28 c1"))
  })
})
