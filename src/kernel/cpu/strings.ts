import { DF, fit, subFlags, ZF } from "./alu.ts"
import { type IoSize, LEAVE_CPU, PORT_IO_LEAVES } from "./bus.ts"
import { PortIo } from "./io.ts"
import { Reg, Seg } from "./state.ts"

export const enum StringOp {
  Movs,
  Cmps,
  Stos,
  Lods,
  Scas
}

/** The string instructions with their rep prefixes, one iteration per step. */
export abstract class StringInstructions extends PortIo {
  protected countRegister(): number {
    return this.addrSize === 4 ? this.regs[Reg.ECX] : this.regs[Reg.ECX] & 0xffff
  }

  protected indexRegister(r: number): number {
    return this.addrSize === 4 ? this.regs[r] : this.regs[r] & 0xffff
  }

  protected advanceIndex(r: number, size: number): void {
    const delta = (this.flags & DF) !== 0 ? -size : size
    this.setReg(this.addrSize, r, fit(this.regs[r] + delta, this.addrSize))
  }

  /**
   * After one iteration of a rep-prefixed string instruction: count down, and
   * keep EIP on the instruction while iterations remain. `zfCondition` applies
   * the REPE/REPNE test of CMPS/SCAS.
   */
  protected repeatAfterIteration(zfCondition: boolean): void {
    const count = fit(this.regs[Reg.ECX] - 1, this.addrSize)
    this.setReg(this.addrSize, Reg.ECX, count)
    if (count === 0) return
    if (zfCondition && ((this.flags & ZF) !== 0) !== (this.repPrefix === 0xf3)) return
    this.pc = this.instructionStart
  }

  /**
   * A string instruction. With a rep prefix, iterations run back to back here while the
   * step budget allows, nothing asked the CPU to stop, and no single-step trap or
   * breakpoint must be checked between them; each still counts as one step, so
   * instructions retired, events and faults are exactly those of stepping them.
   */
  protected stringOp(kind: StringOp, size: number): void {
    const rep = this.repPrefix !== 0
    if (rep && this.countRegister() === 0) return
    const batch = rep && this.mayRunAhead
    const end = this.pc
    for (;;) {
      this.stringIteration(kind, size)
      if (!rep) return
      this.repeatAfterIteration(kind === StringOp.Cmps || kind === StringOp.Scas)
      if (!batch || this.pc !== this.instructionStart || this.stepBudget === 0 || this.stopRequested) return
      this.retired++
      this.blockProgress++
      this.stepBudget--
      this.pc = end
    }
  }

  private stringIteration(kind: StringOp, size: number): void {
    switch (kind) {
      case StringOp.Movs: {
        const v = this.readMem(this.dataSeg, this.indexRegister(Reg.ESI), size)
        this.writeMem(Seg.ES, this.indexRegister(Reg.EDI), size, v)
        this.advanceIndex(Reg.ESI, size)
        this.advanceIndex(Reg.EDI, size)
        return
      }
      case StringOp.Cmps: {
        const a = this.readMem(this.dataSeg, this.indexRegister(Reg.ESI), size)
        const b = this.readMem(Seg.ES, this.indexRegister(Reg.EDI), size)
        this.advanceIndex(Reg.ESI, size)
        this.advanceIndex(Reg.EDI, size)
        this.flags = subFlags(a, b, fit(a - b, size), size, 0, this.flags)
        return
      }
      case StringOp.Stos:
        this.writeMem(Seg.ES, this.indexRegister(Reg.EDI), size, this.getReg(size, Reg.EAX))
        this.advanceIndex(Reg.EDI, size)
        return
      case StringOp.Lods: {
        const v = this.readMem(this.dataSeg, this.indexRegister(Reg.ESI), size)
        this.setReg(size, Reg.EAX, v)
        this.advanceIndex(Reg.ESI, size)
        return
      }
      default: {
        const a = this.getReg(size, Reg.EAX)
        const b = this.readMem(Seg.ES, this.indexRegister(Reg.EDI), size)
        this.advanceIndex(Reg.EDI, size)
        this.flags = subFlags(a, b, fit(a - b, size), size, 0, this.flags)
      }
    }
  }

  protected inString(size: number): void {
    const port = this.regs[Reg.EDX] & 0xffff
    this.checkIoPermission(port, size)
    const rep = this.repPrefix !== 0
    if (rep && this.countRegister() === 0) return
    const di = this.indexRegister(Reg.EDI)
    // Protection checks come before the port is read.
    this.probeWrite(this.checkedLinear(Seg.ES, di, size, true), size)
    const v = this.exits.portIn(port, size as IoSize, this.ioQualification(size, true, true, false, port))
    if (v === PORT_IO_LEAVES) throw LEAVE_CPU
    this.writeMem(Seg.ES, di, size, v)
    this.advanceIndex(Reg.EDI, size)
    if (rep) this.repeatAfterIteration(false)
  }

  protected outString(size: number): void {
    const port = this.regs[Reg.EDX] & 0xffff
    this.checkIoPermission(port, size)
    const rep = this.repPrefix !== 0
    if (rep && this.countRegister() === 0) return
    const v = this.readMem(this.dataSeg, this.indexRegister(Reg.ESI), size)
    if (this.exits.portOut(port, size as IoSize, v, this.ioQualification(size, false, true, false, port))) throw LEAVE_CPU
    this.advanceIndex(Reg.ESI, size)
    if (rep) this.repeatAfterIteration(false)
  }
}
