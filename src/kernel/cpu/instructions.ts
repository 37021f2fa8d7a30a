import { AC, addFlags, AF, aluFlags, AluOp, aluResult, CF, decFlags, DF, divide64, doubleShiftFlags, doubleShiftResult, EFLAGS_FIXED, fit, ID, IF, incFlags, IOPL, logicFlags, mulHighSigned, mulHighUnsigned, NT, OF, PF, RF, SF, shiftFlags, shiftResult, signExtend, STATUS_FLAGS, subFlags, TF, ZF, zsp } from "./alu.ts"
import { ControlTransfer } from "./controlTransfer.ts"
import { Reg, Seg, Vector } from "./state.ts"

const SHADOW_MOV_SS = 2

/** The bodies of the general-purpose instructions: ALU, shifts, multiply and divide, BCD, bit operations, exchanges, pushes and pops. */
export abstract class IntegerInstructions extends ControlTransfer {
  protected aluModrm(op: number, size: number, toReg: boolean): void {
    this.decodeModrm()
    let a: number
    let b: number
    if (toReg) {
      a = this.getReg(size, this.regField)
      b = this.readRm(size)
    } else {
      a = this.readRm(size)
      b = this.getReg(size, this.regField)
    }
    const r = aluResult(op, a, b, size, this.flags)
    if (op !== AluOp.Cmp) {
      if (toReg) this.setReg(size, this.regField, r)
      else this.writeRm(size, r)
    }
    this.flags = aluFlags(op, a, b, r, size, this.flags)
  }

  protected aluAccumulator(op: number, size: number): void {
    const a = this.getReg(size, Reg.EAX)
    const b = this.fetchImm(size)
    const r = aluResult(op, a, b, size, this.flags)
    if (op !== AluOp.Cmp) this.setReg(size, Reg.EAX, r)
    this.flags = aluFlags(op, a, b, r, size, this.flags)
  }

  protected aluImmediate(size: number, immSize: number): void {
    this.decodeModrm()
    const b = immSize === 1 ? this.fetchImm8As(size) : this.fetchImm(size)
    const op = this.regField
    const a = this.readRm(size)
    const r = aluResult(op, a, b, size, this.flags)
    if (op !== AluOp.Cmp) this.writeRm(size, r)
    this.flags = aluFlags(op, a, b, r, size, this.flags)
  }

  protected incDecRm(size: number, decrement: boolean): void {
    const a = this.readRm(size)
    const r = fit(decrement ? a - 1 : a + 1, size)
    this.writeRm(size, r)
    this.flags = decrement ? decFlags(a, r, size, this.flags) : incFlags(a, r, size, this.flags)
  }

  /** Group 2. `count` is the CL or constant count, or -1 for an imm8 following the ModRM operand. */
  protected shiftRm(size: number, count: number): void {
    this.decodeModrm()
    const n = (count < 0 ? this.fetch8() : count) & 31
    const a = this.readRm(size)
    if (n === 0) {
      // KVM's emulator writes a memory destination back even for a zero count: on MMIO
      // userspace sees that write (test/conformance); on RAM it changes nothing.
      if (this.mod !== 3) this.writeRm(size, a)
      return
    }
    const op = this.regField
    this.writeRm(size, shiftResult(op, a, n, size, this.flags))
    this.flags = shiftFlags(op, a, n, size, this.flags)
  }

  /** SHLD/SHRD with an imm8 or CL count. */
  protected doubleShift(left: boolean, immediateCount: boolean): void {
    const size = this.opSize
    this.decodeModrm()
    const count = (immediateCount ? this.fetch8() : this.regs[Reg.ECX]) & 31
    const dest = this.readRm(size)
    if (count === 0) {
      // As in shiftRm: KVM's emulator writes the memory destination back unchanged.
      if (this.mod !== 3) this.writeRm(size, dest)
      return
    }
    const src = this.getReg(size, this.regField)
    this.writeRm(size, doubleShiftResult(left, dest, src, count, size))
    this.flags = doubleShiftFlags(left, dest, src, count, size, this.flags)
  }

  protected group3(size: number): void {
    this.decodeModrm()
    switch (this.regField) {
      case 0:
      case 1: {
        const imm = this.fetchImm(size)
        this.flags = logicFlags(fit(this.readRm(size) & imm, size), size, this.flags)
        return
      }
      case 2:
        return this.writeRm(size, fit(~this.readRm(size), size))
      case 3: {
        const a = this.readRm(size)
        const r = fit(-a, size)
        this.writeRm(size, r)
        this.flags = subFlags(0, a, r, size, 0, this.flags)
        return
      }
      case 4:
        return this.multiplyAccumulator(size, this.readRm(size), false)
      case 5:
        return this.multiplyAccumulator(size, this.readRm(size), true)
      case 6:
        return this.divideAccumulator(size, this.readRm(size))
      default:
        return this.divideAccumulatorSigned(size, this.readRm(size))
    }
  }

  /**
   * MUL/IMUL with the accumulator. CF = OF = the high half is significant.
   * SF, ZF, AF and PF are undefined; they are left unchanged.
   */
  protected multiplyAccumulator(size: number, v: number, signed: boolean): void {
    const a = this.getReg(size, Reg.EAX)
    let overflow: boolean
    if (size === 1) {
      const p = signed ? signExtend(a, 1) * signExtend(v, 1) : a * v
      this.setReg(2, Reg.EAX, p)
      overflow = signed ? p !== signExtend(p & 0xff, 1) : p > 0xff
    } else if (size === 2) {
      const p = signed ? signExtend(a, 2) * signExtend(v, 2) : a * v
      this.setReg(2, Reg.EAX, p)
      this.setReg(2, Reg.EDX, p >>> 16)
      overflow = signed ? p !== signExtend(p & 0xffff, 2) : p > 0xffff
    } else {
      const lo = Math.imul(a, v) >>> 0
      const hi = signed ? mulHighSigned(a, v) : mulHighUnsigned(a, v)
      this.regs[Reg.EAX] = lo
      this.regs[Reg.EDX] = hi
      overflow = signed ? hi !== (lo >>> 31 === 1 ? 0xffffffff : 0) : hi !== 0
    }
    this.flags = overflow ? this.flags | CF | OF : this.flags & ~(CF | OF)
  }

  /** IMUL r, r/m (, imm): truncated product; CF = OF = truncation changed the value. Other flags unchanged (undefined). */
  protected multiplyInto(reg: number, a: number, b: number): void {
    const size = this.opSize
    let r: number
    let overflow: boolean
    if (size === 2) {
      const p = signExtend(a, 2) * signExtend(b, 2)
      r = p & 0xffff
      overflow = p !== signExtend(r, 2)
    } else {
      r = Math.imul(a, b) >>> 0
      overflow = mulHighSigned(a, b) !== (r >>> 31 === 1 ? 0xffffffff : 0)
    }
    this.setReg(size, reg, r)
    this.flags = overflow ? this.flags | CF | OF : this.flags & ~(CF | OF)
  }

  /**
   * DIV: #DE on a zero divisor or a quotient too large. All flags are undefined; the
   * host CPU (AMD, seen through /dev/kvm in test/conformance) keeps CF and OF, sets AF
   * and clears SF, ZF and PF, for DIV and IDIV alike. A faulting division changes none.
   */
  protected divideAccumulator(size: number, d: number): void {
    if (d === 0) throw this.fault(Vector.DE, 0)
    if (size === 1) {
      const n = this.regs[Reg.EAX] & 0xffff
      const q = Math.floor(n / d)
      if (q > 0xff) throw this.fault(Vector.DE, 0)
      this.setReg(2, Reg.EAX, q | ((n % d) << 8))
    } else if (size === 2) {
      const n = ((this.regs[Reg.EDX] & 0xffff) * 0x10000 + (this.regs[Reg.EAX] & 0xffff))
      const q = Math.floor(n / d)
      if (q > 0xffff) throw this.fault(Vector.DE, 0)
      this.setReg(2, Reg.EAX, q)
      this.setReg(2, Reg.EDX, n % d)
    } else {
      const hi = this.regs[Reg.EDX]
      if (hi >= d) throw this.fault(Vector.DE, 0)
      divide64(hi, this.regs[Reg.EAX], d, this.quotient)
      this.regs[Reg.EAX] = this.quotient[0]
      this.regs[Reg.EDX] = this.quotient[1]
    }
    this.flags = (this.flags & ~(SF | ZF | PF)) | AF
  }

  /** IDIV: the quotient truncates toward zero and the remainder takes the dividend's sign. */
  protected divideAccumulatorSigned(size: number, divisor: number): void {
    if (divisor === 0) throw this.fault(Vector.DE, 0)
    if (size === 1) {
      const n = signExtend(this.regs[Reg.EAX] & 0xffff, 2)
      const d = signExtend(divisor, 1)
      const q = Math.trunc(n / d)
      if (q < -0x80 || q > 0x7f) throw this.fault(Vector.DE, 0)
      this.setReg(2, Reg.EAX, (q & 0xff) | ((n % d & 0xff) << 8))
    } else if (size === 2) {
      const n = ((this.regs[Reg.EDX] & 0xffff) << 16) | (this.regs[Reg.EAX] & 0xffff)
      const d = signExtend(divisor, 2)
      const q = Math.trunc(n / d)
      if (q < -0x8000 || q > 0x7fff) throw this.fault(Vector.DE, 0)
      this.setReg(2, Reg.EAX, q)
      this.setReg(2, Reg.EDX, n % d)
    } else {
      let hi = this.regs[Reg.EDX]
      let lo = this.regs[Reg.EAX]
      const negative = hi >>> 31 === 1
      if (negative) {
        lo = -lo >>> 0
        hi = (~hi + (lo === 0 ? 1 : 0)) >>> 0
      }
      const divisorNegative = divisor >>> 31 === 1
      const magnitude = divisorNegative ? -divisor >>> 0 : divisor
      if (hi >= magnitude) throw this.fault(Vector.DE, 0)
      divide64(hi, lo, magnitude, this.quotient)
      const q = this.quotient[0]
      const r = this.quotient[1]
      const quotientNegative = negative !== divisorNegative
      if (q > (quotientNegative ? 0x80000000 : 0x7fffffff)) throw this.fault(Vector.DE, 0)
      this.regs[Reg.EAX] = quotientNegative ? -q >>> 0 : q
      this.regs[Reg.EDX] = negative ? -r >>> 0 : r
    }
    this.flags = (this.flags & ~(SF | ZF | PF)) | AF
  }

  /**
   * DAA/DAS (SDM Vol. 2A pseudo-code). OF is undefined; the host CPU (AMD,
   * fixtures/bcd-hardware.json) sets it as the signed overflow of the adjustment:
   * AL's sign went from 0 to 1 (DAA) or from 1 to 0 (DAS).
   */
  protected decimalAdjust(subtract: boolean): void {
    const al = this.regs[Reg.EAX] & 0xff
    const oldCf = this.flags & CF
    let r = al
    let cf = 0
    let af = 0
    if ((al & 0xf) > 9 || (this.flags & AF) !== 0) {
      r = subtract ? al - 6 : al + 6
      cf = oldCf !== 0 || r < 0 || r > 0xff ? CF : 0
      r &= 0xff
      af = AF
    }
    if (al > 0x99 || oldCf !== 0) {
      r = (subtract ? r - 0x60 : r + 0x60) & 0xff
      cf = CF
    } else if (!subtract) {
      cf = 0
    }
    this.setReg(1, Reg.EAX, r)
    const of = (subtract ? al & ~r : ~al & r) & 0x80 ? OF : 0
    this.flags = (this.flags & ~(CF | AF | ZF | SF | PF | OF)) | zsp(r, 1) | cf | af | of
  }

  /**
   * AAA/AAS. OF, SF, ZF and PF are undefined; the host CPU (AMD, fixtures/bcd-hardware.json)
   * gives those of the 16-bit ADD/SUB of AX and 106h (of 0 when no adjustment is made).
   */
  protected asciiAdjust(subtract: boolean): void {
    const ax = this.regs[Reg.EAX] & 0xffff
    const adjust = (ax & 0xf) > 9 || (this.flags & AF) !== 0
    const k = adjust ? 0x106 : 0
    const r = (subtract ? ax - k : ax + k) & 0xffff
    this.setReg(2, Reg.EAX, r & 0xff0f)
    const flags = subtract ? subFlags(ax, k, r, 2, 0, this.flags) : addFlags(ax, k, r, 2, 0, this.flags)
    this.flags = (flags & ~(AF | CF)) | (adjust ? AF | CF : 0)
  }

  /** AAM: #DE for a zero base. OF, AF and CF are undefined; the host CPU (AMD, fixtures/bcd-hardware.json) clears them. */
  protected asciiAdjustMultiply(base: number): void {
    if (base === 0) throw this.fault(Vector.DE, 0)
    const al = this.regs[Reg.EAX] & 0xff
    const r = al % base
    this.setReg(2, Reg.EAX, (Math.floor(al / base) << 8) | r)
    this.flags = (this.flags & ~(ZF | SF | PF | OF | AF | CF)) | zsp(r, 1)
  }

  /**
   * AAD. OF, AF and CF are undefined; the host CPU (AMD, fixtures/bcd-hardware.json)
   * gives those of the byte addition AL + (AH * base).
   */
  protected asciiAdjustDivide(base: number): void {
    const ax = this.regs[Reg.EAX]
    const al = ax & 0xff
    const product = (((ax >>> 8) & 0xff) * base) & 0xff
    const r = (al + product) & 0xff
    this.setReg(2, Reg.EAX, r)
    this.flags = addFlags(al, product, r, 1, 0, this.flags)
  }

  protected group5(): void {
    const osz = this.opSize
    this.decodeModrm()
    switch (this.regField) {
      case 0:
        return this.incDecRm(osz, false)
      case 1:
        return this.incDecRm(osz, true)
      case 2:
        return this.callNear(this.readRm(osz))
      case 3:
      case 5: {
        this.requireMemoryOperand()
        const offset = this.readMem(this.eaSeg, this.eaOff, osz)
        const selector = this.readMem(this.eaSeg, this.offsetAdd(this.eaOff, osz), 2)
        if (this.regField === 3) this.farCall(selector, offset)
        else this.farJump(selector, offset)
        return
      }
      case 4:
        this.pc = this.nearTarget(this.readRm(osz))
        return
      case 6:
        return this.pushValue(this.readRm(osz))
      default:
        throw this.undefinedOpcode()
    }
  }

  protected pushValue(v: number): void {
    this.stackBegin()
    this.push(this.opSize, v)
    this.stackCommit()
  }

  protected pushSegment(seg: number): void {
    this.stackBegin()
    this.pushSelector(this.opSize, this.segSelector[seg])
    this.stackCommit()
  }

  protected popSegment(seg: number): void {
    this.stackBegin()
    const selector = this.pop(this.opSize) & 0xffff
    this.prepareSegment(seg, selector)
    this.stackCommit()
    this.commitSegment(seg, selector)
    if (seg === Seg.SS) this.movSs()
  }

  /** MOV SS / POP SS: interrupts and the single-step trap wait until after the next instruction (SDM Vol. 3A, 6.8.3). */
  protected movSs(): void {
    this.shadowSet = SHADOW_MOV_SS
    this.noStepTrap = true
  }

  /** POP r/m: a memory operand based on ESP is addressed with ESP already incremented. */
  protected popRm(): void {
    const osz = this.opSize
    this.espBias = osz
    try {
      this.decodeModrm()
    } finally {
      this.espBias = 0
    }
    if (this.regField !== 0) throw this.undefinedOpcode()
    this.stackBegin()
    const v = this.pop(osz)
    if (this.mod === 3) {
      this.stackCommit()
      this.setReg(osz, this.rm, v)
    } else {
      this.writeMem(this.eaSeg, this.eaOff, osz, v)
      this.stackCommit()
    }
  }

  protected pushAll(): void {
    const osz = this.opSize
    const originalSp = this.getReg(osz, Reg.ESP)
    this.stackBegin()
    for (let r = Reg.EAX; r <= Reg.EDI; r++) this.push(osz, r === Reg.ESP ? originalSp : this.getReg(osz, r))
    this.stackCommit()
  }

  protected popAll(): void {
    const osz = this.opSize
    this.stackBegin()
    const di = this.pop(osz)
    const si = this.pop(osz)
    const bp = this.pop(osz)
    this.stackRelease(osz)
    const bx = this.pop(osz)
    const dx = this.pop(osz)
    const cx = this.pop(osz)
    const ax = this.pop(osz)
    this.stackCommit()
    this.setReg(osz, Reg.EDI, di)
    this.setReg(osz, Reg.ESI, si)
    this.setReg(osz, Reg.EBP, bp)
    this.setReg(osz, Reg.EBX, bx)
    this.setReg(osz, Reg.EDX, dx)
    this.setReg(osz, Reg.ECX, cx)
    this.setReg(osz, Reg.EAX, ax)
  }

  protected popFlags(): void {
    const osz = this.opSize
    this.stackBegin()
    const image = this.pop(osz)
    const cpl = this.cpl
    let changeable = STATUS_FLAGS | TF | DF | NT
    if (osz === 4) changeable |= AC | ID | RF
    if (cpl === 0) changeable |= IOPL
    if (cpl <= this.iopl) changeable |= IF
    this.stackCommit()
    // POPF always clears RF.
    this.flags = ((this.flags & ~changeable) | (image & changeable) | EFLAGS_FIXED) & ~RF
  }

  protected loadFarPointer(seg: number): void {
    const osz = this.opSize
    this.decodeModrm()
    if (this.mod === 3) {
      // In protected mode C4/C5 with a register operand are VEX prefixes.
      if (this.protectedMode && (seg === Seg.ES || seg === Seg.DS)) {
        throw this.unimplemented("VEX-encoded (AVX) instruction is not modelled", false)
      }
      throw this.undefinedOpcode()
    }
    const offset = this.readMem(this.eaSeg, this.eaOff, osz)
    const selector = this.readMem(this.eaSeg, this.offsetAdd(this.eaOff, osz), 2)
    this.prepareSegment(seg, selector)
    this.setReg(osz, this.regField, offset)
    this.commitSegment(seg, selector)
  }

  protected bitTest(kind: number, immediate: boolean): void {
    const osz = this.opSize
    const bits = osz * 8
    let bit: number
    if (immediate) {
      bit = this.fetch8() & (bits - 1)
    } else {
      this.decodeModrm()
      const offset = this.getReg(osz, this.regField)
      bit = offset & (bits - 1)
      // A register bit offset reaches outside the memory operand: signed, in operand-sized steps.
      if (this.mod !== 3) {
        this.eaOff = this.offsetAdd(this.eaOff, Math.floor(signExtend(offset, osz) / bits) * osz)
      }
    }
    const v = this.readRm(osz)
    const cf = (v >>> bit) & 1
    if (kind !== 0) {
      const mask = 1 << bit
      this.writeRm(osz, fit(kind === 1 ? v | mask : kind === 2 ? v & ~mask : v ^ mask, osz))
    }
    // CF is the bit; OF, SF, AF and PF are undefined and left unchanged; ZF is unaffected.
    this.flags = (this.flags & ~CF) | cf
  }

  /** BSF/BSR. A zero source sets ZF and leaves the destination unchanged (as Intel and AMD hardware do). */
  protected bitScan(reverse: boolean): void {
    const osz = this.opSize
    this.decodeModrm()
    const v = this.readRm(osz)
    if (v === 0) {
      this.flags |= ZF
      return
    }
    this.setReg(osz, this.regField, reverse ? 31 - Math.clz32(v) : 31 - Math.clz32(v & -v))
    this.flags &= ~ZF
  }

  protected exchangeAdd(size: number): void {
    this.decodeModrm()
    const dest = this.readRm(size)
    const src = this.getReg(size, this.regField)
    const sum = fit(dest + src, size)
    if (this.mod === 3) {
      this.setReg(size, this.regField, dest)
      this.setReg(size, this.rm, sum)
    } else {
      this.writeRm(size, sum)
      this.setReg(size, this.regField, dest)
    }
    this.flags = addFlags(dest, src, sum, size, 0, this.flags)
  }

  /** CMPXCHG8B m64: only ZF changes; the destination is written either way, as on hardware. */
  protected compareExchange8Bytes(): void {
    // An 8-byte operand must be 8-aligned for #AC.
    if (((this.segBase[this.eaSeg] + this.eaOff) & 7) !== 0) this.checkAlignment()
    const high = this.offsetAdd(this.eaOff, 4)
    const lo = this.readMem(this.eaSeg, this.eaOff, 4)
    const hi = this.readMem(this.eaSeg, high, 4)
    const equal = lo === this.regs[Reg.EAX] && hi === this.regs[Reg.EDX]
    this.writeMem(this.eaSeg, this.eaOff, 4, equal ? this.regs[Reg.EBX] : lo)
    this.writeMem(this.eaSeg, high, 4, equal ? this.regs[Reg.ECX] : hi)
    if (equal) {
      this.flags |= ZF
    } else {
      this.regs[Reg.EAX] = lo
      this.regs[Reg.EDX] = hi
      this.flags &= ~ZF
    }
  }

  /** BOUND: #BR (a fault) when the signed index lies outside [lower, upper]. */
  protected checkBounds(): void {
    const osz = this.opSize
    this.decodeModrm()
    if (this.mod === 3) {
      // Outside real mode 62 with a register operand is the EVEX prefix.
      if (this.protectedMode) throw this.unimplemented("EVEX-encoded (AVX-512) instruction is not modelled", false)
      throw this.undefinedOpcode()
    }
    const lower = signExtend(this.readMem(this.eaSeg, this.eaOff, osz), osz)
    const upper = signExtend(this.readMem(this.eaSeg, this.offsetAdd(this.eaOff, osz), osz), osz)
    const index = signExtend(this.getReg(osz, this.regField), osz)
    if (index < lower || index > upper) throw this.fault(Vector.BR, 0)
  }

  /** CMPXCHG: the destination is written either way (the old value when the comparison fails), as on hardware. */
  protected compareExchange(size: number): void {
    this.decodeModrm()
    const dest = this.readRm(size)
    const acc = this.getReg(size, Reg.EAX)
    const diff = fit(acc - dest, size)
    const equal = diff === 0
    if (equal) {
      this.writeRm(size, this.getReg(size, this.regField))
    } else {
      if (this.mod !== 3) this.writeRm(size, dest)
      this.setReg(size, Reg.EAX, dest)
    }
    this.flags = subFlags(acc, dest, diff, size, 0, this.flags)
  }
}
