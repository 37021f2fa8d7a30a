import { AC, IF, NT, RF, TF, VM } from "./alu.ts"
import { ATTR_CODE, ATTR_EXPAND_DOWN_CONFORMING, ATTR_P, ATTR_S, attrDpl, descriptorAttr, descriptorLimit } from "./descriptors.ts"
import { PrivilegeChanges } from "./privilege.ts"
import { CpuStop, GUEST_FAULT, INTERNAL_STOP, Reg, Seg, Vector } from "./state.ts"

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

/** Exception and interrupt delivery through the IVT or the IDT, with the double-fault rules. */
export abstract class ExceptionDelivery extends PrivilegeChanges {
  /**
   * Delivers the exception in the fault fields, applying the double-fault rules
   * of SDM Vol. 3A, Table 6-5. Returns false on a triple fault (shutdown).
   */
  protected deliverException(): boolean {
    let vector = this.faultVector
    let code = this.faultCode
    // Whatever shadow the faulting instruction was in no longer applies once the handler runs.
    this.interruptShadow = 0
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
  protected deliver(vector: number, withCode: boolean, code: number, returnEip: number, software: boolean): void {
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
    const inner = (attr & ATTR_EXPAND_DOWN_CONFORMING) === 0 && attrDpl(attr) < cpl
    if ((attr & ATTR_P) === 0) throw this.fault(Vector.NP, selectorError)
    if (offset > descriptorLimit(this.descLo, this.descHi)) throw this.fault(Vector.GP, ext)
    this.markAccessed()
    this.setLoadFromDescriptor()
    // Fault-class exceptions push EFLAGS with RF set (SDM Vol. 3A, 18.3.1.1); #DF is an abort.
    // #DB is a fault only for an instruction breakpoint; single-step, data breakpoints and INT1 are traps.
    const isFault = !software && vector !== Vector.DF && (vector !== Vector.DB || this.dbFault)
    this.dbFault = false
    const flagsImage = isFault ? this.flags | RF : this.flags
    const returnCs = this.segSelector[Seg.CS]
    let newCpl = cpl
    if (inner) {
      // SDM Vol. 3A, 6.12.1: the stack for the handler's ring comes from the TSS; the old SS:ESP is pushed first.
      newCpl = attrDpl(attr)
      const csBase = this.loadBase
      const csLimit = this.loadLimit
      const csAttr = this.loadAttr
      this.prepareInnerStack(newCpl, ext)
      const ss = this.tssSs
      const esp = this.tssEsp
      const oldSs = this.segSelector[Seg.SS]
      const oldEsp = this.regs[Reg.ESP]
      this.switchStackBegin(ss, esp)
      try {
        this.push(gateSize, oldSs)
        this.push(gateSize, oldEsp)
        this.push(gateSize, flagsImage)
        this.push(gateSize, returnCs)
        this.push(gateSize, returnEip)
        if (withCode) this.push(gateSize, code)
      } catch (e) {
        this.switchStackAbort(e, ss, ext)
        throw e
      }
      this.regs[Reg.ESP] = this.stack32 ? this.sp : ((esp & 0xffff0000) | (this.sp & 0xffff)) >>> 0
      this.loadBase = csBase
      this.loadLimit = csLimit
      this.loadAttr = csAttr
    } else {
      this.stackBegin()
      try {
        this.push(gateSize, flagsImage)
        this.push(gateSize, returnCs)
        this.push(gateSize, returnEip)
        if (withCode) this.push(gateSize, code)
      } catch (e) {
        // A stack limit fault while delivering is #SS(EXT) (SDM Vol. 2A, INT n pseudo-code).
        if (e === GUEST_FAULT && this.faultVector === Vector.SS) this.faultCode = ext
        throw e
      }
      this.stackCommit()
    }
    this.commitSegment(Seg.CS, (selector & 0xfffc) | newCpl)
    // The SDM's INT pseudo-code keeps AC here; the machines we check against (/dev/kvm on
    // AMD, test/conformance) clear it, as real-mode delivery does.
    this.flags &= ~(TF | NT | RF | VM | AC)
    if ((gateType & 1) === 0) this.flags &= ~IF
    this.pc = offset
    this.eip = offset
  }

  protected deliverReal(vector: number, returnEip: number): void {
    const entry = vector * 4
    if (entry + 3 > this.idtrLimit) throw this.fault(Vector.GP, 0)
    const ip = this.readLinear((this.idtrBase + entry) >>> 0, 2, 0)
    const cs = this.readLinear((this.idtrBase + entry + 2) >>> 0, 2, 0)
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

  /**
   * The VM-execution control "interrupt-window exiting", as the kernel sets it while an
   * interrupt waits for IF = 1. IF can only become 1 through STI, POPF and IRET, so
   * those check it (`interruptWindowCheck`) and the run loop need not.
   */
  interruptWindowExiting = false

  /** After STI, POPF or IRET: with window exiting on and IF now 1, stop for the kernel to look. */
  protected interruptWindowCheck(): void {
    if (this.interruptWindowExiting && (this.flags & IF) !== 0) this.requestStop()
  }

  /**
   * An external interrupt injected at VM entry (VM-entry interruption information,
   * type 0): delivered like a hardware exception without an error code (EXT = 1),
   * returning to the instruction it came before. A fault while delivering it is
   * delivered instead, under the double-fault rules (an external interrupt is benign).
   * Returns undefined when delivered, TripleFault or InternalError otherwise.
   */
  injectExternalInterrupt(vector: number): CpuStop.TripleFault | CpuStop.InternalError | undefined {
    this.interruptShadow = 0
    this.instructionStart = this.eip
    this.pc = this.eip
    try {
      try {
        this.deliver(vector, false, 0, this.eip, false)
      } catch (e) {
        if (e !== GUEST_FAULT) throw e
        if (!this.deliverException()) {
          this.eip = this.instructionStart
          return CpuStop.TripleFault
        }
      }
      return undefined
    } catch (e) {
      if (e !== INTERNAL_STOP) throw e
      this.eip = this.instructionStart
      return CpuStop.InternalError
    }
  }

  protected softwareInterrupt(vector: number): void {
    // The handler runs with TF clear; no single-step trap follows INT n / INT3 / INTO itself.
    this.noStepTrap = true
    this.deliver(vector, false, 0, this.pc, true)
  }
}
