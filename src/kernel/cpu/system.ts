import { CR0_AM } from "./addressing.ts"
import { fit, ZF } from "./alu.ts"
import { ATTR_CODE, ATTR_EXPAND_DOWN_CONFORMING, ATTR_P, ATTR_S, ATTR_UNUSABLE, ATTR_WRITABLE_READABLE, attrDpl, descriptorAttr, descriptorBase, descriptorLimit } from "./descriptors.ts"
import { IntegerInstructions } from "./instructions.ts"
import { ACCESS_WRITE, CR0_PG, CR0_WP, CR4_PGE, CR4_PSE } from "./paging.ts"
import { CR0_NE, CR0_PE, Vector } from "./state.ts"

export const CR0_TS = 1 << 3
export const CR0_EM = 1 << 2
export const CR0_MP = 1 << 1
const CR0_ET = 1 << 4
const CR0_NW = 1 << 29
const CR0_CD = 1 << 30
const CR0_DEFINED = CR0_PE | CR0_MP | CR0_EM | CR0_TS | CR0_ET | CR0_NE | CR0_WP | CR0_AM | CR0_NW | CR0_CD | CR0_PG

/** VME..OSXMMEXCPT, UMIP, FSGSBASE, PCIDE, OSXSAVE, SMEP, SMAP, PKE: the 32-bit CR4 bits a guest may set. */
const CR4_DEFINED = 0x7ff | (1 << 11) | (1 << 16) | (1 << 17) | (1 << 18) | (1 << 20) | (1 << 21) | (1 << 22)
const CR4_DE = 1 << 3

/** System descriptor types LAR accepts (SDM Vol. 2A, LAR): 16/32-bit TSS available and busy, LDT, call gates, task gate. */
const SYSTEM_TYPES_LAR = new Set([0x1, 0x2, 0x3, 0x4, 0x5, 0x9, 0xb, 0xc])

/** ... and LSL: TSSs and the LDT (gates have no limit). */
const SYSTEM_TYPES_LSL = new Set([0x1, 0x2, 0x3, 0x9, 0xb])

/** System instructions: control and debug registers, descriptor tables, LDTR and TR, LAR/LSL/VERR/VERW, ARPL. */
export abstract class SystemInstructions extends IntegerInstructions {
  protected moveControlRegister(toCr: boolean): void {
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
        const cr0 = ((v & CR0_DEFINED) | CR0_ET) >>> 0
        if (((cr0 ^ this.cr0) & (CR0_PG | CR0_WP | CR0_PE)) !== 0) this.flushTlb()
        this.cr0 = cr0
        return
      }
      case 2:
        this.cr2 = v
        return
      case 3:
        // A CR3 load flushes every translation but those of global pages.
        this.cr3 = v
        this.flushTlb(true)
        return
      default:
        if ((v & ~CR4_DEFINED) !== 0) throw this.fault(Vector.GP, 0)
        if (((v ^ this.cr4) & (CR4_PSE | CR4_PGE)) !== 0) this.flushTlb()
        this.cr4 = v
        return
    }
  }

  /**
   * MOV to/from DR0-DR7 (CPL 0). DR4/DR5 alias DR6/DR7 unless CR4.DE makes them #UD.
   * The values are stored with their fixed bits; DR7 instruction and data breakpoints fire (I/O breakpoints and DR7.GD are not modelled).
   */
  protected moveDebugRegister(toDr: boolean): void {
    this.decodeModrmRegisterOnly()
    this.requireCpl0()
    let dr = this.regField
    if (dr === 4 || dr === 5) {
      if ((this.cr4 & CR4_DE) !== 0) throw this.undefinedOpcode()
      dr += 2
    }
    if (!toDr) {
      this.regs[this.rm] = this.dr[dr]
      return
    }
    const v = this.regs[this.rm]
    // DR6: bits 31:16 and 11:4 read as 1, bit 12 as 0; DR7: bit 10 reads as 1, bits 15:14 and 12:11 as 0.
    this.dr[dr] = dr === 6 ? (v & 0xe00f) | 0xffff0ff0 : dr === 7 ? ((v & 0xffff27ff) | 0x400) >>> 0 : v
    this.debugRegistersChanged()
  }

  protected group7(): void {
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
        // #AC asks for the operand to be 4-aligned (SDM Vol. 3A, Table 6-7), not each of its two parts.
        if (((this.segBase[this.eaSeg] + this.eaOff) & 3) !== 0) this.checkAlignment()
        this.alignmentChecked = true
        try {
          this.writeMem(this.eaSeg, this.eaOff, 2, limit)
          this.writeMem(this.eaSeg, this.offsetAdd(this.eaOff, 2), 4, base)
        } finally {
          this.alignmentChecked = false
        }
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
      case 7: {
        // INVLPG m: the segment's base applies, but no limit or rights check (SDM Vol. 2A).
        this.requireCpl0()
        this.invalidatePage((this.segBase[this.eaSeg] + this.eaOff) >>> 0)
        return
      }
      default:
        throw this.undefinedOpcode()
    }
  }

  /** 0F 00: SLDT, STR, LLDT, LTR, VERR, VERW (not recognised in real mode). */
  protected group6(): void {
    this.decodeModrm()
    if (!this.protectedMode) throw this.undefinedOpcode()
    switch (this.regField) {
      case 0:
      case 1: {
        const selector = this.regField === 0 ? this.ldtrSelector : this.trSelector
        // To a register the selector is zero-extended to the operand size; to memory it is 16 bits.
        if (this.mod === 3) this.setReg(this.opSize, this.rm, selector)
        else this.writeMem(this.eaSeg, this.eaOff, 2, selector)
        return
      }
      case 2:
        return this.loadLdtr(this.readRm(2))
      case 3:
        return this.loadTr(this.readRm(2))
      case 4:
      case 5:
        return this.verify(this.readRm(2), this.regField === 5)
      default:
        throw this.undefinedOpcode()
    }
  }

  /** LLDT (SDM Vol. 2A): a null selector leaves LDTR unusable; otherwise an LDT descriptor (type 2) from the GDT. */
  protected loadLdtr(selector: number): void {
    this.requireCpl0()
    const error = selector & 0xfffc
    if (error === 0) {
      this.ldtrSelector = selector
      this.ldtrAttr = ATTR_UNUSABLE
      return
    }
    if ((selector & 4) !== 0) throw this.fault(Vector.GP, error)
    this.readDescriptor(selector, 0)
    const attr = descriptorAttr(this.descHi)
    if ((attr & (ATTR_S | 0xf)) !== 0x2) throw this.fault(Vector.GP, error)
    if ((attr & ATTR_P) === 0) throw this.fault(Vector.NP, error)
    this.ldtrSelector = selector
    this.ldtrBase = descriptorBase(this.descLo, this.descHi)
    this.ldtrLimit = descriptorLimit(this.descLo, this.descHi)
    this.ldtrAttr = attr
  }

  /** LTR (SDM Vol. 2A): an available TSS from the GDT, which LTR marks busy in memory. */
  protected loadTr(selector: number): void {
    this.requireCpl0()
    const error = selector & 0xfffc
    if (error === 0) throw this.fault(Vector.GP, 0)
    if ((selector & 4) !== 0) throw this.fault(Vector.GP, error)
    this.readDescriptor(selector, 0)
    const attr = descriptorAttr(this.descHi)
    const type = attr & (ATTR_S | 0xf)
    if (type !== 0x1 && type !== 0x9) throw this.fault(Vector.GP, error)
    if ((attr & ATTR_P) === 0) throw this.fault(Vector.NP, error)
    this.writeLinear((this.descAddress + 5) >>> 0, 1, ((this.descHi >>> 8) | 2) & 0xff, ACCESS_WRITE)
    this.trSelector = selector
    this.trBase = descriptorBase(this.descLo, this.descHi)
    this.trLimit = descriptorLimit(this.descLo, this.descHi)
    this.trAttr = attr | 2
  }

  /**
   * The common part of LAR/LSL/VERR/VERW: reads the descriptor a selector names without
   * faulting on table limits. Returns false (ZF = 0) for a null selector, one outside
   * its table, or one the current CPL and RPL may not see (a non-conforming segment or
   * system descriptor with DPL < max(CPL, RPL)).
   */
  protected queryDescriptor(selector: number): boolean {
    if ((selector & 0xfffc) === 0) return false
    const index = selector & 0xfff8
    if ((selector & 4) !== 0) {
      if ((this.ldtrAttr & ATTR_UNUSABLE) !== 0 || index + 7 > this.ldtrLimit) return false
    } else if (index + 7 > this.gdtrLimit) {
      return false
    }
    this.readDescriptor(selector, 0)
    const attr = descriptorAttr(this.descHi)
    const conformingCode = (attr & (ATTR_S | ATTR_CODE | ATTR_EXPAND_DOWN_CONFORMING)) === (ATTR_S | ATTR_CODE | ATTR_EXPAND_DOWN_CONFORMING)
    if (!conformingCode && (attrDpl(attr) < this.cpl || attrDpl(attr) < (selector & 3))) return false
    return true
  }

  /** LAR (`limit` false) / LSL (true): ZF = 1 and the rights or the scaled limit when the descriptor is visible and of a valid type. */
  protected loadAccessOrLimit(limit: boolean): void {
    if (!this.protectedMode) throw this.undefinedOpcode()
    this.decodeModrm()
    const osz = this.opSize
    const selector = this.readRm(2)
    let ok = this.queryDescriptor(selector)
    if (ok && (this.descHi & (1 << 12)) === 0) {
      // System descriptors: LAR accepts TSSs, LDT and call/task gates; LSL only TSSs and the LDT.
      const type = (this.descHi >>> 8) & 0xf
      ok = limit ? SYSTEM_TYPES_LSL.has(type) : SYSTEM_TYPES_LAR.has(type)
    }
    if (!ok) {
      this.flags &= ~ZF
      return
    }
    const v = limit ? descriptorLimit(this.descLo, this.descHi) : this.descHi & 0x00f0ff00
    this.setReg(osz, this.regField, fit(v, osz))
    this.flags |= ZF
  }

  /** VERR/VERW: ZF = 1 when the segment is readable (VERR) or writable (VERW) at the current CPL and the selector's RPL. */
  protected verify(selector: number, write: boolean): void {
    let ok = this.queryDescriptor(selector)
    if (ok) {
      const attr = descriptorAttr(this.descHi)
      if ((attr & ATTR_S) === 0) ok = false
      else if (write) ok = (attr & (ATTR_CODE | ATTR_WRITABLE_READABLE)) === ATTR_WRITABLE_READABLE
      else ok = (attr & (ATTR_CODE | ATTR_WRITABLE_READABLE)) !== ATTR_CODE
    }
    this.flags = ok ? this.flags | ZF : this.flags & ~ZF
  }

  /** ARPL r/m16, r16: raises the destination's RPL to the source's; ZF tells whether it changed. */
  protected adjustRpl(): void {
    this.decodeModrm()
    const dest = this.readRm(2)
    const src = this.getReg(2, this.regField)
    if ((dest & 3) < (src & 3)) {
      this.writeRm(2, (dest & ~3) | (src & 3))
      this.flags |= ZF
    } else {
      this.flags &= ~ZF
    }
  }
}
