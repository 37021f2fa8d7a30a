/**
 * LEAVE_CPU semantics: an access that leaves abandons the instruction with no
 * architectural state committed and EIP on its first byte; running again completes it.
 */
import { describe, expect, it } from "vitest"
import { CF, ZF } from "../../../src/kernel/cpu/alu.ts"
import { type Cpu, CpuStop, Reg, Seg } from "../../../src/kernel/cpu/cpu.ts"
import { CODE, hex, protectedMode, realMode, setVector, STACK_TOP } from "../../support/cpuHarness.ts"

const snapshot = (cpu: Cpu) => ({
  regs: [...cpu.regs],
  eip: cpu.eip,
  eflags: cpu.getEflags(),
  selectors: [...cpu.segSelector],
  bases: [...cpu.segBase],
  retired: cpu.retired
})

describe("an instruction whose second memory access leaves", () => {
  it("add [bx], ax: the write leaves; flags, memory and EIP are untouched; re-running completes it", () => {
    const m = realMode(hex("01 07"))
    m.cpu.regs[Reg.EBX] = 0x2000
    m.cpu.regs[Reg.EAX] = 0x0001
    m.mem.load(0x2000, [0xff, 0xff])
    m.mem.leaveOnWriteAt.add(0x2000)
    const before = snapshot(m.cpu)
    expect(m.cpu.run(10)).toBe(CpuStop.Left)
    expect(snapshot(m.cpu)).toEqual(before)
    expect(m.mem.peek16(0x2000)).toBe(0xffff)
    expect(m.cpu.run(1)).toBe(CpuStop.Budget)
    expect(m.mem.peek16(0x2000)).toBe(0)
    expect(m.cpu.getEflags() & (CF | ZF)).toBe(CF | ZF)
    expect(m.cpu.eip).toBe(CODE + 2)
    expect(m.cpu.retired).toBe(1)
  })

  it("push word [bx]: the stack write leaves and ESP is unchanged", () => {
    const m = realMode(hex("ff 37"))
    m.cpu.regs[Reg.EBX] = 0x2000
    m.mem.load(0x2000, [0x34, 0x12])
    m.mem.leaveOnWriteAt.add(STACK_TOP - 2)
    const before = snapshot(m.cpu)
    expect(m.cpu.run(1)).toBe(CpuStop.Left)
    expect(snapshot(m.cpu)).toEqual(before)
    m.cpu.run(1)
    expect(m.cpu.regs[Reg.ESP]).toBe(STACK_TOP - 2)
    expect(m.mem.peek16(STACK_TOP - 2)).toBe(0x1234)
  })

  it("xchg [ebx], eax and pop [ebx] in 32-bit code", () => {
    const m = protectedMode(hex("87 03 8f 03"))
    m.cpu.regs[Reg.EBX] = 0x3000
    m.cpu.regs[Reg.EAX] = 0xaaaa
    m.mem.load(0x3000, [0x55, 0, 0, 0])
    m.mem.load(STACK_TOP, [0x78, 0x56, 0x34, 0x12])
    m.mem.leaveOnWriteAt.add(0x3000)
    const before = snapshot(m.cpu)
    expect(m.cpu.run(1)).toBe(CpuStop.Left)
    expect(snapshot(m.cpu)).toEqual(before)
    m.cpu.run(1)
    expect(m.cpu.regs[Reg.EAX]).toBe(0x55)
    m.mem.leaveOnWriteAt.add(0x3003)
    const beforePop = snapshot(m.cpu)
    expect(m.cpu.run(1)).toBe(CpuStop.Left)
    expect(snapshot(m.cpu)).toEqual(beforePop)
    m.cpu.run(1)
    expect(m.mem.peek32(0x3000)).toBe(0x12345678)
    expect(m.cpu.regs[Reg.ESP]).toBe(STACK_TOP + 4)
  })

  it("near call: the push leaves and neither ESP nor EIP moves", () => {
    const m = protectedMode(hex("e8 fb 00 00 00"))
    m.mem.leaveOnWriteAt.add(STACK_TOP - 1)
    const before = snapshot(m.cpu)
    expect(m.cpu.run(1)).toBe(CpuStop.Left)
    expect(snapshot(m.cpu)).toEqual(before)
    m.cpu.run(1)
    expect(m.cpu.eip).toBe(CODE + 0x100)
    expect(m.mem.peek32(STACK_TOP - 4)).toBe(CODE + 5)
  })

  it("movsw: SI and DI advance only when the write completes", () => {
    const m = realMode(hex("a5"))
    m.cpu.regs[Reg.ESI] = 0x2000
    m.cpu.regs[Reg.EDI] = 0x3000
    m.mem.load(0x2000, [1, 2])
    m.mem.leaveOnWriteAt.add(0x3001)
    const before = snapshot(m.cpu)
    expect(m.cpu.run(1)).toBe(CpuStop.Left)
    expect(snapshot(m.cpu)).toEqual(before)
    m.cpu.run(1)
    expect(m.cpu.regs[Reg.ESI]).toBe(0x2002)
    expect(m.mem.peek16(0x3000)).toBe(0x0201)
  })

  it("real-mode INT n: a push that leaves commits nothing", () => {
    const m = realMode(hex("cd 21"))
    setVector(m, 0x21, 0x0200, 0x0010)
    m.cpu.setEflags(m.cpu.getEflags() | 0x200)
    m.mem.leaveOnWriteAt.add(STACK_TOP - 6)
    const before = snapshot(m.cpu)
    expect(m.cpu.run(1)).toBe(CpuStop.Left)
    expect(snapshot(m.cpu)).toEqual(before)
    m.cpu.run(1)
    expect(m.cpu.segSelector[Seg.CS]).toBe(0x200)
    expect(m.cpu.eip).toBe(0x10)
  })
})

describe("rep string instructions and bus calls that leave", () => {
  it("rep movsb: a leave in iteration k keeps iterations before k", () => {
    const m = realMode(hex("f3 a4 f4"))
    m.cpu.regs[Reg.ESI] = 0x2000
    m.cpu.regs[Reg.EDI] = 0x3000
    m.cpu.regs[Reg.ECX] = 5
    m.mem.load(0x2000, [1, 2, 3, 4, 5])
    m.mem.leaveOnWriteAt.add(0x3002)
    expect(m.cpu.run(100)).toBe(CpuStop.Left)
    expect(m.cpu.regs[Reg.ECX]).toBe(3)
    expect(m.cpu.regs[Reg.ESI]).toBe(0x2002)
    expect(m.cpu.eip).toBe(CODE)
    expect(m.cpu.retired).toBe(2)
    expect(m.cpu.run(100)).toBe(CpuStop.Stop)
    expect([...m.mem.bytes.subarray(0x3000, 0x3005)]).toEqual([1, 2, 3, 4, 5])
    expect(m.cpu.regs[Reg.ECX]).toBe(0)
  })

  it("IN: a port read that leaves changes nothing; the re-run gets the value", () => {
    const m = realMode(hex("ec"))
    m.cpu.regs[Reg.EDX] = 0x60
    m.cpu.regs[Reg.EAX] = 0x1234
    m.exits.leavePortAccesses = 1
    m.exits.inValue = () => 0x42
    const before = snapshot(m.cpu)
    expect(m.cpu.run(1)).toBe(CpuStop.Left)
    expect(snapshot(m.cpu)).toEqual(before)
    expect(m.cpu.run(1)).toBe(CpuStop.Budget)
    expect(m.cpu.regs[Reg.EAX]).toBe(0x1242)
  })

  it("an instruction fetch that leaves returns Left with EIP on the instruction", () => {
    const m = realMode(hex("90 b8 34 12"))
    m.mem.leaveAt.add(CODE + 2)
    expect(m.cpu.run(10)).toBe(CpuStop.Left)
    expect(m.cpu.eip).toBe(CODE + 1)
    expect(m.cpu.retired).toBe(1)
    m.cpu.run(1)
    expect(m.cpu.regs[Reg.EAX]).toBe(0x1234)
  })
})
