/**
 * The disassembler: prints an instruction decoded by THE decoder (decoder.ts) in AT&T
 * syntax, spelled as GNU objdump (binutils 2.40, `-m i386` / `-m i8086`) prints it, so
 * its output can be cross-checked against objdump line by line.
 *
 * Lengths, prefixes, ModRM/SIB, displacements and immediates all come from the decoded
 * {@link Instruction}; this file only adds names: one template per opcode of the one-byte
 * and 0F maps, and per ModRM.reg for the group opcodes. Templates list operands in AT&T
 * order, in the SDM's operand codes (E/G ModRM r/m and reg, I immediate, Is imm8
 * sign-extended, J relative, Ap far pointer, O moffs, S/C/D/R segment/control/debug/
 * general register, X/Y string source/destination, Z register in the opcode; b/w/d/v
 * sizes; Es a word in memory but the operand size in a register). Encodings the decoder leaves to the executor (x87, MMX/SSE, three-byte maps)
 * and those the interpreter treats as undefined print `(bad)`, like objdump.
 *
 * objdump's spelling rules reproduced here: a size suffix (b/w/l) only where no
 * register operand fixes the size ("$" in a template) or where the operand size is
 * not the mode's default ("%" in a template); unused 66/67 printed as data16/addr16
 * (data32/addr32 in 16-bit code); unused segment prefixes printed by name; rep/repz/
 * repnz before string instructions; relative targets as absolute addresses.
 */
import { Decoder, Instruction, NO_REGISTER } from "./decoder.ts"

export interface DisassemblyMode {
  /** CS.D: 32-bit or 16-bit code. */
  codeSize: 16 | 32
}

export interface Disassembled {
  text: string
  length: number
}

const REG8 = ["al", "cl", "dl", "bl", "ah", "ch", "dh", "bh"]
const REG16 = ["ax", "cx", "dx", "bx", "sp", "bp", "si", "di"]
const REG32 = ["eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi"]
const SEG = ["es", "cs", "ss", "ds", "fs", "gs", "?", "?"]
const CC = ["o", "no", "b", "ae", "e", "ne", "be", "a", "s", "ns", "p", "np", "l", "ge", "le", "g"]
const ALU = ["add", "or", "adc", "sbb", "and", "sub", "xor", "cmp"]
const SHIFT = ["rol", "ror", "rcl", "rcr", "shl", "shr", "shl", "sar"]

/** A template: mnemonic and operand codes (AT&T order), or a list of eight by ModRM.reg, or undefined for (bad). */
type Template = string | undefined
type Entry = Template | Template[] | ((d: Instruction, code32: boolean) => Template)

const ONE: Entry[] = new Array<Entry>(256)
const TWO: Entry[] = new Array<Entry>(256)
{
  for (let i = 0; i < 8; i++) {
    const m = ALU[i]
    ONE[i * 8] = `${m} Gb,Eb`
    ONE[i * 8 + 1] = `${m} Gv,Ev`
    ONE[i * 8 + 2] = `${m} Eb,Gb`
    ONE[i * 8 + 3] = `${m} Ev,Gv`
    ONE[i * 8 + 4] = `${m} Ib,AL`
    ONE[i * 8 + 5] = `${m} Iv,AX`
    ONE[0x40 + i] = "inc Zv"
    ONE[0x48 + i] = "dec Zv"
    ONE[0x50 + i] = "push Zv"
    ONE[0x58 + i] = "pop Zv"
    ONE[0x90 + i] = "xchg AX,Zv"
    ONE[0xb0 + i] = "mov Ib,Zb"
    ONE[0xb8 + i] = "mov Iv,Zv"
  }
  for (let c = 0; c < 16; c++) {
    ONE[0x70 + c] = `j${CC[c]} Jb`
    TWO[0x80 + c] = `j${CC[c]} Jv`
    TWO[0x40 + c] = `cmov${CC[c]} Ev,Gv`
    TWO[0x90 + c] = `set${CC[c]} Eb`
  }
  const segs: [number, string][] = [[0x06, "es"], [0x0e, "cs"], [0x16, "ss"], [0x1e, "ds"]]
  for (const [op, s] of segs) {
    ONE[op] = `push% %${s}`
    if (s !== "cs") ONE[op + 1] = `pop% %${s}`
  }
  Object.assign(ONE, {
    0x27: "daa", 0x2f: "das", 0x37: "aaa", 0x3f: "aas",
    0x60: "pusha%", 0x61: "popa%", 0x62: "bound Gv,Mv", 0x63: "arpl Gw,Ew",
    0x68: "push% Iv", 0x69: "imul Iv,Ev,Gv", 0x6a: "push% Is", 0x6b: "imul Is,Ev,Gv",
    0x6c: "insb DX,Yb", 0x6d: "ins&l DX,Yv", 0x6e: "outsb Xb,DX", 0x6f: "outs&l Xv,DX",
    0x80: ALU.map((m) => `${m}$ Ib,Eb`), 0x81: ALU.map((m) => `${m}$ Iv,Ev`),
    0x82: ALU.map((m) => `${m}$ Ib,Eb`), 0x83: ALU.map((m) => `${m}$ Is,Ev`),
    0x84: "test Gb,Eb", 0x85: "test Gv,Ev", 0x86: "xchg Gb,Eb", 0x87: "xchg Gv,Ev",
    0x88: "mov Gb,Eb", 0x89: "mov Gv,Ev", 0x8a: "mov Eb,Gb", 0x8b: "mov Ev,Gv",
    0x8c: "mov Sw,Es", 0x8d: "lea Mv,Gv", 0x8e: "mov Es,Sw",
    0x8f: ["pop% Ev", undefined, undefined, undefined, undefined, undefined, undefined, undefined],
    // 66 90 is an exchange of the other size to objdump, not a NOP.
    0x90: (d: Instruction, code32: boolean) => (d.rep === 0xf3 ? "pause" : d.opSize === (code32 ? 4 : 2) ? "nop" : "xchg AX,AX"),
    0x98: "CBW", 0x99: "CWD", 0x9a: "lcall% Ap", 0x9b: "fwait",
    0x9c: "pushf%", 0x9d: "popf%", 0x9e: "sahf", 0x9f: "lahf",
    0xa0: "mov Ob,AL", 0xa1: "mov Ov,AX", 0xa2: "mov AL,Ob", 0xa3: "mov AX,Ov",
    0xa4: "movsb Xb,Yb", 0xa5: "movs&l Xv,Yv", 0xa6: "cmpsb Yb,Xb", 0xa7: "cmps&l Yv,Xv",
    0xa8: "test Ib,AL", 0xa9: "test Iv,AX",
    0xaa: "stos AL,Yb", 0xab: "stos AX,Yv", 0xac: "lods Xb,AL", 0xad: "lods Xv,AX",
    0xae: "scas Yb,AL", 0xaf: "scas Yv,AX",
    0xc0: SHIFT.map((m) => `${m}$ Ib,Eb`), 0xc1: SHIFT.map((m) => `${m}$ Ib,Ev`),
    0xc2: "ret% Iw", 0xc3: "ret%", 0xc4: "les Mv,Gv", 0xc5: "lds Mv,Gv",
    0xc6: ["mov$ Ib,Eb", undefined, undefined, undefined, undefined, undefined, undefined, undefined],
    0xc7: ["mov$ Iv,Ev", undefined, undefined, undefined, undefined, undefined, undefined, undefined],
    0xc8: "enter% Iw,I2", 0xc9: "leave%", 0xca: "lret% Iw", 0xcb: "lret%",
    0xcc: "int3", 0xcd: "int Ib", 0xce: "into", 0xcf: "iret%",
    0xd0: SHIFT.map((m) => `${m}$ Eb`), 0xd1: SHIFT.map((m) => `${m}$ Ev`),
    0xd2: SHIFT.map((m) => `${m}$ CL,Eb`), 0xd3: SHIFT.map((m) => `${m}$ CL,Ev`),
    0xd4: "aam Ib", 0xd5: "aad Ib", 0xd7: "xlat XL",
    0xe0: "loopne Jb", 0xe1: "loope Jb", 0xe2: "loop Jb", 0xe3: "JCXZ Jb",
    0xe4: "in Ib,AL", 0xe5: "in Ib,AX", 0xe6: "out AL,Ib", 0xe7: "out AX,Ib",
    0xe8: "call% Jv", 0xe9: "jmp% Jv", 0xea: "ljmp% Ap", 0xeb: "jmp Jb",
    0xec: "in DX,AL", 0xed: "in DX,AX", 0xee: "out AL,DX", 0xef: "out AX,DX",
    0xf1: "int1", 0xf4: "hlt", 0xf5: "cmc",
    0xf6: ["test$ Ib,Eb", "test$ Ib,Eb", "not$ Eb", "neg$ Eb", "mul$ Eb", "imul$ Eb", "div$ Eb", "idiv$ Eb"],
    0xf7: ["test$ Iv,Ev", "test$ Iv,Ev", "not$ Ev", "neg$ Ev", "mul$ Ev", "imul$ Ev", "div$ Ev", "idiv$ Ev"],
    0xf8: "clc", 0xf9: "stc", 0xfa: "cli", 0xfb: "sti", 0xfc: "cld", 0xfd: "std",
    0xfe: ["inc$ Eb", "dec$ Eb", undefined, undefined, undefined, undefined, undefined, undefined],
    0xff: ["inc$ Ev", "dec$ Ev", "call% *Ev", "lcall% *Mv", "jmp% *Ev", "ljmp% *Mv", "push% Ev", undefined]
  })
  Object.assign(TWO, {
    0x00: ["sldt Es", "str Es", "lldt Ew", "ltr Ew", "verr Ew", "verw Ew", undefined, undefined],
    0x01: (d: Instruction) => {
      const reg = (d.modrm >>> 3) & 7
      if (d.modrm >= 0xc0) return reg === 4 ? "smsw Es" : reg === 6 ? "lmsw Ew" : undefined
      return ["sgdt& M", "sidt& M", "lgdt& M", "lidt& M", "smsw Ew", undefined, "lmsw Ew", "invlpg M"][reg]
    },
    0x02: "lar Es,Gv", 0x03: "lsl Es,Gv", 0x06: "clts", 0x08: "invd", 0x09: "wbinvd", 0x0b: "ud2",
    0x0d: ["prefetch M", "prefetchw M", "prefetchwt1 M", "prefetch M", "prefetch M", "prefetch M", "prefetch M", "prefetch M"],
    0x18: ["prefetchnta M", "prefetcht0 M", "prefetcht1 M", "prefetcht2 M", "nop$ Ev", "nop$ Ev", "nop$ Ev", "nop$ Ev"],
    0x19: "nop$ Ev", 0x1a: "nop$ Ev", 0x1b: "nop$ Ev", 0x1c: "nop$ Ev", 0x1d: "nop$ Ev", 0x1e: "nop$ Ev", 0x1f: "nop$ Ev",
    0x20: "mov Cd,Rd", 0x21: "mov Dd,Rd", 0x22: "mov Rd,Cd", 0x23: "mov Rd,Dd",
    0x30: "wrmsr", 0x31: "rdtsc", 0x32: "rdmsr", 0x33: "rdpmc", 0x34: "sysenter", 0x35: "sysexit", 0x37: "getsec",
    0x77: "emms",
    0xa0: "push% %fs", 0xa1: "pop% %fs", 0xa2: "cpuid", 0xa3: "bt Gv,Ev",
    0xa4: "shld Ib,Gv,Ev", 0xa5: "shld CL,Gv,Ev", 0xa8: "push% %gs", 0xa9: "pop% %gs",
    0xab: "bts Gv,Ev", 0xac: "shrd Ib,Gv,Ev", 0xad: "shrd CL,Gv,Ev",
    0xae: (d: Instruction) => (d.modrm >= 0xe8 ? ["lfence", "mfence", "sfence"][((d.modrm >>> 3) & 7) - 5] : undefined),
    0xaf: "imul Ev,Gv", 0xb0: "cmpxchg Gb,Eb", 0xb1: "cmpxchg Gv,Ev", 0xb2: "lss Mv,Gv", 0xb3: "btr Gv,Ev",
    0xb4: "lfs Mv,Gv", 0xb5: "lgs Mv,Gv", 0xb6: "movzb& Eb,Gv", 0xb7: "movzw& Ew,Gv",
    0xba: [undefined, undefined, undefined, undefined, "bt$ Ib,Ev", "bts$ Ib,Ev", "btr$ Ib,Ev", "btc$ Ib,Ev"],
    0xbb: "btc Gv,Ev", 0xbc: "bsf Ev,Gv", 0xbd: "bsr Ev,Gv", 0xbe: "movsb& Eb,Gv", 0xbf: "movsw& Ew,Gv",
    0xc0: "xadd Gb,Eb", 0xc1: "xadd Gv,Ev",
    0xc7: (d: Instruction) => (d.modrm < 0xc0 && ((d.modrm >>> 3) & 7) === 1 ? "cmpxchg8b M" : undefined)
  })
  for (let r = 0; r < 8; r++) TWO[0xc8 + r] = "bswap Zv"
}

const hex = (v: number): string => `0x${v.toString(16)}`
const signedHex = (v: number): string => (v < 0 ? `-0x${(-v).toString(16)}` : hex(v))
const mask = (v: number, size: number): number => (size === 4 ? v >>> 0 : v & (size === 2 ? 0xffff : 0xff))

/** Formats one decoded instruction; `address` is the address of its first byte. */
export function formatInstruction(d: Instruction, address: number, code32: boolean): string {
  const op = d.opcode
  const twoByte = op >= 0x100
  const entry = (twoByte ? TWO : ONE)[op & 0xff]
  let template: Template
  if (typeof entry === "function") template = entry(d, code32)
  else if (Array.isArray(entry)) template = d.modrmAt >= 0 ? entry[(d.modrm >>> 3) & 7] : undefined
  else template = entry
  // Memory-only operands (LEA, LDS, LGDT, …) with a register ModRM are undefined.
  if (template !== undefined && /\bM|\*Mv/.test(template) && d.modrmAt >= 0 && d.modrm >= 0xc0) template = undefined
  if (template === undefined || (!d.complete && op !== 0x63 && op !== 0x102 && op !== 0x103)) return "(bad)"

  const defaultSize = code32 ? 4 : 2
  const space = template.indexOf(" ")
  let mnemonic = space < 0 ? template : template.slice(0, space)
  const codes = space < 0 ? [] : template.slice(space + 1).split(",")
  let usedData = false
  let usedAddr = false
  let usedSeg = false
  const memory = d.modrmAt >= 0 && d.modrm < 0xc0
  const reg = (d.modrm >>> 3) & 7
  const rm = d.modrm & 7
  const regName = (size: number, r: number, operandSized = true): string => {
    if (operandSized && size !== 1) usedData = true
    return `%${(size === 1 ? REG8 : size === 2 ? REG16 : REG32)[r]}`
  }

  // 67 counts as used only where an address register shows the address size (objdump).
  const memoryText = (): string => {
    let seg = ""
    if (d.segment >= 0) {
      seg = `%${SEG[d.segment]}:`
      usedSeg = true
    }
    const base = d.memory & 15
    const index = (d.memory >>> 4) & 15
    const scale = (d.memory >>> 8) & 3
    if (d.addrSize === 2) {
      usedAddr = true
      if (base === NO_REGISTER && index === NO_REGISTER) return `${seg}${signedHex((d.disp << 16) >> 16)}`
      const regs = [base, index].filter((r) => r !== NO_REGISTER).map((r) => `%${REG16[r]}`)
      const disp = d.modrm >>> 6 === 0 ? "" : signedHex(d.disp)
      return `${seg}${disp}(${regs.join(",")})`
    }
    const hasSib = rm === 4
    const scaleText = hasSib ? d.bytes[d.modrmAt + 1] >>> 6 : 0
    const haveBase = base !== NO_REGISTER
    const haveIndex = index !== NO_REGISTER
    const needIndex = hasSib && !haveBase && !haveIndex && code32
    const haveDisp = haveBase || needIndex || (hasSib && (haveIndex || scaleText !== 0))
    // A bare disp32 in 16-bit code shows nothing of the 32-bit address size: objdump prints addr32.
    if (haveBase || haveIndex || code32) usedAddr = true
    let text = seg
    if (d.modrm >>> 6 !== 0 || !haveBase) text += haveDisp ? signedHex(d.disp) : hex(d.disp >>> 0)
    if (haveBase || haveIndex || needIndex || (hasSib && scaleText !== 0)) {
      text += "("
      if (haveBase) text += `%${REG32[base]}`
      if (hasSib && (scaleText !== 0 || needIndex || haveIndex || (haveBase && base !== 4))) {
        text += `,%${haveIndex ? REG32[index] : "eiz"},${1 << scale}`
      }
      text += ")"
    }
    return text
  }
  const stringOperand = (source: boolean, size: number): string => {
    usedAddr = true
    if (size !== 1) usedData = true
    const r = source ? 6 : 7
    let seg = source ? "%ds:" : "%es:"
    if (source && d.segment >= 0) {
      seg = `%${SEG[d.segment]}:`
      usedSeg = true
    }
    return `${seg}(%${(d.addrSize === 2 ? REG16 : REG32)[r]})`
  }

  // The width a "$" suffix names, and whether a general register fixes it.
  let width = 0
  let registerOperand = false
  const operands: string[] = []
  for (const raw of codes) {
    let code = raw
    let star = ""
    if (code.startsWith("*")) {
      star = "*"
      code = code.slice(1)
    }
    const size = code.endsWith("b") ? 1 : code.endsWith("w") ? 2 : code.endsWith("d") ? 4 : d.opSize
    let text: string
    const literal = code === "AL" || code === "AX" || code === "CL" || code === "DX" || code.startsWith("%")
    switch (literal ? "" : code[0]) {
      case "E":
        if (!memory) registerOperand = true
        if (width === 0) width = size
        // Es: MOV from a segment register, a word in memory but the operand size in a register.
        if (code === "Ev" || (code === "Es" && !memory)) usedData = true
        text = memory ? memoryText() : regName(size, rm, code === "Ev" || code === "Es")
        break
      case "M":
        if (size !== 1 && code !== "M") usedData = true
        text = memoryText()
        break
      case "G":
        registerOperand = true
        text = regName(size, reg, code === "Gv")
        break
      case "Z":
        registerOperand = true
        text = regName(size, op & 7)
        break
      case "I":
        if (code === "Is") {
          usedData = true
          text = `$${hex(mask((d.imm << 24) >> 24, d.opSize))}`
        } else if (code === "I2") {
          text = `$${hex(d.imm2)}`
        } else {
          if (code === "Iv") usedData = true
          text = `$${hex(d.imm)}`
        }
        break
      case "J": {
        const disp = d.immSize === 1 ? (d.imm << 24) >> 24 : d.immSize === 2 ? (d.imm << 16) >> 16 : d.imm | 0
        if (code === "Jv") usedData = true
        // objdump's wrapping: 16-bit code wraps within the 64 KiB of the instruction's
        // address; in 32-bit code a 66 prefix truncates a rel16 target to 16 bits but is
        // shown as an unused data16 (and ignored) before a rel8 branch.
        const target = address + d.length + disp
        if (d.opSize === 4 || (code32 && code === "Jb")) text = hex(target >>> 0)
        else if (code32) text = hex(target & 0xffff)
        else text = hex(((address & ~0xffff) | (target & 0xffff)) >>> 0)
        break
      }
      case "A":
        usedData = true
        text = `$${hex(d.imm2)},$${hex(d.imm)}`
        break
      case "O":
        if (d.segment >= 0) usedSeg = true
        text = `${d.segment >= 0 ? `%${SEG[d.segment]}:` : ""}${hex(d.imm)}`
        break
      case "S":
        if (reg > 5) return "(bad)"
        text = `%${SEG[reg]}`
        break
      case "C":
        text = `%cr${reg}`
        break
      case "D":
        text = `%db${reg}`
        break
      case "R":
        text = `%${REG32[rm]}`
        break
      case "X":
        if (code === "XL") {
          usedAddr = true
          if (d.segment >= 0) usedSeg = true
          text = `%${d.segment >= 0 ? SEG[d.segment] : "ds"}:(%${d.addrSize === 2 ? "bx" : "ebx"})`
        } else text = stringOperand(true, size)
        break
      case "Y":
        text = stringOperand(false, size)
        break
      default:
        if (code === "AL") text = "%al"
        else if (code === "AX") text = regName(d.opSize, 0)
        else if (code === "CL") text = "%cl"
        else if (code === "DX") text = "(%dx)"
        else text = code
        registerOperand ||= code === "AX" || code === "AL"
    }
    operands.push(star + text)
  }

  // Mnemonic spellings that depend on sizes.
  const sizeLetter = (size: number): string => (size === 1 ? "b" : size === 2 ? "w" : "l")
  if (mnemonic.endsWith("$")) {
    mnemonic = mnemonic.slice(0, -1)
    if (!registerOperand) mnemonic += sizeLetter(width || d.opSize)
  } else if (mnemonic.endsWith("%")) {
    mnemonic = mnemonic.slice(0, -1)
    usedData = true
    if (d.opSize !== defaultSize && !registerOperand) mnemonic += sizeLetter(d.opSize)
  } else if (mnemonic.endsWith("&l")) {
    mnemonic = mnemonic.slice(0, -2) + sizeLetter(d.opSize)
    usedData = true
  } else if (mnemonic.endsWith("&")) {
    // movzb/movsb/movzw/movsw take the destination size; sgdt and friends the operand size.
    mnemonic = mnemonic.slice(0, -1) + sizeLetter(d.opSize)
    usedData = true
  } else if (mnemonic === "CBW") {
    mnemonic = d.opSize === 2 ? "cbtw" : "cwtl"
    usedData = true
  } else if (mnemonic === "CWD") {
    mnemonic = d.opSize === 2 ? "cwtd" : "cltd"
    usedData = true
  } else if (mnemonic === "JCXZ") {
    mnemonic = d.addrSize === 2 ? "jcxz" : "jecxz"
    usedAddr = true
  } else if (/^loop/.test(mnemonic)) {
    // LOOP names a non-default address size (ECX/CX) with a suffix.
    if (d.addrSize !== defaultSize) mnemonic += sizeLetter(d.addrSize)
    usedAddr = true
  }

  const prefixes: string[] = []
  const stringOp = (op >= 0x6c && op <= 0x6f) || (op >= 0xa4 && op <= 0xa7) || (op >= 0xaa && op <= 0xaf)
  if (d.lock) prefixes.push("lock")
  if (d.rep !== 0 && !(op === 0x90 && d.rep === 0xf3)) {
    const compares = op === 0xa6 || op === 0xa7 || op === 0xae || op === 0xaf
    prefixes.push(d.rep === 0xf2 ? "repnz" : compares || !stringOp ? "repz" : "rep")
  }
  if (d.segment >= 0 && !usedSeg) prefixes.push(SEG[d.segment])
  if (d.opSize !== defaultSize && !usedData) prefixes.push(code32 ? "data16" : "data32")
  if (d.addrSize !== defaultSize && !usedAddr) prefixes.push(code32 ? "addr16" : "addr32")
  // objdump pads prefixes and mnemonic together to a column of 6.
  const name = [...prefixes, mnemonic].join(" ")
  return operands.length === 0 ? name : `${name.padEnd(6)} ${operands.join(",")}`
}

/** Decodes one instruction from a plain byte array (nothing past the end, at most 15 bytes). */
export function decodeBytes(bytes: Uint8Array, offset: number, code32: boolean, into = new Instruction()): Instruction {
  const decoder = new Decoder({
    fetchCode: (index) => {
      if (index >= 15 || offset + index >= bytes.length) throw new RangeError("instruction runs past the end of the bytes")
      return bytes[offset + index]
    }
  })
  decoder.decode(into, code32)
  // ARPL and LAR/LSL take an ordinary ModRM that the decoder leaves to the executor
  // (their real-mode #UD comes first); the decoder's own ModRM reader finishes them.
  if (!into.complete && (into.opcode === 0x63 || into.opcode === 0x102 || into.opcode === 0x103)) {
    decoder.modrm(into, into.opcodeEnd + (into.opcode === 0x63 ? 0 : 1))
  }
  return into
}

/**
 * Disassembles the instruction at `bytes[offset]`, which sits at `address` (for relative
 * targets). Bytes that do not decode, or that run past the end, print as one `(bad)` byte.
 */
export function disassemble(bytes: Uint8Array, offset: number, mode: DisassemblyMode, address: number): Disassembled {
  const code32 = mode.codeSize === 32
  let d: Instruction
  try {
    d = decodeBytes(bytes, offset, code32)
  } catch (e) {
    if (e instanceof RangeError) return { text: "(bad)", length: 1 }
    throw e
  }
  const text = formatInstruction(d, address, code32)
  if (text === "(bad)" && !d.complete) return { text, length: 1 }
  return { text, length: d.length }
}
