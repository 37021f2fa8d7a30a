import { AC } from "./alu.ts"
import { DebugFeatures } from "./debug.ts"
import { ATTR_CODE, ATTR_DB, ATTR_EXPAND_DOWN_CONFORMING, ATTR_P, ATTR_S, ATTR_UNUSABLE, ATTR_WRITABLE_READABLE } from "./descriptors.ts"
import { ACCESS_WRITE, CR0_PG } from "./paging.ts"
import { GuestFault, Seg, Vector } from "./state.ts"

export const CR0_AM = 1 << 18

/** Segmented data access: segment protection and limit checks, alignment checks, then paging. */
export abstract class Addressing extends DebugFeatures {
  /** #AC (SDM Vol. 3A, 6.15): CR0.AM, EFLAGS.AC and CPL 3, on a misaligned data access. */
  protected checkAlignment(): void {
    if (this.alignmentChecked) return
    if ((this.cr0 & CR0_AM) !== 0 && (this.flags & AC) !== 0 && this.protectedMode && this.cpl === 3) {
      throw this.fault(Vector.AC, 0)
    }
  }

  /**
   * Segment protection and limit checks (SDM Vol. 3A, 5.3 and 5.5), then the
   * linear address. Real mode checks the limit only.
   */
  protected checkedLinear(seg: number, off: number, size: number, write: boolean): number {
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

  protected segmentFault(seg: number): GuestFault {
    return this.fault(seg === Seg.SS ? Vector.SS : Vector.GP, 0)
  }

  protected readMem(seg: number, off: number, size: number): number {
    const linear = this.checkedLinear(seg, off, size, false)
    if ((linear & (size - 1)) !== 0) this.checkAlignment()
    if (this.breakpointsArmed) this.checkDataBreakpoint(linear, size, false)
    return this.readLinear(linear, size, (this.cr0 & CR0_PG) === 0 ? 0 : this.userAccess)
  }

  protected writeMem(seg: number, off: number, size: number, value: number): void {
    const linear = this.checkedLinear(seg, off, size, true)
    if ((linear & (size - 1)) !== 0) this.checkAlignment()
    if (this.breakpointsArmed) this.checkDataBreakpoint(linear, size, true)
    this.writeLinear(linear, size, value, (this.cr0 & CR0_PG) === 0 ? ACCESS_WRITE : ACCESS_WRITE | this.userAccess)
  }

  /** Offset arithmetic in the current address size. */
  protected offsetAdd(off: number, n: number): number {
    return this.addrSize === 4 ? (off + n) >>> 0 : (off + n) & 0xffff
  }
}
