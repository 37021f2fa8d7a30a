/**
 * Translation blocks, as QEMU's TCG calls them: a run of guest instructions that
 * touch only registers and flags, ending at a jump, compiled to one JavaScript
 * function that V8 then compiles to machine code.
 *
 * A block is attached to the decoded instruction it starts with (so the decoded-
 * instruction cache's key — guest-physical address, CS.D and the frame's write count —
 * invalidates it too) and lies within that instruction's 4 KiB frame. It holds only
 * instructions that cannot fault, leave the CPU, touch memory or change IF, TF or the
 * interrupt shadow; the interpreter runs everything else. Its effect on registers,
 * EFLAGS and EIP is exactly that of stepping the same instructions one at a time, with
 * one saving: status flags that a later instruction of the block overwrites before
 * anything reads them are not computed (dead-flag elimination, as TCG does).
 *
 * The function takes the CPU and the EIP it starts at (code bytes are the same for any
 * EIP that maps to them; targets are computed from it) and returns how many
 * instructions it retired: all of them, or — when a jump's target lies beyond the CS
 * limit, which is a #GP on the jump — those before the jump, with EIP on the jump so
 * that the interpreter raises the fault.
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

/** ADD…CMP (the Intel order of 00-3F and group 1) of `a` and `b`, into register `dst` (-1: CMP). */
const alu = (op: number, size: number, a: string, b: string, dst: number): Translated => {
  const carry = op === 2 || op === 3
  const result = [
    `a + b`,
    `a | b`,
    `a + b + (f & 1)`,
    `a - b - (f & 1)`,
    `a & b`,
    `a - b`,
    `a ^ b`,
    `a - b`
  ][op]
  const flags =
    op === 0
      ? `f = addFlags(a, b, v, ${size}, 0, f);`
      : op === 2
        ? `f = addFlags(a, b, v, ${size}, f & 1, f);`
        : op === 3
          ? `f = subFlags(a, b, v, ${size}, f & 1, f);`
          : op === 5 || op === 7
            ? `f = subFlags(a, b, v, ${size}, 0, f);`
            : `f = logicFlags(v, ${size}, f);`
  return {
    reads: carry ? CF : 0,
    writes: STATUS,
    code: (live) => {
      if (dst < 0 && !live) return ""
      const store = dst < 0 ? "" : set(size, dst, "v")
      return `a = ${a}; b = ${b}; v = ${fit(size, result)}; ${store}${live ? ` ${flags}` : ""}`
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
 * A near jump to `eip + target` (taken when `cond`, unless null), then the block ends:
 * EIP becomes the target or `eip + next`. `before` runs once the jump is known to be
 * within the CS limit (LOOP's count update).
 */
const jump = (osz: number, cond: string | null, reads: number, start: number, next: number, target: number, index: number, before = ""): Translated => {
  const t = osz === 4 ? `(eip + ${target}) >>> 0` : `(eip + ${target}) & 0xffff`
  const n = index + 1
  // A jump back to the block's own start runs it again at once while the budget allows (QEMU chains blocks likewise).
  const taken =
    `t = ${t}; if (t > c.segLimit[1]) { c.flags = f; c.eip = eip + ${start}; return done + ${index}; } ` +
    `${before}if (t === eip && done + ${2 * n} <= budget) { done += ${n}; continue; } c.flags = f; c.eip = t; return done + ${n};`
  return {
    reads,
    writes: 0,
    code: () =>
      cond === null ? taken : `if (${cond}) { ${taken} } ${before}c.flags = f; c.eip = eip + ${next}; return done + ${n};`,
    ends: true
  }
}

/**
 * The compiled form of instruction `d` at byte `start` of the block (position `index`),
 * or undefined when it is not one the block compiler handles.
 */
const translateInstruction = (d: Instruction, start: number, index: number): Translated | undefined => {
  if (!d.complete || d.lock || d.rep !== 0) return undefined
  const op = d.opcode
  const osz = d.opSize
  const next = start + d.length
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
 * Compiles the block that starts with `first`, the cached decoding of the instruction
 * at guest-physical `physical` (CS.D = `code32`), reading the rest of the frame
 * through `readCode`. Undefined when `first` itself is not compilable.
 */
export const translateBlock = (
  first: Instruction,
  physical: number,
  code32: boolean,
  readCode: (physical: number) => number
): TranslationBlock | undefined => {
  let base = physical
  const frameEnd = (physical & ~0xfff) + 0x1000
  const decoder = new Decoder({
    fetchCode: (index) => {
      if (base + index >= frameEnd || index >= 15) throw FRAME_END
      return readCode(base + index)
    }
  })
  const ops: Translated[] = []
  let offset = 0
  let d = first
  for (;;) {
    const t = translateInstruction(d, offset, ops.length)
    if (t === undefined) break
    ops.push(t)
    offset += d.length
    if (t.ends || ops.length === MAX_INSTRUCTIONS) break
    base = physical + offset
    d = new Instruction()
    try {
      decoder.decode(d, code32)
    } catch (e) {
      if (e === FRAME_END) break
      throw e
    }
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
  const end = last.ends ? "" : `c.flags = f; c.eip = eip + ${offset}; return ${ops.length};`
  const body =
    `"use strict"; return function block(c, eip, budget) {\n` +
    `const r = c.regs; let f = c.flags; let a = 0, b = 0, v = 0, t = 0, done = 0;\n` +
    `for (;;) {\n${code.join("\n")}\n${end}\n}\n}`
  // eslint-disable-next-line @typescript-eslint/no-implied-eval
  const run = new Function(...HELPER_NAMES, body)(...HELPER_VALUES) as TranslationBlock["run"]
  return { run, length: ops.length, byteLength: offset }
}
