import { describe, expect, it } from "vitest"
import { CpuStop, Reg } from "../../../src/kernel/cpu/cpu.ts"
import { CODE, hex, protectedMode, realMode } from "../../support/cpuHarness.ts"

/** Exit qualification fields (SDM Vol. 3C, Table 28-5). */
const qual = (size: number, { isIn = false, string = false, rep = false, imm = false, port = 0 }) =>
  ((size - 1) | (isIn ? 8 : 0) | (string ? 16 : 0) | (rep ? 32 : 0) | (imm ? 64 : 0) | (port << 16)) >>> 0

describe("IN/OUT", () => {
  it("immediate and DX forms of every size report the Intel exit qualification", () => {
    // in al,60h; in ax,61h; in eax,62h; out 80h,al; out 81h,ax; out 82h,eax;
    // in al,dx; in ax,dx; in eax,dx; out dx,al; out dx,ax; out dx,eax
    const m = realMode(hex("e4 60 e5 61 66 e5 62 e6 80 e7 81 66 e7 82 ec ed 66 ed ee ef 66 ef"))
    m.cpu.regs[Reg.EDX] = 0xfedc
    m.exits.inValue = (port, size) => (size === 4 ? 0x89abcdef : size === 2 ? 0x4567 : port & 0xff)
    m.cpu.regs[Reg.EAX] = 0x11223344
    m.cpu.run(3)
    expect(m.cpu.regs[Reg.EAX]).toBe(0x89abcdef)
    m.cpu.regs[Reg.EAX] = 0xa1b2c3d4
    m.cpu.run(9)
    expect(m.cpu.eip).toBe(CODE + 22)
    expect(m.exits.ports).toEqual([
      { direction: "in", port: 0x60, size: 1, value: 0x60, qualification: qual(1, { isIn: true, imm: true, port: 0x60 }) },
      { direction: "in", port: 0x61, size: 2, value: 0x4567, qualification: qual(2, { isIn: true, imm: true, port: 0x61 }) },
      { direction: "in", port: 0x62, size: 4, value: 0x89abcdef, qualification: qual(4, { isIn: true, imm: true, port: 0x62 }) },
      { direction: "out", port: 0x80, size: 1, value: 0xd4, qualification: qual(1, { imm: true, port: 0x80 }) },
      { direction: "out", port: 0x81, size: 2, value: 0xc3d4, qualification: qual(2, { imm: true, port: 0x81 }) },
      { direction: "out", port: 0x82, size: 4, value: 0xa1b2c3d4, qualification: qual(4, { imm: true, port: 0x82 }) },
      { direction: "in", port: 0xfedc, size: 1, value: 0xdc, qualification: qual(1, { isIn: true, port: 0xfedc }) },
      { direction: "in", port: 0xfedc, size: 2, value: 0x4567, qualification: qual(2, { isIn: true, port: 0xfedc }) },
      { direction: "in", port: 0xfedc, size: 4, value: 0x89abcdef, qualification: qual(4, { isIn: true, port: 0xfedc }) },
      { direction: "out", port: 0xfedc, size: 1, value: 0xef, qualification: qual(1, { port: 0xfedc }) },
      { direction: "out", port: 0xfedc, size: 2, value: 0xcdef, qualification: qual(2, { port: 0xfedc }) },
      { direction: "out", port: 0xfedc, size: 4, value: 0x89abcdef, qualification: qual(4, { port: 0xfedc }) }
    ])
  })

  it("IN of a byte or word merges into EAX", () => {
    const m = realMode(hex("e4 60 e5 61"))
    m.exits.inValue = (_port, size) => (size === 1 ? 0xaa : 0xbbcc)
    m.cpu.regs[Reg.EAX] = 0x12345678
    m.cpu.run(1)
    expect(m.cpu.regs[Reg.EAX]).toBe(0x123456aa)
    m.cpu.run(1)
    expect(m.cpu.regs[Reg.EAX]).toBe(0x1234bbcc)
  })

  it("the kernel reads the instruction's start and length inside the bus call", () => {
    const m = protectedMode(hex("90 66 e5 61"))
    let seen: [number, number] | undefined
    m.exits.inValue = () => {
      seen = [m.cpu.instructionStart, m.cpu.instructionLength]
      return 0
    }
    m.cpu.run(2)
    expect(seen).toEqual([CODE + 1, 3])
  })
})

describe("INS/OUTS", () => {
  it("rep insb calls the port once per iteration, with the string and REP bits", () => {
    const m = realMode(hex("f3 6c f4"))
    m.cpu.regs[Reg.EDX] = 0x3f8
    m.cpu.regs[Reg.ECX] = 3
    m.cpu.regs[Reg.EDI] = 0x2000
    let next = 1
    m.exits.inValue = () => next++
    expect(m.cpu.run(10)).toBe(CpuStop.Stop)
    expect([...m.mem.bytes.subarray(0x2000, 0x2003)]).toEqual([1, 2, 3])
    expect(m.exits.ports.map((p) => p.qualification)).toEqual(
      Array(3).fill(qual(1, { isIn: true, string: true, rep: true, port: 0x3f8 }))
    )
    expect(m.cpu.regs[Reg.EDI]).toBe(0x2003)
  })

  it("outsw and rep outsb read memory (DF both ways) and report OUT string qualifications", () => {
    const m = realMode(hex("ef 6f fd f3 6e f4"))
    m.cpu.regs[Reg.EDX] = 0xe9
    m.cpu.regs[Reg.ESI] = 0x2000
    m.cpu.regs[Reg.ECX] = 2
    m.mem.load(0x2000, [0x34, 0x12, 0x56])
    m.cpu.run(2)
    // outsw then, after std, rep outsb backwards from 0x2002
    expect(m.exits.ports[1]).toMatchObject({ value: 0x1234, qualification: qual(2, { string: true, port: 0xe9 }) })
    m.cpu.run(10)
    expect(m.exits.ports.slice(2).map((p) => [p.value, p.qualification])).toEqual([
      [0x56, qual(1, { string: true, rep: true, port: 0xe9 })],
      [0x12, qual(1, { string: true, rep: true, port: 0xe9 })]
    ])
    expect(m.cpu.regs[Reg.ESI]).toBe(0x2000)
  })

  it("rep insd in 32-bit code uses ECX and EDI", () => {
    const m = protectedMode(hex("f3 6d f4"))
    m.cpu.regs[Reg.EDX] = 0x100
    m.cpu.regs[Reg.ECX] = 2
    m.cpu.regs[Reg.EDI] = 0x12000
    m.exits.inValue = () => 0xdeadbeef
    m.cpu.run(10)
    expect(m.mem.peek32(0x12004)).toBe(0xdeadbeef)
    expect(m.cpu.regs[Reg.EDI]).toBe(0x12008)
    expect(m.exits.ports[0].qualification).toBe(qual(4, { isIn: true, string: true, rep: true, port: 0x100 }))
  })
})
