import { describe, expect, it } from "vitest"
import { DF, ZF } from "../../../src/kernel/cpu/alu.ts"
import { CpuStop, Reg, Seg } from "../../../src/kernel/cpu/cpu.ts"
import { CODE, hex, realMode } from "../../support/cpuHarness.ts"

const SRC = 0x2000
const DST = 0x3000

const setup = (code: string, { df = false, count = 0 } = {}) => {
  const m = realMode(hex(code))
  m.cpu.regs[Reg.ESI] = SRC
  m.cpu.regs[Reg.EDI] = DST
  m.cpu.regs[Reg.ECX] = count
  if (df) m.cpu.setEflags(m.cpu.getEflags() | DF)
  return m
}

describe("rep movs", () => {
  it("executes one iteration per step, keeping EIP on the instruction until CX reaches 0", () => {
    const m = setup("f3 a4 f4", { count: 5 })
    m.mem.load(SRC, [1, 2, 3, 4, 5, 6])
    expect(m.cpu.run(2)).toBe(CpuStop.Budget)
    expect(m.cpu.eip).toBe(CODE)
    expect(m.cpu.regs[Reg.ECX]).toBe(3)
    expect([...m.mem.bytes.subarray(DST, DST + 6)]).toEqual([1, 2, 0, 0, 0, 0])
    expect(m.cpu.run(3)).toBe(CpuStop.Budget)
    expect(m.cpu.eip).toBe(CODE + 2)
    expect(m.cpu.retired).toBe(5)
    expect([...m.mem.bytes.subarray(DST, DST + 6)]).toEqual([1, 2, 3, 4, 5, 0])
    expect(m.cpu.regs[Reg.ESI]).toBe(SRC + 5)
    expect(m.cpu.regs[Reg.EDI]).toBe(DST + 5)
  })

  it("moves downwards when DF is set", () => {
    const m = setup("f3 a4 f4", { df: true, count: 3 })
    m.cpu.regs[Reg.ESI] = SRC + 2
    m.cpu.regs[Reg.EDI] = DST + 2
    m.mem.load(SRC, [7, 8, 9])
    m.cpu.run(10)
    expect([...m.mem.bytes.subarray(DST, DST + 3)]).toEqual([7, 8, 9])
    expect(m.cpu.regs[Reg.ESI]).toBe(SRC - 1)
    expect(m.cpu.regs[Reg.EDI]).toBe(DST - 1)
  })

  it("with CX = 0 does nothing and retires in one step", () => {
    const m = setup("f3 a4", { count: 0 })
    m.mem.load(SRC, [1])
    expect(m.cpu.run(1)).toBe(CpuStop.Budget)
    expect(m.cpu.eip).toBe(CODE + 2)
    expect(m.mem.bytes[DST]).toBe(0)
  })

  it("rep movsd copies dwords; the source segment can be overridden, the destination is always ES", () => {
    const m = setup("26 66 f3 a5 f4", { count: 2 })
    m.cpu.segSelector[Seg.ES] = 0x100
    m.cpu.segBase[Seg.ES] = 0x1000
    m.mem.load(0x1000 + SRC, [1, 2, 3, 4, 5, 6, 7, 8])
    m.cpu.run(10)
    expect([...m.mem.bytes.subarray(0x1000 + DST, 0x1000 + DST + 8)]).toEqual([1, 2, 3, 4, 5, 6, 7, 8])
    expect(m.cpu.regs[Reg.ESI]).toBe(SRC + 8)
  })

  it("16-bit addressing counts with CX and wraps SI/DI; 0x67 uses ECX/ESI/EDI", () => {
    const m = setup("f3 a4", { count: 0x1_0001 })
    m.cpu.regs[Reg.ESI] = 0xffff
    m.mem.load(0xffff, [0x42])
    m.cpu.run(1)
    expect(m.cpu.regs[Reg.ECX]).toBe(0x1_0000)
    expect(m.cpu.regs[Reg.ESI]).toBe(0)
    expect(m.cpu.eip).toBe(CODE + 2)

    const wide = setup("67 f3 a4", { count: 0x1_0001 })
    wide.cpu.regs[Reg.ESI] = 0xffff
    wide.cpu.run(1)
    expect(wide.cpu.regs[Reg.ECX]).toBe(0x1_0000)
    expect(wide.cpu.regs[Reg.ESI]).toBe(0x1_0000)
    expect(wide.cpu.eip).toBe(CODE)
  })
})

describe("rep stos and lods", () => {
  it("stosw fills upwards and downwards", () => {
    const up = setup("f3 ab f4", { count: 3 })
    up.cpu.regs[Reg.EAX] = 0xbeef
    up.cpu.run(10)
    expect(up.mem.peek16(DST)).toBe(0xbeef)
    expect(up.mem.peek16(DST + 4)).toBe(0xbeef)
    expect(up.cpu.regs[Reg.EDI]).toBe(DST + 6)

    const down = setup("f3 ab f4", { df: true, count: 3 })
    down.cpu.regs[Reg.EAX] = 0xcafe
    down.cpu.run(10)
    expect(down.mem.peek16(DST - 4)).toBe(0xcafe)
    expect(down.mem.peek16(DST - 6)).toBe(0)
    expect(down.cpu.regs[Reg.EDI]).toBe(DST - 6)
  })

  it("lodsw with DF set loads and decrements SI", () => {
    const m = setup("ad", { df: true })
    m.mem.load(SRC, [0x34, 0x12])
    m.cpu.run(1)
    expect(m.cpu.regs[Reg.EAX] & 0xffff).toBe(0x1234)
    expect(m.cpu.regs[Reg.ESI]).toBe(SRC - 2)
  })
})

describe("repe cmps and repne scas", () => {
  it("repe cmpsb stops at the first difference with the flags of that comparison", () => {
    const m = setup("f3 a6 f4", { count: 10 })
    m.mem.load(SRC, [1, 2, 3, 4])
    m.mem.load(DST, [1, 2, 5, 4])
    m.cpu.run(100)
    expect(m.cpu.regs[Reg.ECX]).toBe(7)
    expect(m.cpu.regs[Reg.ESI]).toBe(SRC + 3)
    expect(m.cpu.eip).toBe(CODE + 3)
    // Three iterations, then HLT.
    expect(m.cpu.retired).toBe(4)
    // 3 - 5: borrow, negative, not zero
    expect(m.cpu.getEflags() & 0x8d5).toBe(0x81 | 0x10)
  })

  it("repe cmpsb runs to CX = 0 on equal strings, leaving ZF set", () => {
    const m = setup("f3 a6 f4", { count: 3, df: true })
    m.cpu.regs[Reg.ESI] = SRC + 2
    m.cpu.regs[Reg.EDI] = DST + 2
    m.mem.load(SRC, [1, 2, 3])
    m.mem.load(DST, [1, 2, 3])
    m.cpu.run(100)
    expect(m.cpu.regs[Reg.ECX]).toBe(0)
    expect(m.cpu.getEflags() & ZF).toBe(ZF)
    expect(m.cpu.regs[Reg.EDI]).toBe(DST - 1)
  })

  it("repne scasb stops after the matching byte", () => {
    const m = setup("f2 ae f4", { count: 8 })
    m.cpu.regs[Reg.EAX] = 0x33
    m.mem.load(DST, [0x11, 0x22, 0x33, 0x44])
    m.cpu.run(100)
    expect(m.cpu.regs[Reg.EDI]).toBe(DST + 3)
    expect(m.cpu.regs[Reg.ECX]).toBe(5)
    expect(m.cpu.getEflags() & ZF).toBe(ZF)
  })

  it("repne scasb with DF set scans downwards and exhausts the count", () => {
    const m = setup("f2 ae f4", { count: 4, df: true })
    m.cpu.regs[Reg.EAX] = 0x99
    m.mem.load(DST - 3, [1, 2, 3, 4])
    m.cpu.run(100)
    expect(m.cpu.regs[Reg.ECX]).toBe(0)
    expect(m.cpu.regs[Reg.EDI]).toBe(DST - 4)
    expect(m.cpu.getEflags() & ZF).toBe(0)
    expect(m.cpu.retired).toBe(5)
  })
})
