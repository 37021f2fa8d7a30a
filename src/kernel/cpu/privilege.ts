import { ATTR_CODE, ATTR_EXPAND_DOWN_CONFORMING, ATTR_P, ATTR_S, ATTR_UNUSABLE, ATTR_WRITABLE_READABLE, attrDpl, descriptorAttr, descriptorLimit } from "./descriptors.ts"
import { SegmentLoading } from "./segmentLoading.ts"
import { GUEST_FAULT, Reg, Seg, Vector } from "./state.ts"

const DATA_SEGMENTS = [Seg.ES, Seg.DS, Seg.FS, Seg.GS] as const

/** Privilege-level changes: the TSS stack switch, call gates, returns to an outer ring. */
export abstract class PrivilegeChanges extends SegmentLoading {
  /**
   * The inner stack for ring `dpl` from the current TSS (SDM Vol. 3A, 6.12.1 and 5.8.5):
   * SS:ESP at 4 + 8*dpl in a 32-bit TSS, SS:SP at 2 + 4*dpl in a 16-bit one. Leaves
   * the SS descriptor checked in the load fields and the pointer in tssSs/tssEsp.
   */
  protected prepareInnerStack(dpl: number, ext: number): void {
    const is32 = (this.trAttr & 8) !== 0
    const at = is32 ? dpl * 8 + 4 : dpl * 4 + 2
    if (at + (is32 ? 5 : 3) > this.trLimit) throw this.fault(Vector.TS, (this.trSelector & 0xfffc) + ext)
    const ss = is32 ? this.readLinear((this.trBase + at + 4) >>> 0, 2, 0) : this.readLinear((this.trBase + at + 2) >>> 0, 2, 0)
    const esp = is32 ? this.readLinear((this.trBase + at) >>> 0, 4, 0) : this.readLinear((this.trBase + at) >>> 0, 2, 0)
    const error = (ss & 0xfffc) + ext
    if ((ss & 0xfffc) === 0) throw this.fault(Vector.TS, ext)
    this.readDescriptor(ss, ext, Vector.TS)
    const attr = descriptorAttr(this.descHi)
    if (
      (ss & 3) !== dpl ||
      attrDpl(attr) !== dpl ||
      (attr & (ATTR_S | ATTR_CODE | ATTR_WRITABLE_READABLE)) !== (ATTR_S | ATTR_WRITABLE_READABLE)
    ) {
      throw this.fault(Vector.TS, error)
    }
    if ((attr & ATTR_P) === 0) throw this.fault(Vector.SS, error)
    this.markAccessed()
    this.setLoadFromDescriptor()
    this.tssSs = ss
    this.tssEsp = esp
  }

  /** The SS popped by RETF/IRET to an outer ring `rpl` (SDM Vol. 2B, RET and IRET pseudo-code). */
  protected prepareOuterStack(ss: number, rpl: number): void {
    const error = ss & 0xfffc
    if (error === 0) throw this.fault(Vector.GP, 0)
    this.readDescriptor(ss, 0)
    const attr = descriptorAttr(this.descHi)
    if (
      (ss & 3) !== rpl ||
      attrDpl(attr) !== rpl ||
      (attr & (ATTR_S | ATTR_CODE | ATTR_WRITABLE_READABLE)) !== (ATTR_S | ATTR_WRITABLE_READABLE)
    ) {
      throw this.fault(Vector.GP, error)
    }
    if ((attr & ATTR_P) === 0) throw this.fault(Vector.SS, error)
    this.markAccessed()
    this.setLoadFromDescriptor()
  }

  /**
   * Puts the inner SS (in the load fields) in place so that push() writes the new
   * stack with its own base, limit, size and privilege; the old SS is kept to undo.
   */
  protected switchStackBegin(ss: number, esp: number): void {
    this.savedSsSelector = this.segSelector[Seg.SS]
    this.savedSsBase = this.segBase[Seg.SS]
    this.savedSsLimit = this.segLimit[Seg.SS]
    this.savedSsAttr = this.segAttr[Seg.SS]
    this.commitSegment(Seg.SS, ss)
    this.sp = esp
  }

  /** A push onto the new stack faulted: the old SS comes back; a limit fault is #SS(new SS). */
  protected switchStackAbort(e: unknown, ss: number, ext: number): void {
    this.segSelector[Seg.SS] = this.savedSsSelector
    this.segBase[Seg.SS] = this.savedSsBase
    this.segLimit[Seg.SS] = this.savedSsLimit
    this.segAttr[Seg.SS] = this.savedSsAttr
    if (e === GUEST_FAULT && this.faultVector === Vector.SS) this.faultCode = (ss & 0xfffc) + ext
  }

  /** RETF/IRET to an outer ring: data segment registers the new CPL may not use become null (SDM Vol. 3A, 5.8.6). */
  protected nullInaccessibleSegments(cpl: number): void {
    for (const seg of DATA_SEGMENTS) {
      const attr = this.segAttr[seg]
      if ((attr & ATTR_UNUSABLE) !== 0) continue
      const conformingCode = (attr & (ATTR_CODE | ATTR_EXPAND_DOWN_CONFORMING)) === (ATTR_CODE | ATTR_EXPAND_DOWN_CONFORMING)
      if (!conformingCode && attrDpl(attr) < cpl) {
        this.segSelector[seg] = 0
        this.segAttr[seg] = ATTR_UNUSABLE
      }
    }
  }

  /**
   * Far CALL/JMP through a call gate (SDM Vol. 3A, 5.8.3-5.8.5). A CALL to a more
   * privileged non-conforming segment switches to the TSS stack for that ring and
   * copies the gate's parameter count of words/dwords from the old stack.
   * The gate descriptor is in descLo/descHi.
   */
  protected callGate(gateSelector: number, call: boolean): void {
    const gateLo = this.descLo
    const gateHi = this.descHi
    const gateAttr = descriptorAttr(gateHi)
    const gateError = gateSelector & 0xfffc
    const cpl = this.cpl
    const gateDpl = attrDpl(gateAttr)
    if (gateDpl < cpl || gateDpl < (gateSelector & 3)) throw this.fault(Vector.GP, gateError)
    if ((gateAttr & ATTR_P) === 0) throw this.fault(Vector.NP, gateError)
    const size = (gateAttr & 0xf) === 0xc ? 4 : 2
    const target = gateLo >>> 16
    const offset = size === 4 ? ((gateHi & 0xffff0000) | (gateLo & 0xffff)) >>> 0 : gateLo & 0xffff
    const count = gateHi & 0x1f
    if ((target & 0xfffc) === 0) throw this.fault(Vector.GP, 0)
    this.readDescriptor(target, 0)
    const attr = descriptorAttr(this.descHi)
    const error = target & 0xfffc
    const dpl = attrDpl(attr)
    if ((attr & (ATTR_S | ATTR_CODE)) !== (ATTR_S | ATTR_CODE) || dpl > cpl) throw this.fault(Vector.GP, error)
    const conforming = (attr & ATTR_EXPAND_DOWN_CONFORMING) !== 0
    if (!call && !conforming && dpl !== cpl) throw this.fault(Vector.GP, error)
    if ((attr & ATTR_P) === 0) throw this.fault(Vector.NP, error)
    if (offset > descriptorLimit(this.descLo, this.descHi)) throw this.fault(Vector.GP, 0)
    this.markAccessed()
    this.setLoadFromDescriptor()
    const csBase = this.loadBase
    const csLimit = this.loadLimit
    const csAttr = this.loadAttr
    const returnCs = this.segSelector[Seg.CS]
    const returnEip = this.pc
    let newCpl = cpl
    if (call && !conforming && dpl < cpl) {
      newCpl = dpl
      this.prepareInnerStack(dpl, 0)
      const ss = this.tssSs
      const esp = this.tssEsp
      // Parameters come from the old stack, read before anything moves.
      const oldSs = this.segSelector[Seg.SS]
      const oldEsp = this.regs[Reg.ESP]
      const loadBase = this.loadBase
      const loadLimit = this.loadLimit
      const loadAttr = this.loadAttr
      for (let i = 0; i < count; i++) {
        const off = this.stack32 ? (oldEsp + i * size) >>> 0 : (oldEsp + i * size) & 0xffff
        this.params[i] = this.readMem(Seg.SS, off, size)
      }
      this.loadBase = loadBase
      this.loadLimit = loadLimit
      this.loadAttr = loadAttr
      this.switchStackBegin(ss, esp)
      try {
        this.push(size, oldSs)
        this.push(size, oldEsp)
        for (let i = count - 1; i >= 0; i--) this.push(size, this.params[i])
        this.push(size, returnCs)
        this.push(size, returnEip)
      } catch (e) {
        this.switchStackAbort(e, ss, 0)
        throw e
      }
      this.regs[Reg.ESP] = this.stack32 ? this.sp : ((esp & 0xffff0000) | (this.sp & 0xffff)) >>> 0
    } else if (call) {
      this.stackBegin()
      this.push(size, returnCs)
      this.push(size, returnEip)
      this.stackCommit()
    }
    this.loadBase = csBase
    this.loadLimit = csLimit
    this.loadAttr = csAttr
    this.commitSegment(Seg.CS, (target & 0xfffc) | newCpl)
    this.pc = offset
  }

  /** Reads a far JMP/CALL target's descriptor: a call gate goes through {@link callGate}. Returns true when done. */
  protected throughGate(selector: number, call: boolean): boolean {
    if (!this.protectedMode || (selector & 0xfffc) === 0) return false
    this.readDescriptor(selector, 0)
    const type = (this.descHi >>> 8) & 0x1f
    if (type !== 0x04 && type !== 0x0c) return false
    this.callGate(selector, call)
    return true
  }
}
