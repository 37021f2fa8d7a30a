import { ATTR_DB } from "./descriptors.ts"
import { Operands } from "./operands.ts"
import { Reg, Seg } from "./state.ts"

/** Pushes and pops on SS:ESP, committed only once an instruction has done all its accesses. */
export abstract class Stack extends Operands {
  protected get stack32(): boolean {
    return (this.segAttr[Seg.SS] & ATTR_DB) !== 0
  }

  protected stackBegin(): void {
    this.sp = this.regs[Reg.ESP]
  }

  protected push(size: number, v: number): void {
    const sp = this.stack32 ? (this.sp - size) >>> 0 : (this.sp - size) & 0xffff
    this.writeMem(Seg.SS, sp, size, v)
    this.sp = sp
  }

  /** PUSH sreg with a 32-bit operand: recent processors write only the selector's 16 bits into the slot. */
  protected pushSelector(size: number, selector: number): void {
    const sp = this.stack32 ? (this.sp - size) >>> 0 : (this.sp - size) & 0xffff
    this.writeMem(Seg.SS, sp, 2, selector)
    this.sp = sp
  }

  protected pop(size: number): number {
    const sp = this.stack32 ? this.sp : this.sp & 0xffff
    const v = this.readMem(Seg.SS, sp, size)
    this.sp = this.stack32 ? (sp + size) >>> 0 : (sp + size) & 0xffff
    return v
  }

  protected stackRelease(n: number): void {
    this.sp = this.stack32 ? (this.sp + n) >>> 0 : (this.sp + n) & 0xffff
  }

  protected stackCommit(): void {
    if (this.stack32) this.regs[Reg.ESP] = this.sp
    else this.regs[Reg.ESP] = (this.regs[Reg.ESP] & 0xffff0000) | (this.sp & 0xffff)
  }
}
