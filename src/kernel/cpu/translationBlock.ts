/**
 * Translation blocks, as QEMU's TCG calls them: a run of guest instructions ending at
 * a jump, compiled to one JavaScript function that V8 then compiles to machine code.
 *
 * A block is attached to the decoded instruction it starts with (so the decoded-
 * instruction cache's key — guest-physical address, CS.D and the frame's write count —
 * invalidates it too) and lies within that instruction's 4 KiB frame. Register and
 * flag instructions are compiled inline; common memory forms too, through the CPU's
 * own segmented accesses; other instructions that change no mode, segment, IF, TF or
 * interrupt shadow run through the interpreter's own step from inside the block. Its
 * effect is exactly that of stepping the same instructions one at a time, with one
 * saving: status flags that a later instruction overwrites before anything reads them
 * are not computed (dead-flag elimination, as TCG does).
 *
 * Exactness where a block can be interrupted: before an instruction that can fault or
 * leave the CPU, EFLAGS, EIP and the count of instructions the block has retired
 * (`blockProgress`) are stored in the CPU, so a fault or an exit there finds the state
 * the interpreter would have. After a store, a write that hit cached code in the block's
 * own frame (self-modifying code) ends the block, and the interpreter decodes the new bytes.
 *
 * The function takes the CPU, the EIP it starts at (the bytes are the same for any EIP
 * that maps to them; targets are computed from it) and the instruction budget, and
 * returns how many instructions it retired. A jump whose target lies beyond the CS
 * limit (a #GP on the jump) ends the block before the jump, for the interpreter.
 */
import { addFlags, CF, decFlags, incFlags, logicFlags, mulHighSigned, OF, PF, shiftFlags, shiftResult, SF, signExtend, STATUS_FLAGS as STATUS, subFlags, ZF } from "./alu.ts"
import { Decoder, Instruction, NO_REGISTER } from "./decoder.ts"
import type { CpuState } from "./state.ts"

export interface TranslationBlock {
  /**
   * Runs the block with EIP = `eip`, and again while it jumps back to its start and
   * `budget` instructions allow; returns the instructions retired.
   */
  readonly run: (cpu: CpuState, eip: number, budget: number) => number
  /** Instructions in the block. */
  readonly length: number
  /** Bytes of code it covers from its first instruction: all must lie within the CS limit. */
  readonly byteLength: number
}

/** Executions of an instruction from the decoded-instruction cache before a block is compiled at it. */
export const BLOCK_THRESHOLD = 16
/** Longest block, in instructions: long enough for loop bodies, short enough to compile quickly. */
const MAX_INSTRUCTIONS = 64


/** One compiled instruction: the flags it reads and fully rewrites, and its code with or without the flags it writes. */
interface Translated {
  /** Flags read, as inputs or because the instruction can fault (then EFLAGS must be complete). */
  readonly reads: number
  readonly writes: number
  /** `flags`: some flag it writes is read later (or at the block's end), so compute them. */
  readonly code: (flags: boolean) => string
  /** A jump: the block ends here. */
  readonly ends: boolean
}

// Register operands as expressions over `r` (the CPU's Uint32Array of registers).
const get = (size: number, n: number): string =>
  size === 4 ? `r[${n}]` : size === 2 ? `(r[${n}] & 0xffff)` : n < 4 ? `(r[${n}] & 0xff)` : `((r[${n - 4}] >>> 8) & 0xff)`

/** Stores `v`, already within `size` bytes, into a register of that size. */
const set = (size: number, n: number, v: string): string =>
  size === 4
    ? `r[${n}] = ${v};`
    : size === 2
      ? `r[${n}] = (r[${n}] & 0xffff0000) | ${v};`
      : n < 4
        ? `r[${n}] = (r[${n}] & 0xffffff00) | ${v};`
        : `r[${n - 4}] = (r[${n - 4}] & 0xffff00ff) | (${v} << 8);`

const fit = (size: number, e: string): string => (size === 4 ? `((${e}) >>> 0)` : `((${e}) & ${size === 2 ? "0xffff" : "0xff"})`)

const hex = (n: number): string => `0x${(n >>> 0).toString(16)}`

/** The condition of Jcc/SETcc/CMOVcc `cc` over `f`, and the flags it reads. */
const CONDITIONS: ReadonlyArray<readonly [string, number]> = [
  ["(f & 0x800) !== 0", OF],
  ["(f & 0x1) !== 0", CF],
  ["(f & 0x40) !== 0", ZF],
  ["(f & 0x41) !== 0", CF | ZF],
  ["(f & 0x80) !== 0", SF],
  ["(f & 0x4) !== 0", PF],
  ["(((f >>> 7) ^ (f >>> 11)) & 1) !== 0", SF | OF],
  ["((f & 0x40) !== 0 || (((f >>> 7) ^ (f >>> 11)) & 1) !== 0)", ZF | SF | OF]
]
const condition = (cc: number): string => ((cc & 1) === 0 ? CONDITIONS[cc >>> 1][0] : `!(${CONDITIONS[cc >>> 1][0]})`)
const conditionReads = (cc: number): number => CONDITIONS[cc >>> 1][1]

const plain = (code: string): Translated => ({ reads: 0, writes: 0, code: () => code, ends: false })

/** ADD…CMP (the Intel order of 00-3F and group 1) of `a` and `b` into `v`, and its flags into `f`. */
const aluParts = (op: number, size: number): { result: string; flags: string } => ({
  result: fit(size, ["a + b", "a | b", "a + b + (f & 1)", "a - b - (f & 1)", "a & b", "a - b", "a ^ b", "a - b"][op]),
  flags:
    op === 0
      ? `f = addFlags(a, b, v, ${size}, 0, f);`
      : op === 2
        ? `f = addFlags(a, b, v, ${size}, f & 1, f);`
        : op === 3
          ? `f = subFlags(a, b, v, ${size}, f & 1, f);`
          : op === 5 || op === 7
            ? `f = subFlags(a, b, v, ${size}, 0, f);`
            : `f = logicFlags(v, ${size}, f);`
})

/** The ALU operation on registers or constants `a` and `b`, into register `dst` (-1: CMP). */
const alu = (op: number, size: number, a: string, b: string, dst: number): Translated => {
  const { result, flags } = aluParts(op, size)
  return {
    reads: op === 2 || op === 3 ? CF : 0,
    writes: STATUS,
    code: (live) => {
      if (dst < 0 && !live) return ""
      return `a = ${a}; b = ${b}; v = ${result}; ${dst < 0 ? "" : set(size, dst, "v")}${live ? ` ${flags}` : ""}`
    },
    ends: false
  }
}

const test = (size: number, a: string, b: string): Translated => ({
  reads: 0,
  writes: STATUS,
  code: (live) => (live ? `v = ${fit(size, `${a} & ${b}`)}; f = logicFlags(v, ${size}, f);` : ""),
  ends: false
})

const incDec = (size: number, n: number, decrement: boolean): Translated => ({
  reads: 0,
  writes: STATUS & ~CF,
  code: (live) =>
    `a = ${get(size, n)}; v = ${fit(size, decrement ? "a - 1" : "a + 1")}; ${set(size, n, "v")}` +
    (live ? ` f = ${decrement ? "decFlags" : "incFlags"}(a, v, ${size}, f);` : ""),
  ends: false
})

/** Group 2 by a constant count (already masked to 5 bits and non-zero). */
const shift = (op: number, size: number, n: number, count: number): Translated => {
  const rotate = op < 4
  return {
    reads: op === 2 || op === 3 ? CF : 0,
    writes: rotate ? CF | OF : STATUS,
    code: (live) =>
      `a = ${get(size, n)}; ${set(size, n, `shiftResult(${op}, a, ${count}, ${size}, f)`)}` +
      (live ? ` f = shiftFlags(${op}, a, ${count}, ${size}, f);` : ""),
    ends: false
  }
}

/** IMUL into register `n`: CF = OF = the product does not fit; the other flags keep their values. */
const multiply = (size: number, n: number, a: string, b: string): Translated => ({
  reads: 0,
  writes: CF | OF,
  code: (live) => {
    const product =
      size === 2
        ? `a = ${a}; b = ${b}; t = ((a << 16) >> 16) * ((b << 16) >> 16); v = t & 0xffff; ${set(2, n, "v")}` +
          (live ? ` f = t !== ((v << 16) >> 16) ? f | 0x801 : f & ~0x801;` : "")
        : `a = ${a}; b = ${b}; v = Math.imul(a, b) >>> 0; ${set(4, n, "v")}` +
          (live ? ` f = mulHighSigned(a, b) !== (v >>> 31 === 1 ? 0xffffffff : 0) ? f | 0x801 : f & ~0x801;` : "")
    return product
  },
  ends: false
})

/** The effective address of a memory operand, as LEA computes it. */
const effectiveAddress = (d: Instruction): string => {
  const base = d.memory & 15
  const index = (d.memory >>> 4) & 15
  const terms = [String(d.disp)]
  if (base !== NO_REGISTER) terms.push(`r[${base}]`)
  if (index !== NO_REGISTER) terms.push(`r[${index}] * ${1 << ((d.memory >>> 8) & 3)}`)
  const sum = terms.join(" + ")
  return d.addrSize === 4 ? `((${sum}) >>> 0)` : `((${sum}) & 0xffff)`
}

/**
 * A block of `n` instructions that ends by going back to its own start (`cond`) runs
 * again at once while the budget allows, as QEMU chains a block to itself.
 */
const runAgainIf = (cond: string, n: number): string => `if (${cond} && done + ${2 * n} <= budget) { done += ${n}; continue; }`

/**
 * A near jump to `eip + target` (taken when `cond`, unless null), then the block ends:
 * EIP becomes the target or `eip + next`. `before` runs once the jump is known to be
 * within the CS limit (LOOP's count update).
 */
const jump = (osz: number, cond: string | null, reads: number, start: number, next: number, target: number, index: number, before = ""): Translated => {
  const t = osz === 4 ? `(eip + ${target}) >>> 0` : `(eip + ${target}) & 0xffff`
  const n = index + 1
  const taken =
    `t = ${t}; if (t > c.segLimit[1]) { c.flags = f; c.eip = eip + ${start}; return done + ${index}; } ` +
    `${before}${runAgainIf("t === eip", n)} c.flags = f; c.eip = t; return done + ${n};`
  return {
    reads,
    writes: 0,
    code: () =>
      cond === null ? taken : `if (${cond}) { ${taken} } ${before}c.flags = f; c.eip = eip + ${next}; return done + ${n};`,
    ends: true
  }
}

/** Where the block is: its frame and that frame's count of code writes when it was compiled, for the self-modifying-code check. */
interface BlockFrame {
  readonly frame: number
  readonly writes: number
}

/**
 * EFLAGS, EIP and the instructions retired made current before an instruction that
 * can fault, leave, or be seen by the kernel (an EPT violation's event has the time).
 */
const sync = (start: number, index: number): string =>
  `c.flags = f; c.eip = c.instructionStart = eip + ${start}; c.blockProgress = done + ${index}; c.retired = r0 + done + ${index};`

/**
 * After a memory access: the block ends after this instruction when the kernel asked
 * the CPU to stop (an in-kernel device changed something) or a write hit cached code in
 * the block's own frame (self-modifying code).
 */
const afterAccess = (at: BlockFrame, next: number, index: number): string =>
  `if (c.stopRequested || c.codeWrites[${at.frame}] !== ${at.writes}) { c.flags = f; c.eip = eip + ${next}; return done + ${index + 1}; }`

/** The segment and offset expression of a ModRM memory operand. */
const memoryOperand = (d: Instruction): { seg: number; off: string } => ({
  seg: d.segment >= 0 ? d.segment : d.memory >>> 12,
  off: effectiveAddress(d)
})

/** An instruction run by the interpreter's step from inside the block (`I[index]` is its decoded form). */
const stepped = (at: BlockFrame, start: number, next: number, index: number, ends: boolean): Translated => ({
  reads: STATUS,
  writes: 0,
  code: () =>
    `${sync(start, index)} c.stepInBlock(I[${index}]); f = c.flags; ` +
    (ends
      ? `${runAgainIf("c.eip === eip && !c.stopRequested", index + 1)} return done + ${index + 1};`
      : afterAccess(at, next, index)),
  ends
})

/** MOV/ALU/TEST/INC/DEC with a memory operand, through the CPU's segmented reads and writes. */
const memoryAlu = (
  d: Instruction,
  at: BlockFrame,
  start: number,
  next: number,
  index: number,
  size: number,
  kind: { load?: number; alu?: { op: number; b: string; toReg: number }; store?: string; incDec?: boolean; test?: string }
): Translated => {
  const { seg, off } = memoryOperand(d)
  const check = afterAccess(at, next, index)
  const read = `a = c.readMem(${seg}, t, ${size});`
  const write = (v: string) => `c.writeMem(${seg}, t, ${size}, ${v}); ${check}`
  const prologue = `${sync(start, index)} t = ${off}; `
  if (kind.load !== undefined) return { reads: STATUS, writes: 0, code: () => `${prologue}${read} ${set(size, kind.load!, "a")} ${check}`, ends: false }
  if (kind.store !== undefined) return { reads: STATUS, writes: 0, code: () => `${prologue}${write(kind.store!)}`, ends: false }
  if (kind.test !== undefined) {
    return { reads: STATUS, writes: STATUS, code: (live) => `${prologue}${read}${live ? ` v = ${fit(size, `a & ${kind.test}`)}; f = logicFlags(v, ${size}, f);` : ""} ${check}`, ends: false }
  }
  if (kind.incDec !== undefined) {
    const dec = kind.incDec
    return {
      reads: STATUS,
      writes: STATUS & ~CF,
      code: (live) =>
        `${prologue}${read} v = ${fit(size, dec ? "a - 1" : "a + 1")}; ${live ? `f = ${dec ? "decFlags" : "incFlags"}(a, v, ${size}, f); ` : ""}` +
        write("v"),
      ends: false
    }
  }
  // ALU into a register (toReg ≥ 0), or read-modify-write of memory; CMP only sets flags.
  const { op, b, toReg } = kind.alu!
  const { result, flags } = aluParts(op, size)
  return {
    reads: STATUS,
    writes: STATUS,
    code: (live) => {
      const f = live ? ` ${flags}` : ""
      if (toReg >= 0) {
        const store = op === 7 ? "" : ` ${set(size, toReg, "v")}`
        return `${prologue}b = c.readMem(${seg}, t, ${size}); a = ${get(size, toReg)}; v = ${result};${store}${f} ${check}`
      }
      if (op === 7) return `${prologue}${read} b = ${b}; v = ${result};${f} ${check}`
      // f changes here but reaches the CPU only after the store, as the interpreter commits flags after its write.
      return `${prologue}${read} b = ${b}; v = ${result};${f} ${write("v")}`
    },
    ends: false
  }
}

/**
 * The compiled form of instruction `d` at byte `start` of the block (position `index`),
 * or undefined when it is not one the block compiler handles.
 */
const translateInstruction = (d: Instruction, at: BlockFrame, start: number, index: number): Translated | undefined => {
  if (!d.complete || d.lock || d.rep !== 0) return undefined
  const next = start + d.length
  const mod3 = d.modrmAt >= 0 && d.modrm >= 0xc0
  const inline = d.modrmAt >= 0 && !mod3 ? translateMemoryForm(d, at, start, next, index) : translateRegisterForm(d, start, next, index)
  if (inline !== undefined) return inline
  const how = steppable(d)
  return how === Step.No ? undefined : stepped(at, start, next, index, how === Step.Ends)
}

/** The memory forms compiled inline: MOV, the ALU operations, TEST, INC and DEC. */
const translateMemoryForm = (d: Instruction, at: BlockFrame, start: number, next: number, index: number): Translated | undefined => {
  const op = d.opcode
  const osz = d.opSize
  const reg = (d.modrm >>> 3) & 7
  const size = (op & 1) === 0 && op !== 0x82 ? 1 : osz
  const form = (kind: Parameters<typeof memoryAlu>[6], width = size) => memoryAlu(d, at, start, next, index, width, kind)
  if (op < 0x40 && (op & 7) < 4) {
    const toReg = (op & 2) !== 0
    return form({ alu: { op: op >>> 3, b: toReg ? "" : get(size, reg), toReg: toReg ? reg : -1 } })
  }
  switch (op) {
    case 0x80:
    case 0x81:
    case 0x82:
    case 0x83: {
      const width = op === 0x81 || op === 0x83 ? osz : 1
      const b = op === 0x83 ? (signExtend(d.imm, 1) >>> 0) & (osz === 4 ? 0xffffffff : 0xffff) : d.imm
      return form({ alu: { op: reg, b: hex(b), toReg: -1 } }, width)
    }
    case 0x84:
    case 0x85:
      return form({ test: get(size, reg) })
    case 0x88:
    case 0x89:
      return form({ store: get(size, reg) })
    case 0x8a:
    case 0x8b:
      return form({ load: reg })
    case 0xc6:
    case 0xc7:
      return reg === 0 ? form({ store: hex(d.imm) }) : undefined
    case 0xf6:
    case 0xf7:
      return reg < 2 ? form({ test: hex(d.imm) }) : undefined
    case 0xfe:
    case 0xff:
      return reg < 2 ? form({ incDec: reg === 1 }) : undefined
    default:
      return undefined
  }
}

const enum Step {
  No,
  Yes,
  /** A near jump, call or return: the block ends after it. */
  Ends
}

/**
 * Instructions the interpreter runs from inside a block: any that touch memory, the
 * stack or flags in ways not compiled inline, but never change CS, a mode, a segment,
 * IF, TF or the interrupt shadow, reach the bus or repeat (string instructions).
 */
const steppable = (d: Instruction): Step => {
  const op = d.opcode
  const reg = (d.modrm >>> 3) & 7
  const memory = d.modrmAt >= 0 && d.modrm < 0xc0
  if (op >= 0x50 && op < 0x60) return Step.Yes
  switch (op) {
    case 0x27: case 0x2f: case 0x37: case 0x3f: // DAA, DAS, AAA, AAS
    case 0x68: case 0x6a: case 0x69: case 0x6b: // PUSH imm, IMUL imm
    case 0x86: case 0x87: case 0x8f: // XCHG, POP r/m
    case 0x9c: case 0x9e: case 0x9f: // PUSHF, SAHF, LAHF
    case 0xc0: case 0xc1: case 0xd0: case 0xd1: case 0xd2: case 0xd3: // group 2
    case 0xc9: case 0xd4: case 0xd5: case 0xd7: // LEAVE, AAM, AAD, XLAT
    case 0xf6: case 0xf7: // group 3, with MUL and DIV
    case 0x1a3: case 0x1ab: case 0x1b3: case 0x1bb: case 0x1ba: // BT, BTS, BTR, BTC
    case 0x1a4: case 0x1a5: case 0x1ac: case 0x1ad: // SHLD, SHRD
    case 0x1af: case 0x1b0: case 0x1b1: case 0x1b6: case 0x1b7: case 0x1bc: case 0x1bd: case 0x1be: case 0x1bf: case 0x1c0: case 0x1c1:
      return Step.Yes
    case 0xc2: case 0xc3: case 0xe8:
      return Step.Ends
    case 0xfe:
      return reg < 2 ? Step.Yes : Step.No
    case 0xff:
      return reg < 2 || reg === 6 ? Step.Yes : reg === 2 || reg === 4 ? Step.Ends : Step.No
  }
  if ((op >= 0x140 && op < 0x150) || (op >= 0x190 && op < 0x1a0)) return memory ? Step.Yes : Step.No
  return Step.No
}

/** Register and immediate forms, jumps and flag instructions, compiled inline. */
const translateRegisterForm = (d: Instruction, start: number, next: number, index: number): Translated | undefined => {
  const op = d.opcode
  const osz = d.opSize
  const mod3 = d.modrmAt >= 0 && d.modrm >= 0xc0
  const reg = (d.modrm >>> 3) & 7
  const rm = d.modrm & 7
  if (op < 0x40 && (op & 7) < 4) {
    if (!mod3) return undefined
    const size = (op & 1) === 0 ? 1 : osz
    const toReg = (op & 2) !== 0
    const a = get(size, toReg ? reg : rm)
    const b = get(size, toReg ? rm : reg)
    return alu(op >>> 3, size, a, b, op >>> 3 === 7 ? -1 : toReg ? reg : rm)
  }
  if (op < 0x40 && (op & 7) < 6) {
    const size = (op & 1) === 0 ? 1 : osz
    return alu(op >>> 3, size, get(size, 0), hex(d.imm), op >>> 3 === 7 ? -1 : 0)
  }
  if (op >= 0x40 && op < 0x50) return incDec(osz, op & 7, op >= 0x48)
  if (op >= 0x70 && op < 0x80) return jump(osz, condition(op & 15), conditionReads(op & 15), start, next, next + signExtend(d.imm, 1), index)
  if (op >= 0x80 && op <= 0x83) {
    if (!mod3) return undefined
    const size = op === 0x80 || op === 0x82 ? 1 : osz
    const b = op === 0x83 ? (signExtend(d.imm, 1) >>> 0) & (osz === 4 ? 0xffffffff : 0xffff) : d.imm
    return alu(reg, size, get(size, rm), hex(b), reg === 7 ? -1 : rm)
  }
  if (op >= 0xb0 && op < 0xc0) {
    const size = op < 0xb8 ? 1 : osz
    return plain(set(size, op & 7, hex(d.imm)))
  }
  if (op >= 0x91 && op < 0x98) return plain(`a = ${get(osz, 0)}; ${set(osz, 0, get(osz, op & 7))} ${set(osz, op & 7, "a")}`)
  switch (op) {
    case 0x84:
    case 0x85: {
      if (!mod3) return undefined
      const size = op === 0x84 ? 1 : osz
      return test(size, get(size, rm), get(size, reg))
    }
    case 0x86:
    case 0x87: {
      if (!mod3) return undefined
      const size = op === 0x86 ? 1 : osz
      return plain(`a = ${get(size, rm)}; b = ${get(size, reg)}; ${set(size, rm, "b")} ${set(size, reg, "a")}`)
    }
    case 0x88:
    case 0x89:
    case 0x8a:
    case 0x8b: {
      if (!mod3) return undefined
      const size = (op & 1) === 0 ? 1 : osz
      return op < 0x8a ? plain(`v = ${get(size, reg)}; ${set(size, rm, "v")}`) : plain(`v = ${get(size, rm)}; ${set(size, reg, "v")}`)
    }
    case 0x8d:
      if (mod3) return undefined
      return plain(`v = ${fit(osz, effectiveAddress(d))}; ${set(osz, reg, "v")}`)
    case 0x90:
      return plain("")
    case 0x98:
      return plain(osz === 4 ? `r[0] = (r[0] << 16) >> 16;` : set(2, 0, `(((r[0] << 24) >> 24) & 0xffff)`))
    case 0x99:
      return plain(osz === 4 ? `r[2] = r[0] >>> 31 === 1 ? 0xffffffff : 0;` : set(2, 2, `((r[0] & 0x8000) !== 0 ? 0xffff : 0)`))
    case 0xa8:
    case 0xa9: {
      const size = op === 0xa8 ? 1 : osz
      return test(size, get(size, 0), hex(d.imm))
    }
    case 0xc0:
    case 0xc1:
    case 0xd0:
    case 0xd1: {
      if (!mod3) return undefined
      const size = (op & 1) === 0 ? 1 : osz
      const count = (op < 0xd0 ? d.imm : 1) & 31
      return count === 0 ? plain("") : shift(reg, size, rm, count)
    }
    case 0xc6:
    case 0xc7: {
      if (!mod3 || reg !== 0) return undefined
      const size = op === 0xc6 ? 1 : osz
      return plain(set(size, rm, hex(d.imm)))
    }
    case 0xe0:
    case 0xe1:
    case 0xe2: {
      const count = fit(d.addrSize, `${get(d.addrSize, 1)} - 1`)
      const zf = op === 0xe0 ? " && (f & 0x40) === 0" : op === 0xe1 ? " && (f & 0x40) !== 0" : ""
      // The count is computed first (into v) but stored only once the jump is known not to fault.
      const j = jump(osz, `(v = ${count}) !== 0${zf}`, op === 0xe2 ? 0 : ZF, start, next, next + signExtend(d.imm, 1), index, set(d.addrSize, 1, "v") + " ")
      return j
    }
    case 0xe3:
      return jump(osz, `${get(d.addrSize, 1)} === 0`, 0, start, next, next + signExtend(d.imm, 1), index)
    case 0xe9:
      return jump(osz, null, 0, start, next, next + signExtend(d.imm, osz), index)
    case 0xeb:
      return jump(osz, null, 0, start, next, next + signExtend(d.imm, 1), index)
    case 0xf5:
      return { reads: CF, writes: CF, code: () => "f ^= 1;", ends: false }
    case 0xf8:
      return { reads: 0, writes: CF, code: () => "f &= ~1;", ends: false }
    case 0xf9:
      return { reads: 0, writes: CF, code: () => "f |= 1;", ends: false }
    case 0xfc:
      return plain("f &= ~0x400;")
    case 0xfd:
      return plain("f |= 0x400;")
    case 0xf6:
    case 0xf7: {
      if (!mod3) return undefined
      const size = op === 0xf6 ? 1 : osz
      if (reg < 2) return test(size, get(size, rm), hex(d.imm))
      if (reg === 2) return plain(`v = ${fit(size, `~${get(size, rm)}`)}; ${set(size, rm, "v")}`)
      if (reg === 3) {
        return {
          reads: 0,
          writes: STATUS,
          code: (live) => `a = ${get(size, rm)}; v = ${fit(size, "-a")}; ${set(size, rm, "v")}${live ? ` f = subFlags(0, a, v, ${size}, 0, f);` : ""}`,
          ends: false
        }
      }
      return undefined
    }
    case 0xfe:
    case 0xff:
      if (!mod3 || reg > 1) return undefined
      return incDec(op === 0xfe ? 1 : osz, rm, reg === 1)
    case 0x69:
    case 0x6b: {
      if (!mod3) return undefined
      const imm = op === 0x6b ? (signExtend(d.imm, 1) >>> 0) & (osz === 4 ? 0xffffffff : 0xffff) : d.imm
      return multiply(osz, reg, get(osz, rm), hex(imm))
    }
    case 0x1af:
      return mod3 ? multiply(osz, reg, get(osz, reg), get(osz, rm)) : undefined
    case 0x1b6:
    case 0x1b7:
      return mod3 ? plain(`v = ${get(op === 0x1b6 ? 1 : 2, rm)}; ${set(osz, reg, "v")}`) : undefined
    case 0x1be:
    case 0x1bf: {
      if (!mod3) return undefined
      const size = op === 0x1be ? 1 : 2
      const shiftBy = size === 1 ? 24 : 16
      return plain(`v = ${fit(osz, `(${get(size, rm)} << ${shiftBy}) >> ${shiftBy}`)}; ${set(osz, reg, "v")}`)
    }
  }
  if (op >= 0x140 && op < 0x150) {
    if (!mod3) return undefined
    return { reads: conditionReads(op & 15), writes: 0, code: () => `if (${condition(op & 15)}) { v = ${get(osz, rm)}; ${set(osz, reg, "v")} }`, ends: false }
  }
  if (op >= 0x180 && op < 0x190) return jump(osz, condition(op & 15), conditionReads(op & 15), start, next, next + signExtend(d.imm, osz), index)
  if (op >= 0x190 && op < 0x1a0) {
    if (!mod3) return undefined
    return { reads: conditionReads(op & 15), writes: 0, code: () => `${set(1, rm, `(${condition(op & 15)} ? 1 : 0)`)}`, ends: false }
  }
  if (op >= 0x1c8 && op < 0x1d0) {
    const n = op & 7
    return plain(
      osz === 2 ? set(2, n, "0") : `v = r[${n}]; r[${n}] = (v >>> 24) | ((v >>> 8) & 0xff00) | ((v & 0xff00) << 8) | (v << 24);`
    )
  }
  return undefined
}

const helpers = { addFlags, subFlags, logicFlags, incFlags, decFlags, shiftResult, shiftFlags, mulHighSigned }
const HELPER_NAMES = Object.keys(helpers)
const HELPER_VALUES = Object.values(helpers)

/** Marks the end of the frame while decoding ahead. */
const FRAME_END = { _tag: "FrameEnd" } as const

/**
 * Compiles the block that starts at guest-physical `physical` (CS.D = `code32`; the
 * frame written `writes` times so far), reading the frame through `readCode`.
 * Undefined when its first instruction is not one a block can hold.
 */
export const translateBlock = (physical: number, writes: number, code32: boolean, readCode: (physical: number) => number): TranslationBlock | undefined => {
  let base = physical
  const frameEnd = (physical & ~0xfff) + 0x1000
  const decoder = new Decoder({
    fetchCode: (index) => {
      if (base + index >= frameEnd || index >= 15) throw FRAME_END
      return readCode(base + index)
    }
  })
  const at: BlockFrame = { frame: physical >>> 12, writes }
  const ops: Translated[] = []
  const decoded: Instruction[] = []
  let offset = 0
  while (ops.length < MAX_INSTRUCTIONS) {
    base = physical + offset
    const d = new Instruction()
    try {
      decoder.decode(d, code32)
    } catch (e) {
      if (e === FRAME_END) break
      throw e
    }
    const t = translateInstruction(d, at, offset, ops.length)
    if (t === undefined) break
    ops.push(t)
    decoded.push(d)
    offset += d.length
    if (t.ends) break
  }
  if (ops.length === 0) return undefined
  const last = ops[ops.length - 1]
  // Every status flag is live where the block ends; a jump can also end it early, before itself.
  let live = STATUS
  const code = new Array<string>(ops.length)
  for (let i = ops.length - 1; i >= 0; i--) {
    const t = ops[i]
    code[i] = t.code((t.writes & live) !== 0)
    live = (live & ~t.writes) | t.reads
  }
  const end = last.ends ? "" : `c.flags = f; c.eip = eip + ${offset}; return done + ${ops.length};`
  const body =
    `"use strict"; return function block(c, eip, budget) {\n` +
    `const r = c.regs, r0 = c.retired; let f = c.flags; let a = 0, b = 0, v = 0, t = 0, done = 0;\n` +
    `for (;;) {\n${code.join("\n")}\n${end}\n}\n}`
  // eslint-disable-next-line @typescript-eslint/no-implied-eval
  const run = new Function(...HELPER_NAMES, "I", body)(...HELPER_VALUES, decoded) as TranslationBlock["run"]
  return { run, length: ops.length, byteLength: offset }
}
