import { describe, expect, it } from "vitest"
import { CpuStop, Reg, Seg } from "../../../src/kernel/cpu/cpu.ts"
import { CODE, hex, protectedMode, realMode, setVector } from "../../support/cpuHarness.ts"
import type { Machine } from "../../support/cpuHarness.ts"

const setRealSegment = (m: Machine, seg: Seg, selector: number) => {
  m.cpu.segSelector[seg] = selector
  m.cpu.segBase[seg] = selector << 4
}

/** Runs one instruction and returns AX/EAX. */
const load = (m: Machine): number => {
  expect(m.cpu.run(1)).toBe(CpuStop.Budget)
  return m.cpu.regs[Reg.EAX]
}

describe("16-bit addressing", () => {
  it("bx+si+disp8 uses DS", () => {
    const m = realMode(hex("8b 40 04"))
    setRealSegment(m, Seg.DS, 0x100)
    m.cpu.regs[Reg.EBX] = 0x10
    m.cpu.regs[Reg.ESI] = 0x20
    m.mem.load(0x1000 + 0x34, [0xcd, 0xab])
    expect(load(m)).toBe(0xabcd)
  })

  it("bp+di+disp8 uses SS, with a negative displacement", () => {
    const m = realMode(hex("8b 43 fe"))
    setRealSegment(m, Seg.DS, 0x100)
    setRealSegment(m, Seg.SS, 0x200)
    m.cpu.regs[Reg.EBP] = 0x10
    m.cpu.regs[Reg.EDI] = 2
    m.mem.load(0x2000 + 0x10, [0x11, 0x22])
    expect(load(m)).toBe(0x2211)
  })

  it("[bp] is encoded as bp+disp8 and uses SS; mod 0 rm 6 is a bare disp16 in DS", () => {
    const m = realMode(hex("8b 46 00 8b 0e 34 12"))
    setRealSegment(m, Seg.DS, 0x100)
    setRealSegment(m, Seg.SS, 0x200)
    m.cpu.regs[Reg.EBP] = 0x40
    m.mem.load(0x2040, [0x01, 0x02])
    m.mem.load(0x1000 + 0x1234, [0x03, 0x04])
    expect(load(m)).toBe(0x0201)
    m.cpu.run(1)
    expect(m.cpu.regs[Reg.ECX]).toBe(0x0403)
  })

  it("a segment override replaces the SS default of bp", () => {
    const m = realMode(hex("26 8b 46 02"))
    setRealSegment(m, Seg.ES, 0x300)
    setRealSegment(m, Seg.SS, 0x200)
    m.cpu.regs[Reg.EBP] = 0x10
    m.mem.load(0x3012, [0x55, 0x66])
    expect(load(m)).toBe(0x6655)
  })

  it("the offset wraps at 64 KiB", () => {
    const m = realMode(hex("8b 00"))
    setRealSegment(m, Seg.DS, 0x100)
    m.cpu.regs[Reg.EBX] = 0xfff0
    m.cpu.regs[Reg.ESI] = 0x20
    m.mem.load(0x1010, [0x77, 0x88])
    expect(load(m)).toBe(0x8877)
  })

  it("0x67 selects 32-bit addressing with SIB in real mode", () => {
    // addr32 mov eax, [ebx+ecx*4+0x10]
    const m = realMode(hex("67 66 8b 44 8b 10"))
    m.cpu.regs[Reg.EBX] = 0x3000
    m.cpu.regs[Reg.ECX] = 0x100
    m.mem.load(0x3410, [1, 2, 3, 4])
    expect(load(m)).toBe(0x04030201)
    expect(m.cpu.eip).toBe(CODE + 6)
  })

  it("a 32-bit offset beyond the real-mode limit raises #GP through the IVT", () => {
    const m = realMode(hex("67 8b 03"))
    m.cpu.regs[Reg.EBX] = 0x10000
    setVector(m, 13, 0x0000, 0x2000)
    expect(m.cpu.run(1)).toBe(CpuStop.Budget)
    expect(m.cpu.eip).toBe(0x2000)
    // The return address on the stack is the faulting instruction.
    expect(m.mem.peek16(0x8000 - 6)).toBe(CODE)
  })

  it("a word access at offset 0xffff exceeds the limit (#GP)", () => {
    const m = realMode(hex("8b 87 ff 7f"))
    m.cpu.regs[Reg.EBX] = 0x8000
    setVector(m, 13, 0, 0x2000)
    m.cpu.run(1)
    expect(m.cpu.eip).toBe(0x2000)
  })

  it("lea computes the offset without touching memory", () => {
    const m = realMode(hex("8d 40 ff"))
    m.cpu.regs[Reg.EBX] = 0x1234_0000
    m.cpu.regs[Reg.ESI] = 0
    m.cpu.regs[Reg.EAX] = 0xaaaa_5555
    const reads = m.mem.reads
    m.cpu.run(1)
    expect(m.cpu.regs[Reg.EAX]).toBe(0xaaaa_ffff)
    expect(m.mem.reads - reads).toBe(0) // the three instruction bytes are fetches, not data reads
  })
})

describe("32-bit addressing", () => {
  const withStackBase = (code: string) => {
    const m = protectedMode(hex(code))
    m.cpu.segBase[Seg.SS] = 0x10000
    return m
  }

  it("esp as SIB base uses SS", () => {
    const m = withStackBase("8b 44 24 08")
    m.cpu.regs[Reg.ESP] = 0x100
    m.mem.load(0x10108, [0xef, 0xbe, 0xad, 0xde])
    expect(load(m)).toBe(0xdeadbeef)
  })

  it("ebp as base uses SS", () => {
    const m = withStackBase("8b 45 04")
    m.cpu.regs[Reg.EBP] = 0x200
    m.mem.load(0x10204, [4, 3, 2, 1])
    expect(load(m)).toBe(0x01020304)
  })

  it("ebp as index keeps DS", () => {
    const m = withStackBase("8b 04 28")
    m.cpu.regs[Reg.EAX] = 0x3000
    m.cpu.regs[Reg.EBP] = 0x20
    m.mem.load(0x3020, [9, 0, 0, 0])
    expect(load(m)).toBe(9)
  })

  it("mod 0 with SIB base 5 is index*scale + disp32 in DS", () => {
    const m = withStackBase("8b 04 6d 00 01 00 00")
    m.cpu.regs[Reg.EBP] = 0x1800
    m.mem.load(0x3100, [0x78, 0x56, 0x34, 0x12])
    expect(load(m)).toBe(0x12345678)
  })

  it("scaled index, base and negative disp8 (lea)", () => {
    const m = protectedMode(hex("8d 44 d1 fc"))
    m.cpu.regs[Reg.ECX] = 0x1000
    m.cpu.regs[Reg.EDX] = 0x10
    expect(load(m)).toBe(0x1000 + 0x80 - 4)
  })

  it("an FS override adds the FS base", () => {
    const m = protectedMode(hex("64 8b 03"))
    m.cpu.segBase[Seg.FS] = 0x40000
    m.cpu.regs[Reg.EBX] = 0x10
    m.mem.load(0x40010, [0xaa, 0, 0, 0])
    expect(load(m)).toBe(0xaa)
  })

  it("0x67 in 32-bit code selects 16-bit addressing (bp default SS)", () => {
    // addr16 mov ax, [bp+si+4] with 0x66 for a 16-bit operand
    const m = withStackBase("67 66 8b 42 04")
    m.cpu.regs[Reg.EBP] = 0xffff_0100
    m.cpu.regs[Reg.ESI] = 0x10
    m.cpu.regs[Reg.EAX] = 0x1111_1111
    m.mem.load(0x10114, [0x22, 0x33])
    expect(load(m)).toBe(0x1111_3322)
  })

  it("a segment's limit applies: access past a small data segment is #GP", () => {
    const m = protectedMode(hex("8b 03"))
    m.cpu.segLimit[Seg.DS] = 0xff
    m.cpu.regs[Reg.EBX] = 0xfe
    // No IDT gate is present: #GP, then #NP on its gate → #DF, then #NP on that gate → triple fault.
    expect(m.cpu.run(1)).toBe(CpuStop.TripleFault)
    expect(m.cpu.eip).toBe(CODE)
  })
})
