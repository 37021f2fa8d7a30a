import { type IoSize, PORT_IO_LEAVES } from "./bus.ts"
import { Reg, Vector } from "./state.ts"
import { SystemInstructions } from "./system.ts"

/** IN and OUT: the IOPL and I/O-permission-bitmap checks and the VM-exit qualification. */
export abstract class PortIo extends SystemInstructions {
  /**
   * IN/OUT/INS/OUTS at CPL > IOPL consult the I/O permission bitmap of a 32-bit TSS
   * (SDM Vol. 1, 19.5.2): every bit for the accessed ports must be clear, and the two
   * bytes holding them must lie within the TSS limit; a 16-bit TSS has no bitmap.
   */
  protected checkIoPermission(port: number, size: number): void {
    if (!this.protectedMode || this.cpl <= this.iopl) return
    if ((this.trAttr & 0xd) !== 0x9 || this.trLimit < 0x67) throw this.fault(Vector.GP, 0)
    const at = this.readLinear((this.trBase + 0x66) >>> 0, 2, 0) + (port >>> 3)
    if (at + 1 > this.trLimit) throw this.fault(Vector.GP, 0)
    const bits = this.readLinear((this.trBase + at) >>> 0, 2, 0)
    if (((bits >>> (port & 7)) & ((1 << size) - 1)) !== 0) throw this.fault(Vector.GP, 0)
  }

  /** Exit qualification for I/O instructions (SDM Vol. 3C, Table 28-5). */
  protected ioQualification(size: number, isIn: boolean, isString: boolean, immediate: boolean, port: number): number {
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

  /** IN to the accumulator; an access userspace completes leaves the CPU through the run loop (see `leaving`). */
  protected portInAccumulator(size: number, port: number, immediate: boolean): void {
    this.checkIoPermission(port, size)
    const v = this.exits.portIn(port, size as IoSize, this.ioQualification(size, true, false, immediate, port))
    if (v === PORT_IO_LEAVES) this.leaving = true
    else this.setReg(size, Reg.EAX, v)
  }

  protected portOutAccumulator(size: number, port: number, immediate: boolean): void {
    this.checkIoPermission(port, size)
    const v = this.getReg(size, Reg.EAX)
    if (this.exits.portOut(port, size as IoSize, v, this.ioQualification(size, false, false, immediate, port))) this.leaving = true
  }
}
