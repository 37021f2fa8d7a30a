import { NO_REGISTER } from "./decoder.ts"
import { InstructionFetch } from "./fetch.ts"
import { INTERNAL_STOP, InternalStop, Reg, Seg } from "./state.ts"

/** Operands of the decoded instruction: registers by size, ModRM register or memory operands and their effective address. */
export abstract class Operands extends InstructionFetch {
  /** ModRM, SIB and displacement as decoded; the effective address from the registers now. */
  protected decodeModrm(): void {
    const d = this.insn
    const at = this.pc - this.instructionStart
    this.pc = this.instructionStart + (d.modrmAt === at ? d.modrmEnd : this.decoder.modrm(d, at))
    const m = d.modrm
    this.mod = m >>> 6
    this.regField = (m >>> 3) & 7
    this.rm = m & 7
    if (this.mod === 3) return
    const memory = d.memory
    const base = memory & 15
    const index = (memory >>> 4) & 15
    let off = d.disp
    if (base !== NO_REGISTER) off += base === Reg.ESP ? this.regs[Reg.ESP] + this.espBias : this.regs[base]
    if (index !== NO_REGISTER) off += this.regs[index] * (1 << ((memory >>> 8) & 3))
    this.eaOff = this.addrSize === 4 ? off >>> 0 : off & 0xffff
    this.eaSeg = this.segOverride >= 0 ? this.segOverride : memory >>> 12
  }

  /** MOV CR encodings treat the ModRM byte as register-register whatever its mod. */
  protected decodeModrmRegisterOnly(): void {
    const b = this.fetch8()
    this.mod = 3
    this.regField = (b >>> 3) & 7
    this.rm = b & 7
  }

  /** A memory operand is required (LEA, LxS, far indirect, LGDT…): a register form is #UD. */
  protected requireMemoryOperand(): void {
    if (this.mod === 3) throw this.undefinedOpcode()
  }

  protected getReg(size: number, r: number): number {
    if (size === 4) return this.regs[r]
    if (size === 2) return this.regs[r] & 0xffff
    return r < 4 ? this.regs[r] & 0xff : (this.regs[r - 4] >>> 8) & 0xff
  }

  protected setReg(size: number, r: number, v: number): void {
    if (size === 4) this.regs[r] = v
    else if (size === 2) this.regs[r] = (this.regs[r] & 0xffff0000) | (v & 0xffff)
    else if (r < 4) this.regs[r] = (this.regs[r] & 0xffffff00) | (v & 0xff)
    else this.regs[r - 4] = (this.regs[r - 4] & 0xffff00ff) | ((v & 0xff) << 8)
  }

  protected readRm(size: number): number {
    return this.mod === 3 ? this.getReg(size, this.rm) : this.readMem(this.eaSeg, this.eaOff, size)
  }

  protected writeRm(size: number, v: number): void {
    if (this.mod === 3) this.setReg(size, this.rm, v)
    else this.writeMem(this.eaSeg, this.eaOff, size, v)
  }

  protected get dataSeg(): number {
    return this.segOverride >= 0 ? this.segOverride : Seg.DS
  }

  /** A valid instruction the model does not implement: record it and stop. */
  protected unimplemented(reason: string, hasModrm: boolean): InternalStop {
    if (hasModrm) this.decodeModrm()
    const address = (this.segBase[Seg.CS] + this.instructionStart) >>> 0
    const bytes = this.insn.bytes.slice(0, Math.min(this.instructionLength, 15))
    this.internalError = { address, bytes, reason }
    return INTERNAL_STOP
  }
}
