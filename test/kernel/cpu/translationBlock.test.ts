/**
 * Translation blocks (src/kernel/cpu/translationBlock.ts) must be invisible: a CPU that
 * compiles hot code and one that interprets every instruction, given the same program
 * and the same run budgets, stop in the same state after every run — registers,
 * EFLAGS, EIP and instructions retired. The programs are random loops of register
 * instructions (what blocks compile) mixed with ones they do not (memory, stack),
 * forward conditional jumps inside the body, in 32-bit and 16-bit code; the budgets
 * are random, so runs end inside blocks and inside loop iterations.
 */
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { Cpu, CpuStop, Reg, Seg } from "../../../src/kernel/cpu/cpu.ts"
import { Ept } from "../../../src/kernel/ept.ts"
import { Memslots } from "../../../src/kernel/memslots.ts"
import { ramOnlyExits } from "../../support/ramOnly.ts"
import { RecordingExits } from "../../support/recordingExits.ts"

// `npm run conform` asks for 20,000 differential cases; a tenth of that here takes about as long.
const RUNS = process.env.VMRR_CONFORM_RUNS === undefined ? 150 : Math.ceil(Number(process.env.VMRR_CONFORM_RUNS) / 10)
const CODE = 0x1000

/** The data area of memory operands. */
const DATA = 0x3000
/**
 * Memory forms: opcode (0x1xx: 0F xx), ModRM reg field (-1: a register), immediate size
 * ("z": the operand size for the full-size forms). DIV and IDIV can fault (#DE). BT with a
 * register offset is left out: a random offset reaches past the RAM.
 */
const MEMORY_OPS: ReadonlyArray<readonly [number, number, number | "z"]> = [
  [0x01, -1, 0], [0x03, -1, 0], [0x11, -1, 0], [0x1a, -1, 0], [0x29, -1, 0], [0x31, -1, 0], [0x39, -1, 0], [0x3b, -1, 0], [0x20, -1, 0],
  [0x80, 0, 1], [0x81, 2, "z"], [0x83, 5, 1], [0x83, 7, 1], [0x84, -1, 0], [0x85, -1, 0], [0x86, -1, 0],
  [0x88, -1, 0], [0x89, -1, 0], [0x8a, -1, 0], [0x8b, -1, 0], [0xc6, 0, 1], [0xc7, 0, "z"],
  [0xf6, 0, 1], [0xf7, 1, "z"], [0xf7, 2, 0], [0xf6, 3, 0], [0xf7, 4, 0], [0xf6, 5, 0], [0xf7, 6, 0], [0xf6, 7, 0],
  [0xfe, 0, 0], [0xff, 1, 0], [0xff, 6, 0], [0x8f, 0, 0], [0xd1, 4, 0], [0xc1, 7, 1], [0xd3, 1, 0],
  [0x1ba, 4, 1], [0x1ba, 5, 1], [0x1ba, 6, 1], [0x1c1, -1, 0], [0x1b1, -1, 0], [0x194, 0, 0], [0x14c, -1, 0],
  [0x1b6, -1, 0], [0x1bf, -1, 0], [0x1af, -1, 0], [0x1bc, -1, 0]
]
/** Registers a body instruction may write: not ESP (the stack) or EBP (the loop counter). */
const writable = fc.constantFrom(0, 1, 2, 3, 6, 7)
const anyReg = fc.integer({ min: 0, max: 7 })
const byte = fc.integer({ min: 0, max: 255 })
const modrm = (reg: number, rm: number): number => 0xc0 | (reg << 3) | rm
const imm = (size: number, v: number): number[] => [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff].slice(0, size)

/** One body instruction: its bytes given the code's default operand size (2 or 4). */
type Template = (code: number) => number[]

/** Operand-size prefix or not, and the operand size that results. */
const sized = fc.boolean().map((wide) => (code: number): [number[], number] => (wide ? [[0x66], code === 4 ? 2 : 4] : [[], code]))

const templates: fc.Arbitrary<Template> = fc.oneof(
  // ALU r/m, r and r, r/m (8-bit registers 4-7 are AH..BH, never ESP/EBP).
  fc.tuple(fc.integer({ min: 0, max: 7 }), fc.integer({ min: 0, max: 3 }), sized, writable, writable).map(
    ([op, form, pre, reg, rm]) => (code: number) => [...pre(code)[0], (op << 3) | form, modrm(reg, rm)]
  ),
  // ALU AL/eAX, imm.
  fc.tuple(fc.integer({ min: 0, max: 7 }), fc.boolean(), sized, fc.integer()).map(([op, w, pre, v]) => (code: number) => {
    const [p, size] = pre(code)
    return [...p, (op << 3) | (w ? 5 : 4), ...imm(w ? size : 1, v)]
  }),
  // Group 1 with imm8 / imm / sign-extended imm8.
  fc.tuple(fc.constantFrom(0x80, 0x81, 0x83), fc.integer({ min: 0, max: 7 }), sized, writable, fc.integer()).map(
    ([op, ext, pre, rm, v]) => (code: number) => {
      const [p, size] = pre(code)
      return [...p, op, modrm(ext, rm), ...imm(op === 0x81 ? size : 1, v)]
    }
  ),
  // INC/DEC r, and FE/FF /0 /1.
  fc.tuple(fc.boolean(), sized, writable).map(([dec, pre, r]) => (code: number) => [...pre(code)[0], (dec ? 0x48 : 0x40) | r]),
  fc.tuple(fc.constantFrom(0xfe, 0xff), fc.integer({ min: 0, max: 1 }), sized, writable).map(
    ([op, ext, pre, r]) => (code: number) => [...pre(code)[0], op, modrm(ext, r)]
  ),
  // TEST, NOT, NEG, and TEST with an immediate.
  fc.tuple(fc.constantFrom(0x84, 0x85), sized, anyReg, anyReg).map(([op, pre, reg, rm]) => (code: number) => [...pre(code)[0], op, modrm(reg, rm)]),
  fc.tuple(fc.constantFrom(0xf6, 0xf7), fc.integer({ min: 0, max: 3 }), sized, writable, fc.integer()).map(
    ([op, ext, pre, rm, v]) => (code: number) => {
      const [p, size] = pre(code)
      return [...p, op, modrm(ext, rm), ...(ext < 2 ? imm(op === 0xf6 ? 1 : size, v) : [])]
    }
  ),
  // XCHG and MOV between registers, MOV r, imm.
  fc.tuple(fc.constantFrom(0x86, 0x87, 0x88, 0x89, 0x8a, 0x8b), sized, writable, writable).map(
    ([op, pre, reg, rm]) => (code: number) => [...pre(code)[0], op, modrm(reg, rm)]
  ),
  fc.tuple(sized, writable).map(([pre, r]) => (code: number) => [...pre(code)[0], 0x90 | r]),
  fc.tuple(fc.boolean(), sized, writable, fc.integer()).map(([w, pre, r, v]) => (code: number) => {
    const [p, size] = pre(code)
    return [...p, w ? 0xb8 | r : 0xb0 | r, ...imm(w ? size : 1, v)]
  }),
  // LEA with every addressing form (32-bit or, with 67, 16-bit).
  fc.tuple(sized, fc.boolean(), writable, fc.integer({ min: 0, max: 2 }), anyReg, byte, fc.integer()).map(
    ([pre, addr16, reg, mod, rm, sib, disp]) => (code: number) => {
      const a16 = (code === 2) !== addr16
      const bytes = [...pre(code)[0], ...(addr16 ? [0x67] : []), 0x8d, (mod << 6) | (reg << 3) | rm]
      if (a16) {
        if (mod === 1) bytes.push(...imm(1, disp))
        else if (mod === 2 || (mod === 0 && rm === 6)) bytes.push(...imm(2, disp))
      } else {
        if (rm === 4) bytes.push(sib)
        if (mod === 1) bytes.push(...imm(1, disp))
        else if (mod === 2 || (mod === 0 && (rm === 5 || (rm === 4 && (sib & 7) === 5)))) bytes.push(...imm(4, disp))
      }
      return bytes
    }
  ),
  // Shifts and rotates by 1 and by imm8 (counts above 31 included).
  fc.tuple(fc.constantFrom(0xc0, 0xc1, 0xd0, 0xd1), fc.integer({ min: 0, max: 7 }), sized, writable, byte).map(
    ([op, ext, pre, r, count]) => (code: number) => [...pre(code)[0], op, modrm(ext, r), ...(op < 0xd0 ? [count] : [])]
  ),
  // CBW/CWDE, CWD/CDQ, CMC/CLC/STC/CLD/STD.
  fc.tuple(fc.constantFrom(0x98, 0x99), sized).map(([op, pre]) => (code: number) => [...pre(code)[0], op]),
  fc.constantFrom(0xf5, 0xf8, 0xf9, 0xfc, 0xfd).map((op) => () => [op]),
  // IMUL r, r/m and r, r/m, imm.
  fc.tuple(sized, writable, writable).map(([pre, reg, rm]) => (code: number) => [...pre(code)[0], 0x0f, 0xaf, modrm(reg, rm)]),
  fc.tuple(fc.constantFrom(0x69, 0x6b), sized, writable, writable, fc.integer()).map(([op, pre, reg, rm, v]) => (code: number) => {
    const [p, size] = pre(code)
    return [...p, op, modrm(reg, rm), ...imm(op === 0x69 ? size : 1, v)]
  }),
  // MOVZX/MOVSX, SETcc, CMOVcc, BSWAP.
  fc.tuple(fc.constantFrom(0xb6, 0xb7, 0xbe, 0xbf), sized, writable, anyReg).map(
    ([op, pre, reg, rm]) => (code: number) => [...pre(code)[0], 0x0f, op, modrm(reg, rm)]
  ),
  fc.tuple(fc.integer({ min: 0, max: 15 }), anyReg).map(([cc, rm]) => () => [0x0f, 0x90 | cc, modrm(0, rm)]),
  fc.tuple(fc.integer({ min: 0, max: 15 }), sized, writable, anyReg).map(
    ([cc, pre, reg, rm]) => (code: number) => [...pre(code)[0], 0x0f, 0x40 | cc, modrm(reg, rm)]
  ),
  fc.tuple(sized, writable).map(([pre, r]) => (code: number) => [...pre(code)[0], 0x0f, 0xc8 | r]),
  // Memory operands at an absolute address in the data area (0x3000-0x30ff), compiled inline or stepped.
  fc.tuple(fc.constantFrom(...MEMORY_OPS), sized, writable, byte, fc.integer()).map(([[op, ext, immSize], pre, reg, at, v]) => (code: number) => {
    const [p, size] = pre(code)
    const modrmReg = ext < 0 ? reg : ext
    const operand = code === 4 ? [0x05 | (modrmReg << 3), ...imm(4, DATA + at)] : [0x06 | (modrmReg << 3), ...imm(2, DATA + at)]
    const n = immSize === "z" ? (op === 0xc7 || op === 0x81 || op === 0xf7 ? size : 1) : immSize
    return [...p, ...(op > 0xff ? [0x0f, op & 0xff] : [op]), ...operand, ...imm(n, v)]
  }),
  // String instructions, with and without REP/REPE/REPNE, over the data area.
  fc.tuple(fc.constantFrom(0xa4, 0xa5, 0xa6, 0xa7, 0xaa, 0xab, 0xac, 0xad, 0xae, 0xaf), fc.constantFrom([], [0xf3], [0xf2]), sized, fc.integer({ min: 0, max: 40 })).map(
    ([op, rep, pre, count]) => (code: number) => {
      const [p] = pre(code)
      const mov = (r: number, v: number) => (code === 4 ? [0xb8 | r, ...imm(4, v)] : [0xb8 | r, ...imm(2, v)])
      return [...mov(6, DATA + 0x100), ...mov(7, DATA + 0x140), ...mov(1, count), ...rep, ...p, op]
    }
  ),
  // PUSH/POP, CALL to the next instruction and POP of its return address, and a store into the code's own frame.
  fc.tuple(writable).map(([r]) => () => [0x50 | r, 0x58 | r]),
  fc.tuple(writable).map(([r]) => (code: number) => [0xe8, ...imm(code, 0), 0x58 | r]),
  fc.tuple(writable).map(([r]) => (code: number) => (code === 4 ? [0x88, 0x05, ...imm(4, CODE + 0xf00)] : [0x88, 0x06, ...imm(2, CODE + 0xf00)]).map((b, i) => (i === 1 ? b | ((r & 3) << 3) : b)))
)

/** A body instruction, or a conditional jump over the next one. */
const element = fc.oneof({ weight: 6, arbitrary: templates.map((t) => ({ kind: "insn" as const, t })) }, {
  weight: 1,
  arbitrary: fc.integer({ min: 0, max: 15 }).map((cc) => ({ kind: "skip" as const, cc }))
})

interface Program {
  readonly body: ReadonlyArray<{ kind: "insn"; t: Template } | { kind: "skip"; cc: number }>
  readonly iterations: number
  readonly regs: ReadonlyArray<number>
  readonly flags: number
  readonly budgets: ReadonlyArray<number>
}

const programArb: fc.Arbitrary<Program> = fc.record({
  body: fc.array(element, { minLength: 1, maxLength: 24 }),
  iterations: fc.integer({ min: 1, max: 60 }),
  regs: fc.array(fc.integer({ min: 0, max: 0xffffffff }), { minLength: 8, maxLength: 8 }),
  flags: fc.integer({ min: 0, max: 0xfff }),
  budgets: fc.array(fc.integer({ min: 1, max: 300 }), { minLength: 1, maxLength: 8 })
})

/** mov ebp, n; body; dec ebp; jnz body; hlt — in code of operand size `code`. */
const assemble = (p: Program, code: number): number[] => {
  const insns = p.body.map((e) => (e.kind === "insn" ? e.t(code) : undefined))
  const bytes: number[] = [...(code === 4 ? [0xbd, ...imm(4, p.iterations)] : [0x66, 0xbd, ...imm(4, p.iterations)])]
  const top = bytes.length
  insns.forEach((insn, i) => {
    if (insn !== undefined) bytes.push(...insn)
    else bytes.push(0x70 | (p.body[i] as { cc: number }).cc, insns[i + 1]?.length ?? 0)
  })
  bytes.push(0x4d)
  const after = bytes.length + (code === 4 ? 6 : 4)
  bytes.push(0x0f, 0x85, ...imm(code, top - after), 0xf4)
  return bytes
}

/** Guest RAM of each CPU made by `machine`, to compare memory. */
const ramOf = new WeakMap<Cpu, Uint8Array>()

const machine = (mode: "pm32" | "real", code: number[], p: Program, blocks: boolean): Cpu => {
  const memslots = new Memslots()
  const ram = new Uint8Array(1 << 20)
  memslots.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memory: ram })
  const exits = new RecordingExits()
  const cpu = new Cpu(new Ept(memslots, ramOnlyExits), exits)
  exits.cpu = cpu
  cpu.translationBlocks = blocks
  if (mode === "pm32") {
    cpu.cr0 = 0x60000011
    for (let s = 0; s < 6; s++) {
      cpu.segBase[s] = 0
      cpu.segLimit[s] = 0xffffffff
      cpu.segAttr[s] = 0xc093
    }
    cpu.segAttr[Seg.CS] = 0xc09b
  } else {
    cpu.segSelector[Seg.CS] = 0
    cpu.segBase[Seg.CS] = 0
  }
  p.regs.forEach((v, i) => (cpu.regs[i] = v))
  cpu.regs[Reg.ESP] = 0x8000
  // Status flags and DF; IF and TF stay clear.
  cpu.setEflags((p.flags & 0x8d5) | (p.flags & 0x400) | 2)
  cpu.eip = CODE
  ram.set(code, CODE)
  ramOf.set(cpu, ram)
  return cpu
}

const state = (cpu: Cpu) => {
  const ram = ramOf.get(cpu)!
  return {
    regs: [...cpu.regs],
    eflags: cpu.getEflags(),
    eip: cpu.eip,
    retired: cpu.retired,
    data: [...ram.subarray(DATA, DATA + 0x200)],
    stack: [...ram.subarray(0x7f00, 0x8000)],
    code: [...ram.subarray(CODE, CODE + 0x1000)]
  }
}

const sameAsInterpreter = (mode: "pm32" | "real", p: Program): void => {
  const code = assemble(p, mode === "pm32" ? 4 : 2)
  const compiled = machine(mode, code, p, true)
  const interpreted = machine(mode, code, p, false)
  for (let run = 0; run < 64; run++) {
    const budget = p.budgets[run % p.budgets.length]
    const a = compiled.run(budget)
    const b = interpreted.run(budget)
    const listing = code.map((b) => b.toString(16).padStart(2, "0")).join(" ")
    expect(state(compiled), `${mode} code ${listing}, run ${run}`).toEqual(state(interpreted))
    expect(a).toBe(b)
    if (a !== CpuStop.Budget) break
  }
}

describe("translation blocks", () => {
  it("compile a hot register loop and run it to the same end as the interpreter", () => {
    // mov ecx, 1000; l: add eax, ecx; xor edx, eax; sub ebx, edx; shl esi, 1; dec ecx; jnz l; hlt
    const p: Program = { body: [], iterations: 0, regs: [0, 0, 0, 0, 0, 0, 1, 0], flags: 0, budgets: [100_000] }
    const code = [0xb9, 0xe8, 0x03, 0, 0, 0x01, 0xc8, 0x31, 0xc2, 0x29, 0xd3, 0xd1, 0xe6, 0x49, 0x75, 0xf5, 0xf4]
    const compiled = machine("pm32", code, p, true)
    const interpreted = machine("pm32", code, p, false)
    expect(compiled.run(100_000)).toBe(CpuStop.Stop)
    expect(interpreted.run(100_000)).toBe(CpuStop.Stop)
    expect(state(compiled)).toEqual(state(interpreted))
    expect(compiled.regs[Reg.EAX]).toBe(500_500)
    expect(compiled.retired).toBe(1 + 6 * 1000 + 1)
  })

  it("stop exactly at the budget, inside a block", () => {
    const p: Program = { body: [], iterations: 0, regs: [0, 0, 0, 0, 0, 0, 0, 0], flags: 0, budgets: [] }
    // mov ecx, 100; l: inc eax; dec ecx; jnz l; hlt
    const code = [0xb9, 0x64, 0, 0, 0, 0x40, 0x49, 0x75, 0xfc, 0xf4]
    const cpu = machine("pm32", code, p, true)
    expect(cpu.run(1 + 3 * 50 + 2)).toBe(CpuStop.Budget)
    expect(cpu.retired).toBe(153)
    expect(cpu.regs[Reg.EAX]).toBe(51)
    expect(cpu.eip).toBe(CODE + 7)
  })

  it("leave a jump beyond the CS limit to the interpreter, which raises #GP on it", () => {
    // Real mode: mov cx, 40; l: inc ax; dec cx; jnz l; jmp near +0xfff0 (beyond the 64 KiB limit... as a target of 0x1000 + ...)
    const p: Program = { body: [], iterations: 0, regs: [0, 0, 0, 0, 0, 0, 0, 0], flags: 0, budgets: [] }
    // In 16-bit code a near jump target wraps to 16 bits, so shrink the CS limit instead.
    const code = [0xb9, 0x28, 0x00, 0x40, 0x49, 0x75, 0xfc, 0xeb, 0x7f]
    const compiled = machine("real", code, p, true)
    const interpreted = machine("real", code, p, false)
    for (const cpu of [compiled, interpreted]) {
      cpu.segLimit[Seg.CS] = 0x1010
      cpu.run(40 * 3 + 1)
    }
    expect(state(compiled)).toEqual(state(interpreted))
    expect(compiled.eip).toBe(CODE + 7)
  })

  for (const mode of ["pm32", "real"] as const) {
    it(`leave every register, flag and EIP as the interpreter does (${mode === "pm32" ? "32-bit" : "16-bit"} code)`, () => {
      fc.assert(
        fc.property(programArb, (p) => sameAsInterpreter(mode, p)),
        { numRuns: RUNS }
      )
    }, 30_000 + RUNS * 250)
  }
})
