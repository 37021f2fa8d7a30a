/**
 * Random x86 programs whose final state is fully defined by the instruction set, the
 * initial registers and the answers the harness gives to I/O and MMIO: straight-line
 * code, memory operands only at absolute addresses in a scratch page (or MMIO through
 * FS), string ops with their pointers set just before, ESP never a destination, and
 * a HLT at the end. Exceptions (#DE from div/idiv/aam) end in a handler that halts.
 */
import fc from "fast-check"

export type Mode = "real" | "pm32"

/** Physical layout shared by both modes (RAM is 64 KiB from 0). */
export const Layout = {
  IVT: 0x0000,
  GDT: 0x0600,
  IDT: 0x0800,
  /** One HLT per vector: the final EIP names the exception, the frame is on the stack. */
  HANDLERS: 0x0a00,
  CODE: 0x1000,
  SCRATCH: 0x3000,
  STACK_TOP: 0x4800,
  RAM_SIZE: 0x10000,
  /** MMIO: the 64 KiB just above RAM, reached as FS:disp with FS.base here (no memslot). */
  MMIO_BASE: 0x10000
} as const

export const IO_PORTS = [0xe0, 0xe4, 0x71, 0x80] as const
export const DX_PORT = 0x1234

/** One generated instruction (or a short group that sets up its operands). */
export interface Insn {
  readonly asm: string
  readonly bytes: ReadonlyArray<number>
}

type Size = 1 | 2 | 4
const R8 = ["al", "cl", "dl", "bl", "ah", "ch", "dh", "bh"]
const R16 = ["ax", "cx", "dx", "bx", "sp", "bp", "si", "di"]
const R32 = ["eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi"]
const regName = (size: Size, r: number): string => (size === 1 ? R8 : size === 2 ? R16 : R32)[r]
const CC = ["o", "no", "b", "ae", "e", "ne", "be", "a", "s", "ns", "p", "np", "l", "ge", "le", "g"]
const ALU = ["add", "or", "adc", "sbb", "and", "sub", "xor", "cmp"]
const SHIFT = ["rol", "ror", "rcl", "rcr", "shl", "shr", "sal", "sar"]

const le = (v: number, n: number): number[] => Array.from({ length: n }, (_, i) => (v >>> (8 * i)) & 0xff)
const hex = (v: number): string => `0x${(v >>> 0).toString(16)}`

/** Operand-size prefix for `size` in this mode. */
const os = (mode: Mode, size: Size): number[] => (size === 1 ? [] : (size === 2) === (mode === "pm32") ? [0x66] : [])
/** Address-size prefix for a 16- or 32-bit address in this mode. */
const as = (mode: Mode, asz: 2 | 4): number[] => ((asz === 2) === (mode === "pm32") ? [0x67] : [])

/** An r/m operand: a register, the scratch page, or MMIO through FS. */
type Rm =
  | { readonly kind: "reg"; readonly reg: number }
  | { readonly kind: "mem"; readonly disp: number; readonly asz: 2 | 4; readonly seg?: number }
  | { readonly kind: "mmio"; readonly disp: number; readonly asz: 2 | 4 }

const SEG_PREFIX: Record<number, string> = { 0x26: "es:", 0x2e: "cs:", 0x36: "ss:", 0x3e: "ds:", 0x65: "gs:" }
const rmText = (rm: Rm, size: Size): string =>
  rm.kind === "reg"
    ? regName(size, rm.reg)
    : `${rm.kind === "mmio" ? "fs:" : SEG_PREFIX[rm.seg ?? 0] ?? ""}[${hex(rm.disp)}]${rm.asz === 2 ? "/a16" : "/a32"}`

/** prefixes + opcode + ModRM (+ disp) for `reg` field and operand `rm`. */
const encode = (mode: Mode, size: Size, opcode: number[], reg: number, rm: Rm, imm: number[] = []): number[] => {
  if (rm.kind === "reg") return [...os(mode, size), ...opcode, 0xc0 | (reg << 3) | rm.reg, ...imm]
  const seg = rm.kind === "mmio" ? [0x64] : rm.seg !== undefined ? [rm.seg] : []
  const modrm = rm.asz === 2 ? [(reg << 3) | 6, ...le(rm.disp, 2)] : [(reg << 3) | 5, ...le(rm.disp, 4)]
  return [...seg, ...as(mode, rm.asz), ...os(mode, size), ...opcode, ...modrm, ...imm]
}

const insn = (asm: string, bytes: number[]): Insn => ({ asm, bytes })
const group = (parts: Insn[]): Insn => ({ asm: parts.map((p) => p.asm).join("; "), bytes: parts.flatMap((p) => [...p.bytes]) })

/** mov r32, imm32 in either mode. */
const movImm32 = (mode: Mode, r: number, v: number): Insn => insn(`mov ${R32[r]}, ${hex(v)}`, [...os(mode, 4), 0xb8 + r, ...le(v, 4)])

// ---- arbitraries ------------------------------------------------------------------

const sizeArb = fc.constantFrom<Size>(1, 2, 4)
const wideArb = fc.constantFrom<2 | 4>(2, 4)
const aszArb = fc.constantFrom<2 | 4>(2, 4)
const u32 = fc.integer({ min: 0, max: 0xffffffff })
/** Values with the edges that flags care about. */
const interesting = fc.oneof(
  u32,
  fc.constantFrom(0, 1, 2, 0x7f, 0x80, 0xff, 0x100, 0x7fff, 0x8000, 0xffff, 0x10000, 0x7fffffff, 0x80000000, 0xffffffff, 0x0f, 0x10, 0x99, 0x9a)
)
/** A destination register: never ESP/SP (the stack must stay in its page). */
const dstReg = (size: Size) => (size === 1 ? fc.integer({ min: 0, max: 7 }) : fc.constantFrom(0, 1, 2, 3, 5, 6, 7))
const anyReg = fc.integer({ min: 0, max: 7 })
const scratchDisp = (size: number) => fc.integer({ min: Layout.SCRATCH, max: Layout.SCRATCH + 0x1000 - size })
const mmioDisp = (size: number) => fc.integer({ min: 0, max: 0x1000 - size })

/**
 * Scratch memory, sometimes through a segment override (all bases are 0 but FS's; a
 * write through CS is #GP in protected mode), and now and then just past 64 KiB with
 * a 32-bit address: beyond the real-mode limit (#GP), MMIO in flat protected mode.
 */
const memArb = (size: Size): fc.Arbitrary<Rm> =>
  fc.oneof(
    { arbitrary: fc.record({ kind: fc.constant("mem" as const), disp: scratchDisp(size), asz: aszArb }), weight: 8 },
    {
      arbitrary: fc.record({ kind: fc.constant("mem" as const), disp: scratchDisp(size), asz: aszArb, seg: fc.constantFrom(0x26, 0x2e, 0x36, 0x3e, 0x65) }),
      weight: 2
    },
    { arbitrary: fc.record({ kind: fc.constant("mem" as const), disp: fc.integer({ min: 0x10000, max: 0x10ffc }), asz: fc.constant<4>(4) }), weight: 1 }
  )
const mmioArb = (size: Size): fc.Arbitrary<Rm> =>
  fc.record({ kind: fc.constant("mmio" as const), disp: mmioDisp(size), asz: aszArb })
const regRm = (size: Size, dst = true): fc.Arbitrary<Rm> =>
  (dst ? dstReg(size) : anyReg).map((reg) => ({ kind: "reg" as const, reg }))
/** A destination r/m: mostly registers, some scratch memory, a little MMIO. */
const dstRm = (size: Size, mmio = true): fc.Arbitrary<Rm> =>
  mmio
    ? fc.oneof({ arbitrary: regRm(size), weight: 5 }, { arbitrary: memArb(size), weight: 2 }, { arbitrary: mmioArb(size), weight: 1 })
    : fc.oneof({ arbitrary: regRm(size), weight: 5 }, { arbitrary: memArb(size), weight: 2 })
const srcRm = (size: Size): fc.Arbitrary<Rm> =>
  fc.oneof({ arbitrary: regRm(size, false), weight: 5 }, { arbitrary: memArb(size), weight: 2 }, { arbitrary: mmioArb(size), weight: 1 })

const immOf = (size: Size, v: number): number[] => le(v, size)

const aluArb = (mode: Mode): fc.Arbitrary<Insn> =>
  fc.oneof(
    // op r/m, reg
    fc.tuple(fc.integer({ min: 0, max: 7 }), sizeArb, anyReg, fc.integer({ min: 0, max: 9 })).chain(([op, size, reg, lockDie]) =>
      dstRm(size).map((rm) => {
        // LOCK is legal only on a memory destination of a read-modify-write op (not CMP): otherwise #UD.
        const lock = lockDie === 0
        return insn(`${lock ? "lock " : ""}${ALU[op]} ${rmText(rm, size)}, ${regName(size, reg)}`, [...(lock ? [0xf0] : []), ...encode(mode, size, [op * 8 + (size === 1 ? 0 : 1)], reg, rm)])
      })
    ),
    // op reg, r/m
    fc.tuple(fc.integer({ min: 0, max: 7 }), sizeArb).chain(([op, size]) =>
      fc.tuple(dstReg(size), srcRm(size)).map(([reg, rm]) =>
        insn(`${ALU[op]} ${regName(size, reg)}, ${rmText(rm, size)}`, encode(mode, size, [op * 8 + (size === 1 ? 2 : 3)], reg, rm))
      )
    ),
    // op al/ax/eax, imm
    fc.tuple(fc.integer({ min: 0, max: 7 }), sizeArb, interesting).map(([op, size, v]) =>
      insn(`${ALU[op]} ${regName(size, 0)}, ${hex(v & (2 ** (8 * size) - 1))}`, [...os(mode, size), op * 8 + (size === 1 ? 4 : 5), ...immOf(size, v)])
    ),
    // 80/81 /op imm, 83 /op imm8 sign-extended
    fc.tuple(fc.integer({ min: 0, max: 7 }), sizeArb, interesting, fc.boolean()).chain(([op, size, v, short]) =>
      dstRm(size).map((rm) => {
        const s8 = short && size !== 1
        const opc = size === 1 ? 0x80 : s8 ? 0x83 : 0x81
        return insn(`${ALU[op]} ${rmText(rm, size)}, ${hex(s8 ? v & 0xff : v & (2 ** (8 * size) - 1))}${s8 ? "(sx)" : ""}`, encode(mode, size, [opc], op, rm, immOf(s8 ? 1 : size, v)))
      })
    ),
    // test r/m, reg / test eax, imm / test r/m, imm
    fc.tuple(sizeArb, anyReg).chain(([size, reg]) =>
      srcRm(size).map((rm) => insn(`test ${rmText(rm, size)}, ${regName(size, reg)}`, encode(mode, size, [size === 1 ? 0x84 : 0x85], reg, rm)))
    ),
    fc.tuple(sizeArb, interesting).chain(([size, v]) =>
      srcRm(size).map((rm) => insn(`test ${rmText(rm, size)}, ${hex(v)}`, encode(mode, size, [size === 1 ? 0xf6 : 0xf7], 0, rm, immOf(size, v))))
    )
  )

const unaryArb = (mode: Mode): fc.Arbitrary<Insn> =>
  fc.oneof(
    // not/neg/mul/imul/div/idiv r/m (F6/F7 /2../7), inc/dec r/m (FE/FF /0 /1)
    fc.tuple(fc.constantFrom(2, 3, 4, 5, 6, 7), sizeArb, fc.boolean()).chain(([op, size, narrow]) =>
      (op <= 3 ? dstRm(size) : srcRm(size)).map((rm) => {
        const it = insn(`${["", "", "not", "neg", "mul", "imul", "div", "idiv"][op]} ${rmText(rm, size)}`, encode(mode, size, [size === 1 ? 0xf6 : 0xf7], op, rm))
        // Half the divisions first clear the dividend's high half, so not every one is #DE.
        if (op < 6 || !narrow) return it
        const clear = size === 1 ? insn("mov ah, 0", [0xb4, 0]) : movImm32(mode, 2, 0)
        return group([clear, it])
      })
    ),
    fc.tuple(fc.constantFrom(0, 1), sizeArb).chain(([op, size]) =>
      dstRm(size).map((rm) => insn(`${op ? "dec" : "inc"} ${rmText(rm, size)}`, encode(mode, size, [size === 1 ? 0xfe : 0xff], op, rm)))
    ),
    // inc/dec r16/r32 short forms
    fc.tuple(fc.constantFrom(0, 1), wideArb, dstReg(4)).map(([op, size, r]) => insn(`${op ? "dec" : "inc"} ${regName(size, r)}`, [...os(mode, size), 0x40 + op * 8 + r])),
    // imul r, r/m; imul r, r/m, imm
    fc.tuple(wideArb).chain(([size]) =>
      fc.tuple(dstReg(size), srcRm(size)).map(([reg, rm]) => insn(`imul ${regName(size, reg)}, ${rmText(rm, size)}`, encode(mode, size, [0x0f, 0xaf], reg, rm)))
    ),
    fc.tuple(wideArb, interesting, fc.boolean()).chain(([size, v, short]) =>
      fc.tuple(dstReg(size), srcRm(size)).map(([reg, rm]) =>
        insn(`imul ${regName(size, reg)}, ${rmText(rm, size)}, ${hex(short ? v & 0xff : v)}${short ? "(sx)" : ""}`, encode(mode, size, [short ? 0x6b : 0x69], reg, rm, immOf(short ? 1 : size, v)))
      )
    )
  )

/** Counts that exercise every rule: 0, 1, the width, past the width, past the 5-bit mask. */
const countArb = fc.oneof(fc.constantFrom(0, 1, 2, 7, 8, 9, 15, 16, 17, 24, 31, 32, 33, 63, 255), fc.integer({ min: 0, max: 255 }))

const shiftArb = (mode: Mode): fc.Arbitrary<Insn> =>
  fc.oneof(
    fc.tuple(fc.integer({ min: 0, max: 7 }), sizeArb, countArb, fc.constantFrom("imm", "one", "cl")).chain(([op, size, count, how]) =>
      dstRm(size, false).map((rm) => {
        const base = size === 1 ? 0 : 1
        const name = `${SHIFT[op]} ${rmText(rm, size)}`
        if (how === "one") return insn(`${name}, 1`, encode(mode, size, [0xd0 + base], op, rm))
        if (how === "imm") return insn(`${name}, ${count}`, encode(mode, size, [0xc0 + base], op, rm, [count]))
        return group([insn(`mov cl, ${count}`, [0xb1, count]), insn(`${name}, cl`, encode(mode, size, [0xd2 + base], op, rm))])
      })
    ),
    // shld/shrd r/m, reg, imm8 | cl
    fc.tuple(fc.boolean(), wideArb, anyReg, countArb, fc.boolean()).chain(([right, size, reg, count, byCl]) =>
      dstRm(size, false).map((rm) => {
        const name = `${right ? "shrd" : "shld"} ${rmText(rm, size)}, ${regName(size, reg)}`
        if (!byCl) return insn(`${name}, ${count}`, encode(mode, size, [0x0f, right ? 0xac : 0xa4], reg, rm, [count]))
        return group([insn(`mov cl, ${count}`, [0xb1, count]), insn(`${name}, cl`, encode(mode, size, [0x0f, right ? 0xad : 0xa5], reg, rm))])
      })
    )
  )

/**
 * BCD here is only AAM 0 (#DE). The KVM on these machines runs guests through its
 * instruction emulator, which has no DAA/AAA/AAS (emulation failure) and computes
 * AAD/AAM/DAS flags unlike the silicon (AAD's SF/ZF from 16 bits, OF/AF/CF of an OR;
 * AAM's ZF from AX; DAS's OF cleared). The BCD instructions are checked against
 * the host CPU itself instead (test/kernel/cpu/fixtures/bcd-hardware.json).
 */
const bcdArb = (): fc.Arbitrary<Insn> => fc.constant(insn("aam 0", [0xd4, 0]))

const bitArb = (mode: Mode): fc.Arbitrary<Insn> =>
  fc.oneof(
    // bt/bts/btr/btc reg, reg (a register bit offset into memory could reach anywhere)
    fc.tuple(fc.integer({ min: 0, max: 3 }), wideArb, anyReg, dstReg(4)).map(([op, size, src, dst]) =>
      insn(`${["bt", "bts", "btr", "btc"][op]} ${regName(size, dst)}, ${regName(size, src)}`, encode(mode, size, [0x0f, 0xa3 + op * 8], src, { kind: "reg", reg: dst }))
    ),
    fc.tuple(fc.integer({ min: 4, max: 7 }), wideArb, fc.integer({ min: 0, max: 255 })).chain(([op, size, bit]) =>
      dstRm(size, false).map((rm) => insn(`${["bt", "bts", "btr", "btc"][op - 4]} ${rmText(rm, size)}, ${bit}`, encode(mode, size, [0x0f, 0xba], op, rm, [bit])))
    ),
    fc.tuple(fc.boolean(), wideArb).chain(([rev, size]) =>
      fc.tuple(dstReg(size), srcRm(size)).map(([reg, rm]) => insn(`${rev ? "bsr" : "bsf"} ${regName(size, reg)}, ${rmText(rm, size)}`, encode(mode, size, [0x0f, rev ? 0xbd : 0xbc], reg, rm)))
    ),
    fc.tuple(wideArb, dstReg(4)).map(([size, r]) => insn(`bswap ${regName(size, r)}`, [...os(mode, size), 0x0f, 0xc8 + r]))
  )

const atomicArb = (mode: Mode): fc.Arbitrary<Insn> =>
  fc.oneof(
    fc.tuple(fc.boolean(), sizeArb).chain(([cmpx, size]) =>
      fc.tuple(dstReg(size), dstRm(size)).map(([reg, rm]) =>
        insn(`${cmpx ? "cmpxchg" : "xadd"} ${rmText(rm, size)}, ${regName(size, reg)}`, encode(mode, size, [0x0f, (cmpx ? 0xb0 : 0xc0) + (size === 1 ? 0 : 1)], reg, rm))
      )
    ),
    fc.tuple(scratchDisp(8), aszArb).map(([disp, asz]) => insn(`cmpxchg8b [${hex(disp)}]`, encode(mode, 1, [0x0f, 0xc7], 1, { kind: "mem", disp, asz })))
  )

const condArb = (mode: Mode): fc.Arbitrary<Insn> =>
  fc.oneof(
    fc.integer({ min: 0, max: 15 }).chain((cc) => dstRm(1).map((rm) => insn(`set${CC[cc]} ${rmText(rm, 1)}`, encode(mode, 1, [0x0f, 0x90 + cc], 0, rm)))),
    fc.tuple(fc.integer({ min: 0, max: 15 }), wideArb).chain(([cc, size]) =>
      fc.tuple(dstReg(size), srcRm(size)).map(([reg, rm]) => insn(`cmov${CC[cc]} ${regName(size, reg)}, ${rmText(rm, size)}`, encode(mode, size, [0x0f, 0x40 + cc], reg, rm)))
    )
  )

const miscArb = (mode: Mode): fc.Arbitrary<Insn> =>
  fc.oneof(
    fc.constantFrom(
      insn("lahf", [0x9f]),
      insn("sahf", [0x9e]),
      insn("clc", [0xf8]),
      insn("stc", [0xf9]),
      insn("cmc", [0xf5]),
      insn("cld", [0xfc]),
      insn("std", [0xfd]),
      insn("nop", [0x90])
    ),
    wideArb.map((size) => insn(size === 2 ? "cbw" : "cwde", [...os(mode, size), 0x98])),
    wideArb.map((size) => insn(size === 2 ? "cwd" : "cdq", [...os(mode, size), 0x99])),
    // mov forms
    fc.tuple(sizeArb, anyReg).chain(([size, reg]) =>
      dstRm(size).map((rm) => insn(`mov ${rmText(rm, size)}, ${regName(size, reg)}`, encode(mode, size, [size === 1 ? 0x88 : 0x89], reg, rm)))
    ),
    sizeArb.chain((size) =>
      fc.tuple(dstReg(size), srcRm(size)).map(([reg, rm]) => insn(`mov ${regName(size, reg)}, ${rmText(rm, size)}`, encode(mode, size, [size === 1 ? 0x8a : 0x8b], reg, rm)))
    ),
    fc.tuple(sizeArb, interesting).chain(([size, v]) =>
      dstReg(size).map((r) => insn(`mov ${regName(size, r)}, ${hex(v)}`, [...os(mode, size), (size === 1 ? 0xb0 : 0xb8) + r, ...immOf(size, v)]))
    ),
    fc.tuple(sizeArb, interesting).chain(([size, v]) =>
      fc.oneof(memArb(size), mmioArb(size)).map((rm) => insn(`mov ${rmText(rm, size)}, ${hex(v)}`, encode(mode, size, [size === 1 ? 0xc6 : 0xc7], 0, rm, immOf(size, v))))
    ),
    // moffs: mov al/eax, [abs] and back
    fc.tuple(sizeArb, fc.boolean(), aszArb, fc.boolean()).chain(([size, store, asz, mmio]) =>
      (mmio ? mmioDisp(size) : scratchDisp(size)).map((disp) =>
        insn(`mov ${store ? `${mmio ? "fs:" : ""}[${hex(disp)}], ${regName(size, 0)}` : `${regName(size, 0)}, ${mmio ? "fs:" : ""}[${hex(disp)}]`}`, [
          ...(mmio ? [0x64] : []),
          ...as(mode, asz),
          ...os(mode, size),
          (store ? 0xa2 : 0xa0) + (size === 1 ? 0 : 1),
          ...le(disp, asz)
        ])
      )
    ),
    // movzx/movsx r, r/m8|r/m16
    fc.tuple(fc.boolean(), fc.constantFrom<Size>(1, 2), wideArb).chain(([sx, from, size]) =>
      fc.tuple(dstReg(size), srcRm(from)).map(([reg, rm]) =>
        insn(`${sx ? "movsx" : "movzx"} ${regName(size, reg)}, ${rmText(rm, from)}`, encode(mode, size, [0x0f, (sx ? 0xbe : 0xb6) + (from === 2 ? 1 : 0)], reg, rm))
      )
    ),
    // xchg r/m, r and xchg eAX, r
    sizeArb.chain((size) =>
      fc.tuple(dstReg(size), dstRm(size, false)).map(([reg, rm]) => insn(`xchg ${rmText(rm, size)}, ${regName(size, reg)}`, encode(mode, size, [size === 1 ? 0x86 : 0x87], reg, rm)))
    ),
    fc.tuple(wideArb, dstReg(4)).filter(([, r]) => r !== 0).map(([size, r]) => insn(`xchg ${regName(size, 0)}, ${regName(size, r)}`, [...os(mode, size), 0x90 + r])),
    // lea with any addressing form: the address is computed, never accessed
    fc.tuple(wideArb, dstReg(4), aszArb, fc.integer({ min: 0, max: 2 }), anyReg, fc.integer({ min: 0, max: 255 }), u32).map(([size, reg, asz, mod, rm, sib, disp]) => {
      const bytes = [...as(mode, asz), ...os(mode, size), 0x8d, (mod << 6) | (reg << 3) | rm]
      if (asz === 4) {
        if (rm === 4) bytes.push(sib)
        const base5 = rm === 4 && (sib & 7) === 5
        const dispLen = mod === 1 ? 1 : mod === 2 || (mod === 0 && (rm === 5 || base5)) ? 4 : 0
        bytes.push(...le(disp, dispLen))
      } else {
        const dispLen = mod === 1 ? 1 : mod === 2 || (mod === 0 && rm === 6) ? 2 : 0
        bytes.push(...le(disp, dispLen))
      }
      return insn(`lea ${regName(size, reg)}, [modrm ${hex(bytes[bytes.indexOf(0x8d) + 1])}]/a${asz * 8}`, bytes)
    }),
    // xlat with EBX pointed into the scratch page
    fc.tuple(scratchDisp(256), aszArb).map(([base, asz]) => group([movImm32(mode, 3, base - (base & 0xff)), insn(`xlat/a${asz * 8}`, [...as(mode, asz), 0xd7])]))
  )

/** EFLAGS bits POPF may change at CPL 0 without changing control flow: no TF; reserved bits included to see them ignored. */
const POPF_MASK = 0xffffffff & ~0x100

const stackArb = (mode: Mode): fc.Arbitrary<Insn> =>
  fc.oneof(
    fc.tuple(wideArb, anyReg).map(([size, r]) => insn(`push ${regName(size, r)}`, [...os(mode, size), 0x50 + r])),
    fc.tuple(wideArb, dstReg(4)).map(([size, r]) => insn(`pop ${regName(size, r)}`, [...os(mode, size), 0x58 + r])),
    fc.tuple(wideArb, interesting, fc.boolean()).map(([size, v, short]) =>
      insn(`push ${hex(short ? v & 0xff : v)}${short ? "(sx)" : ""}`, [...os(mode, size), short ? 0x6a : 0x68, ...immOf(short ? 1 : size, v)])
    ),
    fc.tuple(wideArb, scratchDisp(4), aszArb).map(([size, disp, asz]) => insn(`push [${hex(disp)}]`, encode(mode, size, [0xff], 6, { kind: "mem", disp, asz }))),
    fc.tuple(wideArb, scratchDisp(4), aszArb).map(([size, disp, asz]) => insn(`pop [${hex(disp)}]`, encode(mode, size, [0x8f], 0, { kind: "mem", disp, asz }))),
    wideArb.map((size) => insn(size === 2 ? "pushaw" : "pushad", [...os(mode, size), 0x60])),
    wideArb.map((size) => insn(size === 2 ? "popaw" : "popad", [...os(mode, size), 0x61])),
    wideArb.map((size) => insn(size === 2 ? "pushfw" : "pushfd", [...os(mode, size), 0x9c])),
    fc.tuple(wideArb, u32).map(([size, v]) => {
      const value = (v & POPF_MASK) >>> 0
      return group([
        insn(`push ${hex(value & (size === 2 ? 0xffff : 0xffffffff))}`, [...os(mode, size), 0x68, ...immOf(size, value)]),
        insn(size === 2 ? "popfw" : "popfd", [...os(mode, size), 0x9d])
      ])
    })
  )

const STRING_OPS = [
  { name: "movs", op: 0xa4 },
  { name: "cmps", op: 0xa6 },
  { name: "stos", op: 0xaa },
  { name: "lods", op: 0xac },
  { name: "scas", op: 0xae },
  { name: "ins", op: 0x6c },
  { name: "outs", op: 0x6e }
] as const

/** String ops with SI/DI/CX set just before, inside the scratch page whichever way DF points. */
const stringArb = (mode: Mode): fc.Arbitrary<Insn> =>
  fc
    .tuple(
      fc.constantFrom(...STRING_OPS),
      sizeArb,
      fc.constantFrom<ReadonlyArray<number>>([], [0xf3], [0xf2]),
      fc.boolean(),
      aszArb,
      fc.integer({ min: Layout.SCRATCH + 0x40, max: Layout.SCRATCH + 0xfc0 }),
      fc.integer({ min: Layout.SCRATCH + 0x40, max: Layout.SCRATCH + 0xfc0 }),
      fc.integer({ min: 0, max: 9 })
    )
    .map(([s, size, rep, down, asz, si, di, count]) => {
      const isIo = s.name === "ins" || s.name === "outs"
      const prefix = isIo && rep.length > 0 ? [0xf3] : rep
      const parts = [
        movImm32(mode, 6, si),
        movImm32(mode, 7, di),
        movImm32(mode, 1, count),
        insn(down ? "std" : "cld", [down ? 0xfd : 0xfc])
      ]
      if (isIo) parts.push(insn(`mov dx, ${hex(DX_PORT)}`, [...os(mode, 2), 0xba, ...le(DX_PORT, 2)]))
      const suffix = size === 1 ? "b" : size === 2 ? "w" : "d"
      const repName = prefix.length === 0 ? "" : prefix[0] === 0xf3 ? "rep " : "repne "
      parts.push(insn(`${repName}${s.name}${suffix}/a${asz * 8}`, [...prefix, ...as(mode, asz), ...os(mode, size), s.op + (size === 1 ? 0 : 1)]))
      return group(parts)
    })

const ioArb = (mode: Mode): fc.Arbitrary<Insn> =>
  fc.oneof(
    fc.tuple(sizeArb, fc.boolean(), fc.constantFrom(...IO_PORTS)).map(([size, out, port]) =>
      insn(out ? `out ${hex(port)}, ${regName(size, 0)}` : `in ${regName(size, 0)}, ${hex(port)}`, [...os(mode, size), (out ? 0xe6 : 0xe4) + (size === 1 ? 0 : 1), port])
    ),
    fc.tuple(sizeArb, fc.boolean()).map(([size, out]) =>
      group([
        insn(`mov dx, ${hex(DX_PORT)}`, [...os(mode, 2), 0xba, ...le(DX_PORT, 2)]),
        insn(out ? `out dx, ${regName(size, 0)}` : `in ${regName(size, 0)}, dx`, [...os(mode, size), (out ? 0xee : 0xec) + (size === 1 ? 0 : 1)])
      ])
    )
  )

/** Leaves the harness's table answers, a leaf past the maximum, and one it lacks. */
const cpuidArb = (mode: Mode): fc.Arbitrary<Insn> =>
  fc.tuple(fc.constantFrom(0, 1, 2, 7, 0x40000000, 0x40000001, 0x80000000, 0x80000001, 0x80000003, 0x80000008), u32).map(([leaf, sub]) => {
    const parts = [movImm32(mode, 0, leaf), movImm32(mode, 1, sub), insn("cpuid", [0x0f, 0xa2])]
    // KVM here answers leaf 1 (and leaves that fall back to it) with the host's ECX/EDX
    // feature bits instead of the table's; overwrite them so only the table is compared.
    if (LEAF1_FALLBACK.includes(leaf)) parts.push(movImm32(mode, 1, 0), movImm32(mode, 2, 0))
    return group(parts)
  })

/** Leaf 1, and leaves past the table's maxima, which Intel's rule answers from leaf 1. */
const LEAF1_FALLBACK = [1, 2, 7, 0x80000008]

/**
 * Forward branches over one instruction: Jcc rel8/rel16/32, JMP, LOOP/LOOPE/LOOPNE/JCXZ
 * (with the 0x67 address-size form), and CALL to the next instruction, which pushes
 * its return address. Control flow stays straight-line: every path reaches the HLT.
 */
const branchArb = (mode: Mode): fc.Arbitrary<Insn> =>
  fc.oneof(
    fc.tuple(fc.integer({ min: 0, max: 15 }), fc.boolean(), straightArb(mode)).map(([cc, near, body]) => {
      const n = body.bytes.length
      const jump = near ? [...(mode === "real" ? [0x66] : []), 0x0f, 0x80 + cc, ...le(n, 4)] : [0x70 + cc, n]
      return insn(`j${CC[cc]}${near ? " near" : ""} +${n} { ${body.asm} }`, [...jump, ...body.bytes])
    }),
    fc.tuple(fc.constantFrom(0xe0, 0xe1, 0xe2, 0xe3), aszArb, straightArb(mode)).map(([op, asz, body]) =>
      insn(`${["loopne", "loope", "loop", "jcxz"][op - 0xe0]}/a${asz * 8} +${body.bytes.length} { ${body.asm} }`, [
        ...as(mode, asz),
        op,
        body.bytes.length,
        ...body.bytes
      ])
    ),
    straightArb(mode).map((body) => insn(`jmp +${body.bytes.length} { ${body.asm} }`, [0xeb, body.bytes.length, ...body.bytes])),
    wideArb.map((size) => insn(`call${size === 2 ? "w" : "d"} $+0`, [...os(mode, size), 0xe8, ...le(0, size)]))
  )

export const instructionArb = (mode: Mode): fc.Arbitrary<Insn> =>
  fc.oneof({ arbitrary: straightArb(mode), weight: 15 }, { arbitrary: branchArb(mode), weight: 2 })

const straightArb = (mode: Mode): fc.Arbitrary<Insn> =>
  fc.oneof(
    { arbitrary: aluArb(mode), weight: 6 },
    { arbitrary: unaryArb(mode), weight: 4 },
    { arbitrary: shiftArb(mode), weight: 4 },
    { arbitrary: bcdArb(), weight: 1 },
    { arbitrary: bitArb(mode), weight: 2 },
    { arbitrary: atomicArb(mode), weight: 2 },
    { arbitrary: condArb(mode), weight: 2 },
    { arbitrary: miscArb(mode), weight: 5 },
    { arbitrary: stackArb(mode), weight: 3 },
    { arbitrary: stringArb(mode), weight: 2 },
    { arbitrary: ioArb(mode), weight: 1 },
    { arbitrary: cpuidArb(mode), weight: 1 }
  )

export interface Program {
  readonly mode: Mode
  readonly insns: ReadonlyArray<Insn>
  /** EAX, ECX, EDX, EBX, (ESP ignored), EBP, ESI, EDI. */
  readonly regs: ReadonlyArray<number>
  /** Arithmetic flags and DF to start with. */
  readonly flags: number
  /** Seed for the scratch page contents. */
  readonly fill: number
}

export const programArb = (mode: Mode, maxLength = 24): fc.Arbitrary<Program> =>
  fc.record({
    mode: fc.constant(mode),
    insns: fc.array(instructionArb(mode), { minLength: 1, maxLength }),
    regs: fc.array(interesting, { minLength: 8, maxLength: 8 }),
    flags: fc.integer({ min: 0, max: 0xfff }).map((f) => f & 0x0cd5),
    fill: fc.integer({ min: 0, max: 0xffffffff })
  })

/** The program's code: the instructions, then HLT. */
export const codeOf = (p: Program): Uint8Array => new Uint8Array([...p.insns.flatMap((i) => [...i.bytes]), 0xf4])

export const listing = (p: Program): string => {
  let at = Layout.CODE
  const lines = p.insns.map((i) => {
    const line = `  ${hex(at).padEnd(8)} ${i.bytes.map((b) => b.toString(16).padStart(2, "0")).join(" ").padEnd(48)} ${i.asm}`
    at += i.bytes.length
    return line
  })
  lines.push(`  ${hex(at).padEnd(8)} ${"f4".padEnd(48)} hlt`)
  return lines.join("\n")
}
