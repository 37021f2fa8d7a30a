/**
 * The instruction decoder: prefixes, operand and address size, the opcode (one-byte
 * map and the 0F map), ModRM, SIB, displacement and immediates, fetched byte by byte
 * through the CPU's own code fetch (so CS-limit, 15-byte, #PF and EPT faults happen
 * exactly where the fetch of that byte happens), into a decoded form the interpreter
 * executes and a disassembler can print.
 *
 * The decoded form is an {@link Instruction}: the bytes, the opcode, the prefixes as
 * operand size, address size, segment override, rep and lock, the ModRM byte with the
 * memory operand resolved to base, index, scale, default segment and displacement, and
 * the immediates with their sizes; a disassembler prints from these fields (the
 * mnemonic follows from the opcode, with the ModRM reg field for the group opcodes
 * and the prefixes for the string and size-dependent forms). Instruction
 * objects are made once (one per slot of the CPU's decoded-instruction cache, at the
 * slot's first use, and one scratch) and decoded into again and again: nothing is
 * allocated per instruction.
 *
 * Which operands an opcode has is one table per map ({@link ONE_BYTE}, {@link TWO_BYTE}).
 */
import type { TranslationBlock } from "./translationBlock.ts"

/** The decoded form of one instruction; reused (one per cache slot), never allocated per instruction. */
export class Instruction {
  /** Bytes fetched so far (at most 15), in `bytes`. */
  length = 0
  readonly bytes: number[] = new Array<number>(16).fill(0)
  /** 0x00-0xff: the one-byte map; 0x100 | b: 0F b (0F 38 and 0F 3A leave their third byte to the executor). */
  opcode = 0
  /** Operand and address size in bytes (2 | 4), after 66 and 67. */
  opSize = 4
  addrSize = 4
  /** Segment-override prefix (Seg.*), or -1. */
  segment = -1
  /** F2, F3 or 0 (the last one wins). */
  rep = 0
  lock = false
  /** Offset of the byte after the first opcode byte: where execution starts reading. */
  opcodeEnd = 0
  /** Offset of the ModRM byte, or -1 when there is none or it is not decoded. */
  modrmAt = -1
  modrm = 0
  /**
   * The memory operand (mod ≠ 3): base | index << 4 | scale << 8 | default segment << 12,
   * base and index a register (0-7) or NO_REGISTER. 16-bit forms: base BX/BP, index SI/DI.
   */
  memory = 0
  /** Displacement, sign-extended (a 16-bit absolute [disp16] zero-extended). */
  disp = 0
  /** Offset after ModRM, SIB and displacement. */
  modrmEnd = 0
  /** First immediate (zero-extended) and its size in bytes (0: none). */
  imm = 0
  immSize = 0
  /** Second immediate: ENTER's nesting level, a far pointer's selector. */
  imm2 = 0
  imm2Size = 0
  /**
   * The decoder took the whole instruction from its tables. False: the executor reads
   * further bytes itself (undefined and unmodelled encodings, and system instructions
   * whose mode checks come before their ModRM); such instructions are not cached.
   */
  complete = true
  /** Cache key: guest-physical address of byte 0, CS.D (-1: empty), the frame's write count. */
  physical = 0
  mode = -1
  writes = 0
  /** The translation block that starts here (cached instructions only), and how often the instruction ran without one. */
  block: TranslationBlock | undefined = undefined
  heat = 0
}

/** A memory operand's base or index field when it has none. */
export const NO_REGISTER = 8

/** The CPU's fetch of byte `index` of the instruction being decoded, with every check a fetch makes. */
export interface CodeFetch {
  fetchCode(index: number): number
}

/** What follows an opcode. */
const enum Operands {
  None,
  Modrm,
  Ib,
  Iw,
  /** An immediate of the operand size. */
  Iz,
  ModrmIb,
  ModrmIz,
  /** ENTER: imm16, imm8. */
  IwIb,
  /** Far pointer: offset of the operand size, selector. */
  Far,
  /** A0-A3: an offset of the address size. */
  Moffs,
  /** F6/F7: TEST (reg 0, 1) has an immediate of the operand width. */
  Group3,
  /** C6/C7: MOV (reg 0) has an immediate of the operand width. */
  Group11,
  /** 0F BA: BT/BTS/BTR/BTC (reg 4-7) have imm8. */
  Group8,
  /** MOV to/from CR/DR: one ModRM byte taken as register-register whatever its mod. */
  ModrmRegister,
  Escape,
  /** The executor fetches the rest itself (see Instruction.complete). */
  Executor
}

const ONE_BYTE = new Uint8Array(256)
const TWO_BYTE = new Uint8Array(256).fill(Operands.Executor)
{
  const set = (table: Uint8Array, kind: Operands, ...ops: number[]): void => {
    for (const op of ops) table[op] = kind
  }
  const range = (from: number, to: number): number[] => Array.from({ length: to - from + 1 }, (_, i) => from + i)
  for (let op = 0; op < 0x40; op += 8) {
    set(ONE_BYTE, Operands.Modrm, op, op + 1, op + 2, op + 3)
    set(ONE_BYTE, Operands.Ib, op + 4)
    set(ONE_BYTE, Operands.Iz, op + 5)
  }
  ONE_BYTE[0x0f] = Operands.Escape
  set(ONE_BYTE, Operands.Modrm, 0x62, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8a, 0x8b, 0x8c, 0x8d, 0x8e, 0x8f)
  set(ONE_BYTE, Operands.Modrm, 0xc4, 0xc5, 0xd0, 0xd1, 0xd2, 0xd3, 0xfe, 0xff)
  // ARPL is #UD in real mode before its ModRM is read; x87 is #NM before anything.
  set(ONE_BYTE, Operands.Executor, 0x63, ...range(0xd8, 0xdf))
  set(ONE_BYTE, Operands.Iz, 0x68, 0xa9, ...range(0xb8, 0xbf), 0xe8, 0xe9)
  set(ONE_BYTE, Operands.Ib, 0x6a, ...range(0x70, 0x7f), 0xa8, ...range(0xb0, 0xb7), 0xcd, 0xd4, 0xd5, ...range(0xe0, 0xe7), 0xeb)
  set(ONE_BYTE, Operands.ModrmIz, 0x69, 0x81)
  set(ONE_BYTE, Operands.ModrmIb, 0x6b, 0x80, 0x82, 0x83, 0xc0, 0xc1)
  set(ONE_BYTE, Operands.Iw, 0xc2, 0xca)
  set(ONE_BYTE, Operands.Far, 0x9a, 0xea)
  set(ONE_BYTE, Operands.Moffs, 0xa0, 0xa1, 0xa2, 0xa3)
  set(ONE_BYTE, Operands.Group11, 0xc6, 0xc7)
  ONE_BYTE[0xc8] = Operands.IwIb
  set(ONE_BYTE, Operands.Group3, 0xf6, 0xf7)

  // 0F 02/03 (LAR/LSL) are #UD in real mode before the ModRM; 0F 38, 0F 3A, 0F B8 and
  // the MMX/SSE space are not modelled: the executor reads what it needs.
  set(TWO_BYTE, Operands.Modrm, 0x00, 0x01, 0x0d, ...range(0x18, 0x1f), ...range(0x40, 0x4f), ...range(0x90, 0x9f))
  set(TWO_BYTE, Operands.Modrm, 0xa3, 0xa5, 0xab, 0xad, 0xae, 0xaf, 0xb0, 0xb1, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7)
  set(TWO_BYTE, Operands.Modrm, 0xbb, 0xbc, 0xbd, 0xbe, 0xbf, 0xc0, 0xc1, 0xc7)
  set(TWO_BYTE, Operands.ModrmRegister, 0x20, 0x21, 0x22, 0x23)
  set(TWO_BYTE, Operands.ModrmIb, 0xa4, 0xac)
  set(TWO_BYTE, Operands.Iz, ...range(0x80, 0x8f))
  set(TWO_BYTE, Operands.Group8, 0xba)
  set(TWO_BYTE, Operands.None, 0x06, 0x08, 0x09, 0x30, 0x31, 0x32, 0x33, 0x34, 0x35, 0x37, 0x77)
  set(TWO_BYTE, Operands.None, 0xa0, 0xa1, 0xa2, 0xa8, 0xa9, ...range(0xc8, 0xcf))
  // Undefined in the 0F map: #UD right after the opcode.
  set(TWO_BYTE, Operands.None, 0x04, 0x05, 0x07, 0x0a, 0x0b, 0x0c, 0x0e, 0x0f, 0x24, 0x25, 0x26, 0x27, 0x36)
  set(TWO_BYTE, Operands.None, 0x39, 0x3b, 0x3c, 0x3d, 0x3e, 0x3f, 0x7a, 0x7b, 0xa6, 0xa7, 0xaa, 0xb9, 0xff)
}

/** Default segments and registers of the eight 16-bit memory forms (BX+SI … BX), as Instruction.memory. */
const ADDRESS16 = Int32Array.of(
  3 | (6 << 4) | (3 << 12),
  3 | (7 << 4) | (3 << 12),
  5 | (6 << 4) | (2 << 12),
  5 | (7 << 4) | (2 << 12),
  NO_REGISTER | (6 << 4) | (3 << 12),
  NO_REGISTER | (7 << 4) | (3 << 12),
  5 | (NO_REGISTER << 4) | (2 << 12),
  3 | (NO_REGISTER << 4) | (3 << 12)
)
const SEG_DS = 3
const SEG_SS = 2

export class Decoder {
  constructor(private readonly source: CodeFetch) {}

  /**
   * Byte `at` of instruction `d`: from `d` if fetched already, otherwise fetched now
   * (bytes are fetched in order, so `at` is then the next one).
   */
  byte(d: Instruction, at: number): number {
    if (at < d.length) return d.bytes[at]
    const b = this.source.fetchCode(at)
    d.bytes[at] = b
    d.length = at + 1
    return b
  }

  /** Decodes the instruction the CPU is about to execute into `d`; `code32` is CS.D. */
  decode(d: Instruction, code32: boolean): void {
    d.length = 0
    d.block = undefined
    d.heat = 0
    let opSize = code32 ? 4 : 2
    let addrSize = opSize
    let segment = -1
    let rep = 0
    let lock = false
    let at = 0
    let op = this.byte(d, at++)
    prefixes: for (;;) {
      switch (op) {
        case 0x26:
          segment = 0
          break
        case 0x2e:
          segment = 1
          break
        case 0x36:
          segment = 2
          break
        case 0x3e:
          segment = 3
          break
        case 0x64:
          segment = 4
          break
        case 0x65:
          segment = 5
          break
        case 0x66:
          opSize = code32 ? 2 : 4
          break
        case 0x67:
          addrSize = code32 ? 2 : 4
          break
        case 0xf0:
          lock = true
          break
        case 0xf2:
        case 0xf3:
          rep = op
          break
        default:
          break prefixes
      }
      op = this.byte(d, at++)
    }
    d.opSize = opSize
    d.addrSize = addrSize
    d.segment = segment
    d.rep = rep
    d.lock = lock
    d.opcodeEnd = at
    d.modrmAt = -1
    d.immSize = 0
    d.imm2Size = 0
    d.complete = true
    let kind = ONE_BYTE[op]
    if (kind === Operands.Escape) {
      op = this.byte(d, at++)
      kind = TWO_BYTE[op]
      op |= 0x100
    }
    d.opcode = op
    switch (kind) {
      case Operands.None:
        return
      case Operands.Modrm:
        this.modrm(d, at)
        return
      case Operands.Ib:
        this.immediate(d, at, 1)
        return
      case Operands.Iw:
        this.immediate(d, at, 2)
        return
      case Operands.Iz:
        this.immediate(d, at, opSize)
        return
      case Operands.ModrmIb:
        this.immediate(d, this.modrm(d, at), 1)
        return
      case Operands.ModrmIz:
        this.immediate(d, this.modrm(d, at), opSize)
        return
      case Operands.IwIb:
        this.immediate2(d, this.immediate(d, at, 2), 1)
        return
      case Operands.Far:
        this.immediate2(d, this.immediate(d, at, opSize), 2)
        return
      case Operands.Moffs:
        this.immediate(d, at, addrSize)
        return
      case Operands.Group3: {
        const end = this.modrm(d, at)
        if (((d.modrm >>> 3) & 7) < 2) this.immediate(d, end, op === 0xf6 ? 1 : opSize)
        return
      }
      case Operands.Group11: {
        const end = this.modrm(d, at)
        if (((d.modrm >>> 3) & 7) === 0) this.immediate(d, end, op === 0xc6 ? 1 : opSize)
        return
      }
      case Operands.Group8: {
        const end = this.modrm(d, at)
        if (((d.modrm >>> 3) & 7) >= 4) this.immediate(d, end, 1)
        return
      }
      case Operands.ModrmRegister:
        d.modrmAt = at
        d.modrm = this.byte(d, at) | 0xc0
        d.modrmEnd = at + 1
        return
      default:
        d.complete = false
        return
    }
  }

  /** The first immediate, `size` bytes at `at`; returns the offset after it. */
  private immediate(d: Instruction, at: number, size: number): number {
    d.imm = this.value(d, at, size)
    d.immSize = size
    return at + size
  }

  private immediate2(d: Instruction, at: number, size: number): void {
    d.imm2 = this.value(d, at, size)
    d.imm2Size = size
  }

  private value(d: Instruction, at: number, size: number): number {
    const lo = this.byte(d, at)
    if (size === 1) return lo
    const v = lo | (this.byte(d, at + 1) << 8)
    if (size === 2) return v
    return (v | (this.byte(d, at + 2) << 16) | (this.byte(d, at + 3) << 24)) >>> 0
  }

  /** ModRM at `at`, with SIB and displacement in `d`'s address size; returns the offset after them. */
  modrm(d: Instruction, at: number): number {
    const m = this.byte(d, at)
    d.modrmAt = at++
    d.modrm = m
    const mod = m >>> 6
    const rm = m & 7
    let disp = 0
    if (mod !== 3) {
      let memory: number
      if (d.addrSize === 2) {
        if (mod === 0 && rm === 6) {
          memory = NO_REGISTER | (NO_REGISTER << 4) | (SEG_DS << 12)
          disp = this.value(d, at, 2)
          at += 2
        } else {
          memory = ADDRESS16[rm]
        }
        if (mod === 1) {
          disp = (this.byte(d, at++) << 24) >> 24
        } else if (mod === 2) {
          disp = (this.value(d, at, 2) << 16) >> 16
          at += 2
        }
      } else {
        let base = rm
        let index = NO_REGISTER
        let scale = 0
        if (rm === 4) {
          const sib = this.byte(d, at++)
          index = (sib >>> 3) & 7
          if (index === 4) index = NO_REGISTER
          scale = sib >>> 6
          base = sib & 7
        }
        let seg = SEG_DS
        if (base === 5 && mod === 0) {
          base = NO_REGISTER
          disp = this.value(d, at, 4) | 0
          at += 4
        } else if (base === 4 || base === 5) {
          seg = SEG_SS
        }
        memory = base | (index << 4) | (scale << 8) | (seg << 12)
        if (mod === 1) {
          disp = (this.byte(d, at++) << 24) >> 24
        } else if (mod === 2) {
          disp = this.value(d, at, 4) | 0
          at += 4
        }
      }
      d.memory = memory
    }
    d.disp = disp
    d.modrmEnd = at
    return at
  }
}
