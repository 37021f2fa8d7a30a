import { AC, CF, DF, EFLAGS_FIXED, EFLAGS_WRITABLE, fit, ID, IF, IOPL, NT, OF, PF, RF, SF, signExtend, STATUS_FLAGS, TF, VIF, VIP, VM, ZF } from "./alu.ts"
import { ExceptionDelivery } from "./exceptions.ts"
import { Reg, Seg, Vector } from "./state.ts"

/** Jumps, calls, returns (near and far), IRET, LOOP, ENTER/LEAVE, SYSENTER/SYSEXIT. */
export abstract class ControlTransfer extends ExceptionDelivery {
  /** A near branch target in the operand size, checked against the CS limit. */
  protected nearTarget(target: number): number {
    const t = this.opSize === 4 ? target >>> 0 : target & 0xffff
    if (t > this.segLimit[Seg.CS]) throw this.fault(Vector.GP, 0)
    return t
  }

  protected condition(cc: number): boolean {
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

  protected jumpIf(cond: boolean, disp: number): void {
    if (cond) this.pc = this.nearTarget(this.pc + disp)
  }

  protected callNear(target: number): void {
    const t = this.nearTarget(target)
    this.stackBegin()
    this.push(this.opSize, this.pc)
    this.stackCommit()
    this.pc = t
  }

  protected farJump(selector: number, offset: number): void {
    if (this.throughGate(selector, false)) return
    const cs = this.prepareCodeSegment(selector, false)
    if (offset > this.loadLimit) throw this.fault(Vector.GP, 0)
    this.commitSegment(Seg.CS, cs)
    this.pc = offset
  }

  protected farCall(selector: number, offset: number): void {
    if (this.throughGate(selector, true)) return
    const cs = this.prepareCodeSegment(selector, false)
    if (offset > this.loadLimit) throw this.fault(Vector.GP, 0)
    this.stackBegin()
    this.push(this.opSize, this.segSelector[Seg.CS])
    this.push(this.opSize, this.pc)
    this.stackCommit()
    this.commitSegment(Seg.CS, cs)
    this.pc = offset
  }

  protected returnNear(release: number): void {
    this.stackBegin()
    const t = this.nearTarget(this.pop(this.opSize))
    this.stackRelease(release)
    this.stackCommit()
    this.pc = t
  }

  protected returnFar(release: number): void {
    const size = this.opSize
    this.stackBegin()
    const offset = this.pop(size)
    const selector = this.pop(size) & 0xffff
    const cs = this.prepareCodeSegment(selector, true)
    if (offset > this.loadLimit) throw this.fault(Vector.GP, 0)
    this.stackRelease(release)
    if (this.protectedMode && (selector & 3) > this.cpl) return this.returnToOuterRing(cs, offset, size, release)
    this.stackCommit()
    this.commitSegment(Seg.CS, cs)
    this.pc = offset
  }

  /**
   * RETF/IRET to an outer ring, with CS checked in the load fields and ESP (this.sp)
   * past the popped CS:EIP (and EFLAGS): pops ESP and SS, switches to them, then
   * nulls the data segment registers the outer ring may not use.
   */
  protected returnToOuterRing(cs: number, offset: number, size: number, release: number): void {
    const csBase = this.loadBase
    const csLimit = this.loadLimit
    const csAttr = this.loadAttr
    const esp = this.pop(size)
    const ss = this.pop(size) & 0xffff
    const rpl = cs & 3
    this.prepareOuterStack(ss, rpl)
    this.commitSegment(Seg.SS, ss)
    const newEsp = size === 4 ? esp : ((this.regs[Reg.ESP] & 0xffff0000) | esp) >>> 0
    this.regs[Reg.ESP] = this.stack32 ? (newEsp + release) >>> 0 : ((newEsp & 0xffff0000) | ((newEsp + release) & 0xffff)) >>> 0
    this.loadBase = csBase
    this.loadLimit = csLimit
    this.loadAttr = csAttr
    this.commitSegment(Seg.CS, cs)
    this.nullInaccessibleSegments(rpl)
    this.pc = offset
  }

  protected interruptReturn(): void {
    const size = this.opSize
    if (this.protectedMode && (this.flags & NT) !== 0) return this.taskReturn()
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
    if (this.protectedMode && (selector & 3) > this.cpl) {
      // The flags that may change were decided at the old CPL, above.
      this.returnToOuterRing(cs, offset, size, 0)
    } else {
      this.stackCommit()
      this.commitSegment(Seg.CS, cs)
      this.pc = offset
    }
    this.flags = (this.flags & ~changeable) | (image & changeable) | EFLAGS_FIXED
  }

  /**
   * IRET with NT set returns to the task whose TSS selector is the back link at offset 0
   * of the current TSS (SDM Vol. 2A, IRET). The back link is checked as hardware does
   * (#TS(link) unless it names a busy TSS in the GDT, #NP(link) if not present); the
   * task switch itself is not modelled and stops with an internal error.
   */
  protected taskReturn(): void {
    const link = this.readLinear(this.trBase, 2, 0)
    const error = link & 0xfffc
    if ((link & 4) !== 0 || error === 0) throw this.fault(Vector.TS, error)
    this.readDescriptor(link, 0, Vector.TS)
    const type = (this.descHi >>> 8) & 0x1f
    if (type !== 0x03 && type !== 0x0b) throw this.fault(Vector.TS, error)
    if ((this.descHi & 0x8000) === 0) throw this.fault(Vector.NP, error)
    throw this.unimplemented("IRET with NT set (a task switch) is not modelled", false)
  }

  /**
   * SYSENTER (SDM Vol. 2B): flat ring-0 CS from IA32_SYSENTER_CS and SS the next
   * selector, ESP and EIP from their MSRs; VM, IF and RF cleared.
   */
  protected systemEnter(): void {
    const cs = this.sysenterCs & 0xfffc
    if (!this.protectedMode || cs === 0) throw this.fault(Vector.GP, 0)
    this.flags &= ~(VM | IF | RF)
    this.setFlatSegment(Seg.CS, cs, 0xc09b)
    this.setFlatSegment(Seg.SS, cs + 8, 0xc093)
    this.regs[Reg.ESP] = this.sysenterEsp
    this.pc = this.sysenterEip
  }

  /** SYSEXIT: flat ring-3 CS = SYSENTER_CS+16, SS = +24 (RPL 3); ESP = ECX, EIP = EDX. */
  protected systemExit(): void {
    const cs = this.sysenterCs & 0xfffc
    if (!this.protectedMode || this.cpl !== 0 || cs === 0) throw this.fault(Vector.GP, 0)
    this.setFlatSegment(Seg.CS, (cs + 16) | 3, 0xc0fb)
    this.setFlatSegment(Seg.SS, (cs + 24) | 3, 0xc0f3)
    this.regs[Reg.ESP] = this.regs[Reg.ECX]
    this.pc = this.regs[Reg.EDX]
  }

  /** SYSENTER/SYSEXIT load fixed caches without reading the GDT. */
  protected setFlatSegment(seg: number, selector: number, attr: number): void {
    this.segSelector[seg] = selector
    this.segBase[seg] = 0
    this.segLimit[seg] = 0xffffffff
    this.segAttr[seg] = attr
  }

  protected loop(op: number): void {
    const disp = signExtend(this.fetch8(), 1)
    const count = fit(this.regs[Reg.ECX] - 1, this.addrSize)
    let taken = count !== 0
    if (op === 0xe0) taken &&= (this.flags & ZF) === 0
    else if (op === 0xe1) taken &&= (this.flags & ZF) !== 0
    const target = taken ? this.nearTarget(this.pc + disp) : this.pc
    this.setReg(this.addrSize, Reg.ECX, count)
    this.pc = target
  }

  protected enter(): void {
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

  protected leave(): void {
    const osz = this.opSize
    this.sp = this.regs[Reg.EBP]
    const bp = this.pop(osz)
    this.stackCommit()
    this.setReg(osz, Reg.EBP, bp)
  }
}
