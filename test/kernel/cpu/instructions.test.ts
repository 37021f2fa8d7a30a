import { describe, expect, it } from "vitest"
import { AF, CF, DF, IF, IOPL, OF, PF, RF, SF, ZF } from "../../../src/kernel/cpu/alu.ts"
import { CpuStop, Reg, Seg } from "../../../src/kernel/cpu/cpu.ts"
import { CODE, hex, protectedMode, realMode, SEL, setGate, STACK_TOP } from "../../support/cpuHarness.ts"
import type { Machine } from "../../support/cpuHarness.ts"

/** Protected-mode machine with registers preset, after running `steps` steps. */
const pm = (code: string, regs: Partial<Record<Reg, number>> = {}, steps = 1, flags = 0x2): Machine => {
  const m = protectedMode(hex(code))
  for (const [r, v] of Object.entries(regs)) m.cpu.regs[Number(r)] = v
  m.cpu.setEflags(flags)
  m.cpu.run(steps)
  return m
}
const r = (m: Machine, reg: Reg) => m.cpu.regs[reg]

describe("stack instructions", () => {
  it("PUSHF hides RF and VM; POPF at CPL 0 sets IOPL and IF and clears RF; a 16-bit POPF keeps the high word", () => {
    const m = pm("9c", {}, 1, 0x2 | CF | RF)
    expect(m.mem.peek32(STACK_TOP - 4)).toBe(0x2 | CF)
    const p = protectedMode(hex("9d 66 9d"))
    p.mem.load(STACK_TOP, [0xd5, 0x3e, 0x25, 0x00, 0x00, 0x00])
    p.cpu.setEflags(0x2 | RF)
    p.cpu.run(1)
    expect(p.cpu.getEflags()).toBe((0x253ed5 & ~RF) | 0x2)
    p.cpu.run(1)
    expect(p.cpu.getEflags()).toBe((0x253ed5 & ~RF & 0xffff0000) | 0x2)
  })

  it("PUSHA pushes the original ESP; POPA skips it", () => {
    const m = pm("60", { [Reg.EAX]: 1, [Reg.ECX]: 2, [Reg.EDX]: 3, [Reg.EBX]: 4, [Reg.EBP]: 6, [Reg.ESI]: 7, [Reg.EDI]: 8 })
    const frame = [...Array(8).keys()].map((i) => m.mem.peek32(STACK_TOP - 4 - i * 4))
    expect(frame).toEqual([1, 2, 3, 4, STACK_TOP, 6, 7, 8])
    const p = protectedMode(hex("60 61"))
    p.cpu.regs.set([1, 2, 3, 4, STACK_TOP, 6, 7, 8])
    p.cpu.run(1)
    p.mem.load(STACK_TOP - 20, [0x55, 0, 0, 0])
    p.cpu.regs.fill(0xffffffff, 0, 4)
    p.cpu.run(1)
    expect([...p.cpu.regs]).toEqual([1, 2, 3, 4, STACK_TOP, 6, 7, 8])
  })

  it("ENTER with nesting copies the outer frame pointers; LEAVE unwinds", () => {
    // enter 12,3 ; leave
    const m = protectedMode(hex("c8 0c 00 03 c9"))
    m.cpu.regs[Reg.EBP] = 0x7000
    m.mem.load(0x7000 - 4, [0x11, 0, 0, 0])
    m.mem.load(0x7000 - 8, [0x22, 0, 0, 0])
    m.cpu.run(1)
    const frame = STACK_TOP - 4
    expect(r(m, Reg.EBP)).toBe(frame)
    expect(m.mem.peek32(STACK_TOP - 4)).toBe(0x7000)
    expect(m.mem.peek32(STACK_TOP - 8)).toBe(0x11)
    expect(m.mem.peek32(STACK_TOP - 12)).toBe(0x22)
    expect(m.mem.peek32(STACK_TOP - 16)).toBe(frame)
    expect(r(m, Reg.ESP)).toBe(STACK_TOP - 16 - 12)
    m.cpu.run(1)
    expect(r(m, Reg.EBP)).toBe(0x7000)
    expect(r(m, Reg.ESP)).toBe(STACK_TOP)
  })

  it("PUSH [ESP] pushes the old top; POP [ESP+4] addresses with ESP already incremented", () => {
    const m = protectedMode(hex("ff 34 24 8f 44 24 04"))
    m.cpu.regs[Reg.ESP] = 0x7000
    m.mem.load(0x7000, [0xaa, 0xbb, 0, 0])
    m.cpu.run(1)
    expect(m.mem.peek32(0x6ffc)).toBe(0xbbaa)
    m.cpu.run(1)
    expect(r(m, Reg.ESP)).toBe(0x7000)
    expect(m.mem.peek32(0x7004)).toBe(0xbbaa)
  })

  it("PUSH imm8 sign-extends; real-mode PUSH/POP use 16-bit SP", () => {
    const m = realMode(hex("6a fe 68 34 12 59"))
    m.cpu.regs[Reg.ESP] = 0xabcd_0000
    m.cpu.run(3)
    expect(m.mem.peek16(0xfffe)).toBe(0xfffe)
    expect(r(m, Reg.ECX)).toBe(0x1234)
    expect(r(m, Reg.ESP)).toBe(0xabcd_fffe)
  })
})

describe("control transfer", () => {
  it("every Jcc condition", () => {
    const cases: [number, number, boolean][] = [
      [0x0, OF, true], [0x1, OF, false], [0x2, CF, true], [0x3, 0, true], [0x4, ZF, true], [0x5, ZF, false],
      [0x6, ZF, true], [0x6, CF, true], [0x7, 0, true], [0x8, SF, true], [0x9, SF, false], [0xa, PF, true],
      [0xb, PF, false], [0xc, SF, true], [0xc, SF | OF, false], [0xd, OF, false], [0xe, ZF, true],
      [0xe, OF, true], [0xf, SF | OF, true], [0xf, ZF | SF | OF, false]
    ]
    for (const [cc, flags, taken] of cases) {
      const short = pm(`${(0x70 + cc).toString(16)} 10`, {}, 1, 0x2 | flags)
      expect(short.cpu.eip, `j${cc} short`).toBe(taken ? CODE + 0x12 : CODE + 2)
      const near = pm(`0f ${(0x80 + cc).toString(16)} 00 ff ff ff`, {}, 1, 0x2 | flags)
      expect(near.cpu.eip, `j${cc} near`).toBe(taken ? CODE + 6 - 0x100 : CODE + 6)
    }
  })

  it("LOOP counts ECX down; LOOPE/LOOPNE also test ZF; JECXZ", () => {
    const m = pm("40 e2 fd f4", { [Reg.ECX]: 3 }, 100)
    expect([r(m, Reg.EAX), r(m, Reg.ECX)]).toEqual([3, 0])
    const e = pm("e1 10", { [Reg.ECX]: 5 }, 1, 0x2 | ZF)
    expect([e.cpu.eip, r(e, Reg.ECX)]).toEqual([CODE + 0x12, 4])
    const ne = pm("e0 10", { [Reg.ECX]: 5 }, 1, 0x2 | ZF)
    expect([ne.cpu.eip, r(ne, Reg.ECX)]).toEqual([CODE + 2, 4])
    expect(pm("e3 10", { [Reg.ECX]: 0 }).cpu.eip).toBe(CODE + 0x12)
    expect(pm("e3 10", { [Reg.ECX]: 0x10000 }).cpu.eip).toBe(CODE + 2)
    // In 16-bit code LOOP uses CX
    const real = realMode(hex("e2 10"))
    real.cpu.regs[Reg.ECX] = 0x1_0001
    real.cpu.run(1)
    expect([real.cpu.eip, r(real, Reg.ECX)]).toEqual([CODE + 2, 0x1_0000])
  })

  it("CALL reg, CALL [mem], JMP reg, RET imm16", () => {
    const m = pm("ff d3", { [Reg.EBX]: 0x2000 })
    expect(m.cpu.eip).toBe(0x2000)
    expect(m.mem.peek32(STACK_TOP - 4)).toBe(CODE + 2)
    const mem = protectedMode(hex("ff 13"))
    mem.cpu.regs[Reg.EBX] = 0x3000
    mem.mem.load(0x3000, [0x00, 0x25, 0, 0])
    mem.cpu.run(1)
    expect(mem.cpu.eip).toBe(0x2500)
    expect(pm("ff e3", { [Reg.EBX]: 0x2222 }).cpu.eip).toBe(0x2222)
    const ret = protectedMode(hex("c2 08 00"))
    ret.mem.load(STACK_TOP, [0x34, 0x12, 0, 0])
    ret.cpu.run(1)
    expect([ret.cpu.eip, r(ret, Reg.ESP)]).toEqual([0x1234, STACK_TOP + 12])
  })

  it("a 16-bit near jump in 32-bit code truncates EIP to 16 bits", () => {
    // 66 e9 rel16
    const m = pm("66 e9 00 f0")
    expect(m.cpu.eip).toBe((CODE + 4 + 0xf000) & 0xffff)
  })

  it("a branch beyond the CS limit is #GP at the branch", () => {
    const m = realMode(hex("e9 00 10"))
    m.cpu.eip = 0x1000
    m.mem.load(13 * 4, [0x00, 0x30, 0, 0])
    m.cpu.segLimit[Seg.CS] = 0x1fff
    m.cpu.run(1)
    expect(m.cpu.eip).toBe(0x3000)
    expect(m.mem.peek16(STACK_TOP - 6)).toBe(0x1000)
  })
})

describe("data movement and bit operations", () => {
  it("CBW/CWDE/CWD/CDQ", () => {
    expect(r(pm("66 98", { [Reg.EAX]: 0x1234_0080 }), Reg.EAX)).toBe(0x1234_ff80)
    expect(r(pm("98", { [Reg.EAX]: 0x8000 }), Reg.EAX)).toBe(0xffff8000)
    expect(r(pm("66 99", { [Reg.EAX]: 0x8000, [Reg.EDX]: 0x12340000 }), Reg.EDX)).toBe(0x1234ffff)
    expect(r(pm("99", { [Reg.EAX]: 0x80000000 }), Reg.EDX)).toBe(0xffffffff)
  })

  it("MOVZX/MOVSX from bytes (including BH) and words", () => {
    expect(r(pm("0f b6 cf", { [Reg.EBX]: 0x9a00 }), Reg.ECX)).toBe(0x9a)
    const m = protectedMode(hex("0f bf 03"))
    m.cpu.regs[Reg.EBX] = 0x3000
    m.mem.load(0x3000, [0x00, 0x80])
    m.cpu.run(1)
    expect(r(m, Reg.EAX)).toBe(0xffff8000)
  })

  it("XCHG forms, XLAT, BSWAP, LAHF/SAHF", () => {
    const x = pm("91", { [Reg.EAX]: 1, [Reg.ECX]: 2 })
    expect([r(x, Reg.EAX), r(x, Reg.ECX)]).toEqual([2, 1])
    expect(r(pm("86 e9", { [Reg.ECX]: 0x1234 }), Reg.ECX)).toBe(0x3412)
    const xl = protectedMode(hex("d7"))
    xl.cpu.regs[Reg.EBX] = 0x3000
    xl.cpu.regs[Reg.EAX] = 0xffffff05
    xl.mem.load(0x3005, [0x77])
    xl.cpu.run(1)
    expect(r(xl, Reg.EAX)).toBe(0xffffff77)
    expect(r(pm("0f c9", { [Reg.ECX]: 0x12345678 }), Reg.ECX)).toBe(0x78563412)
    const lahf = pm("9f", { [Reg.EAX]: 0 }, 1, 0x2 | SF | ZF | AF | PF | CF | OF)
    expect(r(lahf, Reg.EAX)).toBe((SF | ZF | AF | PF | CF | 0x2) << 8)
    const sahf = pm("9e", { [Reg.EAX]: 0xff00 }, 1, 0x2 | OF)
    expect(sahf.cpu.getEflags()).toBe(0x2 | OF | SF | ZF | AF | PF | CF)
  })

  it("BT/BTS/BTR/BTC with register and immediate offsets; a register offset reaches outside the operand", () => {
    const bts = protectedMode(hex("0f ab 0b 0f ab 0b"))
    bts.cpu.regs[Reg.EBX] = 0x3000
    bts.cpu.regs[Reg.ECX] = 35
    bts.cpu.run(1)
    expect(bts.mem.bytes[0x3004]).toBe(0x08)
    expect(bts.cpu.getEflags() & CF).toBe(0)
    bts.cpu.regs[Reg.ECX] = -1 >>> 0
    bts.cpu.run(1)
    expect(bts.mem.peek32(0x2ffc)).toBe(0x80000000)
    const btr = pm("0f ba f0 1f", { [Reg.EAX]: 0x80000001 })
    expect(r(btr, Reg.EAX)).toBe(1)
    expect(btr.cpu.getEflags() & CF).toBe(CF)
    // btc ax, 17: the immediate is masked to the operand size (bit 1)
    expect(r(pm("66 0f ba f8 11", { [Reg.EAX]: 0xffff0000 }), Reg.EAX)).toBe(0xffff0002)
  })

  it("BSF/BSR; a zero source sets ZF and leaves the destination", () => {
    const bsf = pm("0f bc c3", { [Reg.EBX]: 0x00f0_0000 }, 1, 0x2 | ZF)
    expect(r(bsf, Reg.EAX)).toBe(20)
    expect(bsf.cpu.getEflags() & ZF).toBe(0)
    expect(r(pm("0f bd c3", { [Reg.EBX]: 0x00f0_0000 }), Reg.EAX)).toBe(23)
    const zero = pm("0f bc c3", { [Reg.EAX]: 0x55, [Reg.EBX]: 0 })
    expect(r(zero, Reg.EAX)).toBe(0x55)
    expect(zero.cpu.getEflags() & ZF).toBe(ZF)
  })

  it("CMPXCHG (equal and not equal) and XADD", () => {
    const eq = protectedMode(hex("0f b1 0b"))
    eq.cpu.regs[Reg.EBX] = 0x3000
    eq.cpu.regs[Reg.EAX] = 5
    eq.cpu.regs[Reg.ECX] = 9
    eq.mem.load(0x3000, [5, 0, 0, 0])
    eq.cpu.run(1)
    expect(eq.mem.peek32(0x3000)).toBe(9)
    expect(eq.cpu.getEflags() & ZF).toBe(ZF)
    const ne = pm("0f b0 cb", { [Reg.EAX]: 1, [Reg.EBX]: 7, [Reg.ECX]: 9 })
    expect([r(ne, Reg.EAX), r(ne, Reg.EBX)]).toEqual([7, 7])
    expect(ne.cpu.getEflags() & (ZF | CF)).toBe(CF)
    const xadd = pm("0f c1 c8", { [Reg.EAX]: 0xffffffff, [Reg.ECX]: 2 })
    expect([r(xadd, Reg.EAX), r(xadd, Reg.ECX)]).toEqual([1, 0xffffffff])
    expect(xadd.cpu.getEflags() & CF).toBe(CF)
  })

  it("CMPXCHG8B compares EDX:EAX and writes ECX:EBX or loads the old value", () => {
    const m = protectedMode(hex("0f c7 0e 0f c7 0e"))
    m.cpu.regs[Reg.ESI] = 0x3000
    m.mem.load(0x3000, [1, 0, 0, 0, 2, 0, 0, 0])
    m.cpu.regs.set([1, 0xcccc, 2, 0xbbbb], 0)
    m.cpu.run(1)
    expect([m.mem.peek32(0x3000), m.mem.peek32(0x3004)]).toEqual([0xbbbb, 0xcccc])
    expect(m.cpu.getEflags() & ZF).toBe(ZF)
    m.cpu.run(1)
    expect([r(m, Reg.EAX), r(m, Reg.EDX)]).toEqual([0xbbbb, 0xcccc])
    expect(m.cpu.getEflags() & ZF).toBe(0)
    // A register operand is #UD.
    const ud = protectedMode(hex("0f c7 c8"))
    setGate(ud, 6, 0x4000)
    ud.cpu.run(1)
    expect(ud.cpu.eip).toBe(0x4000)
  })

  it("SHLD with an immediate count and SHRD on memory", () => {
    // shld eax, edx, 4 ; shrd word [ebx], dx, 3
    const m = protectedMode(hex("0f a4 d0 04 66 0f ac 13 03"))
    m.cpu.regs[Reg.EAX] = 0x12345678
    m.cpu.regs[Reg.EDX] = 0x9abcdef1
    m.cpu.regs[Reg.EBX] = 0x3000
    m.mem.load(0x3000, [0x0f, 0x00])
    m.cpu.run(2)
    expect(r(m, Reg.EAX)).toBe(0x23456789)
    expect(m.mem.peek16(0x3000)).toBe(0x2001)
    expect(m.cpu.getEflags() & CF).toBe(CF)
  })

  it("BOUND raises #BR (a fault) outside the signed range; SALC", () => {
    const m = realMode(hex("62 07 62 07"))
    m.cpu.regs[Reg.EBX] = 0x3000
    m.mem.load(0x3000, [0xfe, 0xff, 0x05, 0x00])
    m.mem.load(5 * 4, [0x00, 0x40, 0, 0])
    m.cpu.regs[Reg.EAX] = 0xfffe
    m.cpu.run(1)
    expect(m.cpu.eip).toBe(CODE + 2)
    m.cpu.regs[Reg.EAX] = 6
    m.cpu.run(1)
    expect(m.cpu.eip).toBe(0x4000)
    expect(m.mem.peek16(STACK_TOP - 6)).toBe(CODE + 2)
    expect(r(pm("d6", { [Reg.EAX]: 0x1200 }, 1, 0x2 | CF), Reg.EAX)).toBe(0x12ff)
  })

  it("CMOVcc and SETcc", () => {
    expect(r(pm("0f 4c c3", { [Reg.EAX]: 1, [Reg.EBX]: 2 }, 1, 0x2 | SF), Reg.EAX)).toBe(2)
    expect(r(pm("0f 4c c3", { [Reg.EAX]: 1, [Reg.EBX]: 2 }, 1, 0x2 | SF | OF), Reg.EAX)).toBe(1)
    expect(r(pm("0f 9f c0", { [Reg.EAX]: 0xffff }), Reg.EAX)).toBe(0xff01)
    const setb = protectedMode(hex("0f 92 03"))
    setb.cpu.regs[Reg.EBX] = 0x3000
    setb.mem.load(0x3000, [0xee])
    setb.cpu.setEflags(0x2 | CF)
    setb.cpu.run(1)
    expect(setb.mem.bytes[0x3000]).toBe(1)
  })

  it("IMUL with an immediate truncates and flags overflow", () => {
    const a = pm("6b cb fd", { [Reg.EBX]: 5 })
    expect(r(a, Reg.ECX)).toBe(-15 >>> 0)
    expect(a.cpu.getEflags() & (CF | OF)).toBe(0)
    const b = pm("66 69 cb ff 7f", { [Reg.EBX]: 2, [Reg.ECX]: 0xabcd0000 })
    expect(r(b, Reg.ECX)).toBe(0xabcdfffe)
    expect(b.cpu.getEflags() & (CF | OF)).toBe(CF | OF)
  })

  it("LES/LSS/LFS load a far pointer; MOV from segment registers", () => {
    const m = protectedMode(hex("c4 33 0f b2 23 0f b4 03 8c 1b 8c d8 66 8c c8"))
    m.cpu.regs[Reg.EBX] = 0x3000
    m.mem.load(0x3000, [0x78, 0x56, 0x34, 0x12, SEL.data32, 0])
    m.cpu.run(3)
    expect(r(m, Reg.ESI)).toBe(0x12345678)
    expect(r(m, Reg.ESP)).toBe(0x12345678)
    expect(r(m, Reg.EAX)).toBe(0x12345678)
    expect(m.cpu.segSelector[Seg.FS]).toBe(SEL.data32)
    m.cpu.regs[Reg.EAX] = 0xffffffff
    m.cpu.run(2)
    expect(m.mem.peek16(0x3000)).toBe(SEL.data32)
    // To a 32-bit register the selector is zero-extended; with a 16-bit operand only AX changes.
    expect(r(m, Reg.EAX)).toBe(SEL.data32)
    m.cpu.regs[Reg.EAX] = 0xffffffff
    m.cpu.run(1)
    expect(r(m, Reg.EAX)).toBe(0xffff0000 + SEL.code32)
  })

  it("LOCK is accepted; multi-byte NOP, PAUSE and ENDBR32 do nothing; LEA of a register is #UD", () => {
    const m = protectedMode(hex("f0 83 03 01 0f 1f 44 00 00 f3 90 f3 0f 1e fb 8d c0"))
    setGate(m, 6, 0x4000)
    m.cpu.regs[Reg.EBX] = 0x3000
    m.cpu.run(4)
    expect(m.mem.peek32(0x3000)).toBe(1)
    expect(m.cpu.eip).toBe(CODE + 15)
    m.cpu.run(1)
    expect(m.cpu.eip).toBe(0x4000)
    expect(m.mem.peek32(m.cpu.regs[Reg.ESP])).toBe(CODE + 15)
  })

  it("flag instructions and CPUID", () => {
    const m = pm("f9 f5 f5 fd fb", {}, 5)
    expect(m.cpu.getEflags()).toBe(0x2 | CF | DF | IF)
    const c = pm("f8 fc fa", {}, 3, 0x2 | CF | DF | IF)
    expect(c.cpu.getEflags()).toBe(0x2)
    const id = pm("0f a2", { [Reg.EAX]: 0 })
    expect(id.exits.cpuids).toBe(1)
    expect(r(id, Reg.EBX)).toBe(0x756e6547)
    expect(id.cpu.eip).toBe(CODE + 2)
  })

  it("IOPL: CLI at CPL 0 is allowed whatever IOPL is", () => {
    const m = pm("fa", {}, 1, 0x2 | IF | IOPL)
    expect(m.cpu.getEflags() & IF).toBe(0)
    expect(m.cpu.run(0)).toBe(CpuStop.Budget)
  })
})

describe("reset", () => {
  it("gives KVM's power-on state", () => {
    const m = realMode([])
    m.cpu.resetToRealMode()
    const { cpu } = m
    expect(cpu.eip).toBe(0xfff0)
    expect([cpu.segSelector[Seg.CS], cpu.segBase[Seg.CS], cpu.segLimit[Seg.CS], cpu.segAttr[Seg.CS]]).toEqual([0xf000, 0xffff0000, 0xffff, 0x9b])
    for (const s of [Seg.ES, Seg.SS, Seg.DS, Seg.FS, Seg.GS]) {
      expect([cpu.segSelector[s], cpu.segBase[s], cpu.segLimit[s], cpu.segAttr[s]]).toEqual([0, 0, 0xffff, 0x93])
    }
    expect(cpu.getEflags()).toBe(2)
    expect(cpu.cr0).toBe(0x60000010)
    expect(cpu.regs[Reg.EDX]).toBe(0x600)
    expect([cpu.gdtrBase, cpu.gdtrLimit, cpu.idtrBase, cpu.idtrLimit]).toEqual([0, 0xffff, 0, 0xffff])
  })
})
