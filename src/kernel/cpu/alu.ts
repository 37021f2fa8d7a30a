/**
 * EFLAGS and the arithmetic of the integer unit, as pure functions over numbers.
 * Operand sizes are in bytes (1, 2, 4); operands and results are unsigned and
 * already truncated to the size. Flag functions take the old EFLAGS and return
 * the new one, so an instruction can compute its result, perform its memory
 * write (which may leave the CPU) and only then commit the flags.
 */

/** EFLAGS bits (SDM Vol. 1, 3.4.3). */
export const CF = 1 << 0
export const PF = 1 << 2
export const AF = 1 << 4
export const ZF = 1 << 6
export const SF = 1 << 7
export const TF = 1 << 8
export const IF = 1 << 9
export const DF = 1 << 10
export const OF = 1 << 11
export const IOPL = 3 << 12
export const NT = 1 << 14
export const RF = 1 << 16
export const VM = 1 << 17
export const AC = 1 << 18
export const VIF = 1 << 19
export const VIP = 1 << 20
export const ID = 1 << 21
/** Bit 1 reads as 1. */
export const EFLAGS_FIXED = 1 << 1
export const STATUS_FLAGS = CF | PF | AF | ZF | SF | OF
export const EFLAGS_WRITABLE = STATUS_FLAGS | TF | IF | DF | IOPL | NT | RF | VM | AC | VIF | VIP | ID

/** PF for each value of a result's low byte (set when the count of 1 bits is even). */
const PARITY = new Uint8Array(256)
for (let i = 0; i < 256; i++) {
  let bits = 0
  for (let v = i; v !== 0; v >>= 1) bits += v & 1
  PARITY[i] = (bits & 1) === 0 ? PF : 0
}

export const signBit = (size: number): number => (size === 4 ? 0x80000000 : size === 2 ? 0x8000 : 0x80)

/** Truncates to the operand size, unsigned. */
export const fit = (v: number, size: number): number => (size === 4 ? v >>> 0 : size === 2 ? v & 0xffff : v & 0xff)

/** Sign-extends an operand of `size` bytes to a signed 32-bit number. */
export const signExtend = (v: number, size: number): number =>
  size === 4 ? v | 0 : size === 2 ? (v << 16) >> 16 : (v << 24) >> 24

const msb = (v: number, size: number): number => (size === 4 ? v >>> 31 : size === 2 ? (v >>> 15) & 1 : (v >>> 7) & 1)

/** ZF, SF and PF of a result. */
export const zsp = (r: number, size: number): number =>
  (r === 0 ? ZF : 0) | (msb(r, size) === 1 ? SF : 0) | PARITY[r & 0xff]

/** The eight ALU operations in their Intel encoding order (the reg field of 80/81/83 and bits 5:3 of 00-3F). */
export const enum AluOp {
  Add = 0,
  Or,
  Adc,
  Sbb,
  And,
  Sub,
  Xor,
  Cmp
}

export const aluResult = (op: number, a: number, b: number, size: number, flags: number): number => {
  switch (op) {
    case AluOp.Add:
      return fit(a + b, size)
    case AluOp.Or:
      return fit(a | b, size)
    case AluOp.Adc:
      return fit(a + b + (flags & CF), size)
    case AluOp.Sbb:
      return fit(a - b - (flags & CF), size)
    case AluOp.And:
      return fit(a & b, size)
    case AluOp.Xor:
      return fit(a ^ b, size)
    default:
      return fit(a - b, size)
  }
}

export const aluFlags = (op: number, a: number, b: number, r: number, size: number, flags: number): number => {
  switch (op) {
    case AluOp.Add:
      return addFlags(a, b, r, size, 0, flags)
    case AluOp.Adc:
      return addFlags(a, b, r, size, flags & CF, flags)
    case AluOp.Sbb:
      return subFlags(a, b, r, size, flags & CF, flags)
    case AluOp.Sub:
    case AluOp.Cmp:
      return subFlags(a, b, r, size, 0, flags)
    default:
      return logicFlags(r, size, flags)
  }
}

export const addFlags = (a: number, b: number, r: number, size: number, carryIn: number, flags: number): number => {
  let f = (flags & ~STATUS_FLAGS) | zsp(r, size) | ((a ^ b ^ r) & AF)
  if (carryIn !== 0 ? r <= a : r < a) f |= CF
  if (((a ^ r) & (b ^ r) & signBit(size)) !== 0) f |= OF
  return f
}

export const subFlags = (a: number, b: number, r: number, size: number, borrowIn: number, flags: number): number => {
  let f = (flags & ~STATUS_FLAGS) | zsp(r, size) | ((a ^ b ^ r) & AF)
  if (borrowIn !== 0 ? a <= b : a < b) f |= CF
  if (((a ^ b) & (a ^ r) & signBit(size)) !== 0) f |= OF
  return f
}

/** AND/OR/XOR/TEST: CF = OF = 0; AF is undefined and Intel hardware clears it. */
export const logicFlags = (r: number, size: number, flags: number): number =>
  (flags & ~STATUS_FLAGS) | zsp(r, size)

/** INC/DEC: as ADD/SUB of 1 with CF preserved. */
export const incFlags = (a: number, r: number, size: number, flags: number): number =>
  (addFlags(a, 1, r, size, 0, flags) & ~CF) | (flags & CF)
export const decFlags = (a: number, r: number, size: number, flags: number): number =>
  (subFlags(a, 1, r, size, 0, flags) & ~CF) | (flags & CF)

/** Group 2 operations in their encoding order (reg field of C0/C1/D0-D3); 6 is an alias of SHL. */
export const enum ShiftOp {
  Rol = 0,
  Ror,
  Rcl,
  Rcr,
  Shl,
  Shr,
  Sal,
  Sar
}

/** RCL/RCR rotate through CF over size*8+1 bits; the count is taken modulo that width. */
const rotateThroughCarryCount = (count: number, size: number): number =>
  size === 1 ? count % 9 : size === 2 ? count % 17 : count

/**
 * Result of a shift or rotate. `count` is already masked to 5 bits.
 * RCL/RCR rotate one bit at a time: at most 31 steps, and they are rare.
 */
export const shiftResult = (op: number, a: number, count: number, size: number, flags: number): number => {
  if (count === 0) return a
  const bits = size * 8
  switch (op) {
    case ShiftOp.Rol: {
      const c = count % bits
      return c === 0 ? a : fit((a << c) | (a >>> (bits - c)), size)
    }
    case ShiftOp.Ror: {
      const c = count % bits
      return c === 0 ? a : fit((a >>> c) | (a << (bits - c)), size)
    }
    case ShiftOp.Rcl: {
      let v = a
      let cf = flags & CF
      for (let n = rotateThroughCarryCount(count, size); n > 0; n--) {
        const out = msb(v, size)
        v = fit((v << 1) | cf, size)
        cf = out
      }
      return v
    }
    case ShiftOp.Rcr: {
      let v = a
      let cf = flags & CF
      for (let n = rotateThroughCarryCount(count, size); n > 0; n--) {
        const out = v & 1
        v = fit((v >>> 1) | (cf === 1 ? signBit(size) : 0), size)
        cf = out
      }
      return v
    }
    case ShiftOp.Shl:
    case ShiftOp.Sal:
      return fit(a << count, size)
    case ShiftOp.Shr:
      return a >>> count
    default:
      return fit(signExtend(a, size) >> count, size)
  }
}

/**
 * Flags of a shift or rotate (SDM Vol. 2B, SAL/SAR/SHL/SHR and RCL/RCR/ROL/ROR).
 * A masked count of 0 changes nothing. The SDM defines OF only for a count of 1 and
 * leaves AF undefined after a shift; we do what the host CPU these machines run on
 * (AMD EPYC, fixtures/flags-hardware.json, and /dev/kvm in the differential test)
 * does: OF is the count-1 formula applied to the result for every count (left:
 * MSB ^ CF; right: the top two result bits XORed), shifts set AF, rotates keep it.
 * For shifts by more than the operand width the SDM leaves CF undefined; we give
 * the bit a wider shifter would produce (0, or the sign for SAR).
 */
export const shiftFlags = (op: number, a: number, count: number, size: number, flags: number): number => {
  if (count === 0) return flags
  const r = shiftResult(op, a, count, size, flags)
  const bits = size * 8
  let cf: number
  let of = (flags & OF) !== 0 ? 1 : 0
  switch (op) {
    case ShiftOp.Rol:
      cf = r & 1
      of = msb(r, size) ^ cf
      return (flags & ~(CF | OF)) | cf | (of << 11)
    case ShiftOp.Ror:
      cf = msb(r, size)
      of = cf ^ ((r >>> (bits - 2)) & 1)
      return (flags & ~(CF | OF)) | cf | (of << 11)
    case ShiftOp.Rcl: {
      // The effective count n never exceeds the width, so the new CF is bit (width - n) of the original value.
      const n = rotateThroughCarryCount(count, size)
      // A count that is a multiple of width + 1 rotates nothing, yet OF is still recomputed.
      cf = n === 0 ? flags & CF : (a >>> (bits - n)) & 1
      of = msb(r, size) ^ cf
      return (flags & ~(CF | OF)) | cf | (of << 11)
    }
    case ShiftOp.Rcr: {
      // OF uses the operand and CF before the rotation; the new CF is bit n-1 of the original value.
      const n = rotateThroughCarryCount(count, size)
      // For a count of 1 this is the SDM's MSB(dest) ^ CF: the rotated-in CF and the old MSB end up on top.
      of = msb(r, size) ^ ((r >>> (bits - 2)) & 1)
      cf = n === 0 ? flags & CF : (a >>> (n - 1)) & 1
      return (flags & ~(CF | OF)) | cf | (of << 11)
    }
    case ShiftOp.Shl:
    case ShiftOp.Sal:
      cf = count <= bits ? (a >>> (bits - count)) & 1 : 0
      of = msb(r, size) ^ cf
      break
    case ShiftOp.Shr:
      cf = count <= bits ? (a >>> (count - 1)) & 1 : 0
      of = msb(r, size) ^ ((r >>> (bits - 2)) & 1)
      break
    default:
      cf = (signExtend(a, size) >> (count - 1)) & 1
      of = 0
      break
  }
  return (flags & ~(CF | OF | ZF | SF | PF)) | zsp(r, size) | AF | cf | (of << 11)
}

/**
 * SHLD/SHRD: `dest` shifted by `count` (1-31) with bits coming in from `src`.
 * A 16-bit operand with a count above 16 is undefined in the SDM; the host CPU
 * (AMD, fixtures/flags-hardware.json) gives `src` rotated by count - 16.
 */
export const doubleShiftResult = (left: boolean, dest: number, src: number, count: number, size: number): number => {
  if (size === 4) {
    return left ? ((dest << count) | (src >>> (32 - count))) >>> 0 : ((dest >>> count) | (src << (32 - count))) >>> 0
  }
  if (count > 16) {
    const n = count - 16
    const s = src & 0xffff
    return left ? ((s << n) | (s >>> (16 - n))) & 0xffff : ((s >>> n) | (s << (16 - n))) & 0xffff
  }
  return left ? ((dest << count) | (src >>> (16 - count))) & 0xffff : ((dest >>> count) | (src << (16 - count))) & 0xffff
}

/**
 * Flags of SHLD/SHRD: CF is the last bit shifted out. Undefined in the SDM, as the
 * host CPU does it (AMD, fixtures/flags-hardware.json): AF is set; OF for every count
 * is MSB ^ CF (SHLD) or the top two result bits XORed (SHRD); a 16-bit SHLD by
 * exactly 16 gives OF = CF; past 16, CF = 0 and SHLD's OF = 0.
 */
export const doubleShiftFlags = (left: boolean, dest: number, src: number, count: number, size: number, flags: number): number => {
  const r = doubleShiftResult(left, dest, src, count, size)
  const bits = size * 8
  const cf = count <= bits ? (left ? (dest >>> (bits - count)) & 1 : (dest >>> (count - 1)) & 1) : 0
  let of: number
  if (!left) of = msb(r, size) ^ ((r >>> (bits - 2)) & 1)
  else if (count < bits || bits === 32) of = msb(r, size) ^ cf
  else of = count === bits ? cf : 0
  return (flags & ~(CF | OF | ZF | SF | PF)) | zsp(r, size) | AF | cf | (of << 11)
}

/** High 32 bits of the unsigned 64-bit product a*b. */
export const mulHighUnsigned = (a: number, b: number): number => {
  const aL = a & 0xffff
  const aH = a >>> 16
  const bL = b & 0xffff
  const bH = b >>> 16
  const ll = aL * bL
  const lh = aL * bH
  const hl = aH * bL
  const mid = (ll >>> 16) + (lh & 0xffff) + (hl & 0xffff)
  return (aH * bH + (lh >>> 16) + (hl >>> 16) + (mid >>> 16)) >>> 0
}

/** High 32 bits of the signed 64-bit product of two 32-bit values (given unsigned). */
export const mulHighSigned = (a: number, b: number): number =>
  (mulHighUnsigned(a, b) - (a >>> 31 === 1 ? b : 0) - (b >>> 31 === 1 ? a : 0)) >>> 0

/**
 * Unsigned (hi:lo) / d for hi < d, so the quotient fits in 32 bits.
 * Writes quotient and remainder to out[0], out[1].
 */
export const divide64 = (hi: number, lo: number, d: number, out: Uint32Array): void => {
  if (hi === 0) {
    out[0] = Math.floor(lo / d)
    out[1] = lo % d
    return
  }
  // Restoring division, one dividend bit at a time; r stays below 2^33.
  let r = hi
  let q = 0
  for (let bit = 31; bit >= 0; bit--) {
    r = r * 2 + ((lo >>> bit) & 1)
    q *= 2
    if (r >= d) {
      r -= d
      q += 1
    }
  }
  out[0] = q
  out[1] = r
}
