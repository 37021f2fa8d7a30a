/**
 * The x86 interpreter: a 16/32-bit CPU in real mode and flat protected mode
 * (no paging yet), running as if in VMX non-root mode. Everything outside it
 * goes through `bus.ts`: guest-physical memory and the exiting instructions.
 *
 * Restartability: an instruction decodes, then performs every memory access
 * and bus call, and only then commits registers, flags, segments and EIP. A
 * guest fault or a LEAVE_CPU thrown from the bus therefore abandons it with
 * nothing changed and EIP on its first byte (rep string instructions: the
 * current iteration only). `pc` is the decode cursor; EIP moves only at commit.
 */
import {
  AC,
  addFlags,
  AF,
  aluFlags,
  aluResult,
  AluOp,
  CF,
  decFlags,
  DF,
  divide64,
  doubleShiftFlags,
  doubleShiftResult,
  EFLAGS_FIXED,
  EFLAGS_WRITABLE,
  fit,
  ID,
  IF,
  incFlags,
  IOPL,
  logicFlags,
  mulHighSigned,
  mulHighUnsigned,
  NT,
  OF,
  PF,
  RF,
  SF,
  shiftFlags,
  shiftResult,
  signExtend,
  STATUS_FLAGS,
  subFlags,
  TF,
  VIF,
  VIP,
  VM,
  ZF,
  zsp
} from "./alu.ts"
import { type ExitingInstructions, type IoSize, LEAVE_CPU, type PhysicalMemory } from "./bus.ts"
import {
  ATTR_CODE,
  ATTR_DB,
  ATTR_EXPAND_DOWN_CONFORMING,
  ATTR_P,
  ATTR_S,
  ATTR_UNUSABLE,
  ATTR_WRITABLE_READABLE,
  attrDpl,
  descriptorAttr,
  descriptorBase,
  descriptorLimit,
  REAL_MODE_CODE_ATTR,
  REAL_MODE_DATA_ATTR
} from "./descriptors.ts"

export const enum Reg {
  EAX = 0,
  ECX,
  EDX,
  EBX,
  ESP,
  EBP,
  ESI,
  EDI
}

export const enum Seg {
  ES = 0,
  CS,
  SS,
  DS,
  FS,
  GS
}

export const enum CpuStop {
  Budget = 0,
  Left = 1,
  Stop = 2,
  InternalError = 3,
  TripleFault = 4
}

/** Exception vectors (SDM Vol. 3A, Table 6-1). */
export const enum Vector {
  DE = 0,
  BP = 3,
  OF = 4,
  BR = 5,
  UD = 6,
  DF = 8,
  TS = 10,
  NP = 11,
  SS = 12,
  GP = 13,
  PF = 14,
  AC = 17
}

/** Why the model stopped on a valid instruction it does not implement. */
export interface CpuInternalError {
  /** Linear address of the instruction's first byte. */
  readonly address: number
  /** The instruction's bytes as far as the model decoded them (at most 15). */
  readonly bytes: number[]
  readonly reason: string
}

/** Thrown inside the interpreter for a guest exception; details in the Cpu's fault fields. */
class GuestFault {
  readonly _tag = "GuestFault"
}
const GUEST_FAULT = new GuestFault()

/** Thrown inside the interpreter after recording an internal error. */
class InternalStop {
  readonly _tag = "InternalStop"
}
const INTERNAL_STOP = new InternalStop()

const CR0_PE = 1 << 0
const CR0_MP = 1 << 1
const CR0_EM = 1 << 2
const CR0_TS = 1 << 3
const CR0_ET = 1 << 4
const CR0_NE = 1 << 5
const CR0_WP = 1 << 16
const CR0_AM = 1 << 18
const CR0_NW = 1 << 29
const CR0_CD = 1 << 30
const CR0_PG = 0x80000000
const CR0_DEFINED = CR0_PE | CR0_MP | CR0_EM | CR0_TS | CR0_ET | CR0_NE | CR0_WP | CR0_AM | CR0_NW | CR0_CD | CR0_PG
/** VME..OSXMMEXCPT, UMIP, FSGSBASE, PCIDE, OSXSAVE, SMEP, SMAP, PKE: the 32-bit CR4 bits a guest may set. */
const CR4_DEFINED = 0x7ff | (1 << 11) | (1 << 16) | (1 << 17) | (1 << 18) | (1 << 20) | (1 << 21) | (1 << 22)

/** Exceptions that push an error code (SDM Vol. 3A, 6.13). */
const hasErrorCode = (vector: number): boolean =>
  vector === Vector.DF ||
  vector === Vector.TS ||
  vector === Vector.NP ||
  vector === Vector.SS ||
  vector === Vector.GP ||
  vector === Vector.PF ||
  vector === Vector.AC

/** The contributory class of SDM Vol. 3A, Table 6-4 (double-fault conditions). */
const isContributory = (vector: number): boolean =>
  vector === Vector.DE || (vector >= Vector.TS && vector <= Vector.GP)

const enum StringOp {
  Movs,
  Cmps,
  Stos,
  Lods,
  Scas
}

export class Cpu {
  readonly regs = new Uint32Array(8)
  eip = 0
  readonly segSelector = new Uint16Array(6)
  readonly segBase = new Uint32Array(6)
  readonly segLimit = new Uint32Array(6)
  readonly segAttr = new Uint32Array(6)
  cr0 = 0
  cr2 = 0
  cr3 = 0
  cr4 = 0
  gdtrBase = 0
  gdtrLimit = 0
  idtrBase = 0
  idtrLimit = 0
  retired = 0
  instructionStart = 0
  internalError: CpuInternalError | undefined = undefined

  private flags = EFLAGS_FIXED
  private pc = 0
  private opSize = 2
  private addrSize = 2
  private segOverride = -1
  private repPrefix = 0
  private mod = 0
  private regField = 0
  private rm = 0
  private eaSeg = 0
  private eaOff = 0
  /** Added to ESP when it is a base register: POP r/m addresses its operand with ESP already incremented. */
  private espBias = 0
  /** Stack pointer of the instruction in progress; stackCommit() makes it ESP. */
  private sp = 0
  private stopRequested = false
  private faultVector = 0
  private faultCode = 0
  /** The descriptor being loaded: read and checked, not yet in a segment cache. */
  private descLo = 0
  private descHi = 0
  private descAddress = 0
  private loadBase = 0
  private loadLimit = 0
  private loadAttr = 0
  private readonly quotient = new Uint32Array(2)

  constructor(
    private readonly mem: PhysicalMemory,
    private readonly exits: ExitingInstructions
  ) {
    this.resetToRealMode()
  }

  /** Length of the instruction being executed, as far as decoded. */
  get instructionLength(): number {
    return (this.pc - this.instructionStart) >>> 0
  }

  getEflags(): number {
    return this.flags | EFLAGS_FIXED
  }

  setEflags(v: number): void {
    this.flags = (v & EFLAGS_WRITABLE) | EFLAGS_FIXED
  }

  /** The state KVM gives a vCPU at reset (kvm_vcpu_reset / vmx_vcpu_reset). */
  resetToRealMode(): void {
    this.regs.fill(0)
    // Family/model/stepping as KVM sets EDX when userspace has not provided CPUID leaf 1.
    this.regs[Reg.EDX] = 0x600
    for (let s = 0; s < 6; s++) {
      this.segSelector[s] = 0
      this.segBase[s] = 0
      this.segLimit[s] = 0xffff
      this.segAttr[s] = REAL_MODE_DATA_ATTR
    }
    this.segSelector[Seg.CS] = 0xf000
    this.segBase[Seg.CS] = 0xffff0000
    this.segAttr[Seg.CS] = REAL_MODE_CODE_ATTR
    this.eip = 0xfff0
    this.flags = EFLAGS_FIXED
    this.cr0 = 0x60000010
    this.cr2 = 0
    this.cr3 = 0
    this.cr4 = 0
    this.gdtrBase = 0
    this.gdtrLimit = 0xffff
    this.idtrBase = 0
    this.idtrLimit = 0xffff
    this.instructionStart = this.eip
    this.pc = this.eip
    this.internalError = undefined
    this.stopRequested = false
  }

  requestStop(): void {
    this.stopRequested = true
  }

  /**
   * Executes up to `maxSteps` steps. A step is one instruction, one iteration of a
   * rep string instruction, or the delivery of an exception raised by an instruction.
   */
  run(maxSteps: number): CpuStop {
    let remaining = maxSteps
    let faultPending = false
    for (;;) {
      try {
        if (faultPending) {
          faultPending = false
          if (!this.deliverException()) {
            this.eip = this.instructionStart
            return CpuStop.TripleFault
          }
          this.retired++
          if (this.stopRequested) {
            this.stopRequested = false
            return CpuStop.Stop
          }
        }
        while (remaining > 0) {
          remaining--
          this.step()
          this.retired++
          if (this.stopRequested) {
            this.stopRequested = false
            return CpuStop.Stop
          }
        }
        return CpuStop.Budget
      } catch (e) {
        if (e === GUEST_FAULT) {
          faultPending = true
          continue
        }
        this.eip = this.instructionStart
        if (e === LEAVE_CPU) return CpuStop.Left
        if (e === INTERNAL_STOP) return CpuStop.InternalError
        throw e
      }
    }
  }

  // ---------------------------------------------------------------- modes

  private get protectedMode(): boolean {
    return (this.cr0 & CR0_PE) !== 0
  }

  /** CPL is SS.DPL, as in the VMCS guest state. */
  private get cpl(): number {
    return this.protectedMode ? attrDpl(this.segAttr[Seg.SS]) : 0
  }

  private get iopl(): number {
    return (this.flags & IOPL) >>> 12
  }

  private requireCpl0(): void {
    if (this.protectedMode && this.cpl !== 0) throw this.fault(Vector.GP, 0)
  }

  /** IN/OUT/INS/OUTS/CLI/STI sensitivity; there is no TSS I/O bitmap in this model. */
  private requireIopl(): void {
    if (this.protectedMode && this.cpl > this.iopl) throw this.fault(Vector.GP, 0)
  }

  // ---------------------------------------------------------------- faults and stops

  private fault(vector: number, code: number): GuestFault {
    this.faultVector = vector
    this.faultCode = code
    return GUEST_FAULT
  }

  private undefinedOpcode(): GuestFault {
    return this.fault(Vector.UD, 0)
  }

  /** A valid instruction the model does not implement: record it and stop. */
  private unimplemented(reason: string, hasModrm: boolean): InternalStop {
    if (hasModrm) this.decodeModrm()
    const address = (this.segBase[Seg.CS] + this.instructionStart) >>> 0
    const bytes: number[] = []
    const length = Math.min(this.instructionLength, 15)
    try {
      for (let i = 0; i < length; i++) bytes.push(this.mem.fetch8(this.physical((address + i) >>> 0)))
    } catch {
      // The bytes were fetched once already; a second read that leaves only shortens the record.
    }
    this.internalError = { address, bytes, reason }
    return INTERNAL_STOP
  }

  /**
   * Delivers the exception in the fault fields, applying the double-fault rules
   * of SDM Vol. 3A, Table 6-5. Returns false on a triple fault (shutdown).
   */
  private deliverException(): boolean {
    let vector = this.faultVector
    let code = this.faultCode
    for (;;) {
      try {
        this.deliver(vector, hasErrorCode(vector), code, this.instructionStart, false)
        return true
      } catch (e) {
        if (e !== GUEST_FAULT) throw e
        const second = this.faultVector
        if (vector === Vector.DF) return false
        const doubleFault =
          (isContributory(vector) && isContributory(second)) ||
          (vector === Vector.PF && (isContributory(second) || second === Vector.PF))
        vector = doubleFault ? Vector.DF : second
        code = doubleFault ? 0 : this.faultCode
      }
    }
  }

  /**
   * Delivers an interrupt or exception through the IVT (real mode) or the IDT.
   * `software` is INT n / INT3 / INTO: the gate DPL is checked and EXT is 0.
   */
  private deliver(vector: number, withCode: boolean, code: number, returnEip: number, software: boolean): void {
    if (!this.protectedMode) {
      this.deliverReal(vector, returnEip)
      return
    }
    const ext = software ? 0 : 1
    const gateOffset = vector * 8
    const gateError = gateOffset + 2 + ext
    if (gateOffset + 7 > this.idtrLimit) throw this.fault(Vector.GP, gateError)
    const gateLo = this.readLinear32(this.idtrBase + gateOffset)
    const gateHi = this.readLinear32(this.idtrBase + gateOffset + 4)
    const gateType = (gateHi >>> 8) & 0x1f
    let gateSize: number
    switch (gateType) {
      case 0x0e:
      case 0x0f:
        gateSize = 4
        break
      case 0x06:
      case 0x07:
        gateSize = 2
        break
      case 0x05:
        throw this.unimplemented("task gate in the IDT (task switching is not modelled)", false)
      default:
        throw this.fault(Vector.GP, gateError)
    }
    const cpl = this.cpl
    if (software && ((gateHi >>> 13) & 3) < cpl) throw this.fault(Vector.GP, gateOffset + 2)
    if ((gateHi & 0x8000) === 0) throw this.fault(Vector.NP, gateError)
    const selector = gateLo >>> 16
    const offset = gateSize === 4 ? ((gateHi & 0xffff0000) | (gateLo & 0xffff)) >>> 0 : gateLo & 0xffff
    if ((selector & 0xfffc) === 0) throw this.fault(Vector.GP, ext)
    this.readDescriptor(selector, ext)
    const attr = descriptorAttr(this.descHi)
    const selectorError = (selector & 0xfffc) + ext
    if ((attr & (ATTR_S | ATTR_CODE)) !== (ATTR_S | ATTR_CODE) || attrDpl(attr) > cpl) {
      throw this.fault(Vector.GP, selectorError)
    }
    if ((attr & ATTR_EXPAND_DOWN_CONFORMING) === 0 && attrDpl(attr) < cpl) {
      throw this.unimplemented("interrupt to an inner privilege level (stack switch is not modelled)", false)
    }
    if ((attr & ATTR_P) === 0) throw this.fault(Vector.NP, selectorError)
    if (offset > descriptorLimit(this.descLo, this.descHi)) throw this.fault(Vector.GP, ext)
    this.markAccessed()
    // Fault-class exceptions push EFLAGS with RF set (SDM Vol. 3A, 18.3.1.1); #DF is an abort.
    const isFault = !software && vector !== Vector.DF
    const flagsImage = isFault ? this.flags | RF : this.flags
    this.stackBegin()
    this.push(gateSize, flagsImage)
    this.push(gateSize, this.segSelector[Seg.CS])
    this.push(gateSize, returnEip)
    if (withCode) this.push(gateSize, code)
    this.stackCommit()
    this.setLoadFromDescriptor()
    this.commitSegment(Seg.CS, (selector & 0xfffc) | cpl)
    this.flags &= ~(TF | NT | RF | VM)
    if ((gateType & 1) === 0) this.flags &= ~IF
    this.pc = offset
    this.eip = offset
  }

  private deliverReal(vector: number, returnEip: number): void {
    const entry = vector * 4
    if (entry + 3 > this.idtrLimit) throw this.fault(Vector.GP, 0)
    const ip = this.mem.read16(this.physical((this.idtrBase + entry) >>> 0))
    const cs = this.mem.read16(this.physical((this.idtrBase + entry + 2) >>> 0))
    this.stackBegin()
    this.push(2, this.flags & 0xffff)
    this.push(2, this.segSelector[Seg.CS])
    this.push(2, returnEip & 0xffff)
    this.stackCommit()
    this.prepareRealSegment(Seg.CS, cs)
    this.commitSegment(Seg.CS, cs)
    this.flags &= ~(IF | TF | AC | RF)
    this.pc = ip
    this.eip = ip
  }

  // ---------------------------------------------------------------- memory

  /** Linear to guest-physical: the identity until paging is modelled. */
  private physical(linear: number): number {
    return linear
  }

  private readLinear32(linear: number): number {
    return this.mem.read32(this.physical(linear >>> 0))
  }

  /**
   * Segment protection and limit checks (SDM Vol. 3A, 5.3 and 5.5), then the
   * linear address. Real mode checks the limit only.
   */
  private checkedLinear(seg: number, off: number, size: number, write: boolean): number {
    const attr = this.segAttr[seg]
    const limit = this.segLimit[seg]
    const end = off + size - 1
    if (this.protectedMode) {
      if ((attr & (ATTR_UNUSABLE | ATTR_P | ATTR_S)) !== (ATTR_P | ATTR_S)) throw this.segmentFault(seg)
      if (write) {
        if ((attr & (ATTR_CODE | ATTR_WRITABLE_READABLE)) !== ATTR_WRITABLE_READABLE) throw this.segmentFault(seg)
      } else if ((attr & (ATTR_CODE | ATTR_WRITABLE_READABLE)) === ATTR_CODE) {
        throw this.segmentFault(seg)
      }
      if ((attr & (ATTR_CODE | ATTR_EXPAND_DOWN_CONFORMING)) === ATTR_EXPAND_DOWN_CONFORMING) {
        const upper = (attr & ATTR_DB) !== 0 ? 0xffffffff : 0xffff
        if (off <= limit || end > upper) throw this.segmentFault(seg)
        return (this.segBase[seg] + off) >>> 0
      }
    }
    if (end > limit) throw this.segmentFault(seg)
    return (this.segBase[seg] + off) >>> 0
  }

  private segmentFault(seg: number): GuestFault {
    return this.fault(seg === Seg.SS ? Vector.SS : Vector.GP, 0)
  }

  private readMem(seg: number, off: number, size: number): number {
    const pa = this.physical(this.checkedLinear(seg, off, size, false))
    return size === 1 ? this.mem.read8(pa) : size === 2 ? this.mem.read16(pa) : this.mem.read32(pa)
  }

  private writeMem(seg: number, off: number, size: number, value: number): void {
    const pa = this.physical(this.checkedLinear(seg, off, size, true))
    if (size === 1) this.mem.write8(pa, value)
    else if (size === 2) this.mem.write16(pa, value)
    else this.mem.write32(pa, value)
  }

  /** Offset arithmetic in the current address size. */
  private offsetAdd(off: number, n: number): number {
    return this.addrSize === 4 ? (off + n) >>> 0 : (off + n) & 0xffff
  }

  // ---------------------------------------------------------------- fetch and decode

  private fetch8(): number {
    const off = this.pc
    if (off > this.segLimit[Seg.CS] || off - this.instructionStart >= 15) throw this.fault(Vector.GP, 0)
    this.pc = off + 1
    return this.mem.fetch8(this.physical((this.segBase[Seg.CS] + off) >>> 0))
  }

  private fetch16(): number {
    const lo = this.fetch8()
    return lo | (this.fetch8() << 8)
  }

  private fetch32(): number {
    const lo = this.fetch16()
    return (lo | (this.fetch16() << 16)) >>> 0
  }

  private fetchImm(size: number): number {
    return size === 1 ? this.fetch8() : size === 2 ? this.fetch16() : this.fetch32()
  }

  /** An 8-bit immediate sign-extended to `size`. */
  private fetchImm8As(size: number): number {
    return fit(signExtend(this.fetch8(), 1), size)
  }

  private decodeModrm(): void {
    const b = this.fetch8()
    this.mod = b >>> 6
    this.regField = (b >>> 3) & 7
    this.rm = b & 7
    if (this.mod === 3) return
    if (this.addrSize === 2) this.effectiveAddress16()
    else this.effectiveAddress32()
  }

  private effectiveAddress16(): void {
    const r = this.regs
    let seg = Seg.DS
    let off: number
    switch (this.rm) {
      case 0:
        off = r[Reg.EBX] + r[Reg.ESI]
        break
      case 1:
        off = r[Reg.EBX] + r[Reg.EDI]
        break
      case 2:
        off = r[Reg.EBP] + r[Reg.ESI]
        seg = Seg.SS
        break
      case 3:
        off = r[Reg.EBP] + r[Reg.EDI]
        seg = Seg.SS
        break
      case 4:
        off = r[Reg.ESI]
        break
      case 5:
        off = r[Reg.EDI]
        break
      case 6:
        if (this.mod === 0) {
          off = this.fetch16()
        } else {
          off = r[Reg.EBP]
          seg = Seg.SS
        }
        break
      default:
        off = r[Reg.EBX]
        break
    }
    if (this.mod === 1) off += signExtend(this.fetch8(), 1)
    else if (this.mod === 2) off += this.fetch16()
    this.eaOff = off & 0xffff
    this.eaSeg = this.segOverride >= 0 ? this.segOverride : seg
  }

  private effectiveAddress32(): void {
    let seg = Seg.DS
    let off = 0
    let base = this.rm
    if (base === 4) {
      const sib = this.fetch8()
      const index = (sib >>> 3) & 7
      base = sib & 7
      if (index !== 4) off = this.regs[index] * (1 << (sib >>> 6))
      if (base === 5 && this.mod === 0) {
        off += this.fetch32()
      } else {
        off += base === Reg.ESP ? this.regs[Reg.ESP] + this.espBias : this.regs[base]
        if (base === Reg.ESP || base === Reg.EBP) seg = Seg.SS
      }
    } else if (base === 5 && this.mod === 0) {
      off = this.fetch32()
    } else {
      off = this.regs[base]
      if (base === Reg.EBP) seg = Seg.SS
    }
    if (this.mod === 1) off += signExtend(this.fetch8(), 1)
    else if (this.mod === 2) off += this.fetch32()
    this.eaOff = off >>> 0
    this.eaSeg = this.segOverride >= 0 ? this.segOverride : seg
  }

  /** A memory operand is required (LEA, LxS, far indirect, LGDT…): a register form is #UD. */
  private requireMemoryOperand(): void {
    if (this.mod === 3) throw this.undefinedOpcode()
  }

  // ---------------------------------------------------------------- registers and operands

  private getReg(size: number, r: number): number {
    if (size === 4) return this.regs[r]
    if (size === 2) return this.regs[r] & 0xffff
    return r < 4 ? this.regs[r] & 0xff : (this.regs[r - 4] >>> 8) & 0xff
  }

  private setReg(size: number, r: number, v: number): void {
    if (size === 4) this.regs[r] = v
    else if (size === 2) this.regs[r] = (this.regs[r] & 0xffff0000) | (v & 0xffff)
    else if (r < 4) this.regs[r] = (this.regs[r] & 0xffffff00) | (v & 0xff)
    else this.regs[r - 4] = (this.regs[r - 4] & 0xffff00ff) | ((v & 0xff) << 8)
  }

  private readRm(size: number): number {
    return this.mod === 3 ? this.getReg(size, this.rm) : this.readMem(this.eaSeg, this.eaOff, size)
  }

  private writeRm(size: number, v: number): void {
    if (this.mod === 3) this.setReg(size, this.rm, v)
    else this.writeMem(this.eaSeg, this.eaOff, size, v)
  }

  private get dataSeg(): number {
    return this.segOverride >= 0 ? this.segOverride : Seg.DS
  }

  // ---------------------------------------------------------------- stack

  private get stack32(): boolean {
    return (this.segAttr[Seg.SS] & ATTR_DB) !== 0
  }

  private stackBegin(): void {
    this.sp = this.regs[Reg.ESP]
  }

  private push(size: number, v: number): void {
    const sp = this.stack32 ? (this.sp - size) >>> 0 : (this.sp - size) & 0xffff
    this.writeMem(Seg.SS, sp, size, v)
    this.sp = sp
  }

  /** PUSH sreg with a 32-bit operand: recent processors write only the selector's 16 bits into the slot. */
  private pushSelector(size: number, selector: number): void {
    const sp = this.stack32 ? (this.sp - size) >>> 0 : (this.sp - size) & 0xffff
    this.writeMem(Seg.SS, sp, 2, selector)
    this.sp = sp
  }

  private pop(size: number): number {
    const sp = this.stack32 ? this.sp : this.sp & 0xffff
    const v = this.readMem(Seg.SS, sp, size)
    this.sp = this.stack32 ? (sp + size) >>> 0 : (sp + size) & 0xffff
    return v
  }

  private stackRelease(n: number): void {
    this.sp = this.stack32 ? (this.sp + n) >>> 0 : (this.sp + n) & 0xffff
  }

  private stackCommit(): void {
    if (this.stack32) this.regs[Reg.ESP] = this.sp
    else this.regs[Reg.ESP] = (this.regs[Reg.ESP] & 0xffff0000) | (this.sp & 0xffff)
  }

  // ---------------------------------------------------------------- segment loading

  private readDescriptor(selector: number, ext: number): void {
    const index = selector & 0xfff8
    // No LDT is modelled: LDTR is null, so an LDT selector faults as it would with a null LDTR.
    if ((selector & 4) !== 0 || index + 7 > this.gdtrLimit) throw this.fault(Vector.GP, (selector & 0xfffc) + ext)
    this.descAddress = (this.gdtrBase + index) >>> 0
    this.descLo = this.readLinear32(this.descAddress)
    this.descHi = this.readLinear32(this.descAddress + 4)
  }

  /** Sets the descriptor's accessed bit in the GDT, as the processor does on a segment load. */
  private markAccessed(): void {
    if ((this.descHi & 0x100) !== 0) return
    this.mem.write8(this.physical((this.descAddress + 5) >>> 0), ((this.descHi >>> 8) | 1) & 0xff)
    this.descHi |= 0x100
  }

  private setLoadFromDescriptor(): void {
    this.loadBase = descriptorBase(this.descLo, this.descHi)
    this.loadLimit = descriptorLimit(this.descLo, this.descHi)
    this.loadAttr = descriptorAttr(this.descHi)
  }

  /** Real mode: base = selector << 4; the limit and attributes in the cache stay (which is what unreal mode relies on). */
  private prepareRealSegment(seg: number, selector: number): void {
    const attr = this.segAttr[seg]
    this.loadBase = selector << 4
    this.loadLimit = this.segLimit[seg]
    this.loadAttr =
      (attr & ATTR_UNUSABLE) === 0 ? attr : seg === Seg.CS ? REAL_MODE_CODE_ATTR : REAL_MODE_DATA_ATTR
  }

  /** Checks a load of DS/ES/FS/GS/SS (MOV, POP, LxS) without committing it. */
  private prepareSegment(seg: number, selector: number): void {
    if (!this.protectedMode) {
      this.prepareRealSegment(seg, selector)
      return
    }
    const error = selector & 0xfffc
    if (seg === Seg.SS) {
      if (error === 0) throw this.fault(Vector.GP, 0)
      this.readDescriptor(selector, 0)
      const attr = descriptorAttr(this.descHi)
      const cpl = this.cpl
      if (
        (selector & 3) !== cpl ||
        (attr & (ATTR_S | ATTR_CODE | ATTR_WRITABLE_READABLE)) !== (ATTR_S | ATTR_WRITABLE_READABLE) ||
        attrDpl(attr) !== cpl
      ) {
        throw this.fault(Vector.GP, error)
      }
      if ((attr & ATTR_P) === 0) throw this.fault(Vector.SS, error)
    } else {
      if (error === 0) {
        // A null selector is allowed in a data segment register; using it faults.
        this.loadBase = 0
        this.loadLimit = 0
        this.loadAttr = ATTR_UNUSABLE
        return
      }
      this.readDescriptor(selector, 0)
      const attr = descriptorAttr(this.descHi)
      const dpl = attrDpl(attr)
      if ((attr & ATTR_S) === 0 || (attr & (ATTR_CODE | ATTR_WRITABLE_READABLE)) === ATTR_CODE) {
        throw this.fault(Vector.GP, error)
      }
      const conformingCode =
        (attr & (ATTR_CODE | ATTR_EXPAND_DOWN_CONFORMING)) === (ATTR_CODE | ATTR_EXPAND_DOWN_CONFORMING)
      if (!conformingCode && ((selector & 3) > dpl || this.cpl > dpl)) throw this.fault(Vector.GP, error)
      if ((attr & ATTR_P) === 0) throw this.fault(Vector.NP, error)
    }
    this.markAccessed()
    this.setLoadFromDescriptor()
  }

  /**
   * Checks a CS load by a far JMP/CALL (`isReturn` false) or RETF/IRET (true).
   * Only same-privilege transfers to code segments are modelled.
   * Returns the selector to put in CS.
   */
  private prepareCodeSegment(selector: number, isReturn: boolean): number {
    if (!this.protectedMode) {
      this.prepareRealSegment(Seg.CS, selector)
      return selector
    }
    const error = selector & 0xfffc
    if (error === 0) throw this.fault(Vector.GP, 0)
    this.readDescriptor(selector, 0)
    const attr = descriptorAttr(this.descHi)
    if ((attr & ATTR_S) === 0) {
      throw this.unimplemented("far transfer through a call gate, task gate or TSS is not modelled", false)
    }
    if ((attr & ATTR_CODE) === 0) throw this.fault(Vector.GP, error)
    const cpl = this.cpl
    const rpl = selector & 3
    const dpl = attrDpl(attr)
    if (isReturn) {
      if (rpl < cpl) throw this.fault(Vector.GP, error)
      if (rpl > cpl) throw this.unimplemented("return to an outer privilege level is not modelled", false)
    }
    if ((attr & ATTR_EXPAND_DOWN_CONFORMING) !== 0) {
      if (dpl > cpl) throw this.fault(Vector.GP, error)
    } else if (rpl > cpl || dpl !== cpl) {
      throw this.fault(Vector.GP, error)
    }
    if ((attr & ATTR_P) === 0) throw this.fault(Vector.NP, error)
    this.markAccessed()
    this.setLoadFromDescriptor()
    return (selector & 0xfffc) | cpl
  }

  private commitSegment(seg: number, selector: number): void {
    this.segSelector[seg] = selector
    this.segBase[seg] = this.loadBase
    this.segLimit[seg] = this.loadLimit
    this.segAttr[seg] = this.loadAttr
  }

  // ---------------------------------------------------------------- control transfer

  /** A near branch target in the operand size, checked against the CS limit. */
  private nearTarget(target: number): number {
    const t = this.opSize === 4 ? target >>> 0 : target & 0xffff
    if (t > this.segLimit[Seg.CS]) throw this.fault(Vector.GP, 0)
    return t
  }

  private condition(cc: number): boolean {
    const f = this.flags
    let r: boolean
    switch (cc >>> 1) {
      case 0:
        r = (f & OF) !== 0
        break
      case 1:
        r = (f & CF) !== 0
        break
      case 2:
        r = (f & ZF) !== 0
        break
      case 3:
        r = (f & (CF | ZF)) !== 0
        break
      case 4:
        r = (f & SF) !== 0
        break
      case 5:
        r = (f & PF) !== 0
        break
      case 6:
        r = ((f & SF) !== 0) !== ((f & OF) !== 0)
        break
      default:
        r = (f & ZF) !== 0 || ((f & SF) !== 0) !== ((f & OF) !== 0)
        break
    }
    return (cc & 1) === 0 ? r : !r
  }

  private jumpIf(cond: boolean, disp: number): void {
    if (cond) this.pc = this.nearTarget(this.pc + disp)
  }

  private callNear(target: number): void {
    const t = this.nearTarget(target)
    this.stackBegin()
    this.push(this.opSize, this.pc)
    this.stackCommit()
    this.pc = t
  }

  private farJump(selector: number, offset: number): void {
    const cs = this.prepareCodeSegment(selector, false)
    if (offset > this.loadLimit) throw this.fault(Vector.GP, 0)
    this.commitSegment(Seg.CS, cs)
    this.pc = offset
  }

  private farCall(selector: number, offset: number): void {
    const cs = this.prepareCodeSegment(selector, false)
    if (offset > this.loadLimit) throw this.fault(Vector.GP, 0)
    this.stackBegin()
    this.push(this.opSize, this.segSelector[Seg.CS])
    this.push(this.opSize, this.pc)
    this.stackCommit()
    this.commitSegment(Seg.CS, cs)
    this.pc = offset
  }

  private returnNear(release: number): void {
    this.stackBegin()
    const t = this.nearTarget(this.pop(this.opSize))
    this.stackRelease(release)
    this.stackCommit()
    this.pc = t
  }

  private returnFar(release: number): void {
    const size = this.opSize
    this.stackBegin()
    const offset = this.pop(size)
    const selector = this.pop(size) & 0xffff
    const cs = this.prepareCodeSegment(selector, true)
    if (offset > this.loadLimit) throw this.fault(Vector.GP, 0)
    this.stackRelease(release)
    this.stackCommit()
    this.commitSegment(Seg.CS, cs)
    this.pc = offset
  }

  private interruptReturn(): void {
    const size = this.opSize
    if (this.protectedMode && (this.flags & NT) !== 0) {
      throw this.unimplemented("IRET with NT set (task return) is not modelled", false)
    }
    this.stackBegin()
    const offset = this.pop(size)
    const selector = this.pop(size) & 0xffff
    const image = this.pop(size)
    let changeable: number
    if (!this.protectedMode) {
      changeable = size === 4 ? (EFLAGS_WRITABLE & ~(VM | VIF | VIP)) : 0x7fd5
    } else {
      if (size === 4 && (image & VM) !== 0 && this.cpl === 0) {
        throw this.unimplemented("IRET to virtual-8086 mode is not modelled", false)
      }
      const cpl = this.cpl
      changeable = STATUS_FLAGS | TF | DF | NT
      if (size === 4) changeable |= RF | AC | ID
      if (cpl <= this.iopl) changeable |= IF
      if (cpl === 0) changeable |= IOPL | (size === 4 ? VIF | VIP : 0)
    }
    const cs = this.prepareCodeSegment(selector, true)
    if (offset > this.loadLimit) throw this.fault(Vector.GP, 0)
    this.stackCommit()
    this.commitSegment(Seg.CS, cs)
    this.flags = (this.flags & ~changeable) | (image & changeable) | EFLAGS_FIXED
    this.pc = offset
  }

  private softwareInterrupt(vector: number): void {
    this.deliver(vector, false, 0, this.pc, true)
  }

  // ---------------------------------------------------------------- step

  private step(): void {
    const start = this.eip
    this.instructionStart = start
    this.pc = start
    const code32 = (this.segAttr[Seg.CS] & ATTR_DB) !== 0
    this.opSize = code32 ? 4 : 2
    this.addrSize = code32 ? 4 : 2
    this.segOverride = -1
    this.repPrefix = 0
    let op = this.fetch8()
    prefixes: for (;;) {
      switch (op) {
        case 0x26:
          this.segOverride = Seg.ES
          break
        case 0x2e:
          this.segOverride = Seg.CS
          break
        case 0x36:
          this.segOverride = Seg.SS
          break
        case 0x3e:
          this.segOverride = Seg.DS
          break
        case 0x64:
          this.segOverride = Seg.FS
          break
        case 0x65:
          this.segOverride = Seg.GS
          break
        case 0x66:
          this.opSize = code32 ? 2 : 4
          break
        case 0x67:
          this.addrSize = code32 ? 2 : 4
          break
        case 0xf0:
          // LOCK: a single CPU with no concurrent memory agents needs no atomicity.
          break
        case 0xf2:
        case 0xf3:
          this.repPrefix = op
          break
        default:
          break prefixes
      }
      op = this.fetch8()
    }
    this.execute(op)
    this.eip = this.pc
  }

  private execute(op: number): void {
    const osz = this.opSize
    switch (op) {
      case 0x00:
      case 0x08:
      case 0x10:
      case 0x18:
      case 0x20:
      case 0x28:
      case 0x30:
      case 0x38:
        return this.aluModrm(op >>> 3, 1, false)
      case 0x01:
      case 0x09:
      case 0x11:
      case 0x19:
      case 0x21:
      case 0x29:
      case 0x31:
      case 0x39:
        return this.aluModrm(op >>> 3, osz, false)
      case 0x02:
      case 0x0a:
      case 0x12:
      case 0x1a:
      case 0x22:
      case 0x2a:
      case 0x32:
      case 0x3a:
        return this.aluModrm(op >>> 3, 1, true)
      case 0x03:
      case 0x0b:
      case 0x13:
      case 0x1b:
      case 0x23:
      case 0x2b:
      case 0x33:
      case 0x3b:
        return this.aluModrm(op >>> 3, osz, true)
      case 0x04:
      case 0x0c:
      case 0x14:
      case 0x1c:
      case 0x24:
      case 0x2c:
      case 0x34:
      case 0x3c:
        return this.aluAccumulator(op >>> 3, 1)
      case 0x05:
      case 0x0d:
      case 0x15:
      case 0x1d:
      case 0x25:
      case 0x2d:
      case 0x35:
      case 0x3d:
        return this.aluAccumulator(op >>> 3, osz)
      case 0x06:
        return this.pushSegment(Seg.ES)
      case 0x07:
        return this.popSegment(Seg.ES)
      case 0x0e:
        return this.pushSegment(Seg.CS)
      case 0x0f:
        return this.executeTwoByte(this.fetch8())
      case 0x16:
        return this.pushSegment(Seg.SS)
      case 0x17:
        return this.popSegment(Seg.SS)
      case 0x1e:
        return this.pushSegment(Seg.DS)
      case 0x1f:
        return this.popSegment(Seg.DS)
      case 0x27:
        return this.decimalAdjust(false)
      case 0x2f:
        return this.decimalAdjust(true)
      case 0x37:
        return this.asciiAdjust(false)
      case 0x3f:
        return this.asciiAdjust(true)
      case 0x40:
      case 0x41:
      case 0x42:
      case 0x43:
      case 0x44:
      case 0x45:
      case 0x46:
      case 0x47: {
        const a = this.getReg(osz, op & 7)
        const r = fit(a + 1, osz)
        this.setReg(osz, op & 7, r)
        this.flags = incFlags(a, r, osz, this.flags)
        return
      }
      case 0x48:
      case 0x49:
      case 0x4a:
      case 0x4b:
      case 0x4c:
      case 0x4d:
      case 0x4e:
      case 0x4f: {
        const a = this.getReg(osz, op & 7)
        const r = fit(a - 1, osz)
        this.setReg(osz, op & 7, r)
        this.flags = decFlags(a, r, osz, this.flags)
        return
      }
      case 0x50:
      case 0x51:
      case 0x52:
      case 0x53:
      case 0x54:
      case 0x55:
      case 0x56:
      case 0x57:
        return this.pushValue(this.getReg(osz, op & 7))
      case 0x58:
      case 0x59:
      case 0x5a:
      case 0x5b:
      case 0x5c:
      case 0x5d:
      case 0x5e:
      case 0x5f: {
        this.stackBegin()
        const v = this.pop(osz)
        this.stackCommit()
        this.setReg(osz, op & 7, v)
        return
      }
      case 0x60:
        return this.pushAll()
      case 0x61:
        return this.popAll()
      case 0x62:
        return this.checkBounds()
      case 0x63:
        if (!this.protectedMode) throw this.undefinedOpcode()
        throw this.unimplemented("ARPL is not modelled", true)
      case 0x68:
        return this.pushValue(this.fetchImm(osz))
      case 0x69:
      case 0x6b: {
        this.decodeModrm()
        const imm = op === 0x69 ? this.fetchImm(osz) : this.fetchImm8As(osz)
        return this.multiplyInto(this.regField, this.readRm(osz), imm)
      }
      case 0x6a:
        return this.pushValue(this.fetchImm8As(osz))
      case 0x6c:
        return this.inString(1)
      case 0x6d:
        return this.inString(osz)
      case 0x6e:
        return this.outString(1)
      case 0x6f:
        return this.outString(osz)
      case 0x70:
      case 0x71:
      case 0x72:
      case 0x73:
      case 0x74:
      case 0x75:
      case 0x76:
      case 0x77:
      case 0x78:
      case 0x79:
      case 0x7a:
      case 0x7b:
      case 0x7c:
      case 0x7d:
      case 0x7e:
      case 0x7f: {
        const disp = signExtend(this.fetch8(), 1)
        return this.jumpIf(this.condition(op & 15), disp)
      }
      case 0x80:
      case 0x82:
        return this.aluImmediate(1, 1)
      case 0x81:
        return this.aluImmediate(osz, osz)
      case 0x83:
        return this.aluImmediate(osz, 1)
      case 0x84:
      case 0x85: {
        const size = op === 0x84 ? 1 : osz
        this.decodeModrm()
        const r = this.readRm(size) & this.getReg(size, this.regField)
        this.flags = logicFlags(fit(r, size), size, this.flags)
        return
      }
      case 0x86:
      case 0x87: {
        const size = op === 0x86 ? 1 : osz
        this.decodeModrm()
        const a = this.readRm(size)
        const b = this.getReg(size, this.regField)
        this.writeRm(size, b)
        this.setReg(size, this.regField, a)
        return
      }
      case 0x88:
      case 0x89: {
        const size = op === 0x88 ? 1 : osz
        this.decodeModrm()
        return this.writeRm(size, this.getReg(size, this.regField))
      }
      case 0x8a:
      case 0x8b: {
        const size = op === 0x8a ? 1 : osz
        this.decodeModrm()
        return this.setReg(size, this.regField, this.readRm(size))
      }
      case 0x8c: {
        this.decodeModrm()
        if (this.regField > Seg.GS) throw this.undefinedOpcode()
        // To a register the selector is zero-extended to the operand size; to memory it is always 16 bits.
        const selector = this.segSelector[this.regField]
        if (this.mod === 3) this.setReg(osz, this.rm, selector)
        else this.writeMem(this.eaSeg, this.eaOff, 2, selector)
        return
      }
      case 0x8d: {
        this.decodeModrm()
        this.requireMemoryOperand()
        return this.setReg(osz, this.regField, this.eaOff)
      }
      case 0x8e: {
        this.decodeModrm()
        const seg = this.regField
        if (seg === Seg.CS || seg > Seg.GS) throw this.undefinedOpcode()
        const selector = this.readRm(2)
        this.prepareSegment(seg, selector)
        return this.commitSegment(seg, selector)
      }
      case 0x8f:
        return this.popRm()
      case 0x90:
        return
      case 0x91:
      case 0x92:
      case 0x93:
      case 0x94:
      case 0x95:
      case 0x96:
      case 0x97: {
        const a = this.getReg(osz, Reg.EAX)
        this.setReg(osz, Reg.EAX, this.getReg(osz, op & 7))
        this.setReg(osz, op & 7, a)
        return
      }
      case 0x98:
        if (osz === 4) this.regs[Reg.EAX] = signExtend(this.regs[Reg.EAX], 2)
        else this.setReg(2, Reg.EAX, signExtend(this.regs[Reg.EAX], 1))
        return
      case 0x99:
        if (osz === 4) this.regs[Reg.EDX] = this.regs[Reg.EAX] >>> 31 === 1 ? 0xffffffff : 0
        else this.setReg(2, Reg.EDX, (this.regs[Reg.EAX] & 0x8000) !== 0 ? 0xffff : 0)
        return
      case 0x9a: {
        const offset = this.fetchImm(osz)
        return this.farCall(this.fetch16(), offset)
      }
      case 0x9b:
        // FWAIT: with no x87 there is never a pending x87 exception.
        return
      case 0x9c:
        // The image never shows VM or RF.
        return this.pushValue(this.flags & ~(VM | RF))
      case 0x9d:
        return this.popFlags()
      case 0x9e: {
        const mask = SF | ZF | AF | PF | CF
        this.flags = (this.flags & ~mask) | ((this.regs[Reg.EAX] >>> 8) & mask)
        return
      }
      case 0x9f:
        this.setReg(1, 4, (this.flags & (SF | ZF | AF | PF | CF)) | EFLAGS_FIXED)
        return
      case 0xa0:
      case 0xa1: {
        const size = op === 0xa0 ? 1 : osz
        const v = this.readMem(this.dataSeg, this.fetchImm(this.addrSize), size)
        return this.setReg(size, Reg.EAX, v)
      }
      case 0xa2:
      case 0xa3: {
        const size = op === 0xa2 ? 1 : osz
        return this.writeMem(this.dataSeg, this.fetchImm(this.addrSize), size, this.getReg(size, Reg.EAX))
      }
      case 0xa4:
        return this.stringOp(StringOp.Movs, 1)
      case 0xa5:
        return this.stringOp(StringOp.Movs, osz)
      case 0xa6:
        return this.stringOp(StringOp.Cmps, 1)
      case 0xa7:
        return this.stringOp(StringOp.Cmps, osz)
      case 0xa8:
      case 0xa9: {
        const size = op === 0xa8 ? 1 : osz
        const r = this.getReg(size, Reg.EAX) & this.fetchImm(size)
        this.flags = logicFlags(fit(r, size), size, this.flags)
        return
      }
      case 0xaa:
        return this.stringOp(StringOp.Stos, 1)
      case 0xab:
        return this.stringOp(StringOp.Stos, osz)
      case 0xac:
        return this.stringOp(StringOp.Lods, 1)
      case 0xad:
        return this.stringOp(StringOp.Lods, osz)
      case 0xae:
        return this.stringOp(StringOp.Scas, 1)
      case 0xaf:
        return this.stringOp(StringOp.Scas, osz)
      case 0xb0:
      case 0xb1:
      case 0xb2:
      case 0xb3:
      case 0xb4:
      case 0xb5:
      case 0xb6:
      case 0xb7:
        return this.setReg(1, op & 7, this.fetch8())
      case 0xb8:
      case 0xb9:
      case 0xba:
      case 0xbb:
      case 0xbc:
      case 0xbd:
      case 0xbe:
      case 0xbf:
        return this.setReg(osz, op & 7, this.fetchImm(osz))
      case 0xc0:
        return this.shiftRm(1, -1)
      case 0xc1:
        return this.shiftRm(osz, -1)
      case 0xc2:
        return this.returnNear(this.fetch16())
      case 0xc3:
        return this.returnNear(0)
      case 0xc4:
      case 0xc5:
        return this.loadFarPointer(op === 0xc4 ? Seg.ES : Seg.DS)
      case 0xc6:
      case 0xc7: {
        const size = op === 0xc6 ? 1 : osz
        this.decodeModrm()
        if (this.regField !== 0) {
          if (this.regField === 7 && this.mod === 3 && this.rm === 0) {
            throw this.unimplemented("XABORT/XBEGIN (TSX) is not modelled", false)
          }
          throw this.undefinedOpcode()
        }
        return this.writeRm(size, this.fetchImm(size))
      }
      case 0xc8:
        return this.enter()
      case 0xc9:
        return this.leave()
      case 0xca:
        return this.returnFar(this.fetch16())
      case 0xcb:
        return this.returnFar(0)
      case 0xcc:
        return this.softwareInterrupt(Vector.BP)
      case 0xcd:
        return this.softwareInterrupt(this.fetch8())
      case 0xce:
        if ((this.flags & OF) !== 0) this.softwareInterrupt(Vector.OF)
        return
      case 0xcf:
        return this.interruptReturn()
      case 0xd0:
        return this.shiftRm(1, 1)
      case 0xd1:
        return this.shiftRm(osz, 1)
      case 0xd2:
        return this.shiftRm(1, this.regs[Reg.ECX] & 0xff)
      case 0xd3:
        return this.shiftRm(osz, this.regs[Reg.ECX] & 0xff)
      case 0xd4:
        return this.asciiAdjustMultiply(this.fetch8())
      case 0xd5:
        return this.asciiAdjustDivide(this.fetch8())
      case 0xd6:
        // SALC (undocumented, present on Intel processors outside 64-bit mode): AL = CF ? FFh : 0.
        return this.setReg(1, Reg.EAX, (this.flags & CF) !== 0 ? 0xff : 0)
      case 0xd7: {
        const base = this.addrSize === 4 ? this.regs[Reg.EBX] : this.regs[Reg.EBX] & 0xffff
        const v = this.readMem(this.dataSeg, this.offsetAdd(base, this.regs[Reg.EAX] & 0xff), 1)
        return this.setReg(1, Reg.EAX, v)
      }
      case 0xd8:
      case 0xd9:
      case 0xda:
      case 0xdb:
      case 0xdc:
      case 0xdd:
      case 0xde:
      case 0xdf:
        throw this.unimplemented("x87 floating-point instruction is not modelled", true)
      case 0xe0:
      case 0xe1:
      case 0xe2:
        return this.loop(op)
      case 0xe3: {
        const disp = signExtend(this.fetch8(), 1)
        const count = this.addrSize === 4 ? this.regs[Reg.ECX] : this.regs[Reg.ECX] & 0xffff
        return this.jumpIf(count === 0, disp)
      }
      case 0xe4:
        return this.portInAccumulator(1, this.fetch8(), true)
      case 0xe5:
        return this.portInAccumulator(osz, this.fetch8(), true)
      case 0xe6:
        return this.portOutAccumulator(1, this.fetch8(), true)
      case 0xe7:
        return this.portOutAccumulator(osz, this.fetch8(), true)
      case 0xe8: {
        const disp = this.fetchImm(osz)
        return this.callNear(this.pc + disp)
      }
      case 0xe9: {
        const disp = this.fetchImm(osz)
        this.pc = this.nearTarget(this.pc + disp)
        return
      }
      case 0xea: {
        const offset = this.fetchImm(osz)
        return this.farJump(this.fetch16(), offset)
      }
      case 0xeb: {
        const disp = signExtend(this.fetch8(), 1)
        this.pc = this.nearTarget(this.pc + disp)
        return
      }
      case 0xec:
        return this.portInAccumulator(1, this.regs[Reg.EDX] & 0xffff, false)
      case 0xed:
        return this.portInAccumulator(osz, this.regs[Reg.EDX] & 0xffff, false)
      case 0xee:
        return this.portOutAccumulator(1, this.regs[Reg.EDX] & 0xffff, false)
      case 0xef:
        return this.portOutAccumulator(osz, this.regs[Reg.EDX] & 0xffff, false)
      case 0xf1:
        throw this.unimplemented("INT1 (ICEBP) is not modelled", false)
      case 0xf4:
        this.requireCpl0()
        this.exits.hlt()
        return
      case 0xf5:
        this.flags ^= CF
        return
      case 0xf6:
        return this.group3(1)
      case 0xf7:
        return this.group3(osz)
      case 0xf8:
        this.flags &= ~CF
        return
      case 0xf9:
        this.flags |= CF
        return
      case 0xfa:
        this.requireIopl()
        this.flags &= ~IF
        return
      case 0xfb:
        this.requireIopl()
        this.flags |= IF
        return
      case 0xfc:
        this.flags &= ~DF
        return
      case 0xfd:
        this.flags |= DF
        return
      case 0xfe: {
        this.decodeModrm()
        if (this.regField > 1) throw this.undefinedOpcode()
        return this.incDecRm(1, this.regField === 1)
      }
      case 0xff:
        return this.group5()
      default:
        throw this.undefinedOpcode()
    }
  }

  private executeTwoByte(op: number): void {
    const osz = this.opSize
    switch (op) {
      case 0x00:
        throw this.unimplemented("SLDT/STR/LLDT/LTR/VERR/VERW is not modelled", true)
      case 0x01:
        return this.group7()
      case 0x02:
      case 0x03:
        throw this.unimplemented("LAR/LSL is not modelled", true)
      case 0x06:
        this.requireCpl0()
        this.cr0 = (this.cr0 & ~CR0_TS) >>> 0
        return
      case 0x08:
      case 0x09:
        // INVD/WBINVD: there are no caches to write back.
        this.requireCpl0()
        return
      case 0x0d:
      case 0x18:
      case 0x19:
      case 0x1a:
      case 0x1b:
      case 0x1c:
      case 0x1d:
      case 0x1e:
      case 0x1f:
        // Prefetch hints and the reserved-NOP space (multi-byte NOP, ENDBR32): decode, do nothing.
        this.decodeModrm()
        return
      case 0x20:
      case 0x22:
        return this.moveControlRegister(op === 0x22)
      case 0x21:
      case 0x23:
        throw this.unimplemented("MOV to/from debug registers is not modelled", true)
      case 0x30:
      case 0x31:
      case 0x32:
      case 0x33:
      case 0x34:
      case 0x35:
      case 0x37:
      case 0x77:
        throw this.unimplemented("system instruction (RDMSR/WRMSR/RDTSC/RDPMC/SYSENTER/SYSEXIT/GETSEC/EMMS) is not modelled", false)
      case 0x38:
        this.fetch8()
        throw this.unimplemented("three-byte 0F 38 instruction is not modelled", true)
      case 0x3a:
        this.fetch8()
        this.decodeModrm()
        this.fetch8()
        throw this.unimplemented("three-byte 0F 3A instruction is not modelled", false)
      case 0x40:
      case 0x41:
      case 0x42:
      case 0x43:
      case 0x44:
      case 0x45:
      case 0x46:
      case 0x47:
      case 0x48:
      case 0x49:
      case 0x4a:
      case 0x4b:
      case 0x4c:
      case 0x4d:
      case 0x4e:
      case 0x4f: {
        this.decodeModrm()
        // The source is read whether or not the condition holds, as on hardware.
        const v = this.readRm(osz)
        if (this.condition(op & 15)) this.setReg(osz, this.regField, v)
        return
      }
      case 0x80:
      case 0x81:
      case 0x82:
      case 0x83:
      case 0x84:
      case 0x85:
      case 0x86:
      case 0x87:
      case 0x88:
      case 0x89:
      case 0x8a:
      case 0x8b:
      case 0x8c:
      case 0x8d:
      case 0x8e:
      case 0x8f: {
        const disp = signExtend(this.fetchImm(osz), osz)
        return this.jumpIf(this.condition(op & 15), disp)
      }
      case 0x90:
      case 0x91:
      case 0x92:
      case 0x93:
      case 0x94:
      case 0x95:
      case 0x96:
      case 0x97:
      case 0x98:
      case 0x99:
      case 0x9a:
      case 0x9b:
      case 0x9c:
      case 0x9d:
      case 0x9e:
      case 0x9f:
        this.decodeModrm()
        return this.writeRm(1, this.condition(op & 15) ? 1 : 0)
      case 0xa0:
        return this.pushSegment(Seg.FS)
      case 0xa1:
        return this.popSegment(Seg.FS)
      case 0xa2:
        this.exits.cpuid()
        return
      case 0xa3:
        return this.bitTest(0, false)
      case 0xa4:
      case 0xa5:
      case 0xac:
      case 0xad:
        return this.doubleShift(op < 0xa8, (op & 1) === 0)
      case 0xa8:
        return this.pushSegment(Seg.GS)
      case 0xa9:
        return this.popSegment(Seg.GS)
      case 0xab:
        return this.bitTest(1, false)
      case 0xae:
        this.decodeModrm()
        // LFENCE/MFENCE/SFENCE order nothing in a single in-order CPU.
        if (this.mod === 3 && this.regField >= 5) return
        throw this.unimplemented("FXSAVE/FXRSTOR/LDMXCSR/STMXCSR/XSAVE/CLFLUSH is not modelled", false)
      case 0xaf: {
        this.decodeModrm()
        return this.multiplyInto(this.regField, this.getReg(osz, this.regField), this.readRm(osz))
      }
      case 0xb0:
      case 0xb1:
        return this.compareExchange(op === 0xb0 ? 1 : osz)
      case 0xb2:
        return this.loadFarPointer(Seg.SS)
      case 0xb3:
        return this.bitTest(2, false)
      case 0xb4:
        return this.loadFarPointer(Seg.FS)
      case 0xb5:
        return this.loadFarPointer(Seg.GS)
      case 0xb6:
      case 0xb7: {
        this.decodeModrm()
        return this.setReg(osz, this.regField, this.readRm(op === 0xb6 ? 1 : 2))
      }
      case 0xb8:
        if (this.repPrefix === 0xf3) throw this.unimplemented("POPCNT is not modelled", true)
        throw this.undefinedOpcode()
      case 0xba: {
        this.decodeModrm()
        if (this.regField < 4) throw this.undefinedOpcode()
        return this.bitTest(this.regField - 4, true)
      }
      case 0xbb:
        return this.bitTest(3, false)
      case 0xbc:
      case 0xbd:
        // F3 0F BC/BD is TZCNT/LZCNT only with BMI1/LZCNT, which this CPU does not have: they run as BSF/BSR.
        return this.bitScan(op === 0xbd)
      case 0xbe:
      case 0xbf: {
        this.decodeModrm()
        const size = op === 0xbe ? 1 : 2
        return this.setReg(osz, this.regField, fit(signExtend(this.readRm(size), size), osz))
      }
      case 0xc0:
      case 0xc1:
        return this.exchangeAdd(op === 0xc0 ? 1 : osz)
      case 0xc7:
        this.decodeModrm()
        if (this.regField === 1 && this.mod !== 3) return this.compareExchange8Bytes()
        if (this.mod === 3 && this.regField >= 6) throw this.unimplemented("RDRAND/RDSEED/RDPID is not modelled", false)
        throw this.undefinedOpcode()
      case 0xc8:
      case 0xc9:
      case 0xca:
      case 0xcb:
      case 0xcc:
      case 0xcd:
      case 0xce:
      case 0xcf: {
        const r = op & 7
        if (osz === 2) {
          // BSWAP of a 16-bit register is undefined; Intel processors clear the low word.
          this.setReg(2, r, 0)
          return
        }
        const v = this.regs[r]
        this.regs[r] = (v >>> 24) | ((v >>> 8) & 0xff00) | ((v & 0xff00) << 8) | (v << 24)
        return
      }
      case 0x04:
      case 0x05:
      case 0x07:
      case 0x0a:
      case 0x0b:
      case 0x0c:
      case 0x0e:
      case 0x0f:
      case 0x24:
      case 0x25:
      case 0x26:
      case 0x27:
      case 0x36:
      case 0x39:
      case 0x3b:
      case 0x3c:
      case 0x3d:
      case 0x3e:
      case 0x3f:
      case 0x7a:
      case 0x7b:
      case 0xa6:
      case 0xa7:
      case 0xaa:
      case 0xb9:
      case 0xff:
        // UD2, UD1, UD0, RSM outside SMM, SYSCALL/SYSRET outside 64-bit mode, and unassigned opcodes.
        throw this.undefinedOpcode()
      default:
        // The rest of the map is MMX/SSE/AVX; all take a ModRM byte.
        throw this.unimplemented("MMX/SSE instruction is not modelled", true)
    }
  }

  // ---------------------------------------------------------------- instruction bodies

  private aluModrm(op: number, size: number, toReg: boolean): void {
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

  private aluAccumulator(op: number, size: number): void {
    const a = this.getReg(size, Reg.EAX)
    const b = this.fetchImm(size)
    const r = aluResult(op, a, b, size, this.flags)
    if (op !== AluOp.Cmp) this.setReg(size, Reg.EAX, r)
    this.flags = aluFlags(op, a, b, r, size, this.flags)
  }

  private aluImmediate(size: number, immSize: number): void {
    this.decodeModrm()
    const b = immSize === 1 ? this.fetchImm8As(size) : this.fetchImm(size)
    const op = this.regField
    const a = this.readRm(size)
    const r = aluResult(op, a, b, size, this.flags)
    if (op !== AluOp.Cmp) this.writeRm(size, r)
    this.flags = aluFlags(op, a, b, r, size, this.flags)
  }

  private incDecRm(size: number, decrement: boolean): void {
    const a = this.readRm(size)
    const r = fit(decrement ? a - 1 : a + 1, size)
    this.writeRm(size, r)
    this.flags = decrement ? decFlags(a, r, size, this.flags) : incFlags(a, r, size, this.flags)
  }

  /** Group 2. `count` is the CL or constant count, or -1 for an imm8 following the ModRM operand. */
  private shiftRm(size: number, count: number): void {
    this.decodeModrm()
    const n = (count < 0 ? this.fetch8() : count) & 31
    const a = this.readRm(size)
    if (n === 0) return
    const op = this.regField
    this.writeRm(size, shiftResult(op, a, n, size, this.flags))
    this.flags = shiftFlags(op, a, n, size, this.flags)
  }

  /** SHLD/SHRD with an imm8 or CL count. */
  private doubleShift(left: boolean, immediateCount: boolean): void {
    const size = this.opSize
    this.decodeModrm()
    const count = (immediateCount ? this.fetch8() : this.regs[Reg.ECX]) & 31
    const dest = this.readRm(size)
    if (count === 0) return
    const src = this.getReg(size, this.regField)
    this.writeRm(size, doubleShiftResult(left, dest, src, count, size))
    this.flags = doubleShiftFlags(left, dest, src, count, size, this.flags)
  }

  private group3(size: number): void {
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
  private multiplyAccumulator(size: number, v: number, signed: boolean): void {
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
  private multiplyInto(reg: number, a: number, b: number): void {
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

  /** DIV: #DE on a zero divisor or a quotient too large. All flags are undefined; unchanged. */
  private divideAccumulator(size: number, d: number): void {
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
  }

  /** IDIV: the quotient truncates toward zero and the remainder takes the dividend's sign. */
  private divideAccumulatorSigned(size: number, divisor: number): void {
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
  }

  /** DAA/DAS (SDM Vol. 2A pseudo-code). OF is undefined and left unchanged. */
  private decimalAdjust(subtract: boolean): void {
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
    this.flags = (this.flags & ~(CF | AF | ZF | SF | PF)) | zsp(r, 1) | cf | af
  }

  /** AAA/AAS. OF, SF, ZF and PF are undefined and left unchanged. */
  private asciiAdjust(subtract: boolean): void {
    let ax = this.regs[Reg.EAX] & 0xffff
    const adjust = (ax & 0xf) > 9 || (this.flags & AF) !== 0
    if (adjust) {
      if (subtract) {
        ax = (ax - 6) & 0xffff
        ax = (ax - 0x100) & 0xffff
      } else {
        ax = (ax + 0x106) & 0xffff
      }
    }
    this.setReg(2, Reg.EAX, ax & 0xff0f)
    this.flags = adjust ? this.flags | AF | CF : this.flags & ~(AF | CF)
  }

  /** AAM: #DE for a zero base. OF, AF and CF are undefined and left unchanged. */
  private asciiAdjustMultiply(base: number): void {
    if (base === 0) throw this.fault(Vector.DE, 0)
    const al = this.regs[Reg.EAX] & 0xff
    const r = al % base
    this.setReg(2, Reg.EAX, (Math.floor(al / base) << 8) | r)
    this.flags = (this.flags & ~(ZF | SF | PF)) | zsp(r, 1)
  }

  /** AAD. OF, AF and CF are undefined and left unchanged. */
  private asciiAdjustDivide(base: number): void {
    const ax = this.regs[Reg.EAX]
    const r = ((ax & 0xff) + ((ax >>> 8) & 0xff) * base) & 0xff
    this.setReg(2, Reg.EAX, r)
    this.flags = (this.flags & ~(ZF | SF | PF)) | zsp(r, 1)
  }

  private group5(): void {
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

  private pushValue(v: number): void {
    this.stackBegin()
    this.push(this.opSize, v)
    this.stackCommit()
  }

  private pushSegment(seg: number): void {
    this.stackBegin()
    this.pushSelector(this.opSize, this.segSelector[seg])
    this.stackCommit()
  }

  private popSegment(seg: number): void {
    this.stackBegin()
    const selector = this.pop(this.opSize) & 0xffff
    this.prepareSegment(seg, selector)
    this.stackCommit()
    this.commitSegment(seg, selector)
  }

  /** POP r/m: a memory operand based on ESP is addressed with ESP already incremented. */
  private popRm(): void {
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

  private pushAll(): void {
    const osz = this.opSize
    const originalSp = this.getReg(osz, Reg.ESP)
    this.stackBegin()
    for (let r = Reg.EAX; r <= Reg.EDI; r++) this.push(osz, r === Reg.ESP ? originalSp : this.getReg(osz, r))
    this.stackCommit()
  }

  private popAll(): void {
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

  private popFlags(): void {
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

  private enter(): void {
    const osz = this.opSize
    const frameSize = this.fetch16()
    const level = this.fetch8() & 31
    this.stackBegin()
    this.push(osz, this.getReg(osz, Reg.EBP))
    const frame = this.sp
    if (level > 0) {
      let bp = this.regs[Reg.EBP]
      for (let i = 1; i < level; i++) {
        bp = this.stack32 ? (bp - osz) >>> 0 : (bp - osz) & 0xffff
        this.push(osz, this.readMem(Seg.SS, bp, osz))
      }
      this.push(osz, frame)
    }
    this.sp = this.stack32 ? (this.sp - frameSize) >>> 0 : (this.sp - frameSize) & 0xffff
    this.stackCommit()
    this.setReg(osz, Reg.EBP, frame)
  }

  private leave(): void {
    const osz = this.opSize
    this.sp = this.regs[Reg.EBP]
    const bp = this.pop(osz)
    this.stackCommit()
    this.setReg(osz, Reg.EBP, bp)
  }

  private loadFarPointer(seg: number): void {
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

  private loop(op: number): void {
    const disp = signExtend(this.fetch8(), 1)
    const count = fit(this.regs[Reg.ECX] - 1, this.addrSize)
    let taken = count !== 0
    if (op === 0xe0) taken &&= (this.flags & ZF) === 0
    else if (op === 0xe1) taken &&= (this.flags & ZF) !== 0
    const target = taken ? this.nearTarget(this.pc + disp) : this.pc
    this.setReg(this.addrSize, Reg.ECX, count)
    this.pc = target
  }

  private bitTest(kind: number, immediate: boolean): void {
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
  private bitScan(reverse: boolean): void {
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

  private exchangeAdd(size: number): void {
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
  private compareExchange8Bytes(): void {
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
  private checkBounds(): void {
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
  private compareExchange(size: number): void {
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

  private moveControlRegister(toCr: boolean): void {
    // The mod field is ignored: the operand is always a register, and always 32 bits.
    this.decodeModrmRegisterOnly()
    this.requireCpl0()
    const cr = this.regField
    if (cr === 1 || cr > 4) throw this.undefinedOpcode()
    if (!toCr) {
      const v = cr === 0 ? this.cr0 : cr === 2 ? this.cr2 : cr === 3 ? this.cr3 : this.cr4
      this.regs[this.rm] = v
      return
    }
    const v = this.regs[this.rm]
    switch (cr) {
      case 0: {
        if ((v & CR0_PG) !== 0 && (v & CR0_PE) === 0) throw this.fault(Vector.GP, 0)
        if ((v & CR0_NW) !== 0 && (v & CR0_CD) === 0) throw this.fault(Vector.GP, 0)
        if ((v & CR0_PG) !== 0) throw this.unimplemented("paging (CR0.PG) is not modelled yet", false)
        this.cr0 = ((v & CR0_DEFINED) | CR0_ET) >>> 0
        return
      }
      case 2:
        this.cr2 = v
        return
      case 3:
        this.cr3 = v
        return
      default:
        if ((v & ~CR4_DEFINED) !== 0) throw this.fault(Vector.GP, 0)
        this.cr4 = v
        return
    }
  }

  /** MOV CR encodings treat the ModRM byte as register-register whatever its mod. */
  private decodeModrmRegisterOnly(): void {
    const b = this.fetch8()
    this.mod = 3
    this.regField = (b >>> 3) & 7
    this.rm = b & 7
  }

  private group7(): void {
    this.decodeModrm()
    const reg = this.regField
    if (this.mod === 3 && reg !== 4 && reg !== 6) {
      throw this.unimplemented("0F 01 register-form system instruction (VMX, MONITOR, XGETBV, RDTSCP…) is not modelled", false)
    }
    switch (reg) {
      case 0:
      case 1: {
        const limit = reg === 0 ? this.gdtrLimit : this.idtrLimit
        const base = reg === 0 ? this.gdtrBase : this.idtrBase
        this.writeMem(this.eaSeg, this.eaOff, 2, limit)
        this.writeMem(this.eaSeg, this.offsetAdd(this.eaOff, 2), 4, base)
        return
      }
      case 2:
      case 3: {
        this.requireCpl0()
        const limit = this.readMem(this.eaSeg, this.eaOff, 2)
        let base = this.readMem(this.eaSeg, this.offsetAdd(this.eaOff, 2), 4)
        // With a 16-bit operand only 24 bits of the base are loaded.
        if (this.opSize === 2) base &= 0xffffff
        if (reg === 2) {
          this.gdtrLimit = limit
          this.gdtrBase = base
        } else {
          this.idtrLimit = limit
          this.idtrBase = base
        }
        return
      }
      case 4:
        // SMSW to a register stores all of CR0 (as P6 and later do); to memory, its low 16 bits.
        if (this.mod === 3) this.setReg(this.opSize, this.rm, this.cr0)
        else this.writeMem(this.eaSeg, this.eaOff, 2, this.cr0 & 0xffff)
        return
      case 6: {
        this.requireCpl0()
        const v = this.readRm(2)
        // LMSW loads PE, MP, EM and TS, and cannot clear PE.
        this.cr0 = ((this.cr0 & ~0xe) | (v & 0xf)) >>> 0
        return
      }
      case 7:
        // INVLPG: there is no TLB until paging is modelled.
        this.requireCpl0()
        return
      default:
        throw this.undefinedOpcode()
    }
  }

  // ---------------------------------------------------------------- I/O

  /** Exit qualification for I/O instructions (SDM Vol. 3C, Table 28-5). */
  private ioQualification(size: number, isIn: boolean, isString: boolean, immediate: boolean, port: number): number {
    return (
      ((size - 1) |
        (isIn ? 1 << 3 : 0) |
        (isString ? 1 << 4 : 0) |
        (isString && this.repPrefix !== 0 ? 1 << 5 : 0) |
        (immediate ? 1 << 6 : 0) |
        (port << 16)) >>>
      0
    )
  }

  private portInAccumulator(size: number, port: number, immediate: boolean): void {
    this.requireIopl()
    const v = this.exits.portIn(port, size as IoSize, this.ioQualification(size, true, false, immediate, port))
    this.setReg(size, Reg.EAX, v)
  }

  private portOutAccumulator(size: number, port: number, immediate: boolean): void {
    this.requireIopl()
    const v = this.getReg(size, Reg.EAX)
    this.exits.portOut(port, size as IoSize, v, this.ioQualification(size, false, false, immediate, port))
  }

  // ---------------------------------------------------------------- string instructions

  private countRegister(): number {
    return this.addrSize === 4 ? this.regs[Reg.ECX] : this.regs[Reg.ECX] & 0xffff
  }

  private indexRegister(r: number): number {
    return this.addrSize === 4 ? this.regs[r] : this.regs[r] & 0xffff
  }

  private advanceIndex(r: number, size: number): void {
    const delta = (this.flags & DF) !== 0 ? -size : size
    this.setReg(this.addrSize, r, fit(this.regs[r] + delta, this.addrSize))
  }

  /**
   * After one iteration of a rep-prefixed string instruction: count down, and
   * keep EIP on the instruction while iterations remain. `zfCondition` applies
   * the REPE/REPNE test of CMPS/SCAS.
   */
  private repeatAfterIteration(zfCondition: boolean): void {
    const count = fit(this.regs[Reg.ECX] - 1, this.addrSize)
    this.setReg(this.addrSize, Reg.ECX, count)
    if (count === 0) return
    if (zfCondition && ((this.flags & ZF) !== 0) !== (this.repPrefix === 0xf3)) return
    this.pc = this.instructionStart
  }

  private stringOp(kind: StringOp, size: number): void {
    const rep = this.repPrefix !== 0
    if (rep && this.countRegister() === 0) return
    switch (kind) {
      case StringOp.Movs: {
        const v = this.readMem(this.dataSeg, this.indexRegister(Reg.ESI), size)
        this.writeMem(Seg.ES, this.indexRegister(Reg.EDI), size, v)
        this.advanceIndex(Reg.ESI, size)
        this.advanceIndex(Reg.EDI, size)
        break
      }
      case StringOp.Cmps: {
        const a = this.readMem(this.dataSeg, this.indexRegister(Reg.ESI), size)
        const b = this.readMem(Seg.ES, this.indexRegister(Reg.EDI), size)
        this.advanceIndex(Reg.ESI, size)
        this.advanceIndex(Reg.EDI, size)
        this.flags = subFlags(a, b, fit(a - b, size), size, 0, this.flags)
        break
      }
      case StringOp.Stos:
        this.writeMem(Seg.ES, this.indexRegister(Reg.EDI), size, this.getReg(size, Reg.EAX))
        this.advanceIndex(Reg.EDI, size)
        break
      case StringOp.Lods: {
        const v = this.readMem(this.dataSeg, this.indexRegister(Reg.ESI), size)
        this.setReg(size, Reg.EAX, v)
        this.advanceIndex(Reg.ESI, size)
        break
      }
      default: {
        const a = this.getReg(size, Reg.EAX)
        const b = this.readMem(Seg.ES, this.indexRegister(Reg.EDI), size)
        this.advanceIndex(Reg.EDI, size)
        this.flags = subFlags(a, b, fit(a - b, size), size, 0, this.flags)
        break
      }
    }
    if (rep) this.repeatAfterIteration(kind === StringOp.Cmps || kind === StringOp.Scas)
  }

  private inString(size: number): void {
    this.requireIopl()
    const rep = this.repPrefix !== 0
    if (rep && this.countRegister() === 0) return
    const port = this.regs[Reg.EDX] & 0xffff
    const di = this.indexRegister(Reg.EDI)
    // Protection checks come before the port is read.
    this.checkedLinear(Seg.ES, di, size, true)
    const v = this.exits.portIn(port, size as IoSize, this.ioQualification(size, true, true, false, port))
    this.writeMem(Seg.ES, di, size, v)
    this.advanceIndex(Reg.EDI, size)
    if (rep) this.repeatAfterIteration(false)
  }

  private outString(size: number): void {
    this.requireIopl()
    const rep = this.repPrefix !== 0
    if (rep && this.countRegister() === 0) return
    const port = this.regs[Reg.EDX] & 0xffff
    const v = this.readMem(this.dataSeg, this.indexRegister(Reg.ESI), size)
    this.exits.portOut(port, size as IoSize, v, this.ioQualification(size, false, true, false, port))
    this.advanceIndex(Reg.ESI, size)
    if (rep) this.repeatAfterIteration(false)
  }
}

