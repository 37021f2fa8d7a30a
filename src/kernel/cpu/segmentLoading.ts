import { ATTR_CODE, ATTR_EXPAND_DOWN_CONFORMING, ATTR_P, ATTR_S, ATTR_UNUSABLE, ATTR_WRITABLE_READABLE, attrDpl, descriptorAttr, descriptorBase, descriptorLimit, REAL_MODE_CODE_ATTR, REAL_MODE_DATA_ATTR } from "./descriptors.ts"
import { ACCESS_WRITE } from "./paging.ts"
import { Stack } from "./stack.ts"
import { Seg, Vector } from "./state.ts"

/** Loading segment registers: descriptor reads and checks (SDM Vol. 3A, 5), prepared first and committed last. */
export abstract class SegmentLoading extends Stack {
  /**
   * Reads the descriptor a selector names, from the GDT or (TI = 1) the LDT. A selector
   * outside its table, or naming the LDT while LDTR is null, faults with `vector`
   * (#GP for loads, #TS for the stack switch) and the selector as error code.
   */
  protected readDescriptor(selector: number, ext: number, vector: number = Vector.GP): void {
    const index = selector & 0xfff8
    let base: number
    if ((selector & 4) !== 0) {
      if ((this.ldtrAttr & ATTR_UNUSABLE) !== 0 || index + 7 > this.ldtrLimit) throw this.fault(vector, (selector & 0xfffc) + ext)
      base = this.ldtrBase
    } else {
      if (index + 7 > this.gdtrLimit) throw this.fault(vector, (selector & 0xfffc) + ext)
      base = this.gdtrBase
    }
    this.descAddress = (base + index) >>> 0
    this.descLo = this.readLinear32(this.descAddress)
    this.descHi = this.readLinear32(this.descAddress + 4)
  }

  /** Sets the descriptor's accessed bit in the GDT, as the processor does on a segment load. */
  protected markAccessed(): void {
    if ((this.descHi & 0x100) !== 0) return
    this.writeLinear((this.descAddress + 5) >>> 0, 1, ((this.descHi >>> 8) | 1) & 0xff, ACCESS_WRITE)
    this.descHi |= 0x100
  }

  protected setLoadFromDescriptor(): void {
    this.loadBase = descriptorBase(this.descLo, this.descHi)
    this.loadLimit = descriptorLimit(this.descLo, this.descHi)
    this.loadAttr = descriptorAttr(this.descHi)
  }

  /** Real mode: base = selector << 4; the limit and attributes in the cache stay (which is what unreal mode relies on). */
  protected prepareRealSegment(seg: number, selector: number): void {
    const attr = this.segAttr[seg]
    this.loadBase = selector << 4
    this.loadLimit = this.segLimit[seg]
    this.loadAttr =
      (attr & ATTR_UNUSABLE) === 0 ? attr : seg === Seg.CS ? REAL_MODE_CODE_ATTR : REAL_MODE_DATA_ATTR
  }

  /** Checks a load of DS/ES/FS/GS/SS (MOV, POP, LxS) without committing it. */
  protected prepareSegment(seg: number, selector: number): void {
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
   * Checks a CS load by a far JMP/CALL (`isReturn` false) or RETF/IRET (true) to a
   * code segment; gates are dispatched by {@link farTransfer} before this.
   * A return may go to an outer ring (the selector's RPL); the caller then switches stacks.
   * Returns the selector to put in CS.
   */
  protected prepareCodeSegment(selector: number, isReturn: boolean): number {
    if (!this.protectedMode) {
      this.prepareRealSegment(Seg.CS, selector)
      return selector
    }
    const error = selector & 0xfffc
    if (error === 0) throw this.fault(Vector.GP, 0)
    this.readDescriptor(selector, 0)
    const attr = descriptorAttr(this.descHi)
    if ((attr & ATTR_S) === 0) {
      const type = attr & 0xf
      if (!isReturn && (type === 0x1 || type === 0x5 || type === 0x9)) {
        throw this.unimplemented("far transfer to a TSS or task gate (task switching is not modelled)", false)
      }
      throw this.fault(Vector.GP, error)
    }
    if ((attr & ATTR_CODE) === 0) throw this.fault(Vector.GP, error)
    const cpl = this.cpl
    const rpl = selector & 3
    const dpl = attrDpl(attr)
    const conforming = (attr & ATTR_EXPAND_DOWN_CONFORMING) !== 0
    if (isReturn) {
      if (rpl < cpl) throw this.fault(Vector.GP, error)
      if (conforming ? dpl > rpl : dpl !== rpl) throw this.fault(Vector.GP, error)
    } else if (conforming) {
      if (dpl > cpl) throw this.fault(Vector.GP, error)
    } else if (rpl > cpl || dpl !== cpl) {
      throw this.fault(Vector.GP, error)
    }
    if ((attr & ATTR_P) === 0) throw this.fault(Vector.NP, error)
    this.markAccessed()
    this.setLoadFromDescriptor()
    return isReturn ? selector : (selector & 0xfffc) | cpl
  }

  protected commitSegment(seg: number, selector: number): void {
    this.segSelector[seg] = selector
    this.segBase[seg] = this.loadBase
    this.segLimit[seg] = this.loadLimit
    this.segAttr[seg] = this.loadAttr
  }
}
