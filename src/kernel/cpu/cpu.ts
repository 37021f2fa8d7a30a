/**
 * The x86 interpreter: a 16/32-bit CPU in real mode and protected mode with
 * privilege levels, the TSS stack switch, call gates, the LDT and two-level paging
 * (4 KiB and 4 MiB pages, a TLB), running as if in VMX non-root mode. Everything
 * outside it goes through `bus.ts`: guest-physical memory and the exiting
 * instructions. Not modelled: task switches (task gates, far transfers to a TSS,
 * IRET with NT), virtual-8086 mode, DR7 I/O breakpoints and GD, x87/MMX/SSE
 * (internal-error stops).
 *
 * Restartability: an instruction decodes, then performs every memory access
 * and bus call, and only then commits registers, flags, segments and EIP. A
 * guest fault or a LEAVE_CPU thrown from the bus therefore abandons it with
 * nothing changed and EIP on its first byte (rep string instructions: the
 * current iteration only). `pc` is the decode cursor; EIP moves only at commit.
 */
import {
  AC,
  addFlags,
  AF,
  aluFlags,
  aluResult,
  AluOp,
  CF,
  decFlags,
  DF,
  divide64,
  doubleShiftFlags,
  doubleShiftResult,
  EFLAGS_FIXED,
  EFLAGS_WRITABLE,
  fit,
  ID,
  IF,
  incFlags,
  IOPL,
  logicFlags,
  mulHighSigned,
  mulHighUnsigned,
  NT,
  OF,
  PF,
  RF,
  SF,
  shiftFlags,
  shiftResult,
  signExtend,
  STATUS_FLAGS,
  subFlags,
  TF,
  VIF,
  VIP,
  VM,
  ZF,
  zsp
} from "./alu.ts"
import { type ExitingInstructions, type IoSize, LEAVE_CPU, type PhysicalMemory } from "./bus.ts"
import {
  ATTR_CODE,
  ATTR_DB,
  ATTR_EXPAND_DOWN_CONFORMING,
  ATTR_P,
  ATTR_S,
  ATTR_UNUSABLE,
  ATTR_WRITABLE_READABLE,
  attrDpl,
  descriptorAttr,
  descriptorBase,
  descriptorLimit,
  REAL_MODE_CODE_ATTR,
  REAL_MODE_DATA_ATTR
} from "./descriptors.ts"

export const enum Reg {
  EAX = 0,
  ECX,
  EDX,
  EBX,
  ESP,
  EBP,
  ESI,
  EDI
}

export const enum Seg {
  ES = 0,
  CS,
  SS,
  DS,
  FS,
  GS
}

export const enum CpuStop {
  Budget = 0,
  Left = 1,
  Stop = 2,
  InternalError = 3,
  TripleFault = 4
}

/** Exception vectors (SDM Vol. 3A, Table 6-1). */
export const enum Vector {
  DE = 0,
  DB = 1,
  BP = 3,
  OF = 4,
  BR = 5,
  UD = 6,
  NM = 7,
  DF = 8,
  TS = 10,
  NP = 11,
  SS = 12,
  GP = 13,
  PF = 14,
  AC = 17
}

/** Why the model stopped on a valid instruction it does not implement. */
export interface CpuInternalError {
  /** Linear address of the instruction's first byte. */
  readonly address: number
  /** The instruction's bytes as far as the model decoded them (at most 15). */
  readonly bytes: number[]
  readonly reason: string
}

/** Thrown inside the interpreter for a guest exception; details in the Cpu's fault fields. */
class GuestFault {
  readonly _tag = "GuestFault"
}
const GUEST_FAULT = new GuestFault()

/** Thrown inside the interpreter after recording an internal error. */
class InternalStop {
  readonly _tag = "InternalStop"
}
const INTERNAL_STOP = new InternalStop()

const CR0_PE = 1 << 0
const CR0_MP = 1 << 1
const CR0_EM = 1 << 2
const CR0_TS = 1 << 3
const CR0_ET = 1 << 4
const CR0_NE = 1 << 5
const CR0_WP = 1 << 16
const CR0_AM = 1 << 18
const CR0_NW = 1 << 29
const CR0_CD = 1 << 30
const CR0_PG = 0x80000000
const CR0_DEFINED = CR0_PE | CR0_MP | CR0_EM | CR0_TS | CR0_ET | CR0_NE | CR0_WP | CR0_AM | CR0_NW | CR0_CD | CR0_PG
/** VME..OSXMMEXCPT, UMIP, FSGSBASE, PCIDE, OSXSAVE, SMEP, SMAP, PKE: the 32-bit CR4 bits a guest may set. */
const CR4_DEFINED = 0x7ff | (1 << 11) | (1 << 16) | (1 << 17) | (1 << 18) | (1 << 20) | (1 << 21) | (1 << 22)
const CR4_TSD = 1 << 2
const CR4_DE = 1 << 3
const CR4_PSE = 1 << 4
const CR4_PGE = 1 << 7

/** Access kinds for translation; a fetch is a read (32-bit paging has no execute-disable). */
const ACCESS_WRITE = 1
const ACCESS_USER = 2

/** Paging-structure entry bits (SDM Vol. 3A, Tables 4-4 to 4-6). */
const PTE_P = 1 << 0
const PTE_RW = 1 << 1
const PTE_US = 1 << 2
const PTE_A = 1 << 5
const PTE_D = 1 << 6
const PDE_PS = 1 << 7
const PTE_G = 1 << 8
/** Bits 21:13 of a 4 MiB PDE with MAXPHYADDR 32. */
const PDE_4M_RESERVED = 0x003fe000

/** #PF error code bits (SDM Vol. 3A, 4.7). */
const PF_P = 1 << 0
const PF_W = 1 << 1
const PF_U = 1 << 2
const PF_RSVD = 1 << 3

/**
 * TLB entry: the physical frame in bits 31:12 and what the cached translation allows
 * without a walk. The write rights are only given once the D bit is set, so the first
 * write through an entry walks and sets D, as hardware does.
 */
const TLB_VALID = 1
const TLB_USER = 2
const TLB_USER_WRITE = 4
const TLB_SUPER_WRITE = 8
/** A global page (G with CR4.PGE): kept across CR3 loads. */
const TLB_GLOBAL = 16
/** Bits an access needs in its TLB entry, indexed by ACCESS_WRITE | ACCESS_USER. */
const TLB_NEED = Int32Array.of(TLB_VALID, TLB_VALID | TLB_SUPER_WRITE, TLB_VALID | TLB_USER, TLB_VALID | TLB_USER_WRITE)
/** Filled TLB slots remembered for a cheap flush; past this many, a flush clears the whole array. */
const TLB_LIST_CAPACITY = 4096
const NO_TLB = new Int32Array(0)

/** Exceptions that push an error code (SDM Vol. 3A, 6.13). */
const hasErrorCode = (vector: number): boolean =>
  vector === Vector.DF ||
  vector === Vector.TS ||
  vector === Vector.NP ||
  vector === Vector.SS ||
  vector === Vector.GP ||
  vector === Vector.PF ||
  vector === Vector.AC

/** Interrupt shadow kinds, as the VMCS interruptibility-state bits. */
const SHADOW_STI = 1
const SHADOW_MOV_SS = 2
const DR6_BS = 1 << 14

/** DR7 LEN encodings: 1, 2, 8 (undefined outside 64-bit mode; taken as 8), 4 bytes. */
const BREAKPOINT_LENGTH = Int32Array.of(1, 2, 8, 4)

/** The contributory class of SDM Vol. 3A, Table 6-4 (double-fault conditions). */
const isContributory = (vector: number): boolean =>
  vector === Vector.DE || (vector >= Vector.TS && vector <= Vector.GP)

const DATA_SEGMENTS = [Seg.ES, Seg.DS, Seg.FS, Seg.GS] as const

/** System descriptor types LAR accepts (SDM Vol. 2A, LAR): 16/32-bit TSS available and busy, LDT, call gates, task gate. */
const SYSTEM_TYPES_LAR = new Set([0x1, 0x2, 0x3, 0x4, 0x5, 0x9, 0xb, 0xc])
/** ... and LSL: TSSs and the LDT (gates have no limit). */
const SYSTEM_TYPES_LSL = new Set([0x1, 0x2, 0x3, 0x9, 0xb])

const enum StringOp {
  Movs,
  Cmps,
  Stos,
  Lods,
  Scas
}

export class Cpu {
  readonly regs = new Uint32Array(8)
  eip = 0
  readonly segSelector = new Uint16Array(6)
  readonly segBase = new Uint32Array(6)
  readonly segLimit = new Uint32Array(6)
  readonly segAttr = new Uint32Array(6)
  cr0 = 0
  cr2 = 0
  cr3 = 0
  cr4 = 0
  gdtrBase = 0
  gdtrLimit = 0
  idtrBase = 0
  idtrLimit = 0
  /** TR and LDTR with their descriptor caches (VMCS guest-state format for the attributes). */
  trSelector = 0
  trBase = 0
  trLimit = 0xffff
  trAttr = 0x8b
  ldtrSelector = 0
  ldtrBase = 0
  ldtrLimit = 0xffff
  ldtrAttr = 0x82
  /** IA32_SYSENTER_CS/ESP/EIP: guest state in the VMCS, read and written by the kernel's RDMSR/WRMSR handlers. */
  sysenterCs = 0
  sysenterEsp = 0
  sysenterEip = 0
  /** DR0-DR7 (DR4/DR5 alias DR6/DR7 with CR4.DE clear). Call debugRegistersChanged() after writing DR7 from outside. */
  readonly dr = new Uint32Array(8)
  /**
   * Interrupts are blocked until the next instruction retires: set by STI (when IF was
   * clear) and by MOV SS / POP SS (SDM Vol. 3A, 6.8.3). The VMCS calls it the guest
   * interruptibility state (blocking by STI / by MOV SS); the irqchip consults it.
   */
  interruptShadow = 0
  retired = 0
  instructionStart = 0
  internalError: CpuInternalError | undefined = undefined

  private flags = EFLAGS_FIXED
  private pc = 0
  private opSize = 2
  private addrSize = 2
  private segOverride = -1
  private repPrefix = 0
  private mod = 0
  private regField = 0
  private rm = 0
  private eaSeg = 0
  private eaOff = 0
  /** Added to ESP when it is a base register: POP r/m addresses its operand with ESP already incremented. */
  private espBias = 0
  /** Stack pointer of the instruction in progress; stackCommit() makes it ESP. */
  private sp = 0
  private stopRequested = false
  private faultVector = 0
  private faultCode = 0
  /** The descriptor being loaded: read and checked, not yet in a segment cache. */
  private descLo = 0
  private descHi = 0
  private descAddress = 0
  private loadBase = 0
  private loadLimit = 0
  private loadAttr = 0
  private readonly quotient = new Uint32Array(2)
  /** Linear page → frame | TLB_* rights; allocated on the first walk. */
  private tlb: Int32Array = NO_TLB
  private readonly tlbList = new Int32Array(TLB_LIST_CAPACITY)
  private tlbCount = 0
  private tlbHasLarge = false
  /** The inner stack read from the TSS by prepareInnerStack. */
  private tssSs = 0
  private tssEsp = 0
  /** SS as it was before a stack switch began, to undo it if a push faults. */
  private savedSsSelector = 0
  private savedSsBase = 0
  private savedSsLimit = 0
  private savedSsAttr = 0
  /** Call-gate parameters in transit from the old stack to the new one (at most 31). */
  private readonly params = new Uint32Array(32)
  /** The shadow the instruction in progress opens (SHADOW_*), made current when it retires. */
  private shadowSet = 0
  /** The instruction in progress must not be followed by a single-step trap (it delivered an interrupt, or loaded SS). */
  private noStepTrap = false
  /** Some DR7 enable bit is set: instruction and data breakpoints are checked. */
  private breakpointsArmed = false
  /** DR6.B0-B3 of data breakpoints the instruction in progress hit. */
  private dataBreakHit = 0
  /** The instruction checked its operand's alignment as a whole; its partial accesses do not. */
  private alignmentChecked = false
  /** The #DB being delivered is an instruction-breakpoint fault (pushes RF set). */
  private dbFault = false

  constructor(
    private readonly mem: PhysicalMemory,
    private readonly exits: ExitingInstructions
  ) {
    this.resetToRealMode()
  }

  /** Length of the instruction being executed, as far as decoded. */
  get instructionLength(): number {
    return (this.pc - this.instructionStart) >>> 0
  }

  getEflags(): number {
    return this.flags | EFLAGS_FIXED
  }

  setEflags(v: number): void {
    this.flags = (v & EFLAGS_WRITABLE) | EFLAGS_FIXED
  }

  /** The state KVM gives a vCPU at reset (kvm_vcpu_reset / vmx_vcpu_reset). */
  resetToRealMode(): void {
    this.regs.fill(0)
    // Family/model/stepping as KVM sets EDX when userspace has not provided CPUID leaf 1.
    this.regs[Reg.EDX] = 0x600
    for (let s = 0; s < 6; s++) {
      this.segSelector[s] = 0
      this.segBase[s] = 0
      this.segLimit[s] = 0xffff
      this.segAttr[s] = REAL_MODE_DATA_ATTR
    }
    this.segSelector[Seg.CS] = 0xf000
    this.segBase[Seg.CS] = 0xffff0000
    this.segAttr[Seg.CS] = REAL_MODE_CODE_ATTR
    this.eip = 0xfff0
    this.flags = EFLAGS_FIXED
    this.cr0 = 0x60000010
    this.cr2 = 0
    this.cr3 = 0
    this.cr4 = 0
    this.gdtrBase = 0
    this.gdtrLimit = 0xffff
    this.idtrBase = 0
    this.idtrLimit = 0xffff
    this.trSelector = 0
    this.trBase = 0
    this.trLimit = 0xffff
    this.trAttr = 0x8b
    this.ldtrSelector = 0
    this.ldtrBase = 0
    this.ldtrLimit = 0xffff
    this.ldtrAttr = 0x82
    this.sysenterCs = 0
    this.sysenterEsp = 0
    this.sysenterEip = 0
    this.dr.fill(0)
    this.dr[6] = 0xffff0ff0
    this.dr[7] = 0x400
    this.debugRegistersChanged()
    this.interruptShadow = 0
    this.flushTlb()
    this.instructionStart = this.eip
    this.pc = this.eip
    this.internalError = undefined
    this.stopRequested = false
  }

  requestStop(): void {
    this.stopRequested = true
  }

  /**
   * Executes up to `maxSteps` steps. A step is one instruction, one iteration of a
   * rep string instruction, or the delivery of an exception raised by an instruction.
   */
  run(maxSteps: number): CpuStop {
    let remaining = maxSteps
    let faultPending = false
    for (;;) {
      try {
        if (faultPending) {
          faultPending = false
          if (!this.deliverException()) {
            this.eip = this.instructionStart
            return CpuStop.TripleFault
          }
          this.retired++
          if (this.stopRequested) {
            this.stopRequested = false
            return CpuStop.Stop
          }
        }
        while (remaining > 0) {
          remaining--
          // TF as the instruction starts decides the single-step trap after it (SDM Vol. 3B, 18.3.1.4).
          const startFlags = this.flags
          if (this.breakpointsArmed) this.checkInstructionBreakpoint()
          this.shadowSet = 0
          this.noStepTrap = false
          this.dataBreakHit = 0
          this.step()
          this.retired++
          this.interruptShadow = this.shadowSet
          if ((startFlags & (TF | RF)) !== 0 || this.dataBreakHit !== 0) this.debugAfterInstruction(startFlags)
          if (this.stopRequested) {
            this.stopRequested = false
            return CpuStop.Stop
          }
        }
        return CpuStop.Budget
      } catch (e) {
        if (e === GUEST_FAULT) {
          faultPending = true
          continue
        }
        this.eip = this.instructionStart
        if (e === LEAVE_CPU) return CpuStop.Left
        if (e === INTERNAL_STOP) return CpuStop.InternalError
        throw e
      }
    }
  }

  // ---------------------------------------------------------------- modes

  private get protectedMode(): boolean {
    return (this.cr0 & CR0_PE) !== 0
  }

  /** CPL is SS.DPL, as in the VMCS guest state. */
  private get cpl(): number {
    return this.protectedMode ? attrDpl(this.segAttr[Seg.SS]) : 0
  }

  private get iopl(): number {
    return (this.flags & IOPL) >>> 12
  }

  private requireCpl0(): void {
    if (this.protectedMode && this.cpl !== 0) throw this.fault(Vector.GP, 0)
  }

  /** CLI/STI sensitivity (no PVI/VME: #GP at CPL > IOPL). */
  private requireIopl(): void {
    if (this.protectedMode && this.cpl > this.iopl) throw this.fault(Vector.GP, 0)
  }

  /**
   * IN/OUT/INS/OUTS at CPL > IOPL consult the I/O permission bitmap of a 32-bit TSS
   * (SDM Vol. 1, 19.5.2): every bit for the accessed ports must be clear, and the two
   * bytes holding them must lie within the TSS limit; a 16-bit TSS has no bitmap.
   */
  private checkIoPermission(port: number, size: number): void {
    if (!this.protectedMode || this.cpl <= this.iopl) return
    if ((this.trAttr & 0xd) !== 0x9 || this.trLimit < 0x67) throw this.fault(Vector.GP, 0)
    const at = this.readLinear((this.trBase + 0x66) >>> 0, 2, 0) + (port >>> 3)
    if (at + 1 > this.trLimit) throw this.fault(Vector.GP, 0)
    const bits = this.readLinear((this.trBase + at) >>> 0, 2, 0)
    if (((bits >>> (port & 7)) & ((1 << size) - 1)) !== 0) throw this.fault(Vector.GP, 0)
  }

  // ---------------------------------------------------------------- faults and stops

  /**
   * After an instruction (or one iteration of a rep string instruction) completes:
   * RF, if it was set, has done its job and clears; a single-step (TF at the start)
   * or a data breakpoint hit raises #DB as a trap, returning to the next instruction,
   * with DR6.BS / DR6.Bn set (SDM Vol. 3B, 18.2.3 and 18.3.1).
   */
  private debugAfterInstruction(startFlags: number): void {
    if ((startFlags & RF) !== 0) this.flags &= ~RF
    let bits = this.dataBreakHit
    if ((startFlags & TF) !== 0 && !this.noStepTrap) bits |= DR6_BS
    if (bits === 0) return
    this.dr[6] |= bits
    this.instructionStart = this.eip
    throw this.fault(Vector.DB, 0)
  }

  /** Recomputes whether any DR7 breakpoint is enabled; call after changing `dr` from outside. */
  debugRegistersChanged(): void {
    this.breakpointsArmed = (this.dr[7] & 0xff) !== 0
  }

  /**
   * An enabled execute breakpoint (R/W = 00) on the linear address of the next
   * instruction is a #DB fault before it runs, unless EFLAGS.RF suppresses it.
   */
  private checkInstructionBreakpoint(): void {
    if ((this.flags & RF) !== 0) return
    const linear = (this.segBase[Seg.CS] + this.eip) >>> 0
    const dr7 = this.dr[7]
    let hit = 0
    for (let n = 0; n < 4; n++) {
      if (((dr7 >>> (n * 2)) & 3) !== 0 && ((dr7 >>> (16 + n * 4)) & 3) === 0 && this.dr[n] === linear) hit |= 1 << n
    }
    if (hit === 0) return
    this.dr[6] |= hit
    this.instructionStart = this.eip
    this.dbFault = true
    throw this.fault(Vector.DB, 0)
  }

  /** Data breakpoints (R/W = 01 write, 11 read or write) whose aligned range the access overlaps; reported after the instruction. */
  private checkDataBreakpoint(linear: number, size: number, write: boolean): void {
    const dr7 = this.dr[7]
    for (let n = 0; n < 4; n++) {
      if (((dr7 >>> (n * 2)) & 3) === 0) continue
      const rw = (dr7 >>> (16 + n * 4)) & 3
      if (rw !== 3 && !(rw === 1 && write)) continue
      const len = BREAKPOINT_LENGTH[(dr7 >>> (18 + n * 4)) & 3]
      const base = (this.dr[n] & ~(len - 1)) >>> 0
      if (linear <= base + len - 1 && base <= linear + size - 1) this.dataBreakHit |= 1 << n
    }
  }

  private fault(vector: number, code: number): GuestFault {
    this.faultVector = vector
    this.faultCode = code
    return GUEST_FAULT
  }

  private undefinedOpcode(): GuestFault {
    return this.fault(Vector.UD, 0)
  }

  /** A valid instruction the model does not implement: record it and stop. */
  private unimplemented(reason: string, hasModrm: boolean): InternalStop {
    if (hasModrm) this.decodeModrm()
    const address = (this.segBase[Seg.CS] + this.instructionStart) >>> 0
    const bytes: number[] = []
    const length = Math.min(this.instructionLength, 15)
    const cr2 = this.cr2
    try {
      for (let i = 0; i < length; i++) bytes.push(this.mem.fetch8(this.translate((address + i) >>> 0, this.userAccess)))
    } catch {
      // The bytes were fetched once already; a second read that leaves only shortens the record.
    }
    this.cr2 = cr2
    this.internalError = { address, bytes, reason }
    return INTERNAL_STOP
  }

  /**
   * Delivers the exception in the fault fields, applying the double-fault rules
   * of SDM Vol. 3A, Table 6-5. Returns false on a triple fault (shutdown).
   */
  private deliverException(): boolean {
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
  private deliver(vector: number, withCode: boolean, code: number, returnEip: number, software: boolean): void {
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

  private deliverReal(vector: number, returnEip: number): void {
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

  // ---------------------------------------------------------------- memory

  /** CPL 3 makes an explicit access a user-mode access (SDM Vol. 3A, 4.6); implicit ones (GDT, IDT, TSS) pass 0. */
  private get userAccess(): number {
    return (this.segAttr[Seg.SS] & 0x60) === 0x60 && (this.cr0 & CR0_PE) !== 0 ? ACCESS_USER : 0
  }

  /**
   * Linear to guest-physical for one access (ACCESS_WRITE | ACCESS_USER) that stays
   * within a page. Paging off: the identity, one branch. Paging on: a TLB hit is one
   * typed-array read and a mask test; a miss, or a hit without the rights the access
   * needs (including a write to an entry whose D bit is not yet set), walks.
   */
  private translate(linear: number, access: number): number {
    if ((this.cr0 & CR0_PG) === 0) return linear
    const e = this.tlb[linear >>> 12]
    const need = TLB_NEED[access]
    if ((e & need) === need) return ((e & ~0xfff) | (linear & 0xfff)) >>> 0
    return this.walk(linear >>> 0, access)
  }

  /**
   * The two-level 32-bit page walk (SDM Vol. 3A, 4.3) with 4 MiB pages under CR4.PSE.
   * Entries are read and their A/D bits written through guest-physical memory, so an
   * EPT violation on a page-table page happens as on hardware. As on Intel processors
   * (and QEMU), the PDE's A bit is set once the PDE is found present and valid, even
   * if the PTE then faults; the final entry's A (and D on a write) only once the
   * access is allowed. The model's MAXPHYADDR is 32: PSE-36 is not offered, so
   * bits 21:13 of a 4 MiB PDE are reserved (a #PF with RSVD set).
   */
  private walk(linear: number, access: number): number {
    if (this.tlb.length === 0) this.tlb = new Int32Array(1 << 20)
    const write = (access & ACCESS_WRITE) !== 0
    const pdeAddress = ((this.cr3 & 0xfffff000) | ((linear >>> 20) & 0xffc)) >>> 0
    let pde = this.mem.read32(pdeAddress)
    if ((pde & PTE_P) === 0) throw this.pageFault(linear, access, 0)
    let frame: number
    let rights: number
    let dirty: boolean
    let global: boolean
    if ((pde & PDE_PS) !== 0 && (this.cr4 & CR4_PSE) !== 0) {
      if ((pde & PDE_4M_RESERVED) !== 0) throw this.pageFault(linear, access, PF_P | PF_RSVD)
      this.checkPageRights(pde, linear, access)
      const set = write ? PTE_A | PTE_D : PTE_A
      if ((pde & set) !== set) {
        pde |= set
        this.mem.write8(pdeAddress, pde & 0xff)
      }
      this.tlbHasLarge = true
      frame = ((pde & 0xffc00000) | (linear & 0x3ff000)) >>> 0
      rights = pde
      dirty = (pde & PTE_D) !== 0
      global = (pde & PTE_G) !== 0
    } else {
      if ((pde & PTE_A) === 0) {
        pde |= PTE_A
        this.mem.write8(pdeAddress, pde & 0xff)
      }
      const pteAddress = ((pde & 0xfffff000) | ((linear >>> 10) & 0xffc)) >>> 0
      let pte = this.mem.read32(pteAddress)
      if ((pte & PTE_P) === 0) throw this.pageFault(linear, access, 0)
      rights = pde & pte
      this.checkPageRights(rights, linear, access)
      const set = write ? PTE_A | PTE_D : PTE_A
      if ((pte & set) !== set) {
        pte |= set
        this.mem.write8(pteAddress, pte & 0xff)
      }
      frame = (pte & 0xfffff000) >>> 0
      dirty = (pte & PTE_D) !== 0
      global = (pte & PTE_G) !== 0
    }
    let bits = TLB_VALID
    if (global && (this.cr4 & CR4_PGE) !== 0) bits |= TLB_GLOBAL
    const userPage = (rights & PTE_US) !== 0
    const writable = (rights & PTE_RW) !== 0
    if (userPage) bits |= TLB_USER
    if (dirty) {
      if (userPage && writable) bits |= TLB_USER_WRITE
      if (writable || (this.cr0 & CR0_WP) === 0) bits |= TLB_SUPER_WRITE
    }
    const page = linear >>> 12
    if (this.tlb[page] === 0) {
      if (this.tlbCount < TLB_LIST_CAPACITY) this.tlbList[this.tlbCount] = page
      this.tlbCount++
    }
    this.tlb[page] = frame | bits
    return (frame | (linear & 0xfff)) >>> 0
  }

  /** U/S and R/W of the combined entries against the access; supervisor writes obey CR0.WP (SDM Vol. 3A, 4.6.1). */
  private checkPageRights(rights: number, linear: number, access: number): void {
    if ((access & ACCESS_USER) !== 0) {
      if ((rights & PTE_US) === 0) throw this.pageFault(linear, access, PF_P)
      if ((access & ACCESS_WRITE) !== 0 && (rights & PTE_RW) === 0) throw this.pageFault(linear, access, PF_P)
    } else if ((access & ACCESS_WRITE) !== 0 && (rights & PTE_RW) === 0 && (this.cr0 & CR0_WP) !== 0) {
      throw this.pageFault(linear, access, PF_P)
    }
  }

  /**
   * #PF: CR2 takes the linear address, the error code the P/RSVD bits given plus W/R
   * and U/S from the access (I/D is always 0: 32-bit paging has no execute-disable).
   * A faulting translation leaves no TLB entry for the page.
   */
  private pageFault(linear: number, access: number, bits: number): GuestFault {
    if (this.tlb.length !== 0) this.tlb[linear >>> 12] = 0
    this.cr2 = linear >>> 0
    return this.fault(Vector.PF, bits | ((access << 1) & (PF_W | PF_U)))
  }

  /**
   * Drops every TLB entry (CR0.PG/WP and CR4.PSE/PGE changes, KVM_SET_SREGS), or, for a
   * CR3 load (`keepGlobal`), every entry but those of global pages (G with CR4.PGE;
   * SDM Vol. 3A, 4.10.2.4).
   */
  flushTlb(keepGlobal = false): void {
    if (this.tlb.length === 0) return
    const tlb = this.tlb
    let kept = 0
    if (this.tlbCount <= TLB_LIST_CAPACITY) {
      for (let i = 0; i < this.tlbCount; i++) {
        const page = this.tlbList[i]
        if (keepGlobal && (tlb[page] & TLB_GLOBAL) !== 0) this.tlbList[kept++] = page
        else tlb[page] = 0
      }
    } else if (keepGlobal) {
      for (let page = 0; page < tlb.length; page++) {
        if ((tlb[page] & TLB_GLOBAL) === 0) tlb[page] = 0
        else if (kept < TLB_LIST_CAPACITY) this.tlbList[kept++] = page
        else kept++
      }
    } else {
      tlb.fill(0)
    }
    this.tlbCount = kept
    if (kept === 0) this.tlbHasLarge = false
  }

  /** INVLPG: the page's entry; if 4 MiB pages are cached, every 4 KiB slot of the 4 MiB region it lies in. */
  private invalidatePage(linear: number): void {
    if (this.tlb.length === 0) return
    if (this.tlbHasLarge) this.tlb.fill(0, (linear >>> 22) << 10, ((linear >>> 22) + 1) << 10)
    else this.tlb[linear >>> 12] = 0
  }

  /** An implicit supervisor read (descriptor tables, the TSS); 4 bytes may cross a page. */
  private readLinear32(linear: number): number {
    return this.readLinear(linear >>> 0, 4, 0)
  }

  private readLinear(linear: number, size: number, access: number): number {
    if ((this.cr0 & CR0_PG) !== 0 && (linear & 0xfff) > 0x1000 - size) return this.readCrossing(linear, size, access)
    const pa = this.translate(linear, access)
    return size === 1 ? this.mem.read8(pa) : size === 2 ? this.mem.read16(pa) : this.mem.read32(pa)
  }

  private writeLinear(linear: number, size: number, value: number, access: number): void {
    if ((this.cr0 & CR0_PG) !== 0 && (linear & 0xfff) > 0x1000 - size) return this.writeCrossing(linear, size, value, access)
    const pa = this.translate(linear, access)
    if (size === 1) this.mem.write8(pa, value)
    else if (size === 2) this.mem.write16(pa, value)
    else this.mem.write32(pa, value)
  }

  /** An access that straddles two pages: both are translated (and may fault) before any byte moves. */
  private readCrossing(linear: number, size: number, access: number): number {
    const first = this.translate(linear, access)
    const second = this.translate(((linear + size - 1) & ~0xfff) >>> 0, access)
    const split = 0x1000 - (linear & 0xfff)
    let v = 0
    for (let i = 0; i < size; i++) v |= (i < split ? this.mem.read8(first + i) : this.mem.read8(second + i - split)) << (8 * i)
    return v >>> 0
  }

  private writeCrossing(linear: number, size: number, value: number, access: number): void {
    const first = this.translate(linear, access)
    const second = this.translate(((linear + size - 1) & ~0xfff) >>> 0, access)
    const split = 0x1000 - (linear & 0xfff)
    for (let i = 0; i < size; i++) {
      const b = (value >>> (8 * i)) & 0xff
      if (i < split) this.mem.write8(first + i, b)
      else this.mem.write8(second + i - split, b)
    }
  }

  /** Checks that a write to `size` bytes at `linear` would be allowed by paging, without writing. */
  private probeWrite(linear: number, size: number): void {
    if ((this.cr0 & CR0_PG) === 0) return
    const access = ACCESS_WRITE | this.userAccess
    this.translate(linear, access)
    if ((linear & 0xfff) > 0x1000 - size) this.translate(((linear + size - 1) & ~0xfff) >>> 0, access)
  }

  /** #AC (SDM Vol. 3A, 6.15): CR0.AM, EFLAGS.AC and CPL 3, on a misaligned data access. */
  private checkAlignment(): void {
    if (this.alignmentChecked) return
    if ((this.cr0 & CR0_AM) !== 0 && (this.flags & AC) !== 0 && this.protectedMode && this.cpl === 3) {
      throw this.fault(Vector.AC, 0)
    }
  }

  /**
   * Segment protection and limit checks (SDM Vol. 3A, 5.3 and 5.5), then the
   * linear address. Real mode checks the limit only.
   */
  private checkedLinear(seg: number, off: number, size: number, write: boolean): number {
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

  private segmentFault(seg: number): GuestFault {
    return this.fault(seg === Seg.SS ? Vector.SS : Vector.GP, 0)
  }

  private readMem(seg: number, off: number, size: number): number {
    const linear = this.checkedLinear(seg, off, size, false)
    if ((linear & (size - 1)) !== 0) this.checkAlignment()
    if (this.breakpointsArmed) this.checkDataBreakpoint(linear, size, false)
    return this.readLinear(linear, size, (this.cr0 & CR0_PG) === 0 ? 0 : this.userAccess)
  }

  private writeMem(seg: number, off: number, size: number, value: number): void {
    const linear = this.checkedLinear(seg, off, size, true)
    if ((linear & (size - 1)) !== 0) this.checkAlignment()
    if (this.breakpointsArmed) this.checkDataBreakpoint(linear, size, true)
    this.writeLinear(linear, size, value, (this.cr0 & CR0_PG) === 0 ? ACCESS_WRITE : ACCESS_WRITE | this.userAccess)
  }

  /** Offset arithmetic in the current address size. */
  private offsetAdd(off: number, n: number): number {
    return this.addrSize === 4 ? (off + n) >>> 0 : (off + n) & 0xffff
  }

  // ---------------------------------------------------------------- fetch and decode

  private fetch8(): number {
    const off = this.pc
    if (off > this.segLimit[Seg.CS] || off - this.instructionStart >= 15) throw this.fault(Vector.GP, 0)
    this.pc = off + 1
    const linear = (this.segBase[Seg.CS] + off) >>> 0
    return this.mem.fetch8((this.cr0 & CR0_PG) === 0 ? linear : this.translate(linear, this.userAccess))
  }

  private fetch16(): number {
    const lo = this.fetch8()
    return lo | (this.fetch8() << 8)
  }

  private fetch32(): number {
    const lo = this.fetch16()
    return (lo | (this.fetch16() << 16)) >>> 0
  }

  private fetchImm(size: number): number {
    return size === 1 ? this.fetch8() : size === 2 ? this.fetch16() : this.fetch32()
  }

  /** An 8-bit immediate sign-extended to `size`. */
  private fetchImm8As(size: number): number {
    return fit(signExtend(this.fetch8(), 1), size)
  }

  private decodeModrm(): void {
    const b = this.fetch8()
    this.mod = b >>> 6
    this.regField = (b >>> 3) & 7
    this.rm = b & 7
    if (this.mod === 3) return
    if (this.addrSize === 2) this.effectiveAddress16()
    else this.effectiveAddress32()
  }

  private effectiveAddress16(): void {
    const r = this.regs
    let seg = Seg.DS
    let off: number
    switch (this.rm) {
      case 0:
        off = r[Reg.EBX] + r[Reg.ESI]
        break
      case 1:
        off = r[Reg.EBX] + r[Reg.EDI]
        break
      case 2:
        off = r[Reg.EBP] + r[Reg.ESI]
        seg = Seg.SS
        break
      case 3:
        off = r[Reg.EBP] + r[Reg.EDI]
        seg = Seg.SS
        break
      case 4:
        off = r[Reg.ESI]
        break
      case 5:
        off = r[Reg.EDI]
        break
      case 6:
        if (this.mod === 0) {
          off = this.fetch16()
        } else {
          off = r[Reg.EBP]
          seg = Seg.SS
        }
        break
      default:
        off = r[Reg.EBX]
        break
    }
    if (this.mod === 1) off += signExtend(this.fetch8(), 1)
    else if (this.mod === 2) off += this.fetch16()
    this.eaOff = off & 0xffff
    this.eaSeg = this.segOverride >= 0 ? this.segOverride : seg
  }

  private effectiveAddress32(): void {
    let seg = Seg.DS
    let off = 0
    let base = this.rm
    if (base === 4) {
      const sib = this.fetch8()
      const index = (sib >>> 3) & 7
      base = sib & 7
      if (index !== 4) off = this.regs[index] * (1 << (sib >>> 6))
      if (base === 5 && this.mod === 0) {
        off += this.fetch32()
      } else {
        off += base === Reg.ESP ? this.regs[Reg.ESP] + this.espBias : this.regs[base]
        if (base === Reg.ESP || base === Reg.EBP) seg = Seg.SS
      }
    } else if (base === 5 && this.mod === 0) {
      off = this.fetch32()
    } else {
      off = this.regs[base]
      if (base === Reg.EBP) seg = Seg.SS
    }
    if (this.mod === 1) off += signExtend(this.fetch8(), 1)
    else if (this.mod === 2) off += this.fetch32()
    this.eaOff = off >>> 0
    this.eaSeg = this.segOverride >= 0 ? this.segOverride : seg
  }

  /** A memory operand is required (LEA, LxS, far indirect, LGDT…): a register form is #UD. */
  private requireMemoryOperand(): void {
    if (this.mod === 3) throw this.undefinedOpcode()
  }

  // ---------------------------------------------------------------- registers and operands

  private getReg(size: number, r: number): number {
    if (size === 4) return this.regs[r]
    if (size === 2) return this.regs[r] & 0xffff
    return r < 4 ? this.regs[r] & 0xff : (this.regs[r - 4] >>> 8) & 0xff
  }

  private setReg(size: number, r: number, v: number): void {
    if (size === 4) this.regs[r] = v
    else if (size === 2) this.regs[r] = (this.regs[r] & 0xffff0000) | (v & 0xffff)
    else if (r < 4) this.regs[r] = (this.regs[r] & 0xffffff00) | (v & 0xff)
    else this.regs[r - 4] = (this.regs[r - 4] & 0xffff00ff) | ((v & 0xff) << 8)
  }

  private readRm(size: number): number {
    return this.mod === 3 ? this.getReg(size, this.rm) : this.readMem(this.eaSeg, this.eaOff, size)
  }

  private writeRm(size: number, v: number): void {
    if (this.mod === 3) this.setReg(size, this.rm, v)
    else this.writeMem(this.eaSeg, this.eaOff, size, v)
  }

  private get dataSeg(): number {
    return this.segOverride >= 0 ? this.segOverride : Seg.DS
  }

  // ---------------------------------------------------------------- stack

  private get stack32(): boolean {
    return (this.segAttr[Seg.SS] & ATTR_DB) !== 0
  }

  private stackBegin(): void {
    this.sp = this.regs[Reg.ESP]
  }

  private push(size: number, v: number): void {
    const sp = this.stack32 ? (this.sp - size) >>> 0 : (this.sp - size) & 0xffff
    this.writeMem(Seg.SS, sp, size, v)
    this.sp = sp
  }

  /** PUSH sreg with a 32-bit operand: recent processors write only the selector's 16 bits into the slot. */
  private pushSelector(size: number, selector: number): void {
    const sp = this.stack32 ? (this.sp - size) >>> 0 : (this.sp - size) & 0xffff
    this.writeMem(Seg.SS, sp, 2, selector)
    this.sp = sp
  }

  private pop(size: number): number {
    const sp = this.stack32 ? this.sp : this.sp & 0xffff
    const v = this.readMem(Seg.SS, sp, size)
    this.sp = this.stack32 ? (sp + size) >>> 0 : (sp + size) & 0xffff
    return v
  }

  private stackRelease(n: number): void {
    this.sp = this.stack32 ? (this.sp + n) >>> 0 : (this.sp + n) & 0xffff
  }

  private stackCommit(): void {
    if (this.stack32) this.regs[Reg.ESP] = this.sp
    else this.regs[Reg.ESP] = (this.regs[Reg.ESP] & 0xffff0000) | (this.sp & 0xffff)
  }

  // ---------------------------------------------------------------- segment loading

  /**
   * Reads the descriptor a selector names, from the GDT or (TI = 1) the LDT. A selector
   * outside its table, or naming the LDT while LDTR is null, faults with `vector`
   * (#GP for loads, #TS for the stack switch) and the selector as error code.
   */
  private readDescriptor(selector: number, ext: number, vector: number = Vector.GP): void {
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
  private markAccessed(): void {
    if ((this.descHi & 0x100) !== 0) return
    this.writeLinear((this.descAddress + 5) >>> 0, 1, ((this.descHi >>> 8) | 1) & 0xff, ACCESS_WRITE)
    this.descHi |= 0x100
  }

  private setLoadFromDescriptor(): void {
    this.loadBase = descriptorBase(this.descLo, this.descHi)
    this.loadLimit = descriptorLimit(this.descLo, this.descHi)
    this.loadAttr = descriptorAttr(this.descHi)
  }

  /** Real mode: base = selector << 4; the limit and attributes in the cache stay (which is what unreal mode relies on). */
  private prepareRealSegment(seg: number, selector: number): void {
    const attr = this.segAttr[seg]
    this.loadBase = selector << 4
    this.loadLimit = this.segLimit[seg]
    this.loadAttr =
      (attr & ATTR_UNUSABLE) === 0 ? attr : seg === Seg.CS ? REAL_MODE_CODE_ATTR : REAL_MODE_DATA_ATTR
  }

  /** Checks a load of DS/ES/FS/GS/SS (MOV, POP, LxS) without committing it. */
  private prepareSegment(seg: number, selector: number): void {
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
  private prepareCodeSegment(selector: number, isReturn: boolean): number {
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

  private commitSegment(seg: number, selector: number): void {
    this.segSelector[seg] = selector
    this.segBase[seg] = this.loadBase
    this.segLimit[seg] = this.loadLimit
    this.segAttr[seg] = this.loadAttr
  }

  // ---------------------------------------------------------------- privilege-level changes

  /**
   * The inner stack for ring `dpl` from the current TSS (SDM Vol. 3A, 6.12.1 and 5.8.5):
   * SS:ESP at 4 + 8*dpl in a 32-bit TSS, SS:SP at 2 + 4*dpl in a 16-bit one. Leaves
   * the SS descriptor checked in the load fields and the pointer in tssSs/tssEsp.
   */
  private prepareInnerStack(dpl: number, ext: number): void {
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
  private prepareOuterStack(ss: number, rpl: number): void {
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
  private switchStackBegin(ss: number, esp: number): void {
    this.savedSsSelector = this.segSelector[Seg.SS]
    this.savedSsBase = this.segBase[Seg.SS]
    this.savedSsLimit = this.segLimit[Seg.SS]
    this.savedSsAttr = this.segAttr[Seg.SS]
    this.commitSegment(Seg.SS, ss)
    this.sp = esp
  }

  /** A push onto the new stack faulted: the old SS comes back; a limit fault is #SS(new SS). */
  private switchStackAbort(e: unknown, ss: number, ext: number): void {
    this.segSelector[Seg.SS] = this.savedSsSelector
    this.segBase[Seg.SS] = this.savedSsBase
    this.segLimit[Seg.SS] = this.savedSsLimit
    this.segAttr[Seg.SS] = this.savedSsAttr
    if (e === GUEST_FAULT && this.faultVector === Vector.SS) this.faultCode = (ss & 0xfffc) + ext
  }

  /** RETF/IRET to an outer ring: data segment registers the new CPL may not use become null (SDM Vol. 3A, 5.8.6). */
  private nullInaccessibleSegments(cpl: number): void {
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
  private callGate(gateSelector: number, call: boolean): void {
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
  private throughGate(selector: number, call: boolean): boolean {
    if (!this.protectedMode || (selector & 0xfffc) === 0) return false
    this.readDescriptor(selector, 0)
    const type = (this.descHi >>> 8) & 0x1f
    if (type !== 0x04 && type !== 0x0c) return false
    this.callGate(selector, call)
    return true
  }

  // ---------------------------------------------------------------- control transfer

  /** A near branch target in the operand size, checked against the CS limit. */
  private nearTarget(target: number): number {
    const t = this.opSize === 4 ? target >>> 0 : target & 0xffff
    if (t > this.segLimit[Seg.CS]) throw this.fault(Vector.GP, 0)
    return t
  }

  private condition(cc: number): boolean {
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

  private jumpIf(cond: boolean, disp: number): void {
    if (cond) this.pc = this.nearTarget(this.pc + disp)
  }

  private callNear(target: number): void {
    const t = this.nearTarget(target)
    this.stackBegin()
    this.push(this.opSize, this.pc)
    this.stackCommit()
    this.pc = t
  }

  private farJump(selector: number, offset: number): void {
    if (this.throughGate(selector, false)) return
    const cs = this.prepareCodeSegment(selector, false)
    if (offset > this.loadLimit) throw this.fault(Vector.GP, 0)
    this.commitSegment(Seg.CS, cs)
    this.pc = offset
  }

  private farCall(selector: number, offset: number): void {
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

  private returnNear(release: number): void {
    this.stackBegin()
    const t = this.nearTarget(this.pop(this.opSize))
    this.stackRelease(release)
    this.stackCommit()
    this.pc = t
  }

  private returnFar(release: number): void {
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
  private returnToOuterRing(cs: number, offset: number, size: number, release: number): void {
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

  private interruptReturn(): void {
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
  private taskReturn(): void {
    const link = this.readLinear(this.trBase, 2, 0)
    const error = link & 0xfffc
    if ((link & 4) !== 0 || error === 0) throw this.fault(Vector.TS, error)
    this.readDescriptor(link, 0, Vector.TS)
    const type = (this.descHi >>> 8) & 0x1f
    if (type !== 0x03 && type !== 0x0b) throw this.fault(Vector.TS, error)
    if ((this.descHi & 0x8000) === 0) throw this.fault(Vector.NP, error)
    throw this.unimplemented("IRET with NT set (a task switch) is not modelled", false)
  }

  private softwareInterrupt(vector: number): void {
    // The handler runs with TF clear; no single-step trap follows INT n / INT3 / INTO itself.
    this.noStepTrap = true
    this.deliver(vector, false, 0, this.pc, true)
  }

  /**
   * SYSENTER (SDM Vol. 2B): flat ring-0 CS from IA32_SYSENTER_CS and SS the next
   * selector, ESP and EIP from their MSRs; VM, IF and RF cleared.
   */
  private systemEnter(): void {
    const cs = this.sysenterCs & 0xfffc
    if (!this.protectedMode || cs === 0) throw this.fault(Vector.GP, 0)
    this.flags &= ~(VM | IF | RF)
    this.setFlatSegment(Seg.CS, cs, 0xc09b)
    this.setFlatSegment(Seg.SS, cs + 8, 0xc093)
    this.regs[Reg.ESP] = this.sysenterEsp
    this.pc = this.sysenterEip
  }

  /** SYSEXIT: flat ring-3 CS = SYSENTER_CS+16, SS = +24 (RPL 3); ESP = ECX, EIP = EDX. */
  private systemExit(): void {
    const cs = this.sysenterCs & 0xfffc
    if (!this.protectedMode || this.cpl !== 0 || cs === 0) throw this.fault(Vector.GP, 0)
    this.setFlatSegment(Seg.CS, (cs + 16) | 3, 0xc0fb)
    this.setFlatSegment(Seg.SS, (cs + 24) | 3, 0xc0f3)
    this.regs[Reg.ESP] = this.regs[Reg.ECX]
    this.pc = this.regs[Reg.EDX]
  }

  /** SYSENTER/SYSEXIT load fixed caches without reading the GDT. */
  private setFlatSegment(seg: number, selector: number, attr: number): void {
    this.segSelector[seg] = selector
    this.segBase[seg] = 0
    this.segLimit[seg] = 0xffffffff
    this.segAttr[seg] = attr
  }

  /**
   * MOV to/from DR0-DR7 (CPL 0). DR4/DR5 alias DR6/DR7 unless CR4.DE makes them #UD.
   * The values are stored with their fixed bits; DR7 instruction and data breakpoints fire (I/O breakpoints and DR7.GD are not modelled).
   */
  private moveDebugRegister(toDr: boolean): void {
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

  // ---------------------------------------------------------------- step

  private step(): void {
    const start = this.eip
    this.instructionStart = start
    this.pc = start
    const code32 = (this.segAttr[Seg.CS] & ATTR_DB) !== 0
    this.opSize = code32 ? 4 : 2
    this.addrSize = code32 ? 4 : 2
    this.segOverride = -1
    this.repPrefix = 0
    let lock = false
    let op = this.fetch8()
    prefixes: for (;;) {
      switch (op) {
        case 0x26:
          this.segOverride = Seg.ES
          break
        case 0x2e:
          this.segOverride = Seg.CS
          break
        case 0x36:
          this.segOverride = Seg.SS
          break
        case 0x3e:
          this.segOverride = Seg.DS
          break
        case 0x64:
          this.segOverride = Seg.FS
          break
        case 0x65:
          this.segOverride = Seg.GS
          break
        case 0x66:
          this.opSize = code32 ? 2 : 4
          break
        case 0x67:
          this.addrSize = code32 ? 2 : 4
          break
        case 0xf0:
          // LOCK: a single CPU with no concurrent memory agents needs no atomicity; only its validity is checked.
          lock = true
          break
        case 0xf2:
        case 0xf3:
          this.repPrefix = op
          break
        default:
          break prefixes
      }
      op = this.fetch8()
    }
    if (lock) this.checkLockable(op)
    this.execute(op)
    this.eip = this.pc
  }

  /**
   * LOCK is #UD unless the instruction is one of the read-modify-write forms the SDM
   * lists (ADD…XOR except CMP, BT[SRC], XCHG, XADD, CMPXCHG, CMPXCHG8B, INC/DEC, NOT/NEG)
   * with a memory destination. Peeks at the opcode and ModRM without consuming them.
   */
  private checkLockable(op: number): void {
    const start = this.pc
    let ok = false
    if (op === 0x0f) {
      const op2 = this.fetch8()
      if (op2 === 0xab || op2 === 0xb3 || op2 === 0xbb || op2 === 0xb0 || op2 === 0xb1 || op2 === 0xc0 || op2 === 0xc1) {
        ok = this.fetch8() < 0xc0
      } else if (op2 === 0xba) {
        const m = this.fetch8()
        ok = m < 0xc0 && ((m >>> 3) & 7) >= 5
      } else if (op2 === 0xc7) {
        const m = this.fetch8()
        ok = m < 0xc0 && ((m >>> 3) & 7) === 1
      }
    } else if (op < 0x40) {
      ok = (op & 6) === 0 && (op & 0x38) !== 0x38 && this.fetch8() < 0xc0
    } else if (op >= 0x80 && op <= 0x83) {
      const m = this.fetch8()
      ok = m < 0xc0 && ((m >>> 3) & 7) !== 7
    } else if (op === 0x86 || op === 0x87) {
      ok = this.fetch8() < 0xc0
    } else if (op === 0xf6 || op === 0xf7) {
      const m = this.fetch8()
      ok = m < 0xc0 && (((m >>> 3) & 7) === 2 || ((m >>> 3) & 7) === 3)
    } else if (op === 0xfe || op === 0xff) {
      const m = this.fetch8()
      ok = m < 0xc0 && ((m >>> 3) & 7) <= 1
    }
    if (!ok) throw this.undefinedOpcode()
    this.pc = start
  }

  private execute(op: number): void {
    const osz = this.opSize
    switch (op) {
      case 0x00:
      case 0x08:
      case 0x10:
      case 0x18:
      case 0x20:
      case 0x28:
      case 0x30:
      case 0x38:
        return this.aluModrm(op >>> 3, 1, false)
      case 0x01:
      case 0x09:
      case 0x11:
      case 0x19:
      case 0x21:
      case 0x29:
      case 0x31:
      case 0x39:
        return this.aluModrm(op >>> 3, osz, false)
      case 0x02:
      case 0x0a:
      case 0x12:
      case 0x1a:
      case 0x22:
      case 0x2a:
      case 0x32:
      case 0x3a:
        return this.aluModrm(op >>> 3, 1, true)
      case 0x03:
      case 0x0b:
      case 0x13:
      case 0x1b:
      case 0x23:
      case 0x2b:
      case 0x33:
      case 0x3b:
        return this.aluModrm(op >>> 3, osz, true)
      case 0x04:
      case 0x0c:
      case 0x14:
      case 0x1c:
      case 0x24:
      case 0x2c:
      case 0x34:
      case 0x3c:
        return this.aluAccumulator(op >>> 3, 1)
      case 0x05:
      case 0x0d:
      case 0x15:
      case 0x1d:
      case 0x25:
      case 0x2d:
      case 0x35:
      case 0x3d:
        return this.aluAccumulator(op >>> 3, osz)
      case 0x06:
        return this.pushSegment(Seg.ES)
      case 0x07:
        return this.popSegment(Seg.ES)
      case 0x0e:
        return this.pushSegment(Seg.CS)
      case 0x0f:
        return this.executeTwoByte(this.fetch8())
      case 0x16:
        return this.pushSegment(Seg.SS)
      case 0x17:
        return this.popSegment(Seg.SS)
      case 0x1e:
        return this.pushSegment(Seg.DS)
      case 0x1f:
        return this.popSegment(Seg.DS)
      case 0x27:
        return this.decimalAdjust(false)
      case 0x2f:
        return this.decimalAdjust(true)
      case 0x37:
        return this.asciiAdjust(false)
      case 0x3f:
        return this.asciiAdjust(true)
      case 0x40:
      case 0x41:
      case 0x42:
      case 0x43:
      case 0x44:
      case 0x45:
      case 0x46:
      case 0x47: {
        const a = this.getReg(osz, op & 7)
        const r = fit(a + 1, osz)
        this.setReg(osz, op & 7, r)
        this.flags = incFlags(a, r, osz, this.flags)
        return
      }
      case 0x48:
      case 0x49:
      case 0x4a:
      case 0x4b:
      case 0x4c:
      case 0x4d:
      case 0x4e:
      case 0x4f: {
        const a = this.getReg(osz, op & 7)
        const r = fit(a - 1, osz)
        this.setReg(osz, op & 7, r)
        this.flags = decFlags(a, r, osz, this.flags)
        return
      }
      case 0x50:
      case 0x51:
      case 0x52:
      case 0x53:
      case 0x54:
      case 0x55:
      case 0x56:
      case 0x57:
        return this.pushValue(this.getReg(osz, op & 7))
      case 0x58:
      case 0x59:
      case 0x5a:
      case 0x5b:
      case 0x5c:
      case 0x5d:
      case 0x5e:
      case 0x5f: {
        this.stackBegin()
        const v = this.pop(osz)
        this.stackCommit()
        this.setReg(osz, op & 7, v)
        return
      }
      case 0x60:
        return this.pushAll()
      case 0x61:
        return this.popAll()
      case 0x62:
        return this.checkBounds()
      case 0x63:
        if (!this.protectedMode) throw this.undefinedOpcode()
        return this.adjustRpl()
      case 0x68:
        return this.pushValue(this.fetchImm(osz))
      case 0x69:
      case 0x6b: {
        this.decodeModrm()
        const imm = op === 0x69 ? this.fetchImm(osz) : this.fetchImm8As(osz)
        return this.multiplyInto(this.regField, this.readRm(osz), imm)
      }
      case 0x6a:
        return this.pushValue(this.fetchImm8As(osz))
      case 0x6c:
        return this.inString(1)
      case 0x6d:
        return this.inString(osz)
      case 0x6e:
        return this.outString(1)
      case 0x6f:
        return this.outString(osz)
      case 0x70:
      case 0x71:
      case 0x72:
      case 0x73:
      case 0x74:
      case 0x75:
      case 0x76:
      case 0x77:
      case 0x78:
      case 0x79:
      case 0x7a:
      case 0x7b:
      case 0x7c:
      case 0x7d:
      case 0x7e:
      case 0x7f: {
        const disp = signExtend(this.fetch8(), 1)
        return this.jumpIf(this.condition(op & 15), disp)
      }
      case 0x80:
      case 0x82:
        return this.aluImmediate(1, 1)
      case 0x81:
        return this.aluImmediate(osz, osz)
      case 0x83:
        return this.aluImmediate(osz, 1)
      case 0x84:
      case 0x85: {
        const size = op === 0x84 ? 1 : osz
        this.decodeModrm()
        const r = this.readRm(size) & this.getReg(size, this.regField)
        this.flags = logicFlags(fit(r, size), size, this.flags)
        return
      }
      case 0x86:
      case 0x87: {
        const size = op === 0x86 ? 1 : osz
        this.decodeModrm()
        const a = this.readRm(size)
        const b = this.getReg(size, this.regField)
        this.writeRm(size, b)
        this.setReg(size, this.regField, a)
        return
      }
      case 0x88:
      case 0x89: {
        const size = op === 0x88 ? 1 : osz
        this.decodeModrm()
        return this.writeRm(size, this.getReg(size, this.regField))
      }
      case 0x8a:
      case 0x8b: {
        const size = op === 0x8a ? 1 : osz
        this.decodeModrm()
        return this.setReg(size, this.regField, this.readRm(size))
      }
      case 0x8c: {
        this.decodeModrm()
        if (this.regField > Seg.GS) throw this.undefinedOpcode()
        // To a register the selector is zero-extended to the operand size; to memory it is always 16 bits.
        const selector = this.segSelector[this.regField]
        if (this.mod === 3) this.setReg(osz, this.rm, selector)
        else this.writeMem(this.eaSeg, this.eaOff, 2, selector)
        return
      }
      case 0x8d: {
        this.decodeModrm()
        this.requireMemoryOperand()
        return this.setReg(osz, this.regField, this.eaOff)
      }
      case 0x8e: {
        this.decodeModrm()
        const seg = this.regField
        if (seg === Seg.CS || seg > Seg.GS) throw this.undefinedOpcode()
        const selector = this.readRm(2)
        this.prepareSegment(seg, selector)
        if (seg === Seg.SS) this.movSs()
        return this.commitSegment(seg, selector)
      }
      case 0x8f:
        return this.popRm()
      case 0x90:
        return
      case 0x91:
      case 0x92:
      case 0x93:
      case 0x94:
      case 0x95:
      case 0x96:
      case 0x97: {
        const a = this.getReg(osz, Reg.EAX)
        this.setReg(osz, Reg.EAX, this.getReg(osz, op & 7))
        this.setReg(osz, op & 7, a)
        return
      }
      case 0x98:
        if (osz === 4) this.regs[Reg.EAX] = signExtend(this.regs[Reg.EAX], 2)
        else this.setReg(2, Reg.EAX, signExtend(this.regs[Reg.EAX], 1))
        return
      case 0x99:
        if (osz === 4) this.regs[Reg.EDX] = this.regs[Reg.EAX] >>> 31 === 1 ? 0xffffffff : 0
        else this.setReg(2, Reg.EDX, (this.regs[Reg.EAX] & 0x8000) !== 0 ? 0xffff : 0)
        return
      case 0x9a: {
        const offset = this.fetchImm(osz)
        return this.farCall(this.fetch16(), offset)
      }
      case 0x9b:
        // FWAIT: #NM with CR0.MP and CR0.TS both set; otherwise, with no x87, never a pending x87 exception.
        if ((this.cr0 & (CR0_MP | CR0_TS)) === (CR0_MP | CR0_TS)) throw this.fault(Vector.NM, 0)
        return
      case 0x9c:
        // The image never shows VM or RF.
        return this.pushValue(this.flags & ~(VM | RF))
      case 0x9d:
        return this.popFlags()
      case 0x9e: {
        const mask = SF | ZF | AF | PF | CF
        this.flags = (this.flags & ~mask) | ((this.regs[Reg.EAX] >>> 8) & mask)
        return
      }
      case 0x9f:
        this.setReg(1, 4, (this.flags & (SF | ZF | AF | PF | CF)) | EFLAGS_FIXED)
        return
      case 0xa0:
      case 0xa1: {
        const size = op === 0xa0 ? 1 : osz
        const v = this.readMem(this.dataSeg, this.fetchImm(this.addrSize), size)
        return this.setReg(size, Reg.EAX, v)
      }
      case 0xa2:
      case 0xa3: {
        const size = op === 0xa2 ? 1 : osz
        return this.writeMem(this.dataSeg, this.fetchImm(this.addrSize), size, this.getReg(size, Reg.EAX))
      }
      case 0xa4:
        return this.stringOp(StringOp.Movs, 1)
      case 0xa5:
        return this.stringOp(StringOp.Movs, osz)
      case 0xa6:
        return this.stringOp(StringOp.Cmps, 1)
      case 0xa7:
        return this.stringOp(StringOp.Cmps, osz)
      case 0xa8:
      case 0xa9: {
        const size = op === 0xa8 ? 1 : osz
        const r = this.getReg(size, Reg.EAX) & this.fetchImm(size)
        this.flags = logicFlags(fit(r, size), size, this.flags)
        return
      }
      case 0xaa:
        return this.stringOp(StringOp.Stos, 1)
      case 0xab:
        return this.stringOp(StringOp.Stos, osz)
      case 0xac:
        return this.stringOp(StringOp.Lods, 1)
      case 0xad:
        return this.stringOp(StringOp.Lods, osz)
      case 0xae:
        return this.stringOp(StringOp.Scas, 1)
      case 0xaf:
        return this.stringOp(StringOp.Scas, osz)
      case 0xb0:
      case 0xb1:
      case 0xb2:
      case 0xb3:
      case 0xb4:
      case 0xb5:
      case 0xb6:
      case 0xb7:
        return this.setReg(1, op & 7, this.fetch8())
      case 0xb8:
      case 0xb9:
      case 0xba:
      case 0xbb:
      case 0xbc:
      case 0xbd:
      case 0xbe:
      case 0xbf:
        return this.setReg(osz, op & 7, this.fetchImm(osz))
      case 0xc0:
        return this.shiftRm(1, -1)
      case 0xc1:
        return this.shiftRm(osz, -1)
      case 0xc2:
        return this.returnNear(this.fetch16())
      case 0xc3:
        return this.returnNear(0)
      case 0xc4:
      case 0xc5:
        return this.loadFarPointer(op === 0xc4 ? Seg.ES : Seg.DS)
      case 0xc6:
      case 0xc7: {
        const size = op === 0xc6 ? 1 : osz
        this.decodeModrm()
        if (this.regField !== 0) {
          if (this.regField === 7 && this.mod === 3 && this.rm === 0) {
            throw this.unimplemented("XABORT/XBEGIN (TSX) is not modelled", false)
          }
          throw this.undefinedOpcode()
        }
        return this.writeRm(size, this.fetchImm(size))
      }
      case 0xc8:
        return this.enter()
      case 0xc9:
        return this.leave()
      case 0xca:
        return this.returnFar(this.fetch16())
      case 0xcb:
        return this.returnFar(0)
      case 0xcc:
        return this.softwareInterrupt(Vector.BP)
      case 0xcd:
        return this.softwareInterrupt(this.fetch8())
      case 0xce:
        if ((this.flags & OF) !== 0) this.softwareInterrupt(Vector.OF)
        return
      case 0xcf:
        return this.interruptReturn()
      case 0xd0:
        return this.shiftRm(1, 1)
      case 0xd1:
        return this.shiftRm(osz, 1)
      case 0xd2:
        return this.shiftRm(1, this.regs[Reg.ECX] & 0xff)
      case 0xd3:
        return this.shiftRm(osz, this.regs[Reg.ECX] & 0xff)
      case 0xd4:
        return this.asciiAdjustMultiply(this.fetch8())
      case 0xd5:
        return this.asciiAdjustDivide(this.fetch8())
      case 0xd6:
        // SALC (undocumented, present on Intel processors outside 64-bit mode): AL = CF ? FFh : 0.
        return this.setReg(1, Reg.EAX, (this.flags & CF) !== 0 ? 0xff : 0)
      case 0xd7: {
        const base = this.addrSize === 4 ? this.regs[Reg.EBX] : this.regs[Reg.EBX] & 0xffff
        const v = this.readMem(this.dataSeg, this.offsetAdd(base, this.regs[Reg.EAX] & 0xff), 1)
        return this.setReg(1, Reg.EAX, v)
      }
      case 0xd8:
      case 0xd9:
      case 0xda:
      case 0xdb:
      case 0xdc:
      case 0xdd:
      case 0xde:
      case 0xdf:
        // CR0.EM or CR0.TS make every x87 instruction #NM before anything else (SDM Vol. 3A, 2.5).
        if ((this.cr0 & (CR0_EM | CR0_TS)) !== 0) throw this.fault(Vector.NM, 0)
        throw this.unimplemented("x87 floating-point instruction is not modelled", true)
      case 0xe0:
      case 0xe1:
      case 0xe2:
        return this.loop(op)
      case 0xe3: {
        const disp = signExtend(this.fetch8(), 1)
        const count = this.addrSize === 4 ? this.regs[Reg.ECX] : this.regs[Reg.ECX] & 0xffff
        return this.jumpIf(count === 0, disp)
      }
      case 0xe4:
        return this.portInAccumulator(1, this.fetch8(), true)
      case 0xe5:
        return this.portInAccumulator(osz, this.fetch8(), true)
      case 0xe6:
        return this.portOutAccumulator(1, this.fetch8(), true)
      case 0xe7:
        return this.portOutAccumulator(osz, this.fetch8(), true)
      case 0xe8: {
        const disp = this.fetchImm(osz)
        return this.callNear(this.pc + disp)
      }
      case 0xe9: {
        const disp = this.fetchImm(osz)
        this.pc = this.nearTarget(this.pc + disp)
        return
      }
      case 0xea: {
        const offset = this.fetchImm(osz)
        return this.farJump(this.fetch16(), offset)
      }
      case 0xeb: {
        const disp = signExtend(this.fetch8(), 1)
        this.pc = this.nearTarget(this.pc + disp)
        return
      }
      case 0xec:
        return this.portInAccumulator(1, this.regs[Reg.EDX] & 0xffff, false)
      case 0xed:
        return this.portInAccumulator(osz, this.regs[Reg.EDX] & 0xffff, false)
      case 0xee:
        return this.portOutAccumulator(1, this.regs[Reg.EDX] & 0xffff, false)
      case 0xef:
        return this.portOutAccumulator(osz, this.regs[Reg.EDX] & 0xffff, false)
      case 0xf1:
        // INT1 (ICEBP): #DB as a trap, delivered like a hardware exception (no gate DPL check); DR6 is unchanged.
        this.noStepTrap = true
        return this.deliver(Vector.DB, false, 0, this.pc, false)
      case 0xf4:
        this.requireCpl0()
        this.exits.hlt()
        return
      case 0xf5:
        this.flags ^= CF
        return
      case 0xf6:
        return this.group3(1)
      case 0xf7:
        return this.group3(osz)
      case 0xf8:
        this.flags &= ~CF
        return
      case 0xf9:
        this.flags |= CF
        return
      case 0xfa:
        this.requireIopl()
        this.flags &= ~IF
        return
      case 0xfb:
        this.requireIopl()
        // Only an STI that sets IF opens an interrupt shadow.
        if ((this.flags & IF) === 0) this.shadowSet = SHADOW_STI
        this.flags |= IF
        return
      case 0xfc:
        this.flags &= ~DF
        return
      case 0xfd:
        this.flags |= DF
        return
      case 0xfe: {
        this.decodeModrm()
        if (this.regField > 1) throw this.undefinedOpcode()
        return this.incDecRm(1, this.regField === 1)
      }
      case 0xff:
        return this.group5()
      default:
        throw this.undefinedOpcode()
    }
  }

  private executeTwoByte(op: number): void {
    const osz = this.opSize
    switch (op) {
      case 0x00:
        return this.group6()
      case 0x01:
        return this.group7()
      case 0x02:
      case 0x03:
        return this.loadAccessOrLimit(op === 0x03)
      case 0x06:
        this.requireCpl0()
        this.cr0 = (this.cr0 & ~CR0_TS) >>> 0
        return
      case 0x08:
      case 0x09:
        // INVD/WBINVD: there are no caches to write back.
        this.requireCpl0()
        return
      case 0x0d:
      case 0x18:
      case 0x19:
      case 0x1a:
      case 0x1b:
      case 0x1c:
      case 0x1d:
      case 0x1e:
      case 0x1f:
        // Prefetch hints and the reserved-NOP space (multi-byte NOP, ENDBR32): decode, do nothing.
        this.decodeModrm()
        return
      case 0x20:
      case 0x22:
        return this.moveControlRegister(op === 0x22)
      case 0x21:
      case 0x23:
        return this.moveDebugRegister(op === 0x23)
      case 0x30:
        this.requireCpl0()
        if (!this.exits.wrmsr(this.regs[Reg.ECX], this.regs[Reg.EAX], this.regs[Reg.EDX])) throw this.fault(Vector.GP, 0)
        return
      case 0x31:
        if ((this.cr4 & CR4_TSD) !== 0) this.requireCpl0()
        this.exits.rdtsc()
        return
      case 0x32:
        this.requireCpl0()
        if (!this.exits.rdmsr(this.regs[Reg.ECX])) throw this.fault(Vector.GP, 0)
        return
      case 0x34:
        return this.systemEnter()
      case 0x35:
        return this.systemExit()
      case 0x33:
      case 0x37:
      case 0x77:
        throw this.unimplemented("RDPMC/GETSEC/EMMS is not modelled", false)
      case 0x38:
        this.fetch8()
        throw this.unimplemented("three-byte 0F 38 instruction is not modelled", true)
      case 0x3a:
        this.fetch8()
        this.decodeModrm()
        this.fetch8()
        throw this.unimplemented("three-byte 0F 3A instruction is not modelled", false)
      case 0x40:
      case 0x41:
      case 0x42:
      case 0x43:
      case 0x44:
      case 0x45:
      case 0x46:
      case 0x47:
      case 0x48:
      case 0x49:
      case 0x4a:
      case 0x4b:
      case 0x4c:
      case 0x4d:
      case 0x4e:
      case 0x4f: {
        this.decodeModrm()
        // The source is read whether or not the condition holds, as on hardware.
        const v = this.readRm(osz)
        if (this.condition(op & 15)) this.setReg(osz, this.regField, v)
        return
      }
      case 0x80:
      case 0x81:
      case 0x82:
      case 0x83:
      case 0x84:
      case 0x85:
      case 0x86:
      case 0x87:
      case 0x88:
      case 0x89:
      case 0x8a:
      case 0x8b:
      case 0x8c:
      case 0x8d:
      case 0x8e:
      case 0x8f: {
        const disp = signExtend(this.fetchImm(osz), osz)
        return this.jumpIf(this.condition(op & 15), disp)
      }
      case 0x90:
      case 0x91:
      case 0x92:
      case 0x93:
      case 0x94:
      case 0x95:
      case 0x96:
      case 0x97:
      case 0x98:
      case 0x99:
      case 0x9a:
      case 0x9b:
      case 0x9c:
      case 0x9d:
      case 0x9e:
      case 0x9f:
        this.decodeModrm()
        return this.writeRm(1, this.condition(op & 15) ? 1 : 0)
      case 0xa0:
        return this.pushSegment(Seg.FS)
      case 0xa1:
        return this.popSegment(Seg.FS)
      case 0xa2:
        this.exits.cpuid()
        return
      case 0xa3:
        return this.bitTest(0, false)
      case 0xa4:
      case 0xa5:
      case 0xac:
      case 0xad:
        return this.doubleShift(op < 0xa8, (op & 1) === 0)
      case 0xa8:
        return this.pushSegment(Seg.GS)
      case 0xa9:
        return this.popSegment(Seg.GS)
      case 0xab:
        return this.bitTest(1, false)
      case 0xae:
        this.decodeModrm()
        // LFENCE/MFENCE/SFENCE order nothing in a single in-order CPU.
        if (this.mod === 3 && this.regField >= 5) return
        throw this.unimplemented("FXSAVE/FXRSTOR/LDMXCSR/STMXCSR/XSAVE/CLFLUSH is not modelled", false)
      case 0xaf: {
        this.decodeModrm()
        return this.multiplyInto(this.regField, this.getReg(osz, this.regField), this.readRm(osz))
      }
      case 0xb0:
      case 0xb1:
        return this.compareExchange(op === 0xb0 ? 1 : osz)
      case 0xb2:
        return this.loadFarPointer(Seg.SS)
      case 0xb3:
        return this.bitTest(2, false)
      case 0xb4:
        return this.loadFarPointer(Seg.FS)
      case 0xb5:
        return this.loadFarPointer(Seg.GS)
      case 0xb6:
      case 0xb7: {
        this.decodeModrm()
        return this.setReg(osz, this.regField, this.readRm(op === 0xb6 ? 1 : 2))
      }
      case 0xb8:
        if (this.repPrefix === 0xf3) throw this.unimplemented("POPCNT is not modelled", true)
        throw this.undefinedOpcode()
      case 0xba: {
        this.decodeModrm()
        if (this.regField < 4) throw this.undefinedOpcode()
        return this.bitTest(this.regField - 4, true)
      }
      case 0xbb:
        return this.bitTest(3, false)
      case 0xbc:
      case 0xbd:
        // F3 0F BC/BD is TZCNT/LZCNT only with BMI1/LZCNT, which this CPU does not have: they run as BSF/BSR.
        return this.bitScan(op === 0xbd)
      case 0xbe:
      case 0xbf: {
        this.decodeModrm()
        const size = op === 0xbe ? 1 : 2
        return this.setReg(osz, this.regField, fit(signExtend(this.readRm(size), size), osz))
      }
      case 0xc0:
      case 0xc1:
        return this.exchangeAdd(op === 0xc0 ? 1 : osz)
      case 0xc7:
        this.decodeModrm()
        if (this.regField === 1 && this.mod !== 3) return this.compareExchange8Bytes()
        if (this.mod === 3 && this.regField >= 6) throw this.unimplemented("RDRAND/RDSEED/RDPID is not modelled", false)
        throw this.undefinedOpcode()
      case 0xc8:
      case 0xc9:
      case 0xca:
      case 0xcb:
      case 0xcc:
      case 0xcd:
      case 0xce:
      case 0xcf: {
        const r = op & 7
        if (osz === 2) {
          // BSWAP of a 16-bit register is undefined; Intel processors clear the low word.
          this.setReg(2, r, 0)
          return
        }
        const v = this.regs[r]
        this.regs[r] = (v >>> 24) | ((v >>> 8) & 0xff00) | ((v & 0xff00) << 8) | (v << 24)
        return
      }
      case 0x04:
      case 0x05:
      case 0x07:
      case 0x0a:
      case 0x0b:
      case 0x0c:
      case 0x0e:
      case 0x0f:
      case 0x24:
      case 0x25:
      case 0x26:
      case 0x27:
      case 0x36:
      case 0x39:
      case 0x3b:
      case 0x3c:
      case 0x3d:
      case 0x3e:
      case 0x3f:
      case 0x7a:
      case 0x7b:
      case 0xa6:
      case 0xa7:
      case 0xaa:
      case 0xb9:
      case 0xff:
        // UD2, UD1, UD0, RSM outside SMM, SYSCALL/SYSRET outside 64-bit mode, and unassigned opcodes.
        throw this.undefinedOpcode()
      default:
        // The rest of the map is MMX/SSE/AVX; all take a ModRM byte.
        throw this.unimplemented("MMX/SSE instruction is not modelled", true)
    }
  }

  // ---------------------------------------------------------------- instruction bodies

  private aluModrm(op: number, size: number, toReg: boolean): void {
    this.decodeModrm()
    let a: number
    let b: number
    if (toReg) {
      a = this.getReg(size, this.regField)
      b = this.readRm(size)
    } else {
      a = this.readRm(size)
      b = this.getReg(size, this.regField)
    }
    const r = aluResult(op, a, b, size, this.flags)
    if (op !== AluOp.Cmp) {
      if (toReg) this.setReg(size, this.regField, r)
      else this.writeRm(size, r)
    }
    this.flags = aluFlags(op, a, b, r, size, this.flags)
  }

  private aluAccumulator(op: number, size: number): void {
    const a = this.getReg(size, Reg.EAX)
    const b = this.fetchImm(size)
    const r = aluResult(op, a, b, size, this.flags)
    if (op !== AluOp.Cmp) this.setReg(size, Reg.EAX, r)
    this.flags = aluFlags(op, a, b, r, size, this.flags)
  }

  private aluImmediate(size: number, immSize: number): void {
    this.decodeModrm()
    const b = immSize === 1 ? this.fetchImm8As(size) : this.fetchImm(size)
    const op = this.regField
    const a = this.readRm(size)
    const r = aluResult(op, a, b, size, this.flags)
    if (op !== AluOp.Cmp) this.writeRm(size, r)
    this.flags = aluFlags(op, a, b, r, size, this.flags)
  }

  private incDecRm(size: number, decrement: boolean): void {
    const a = this.readRm(size)
    const r = fit(decrement ? a - 1 : a + 1, size)
    this.writeRm(size, r)
    this.flags = decrement ? decFlags(a, r, size, this.flags) : incFlags(a, r, size, this.flags)
  }

  /** Group 2. `count` is the CL or constant count, or -1 for an imm8 following the ModRM operand. */
  private shiftRm(size: number, count: number): void {
    this.decodeModrm()
    const n = (count < 0 ? this.fetch8() : count) & 31
    const a = this.readRm(size)
    if (n === 0) {
      // KVM's emulator writes a memory destination back even for a zero count: on MMIO
      // userspace sees that write (test/conformance); on RAM it changes nothing.
      if (this.mod !== 3) this.writeRm(size, a)
      return
    }
    const op = this.regField
    this.writeRm(size, shiftResult(op, a, n, size, this.flags))
    this.flags = shiftFlags(op, a, n, size, this.flags)
  }

  /** SHLD/SHRD with an imm8 or CL count. */
  private doubleShift(left: boolean, immediateCount: boolean): void {
    const size = this.opSize
    this.decodeModrm()
    const count = (immediateCount ? this.fetch8() : this.regs[Reg.ECX]) & 31
    const dest = this.readRm(size)
    if (count === 0) {
      // As in shiftRm: KVM's emulator writes the memory destination back unchanged.
      if (this.mod !== 3) this.writeRm(size, dest)
      return
    }
    const src = this.getReg(size, this.regField)
    this.writeRm(size, doubleShiftResult(left, dest, src, count, size))
    this.flags = doubleShiftFlags(left, dest, src, count, size, this.flags)
  }

  private group3(size: number): void {
    this.decodeModrm()
    switch (this.regField) {
      case 0:
      case 1: {
        const imm = this.fetchImm(size)
        this.flags = logicFlags(fit(this.readRm(size) & imm, size), size, this.flags)
        return
      }
      case 2:
        return this.writeRm(size, fit(~this.readRm(size), size))
      case 3: {
        const a = this.readRm(size)
        const r = fit(-a, size)
        this.writeRm(size, r)
        this.flags = subFlags(0, a, r, size, 0, this.flags)
        return
      }
      case 4:
        return this.multiplyAccumulator(size, this.readRm(size), false)
      case 5:
        return this.multiplyAccumulator(size, this.readRm(size), true)
      case 6:
        return this.divideAccumulator(size, this.readRm(size))
      default:
        return this.divideAccumulatorSigned(size, this.readRm(size))
    }
  }

  /**
   * MUL/IMUL with the accumulator. CF = OF = the high half is significant.
   * SF, ZF, AF and PF are undefined; they are left unchanged.
   */
  private multiplyAccumulator(size: number, v: number, signed: boolean): void {
    const a = this.getReg(size, Reg.EAX)
    let overflow: boolean
    if (size === 1) {
      const p = signed ? signExtend(a, 1) * signExtend(v, 1) : a * v
      this.setReg(2, Reg.EAX, p)
      overflow = signed ? p !== signExtend(p & 0xff, 1) : p > 0xff
    } else if (size === 2) {
      const p = signed ? signExtend(a, 2) * signExtend(v, 2) : a * v
      this.setReg(2, Reg.EAX, p)
      this.setReg(2, Reg.EDX, p >>> 16)
      overflow = signed ? p !== signExtend(p & 0xffff, 2) : p > 0xffff
    } else {
      const lo = Math.imul(a, v) >>> 0
      const hi = signed ? mulHighSigned(a, v) : mulHighUnsigned(a, v)
      this.regs[Reg.EAX] = lo
      this.regs[Reg.EDX] = hi
      overflow = signed ? hi !== (lo >>> 31 === 1 ? 0xffffffff : 0) : hi !== 0
    }
    this.flags = overflow ? this.flags | CF | OF : this.flags & ~(CF | OF)
  }

  /** IMUL r, r/m (, imm): truncated product; CF = OF = truncation changed the value. Other flags unchanged (undefined). */
  private multiplyInto(reg: number, a: number, b: number): void {
    const size = this.opSize
    let r: number
    let overflow: boolean
    if (size === 2) {
      const p = signExtend(a, 2) * signExtend(b, 2)
      r = p & 0xffff
      overflow = p !== signExtend(r, 2)
    } else {
      r = Math.imul(a, b) >>> 0
      overflow = mulHighSigned(a, b) !== (r >>> 31 === 1 ? 0xffffffff : 0)
    }
    this.setReg(size, reg, r)
    this.flags = overflow ? this.flags | CF | OF : this.flags & ~(CF | OF)
  }

  /**
   * DIV: #DE on a zero divisor or a quotient too large. All flags are undefined; the
   * host CPU (AMD, seen through /dev/kvm in test/conformance) keeps CF and OF, sets AF
   * and clears SF, ZF and PF, for DIV and IDIV alike. A faulting division changes none.
   */
  private divideAccumulator(size: number, d: number): void {
    if (d === 0) throw this.fault(Vector.DE, 0)
    if (size === 1) {
      const n = this.regs[Reg.EAX] & 0xffff
      const q = Math.floor(n / d)
      if (q > 0xff) throw this.fault(Vector.DE, 0)
      this.setReg(2, Reg.EAX, q | ((n % d) << 8))
    } else if (size === 2) {
      const n = ((this.regs[Reg.EDX] & 0xffff) * 0x10000 + (this.regs[Reg.EAX] & 0xffff))
      const q = Math.floor(n / d)
      if (q > 0xffff) throw this.fault(Vector.DE, 0)
      this.setReg(2, Reg.EAX, q)
      this.setReg(2, Reg.EDX, n % d)
    } else {
      const hi = this.regs[Reg.EDX]
      if (hi >= d) throw this.fault(Vector.DE, 0)
      divide64(hi, this.regs[Reg.EAX], d, this.quotient)
      this.regs[Reg.EAX] = this.quotient[0]
      this.regs[Reg.EDX] = this.quotient[1]
    }
    this.flags = (this.flags & ~(SF | ZF | PF)) | AF
  }

  /** IDIV: the quotient truncates toward zero and the remainder takes the dividend's sign. */
  private divideAccumulatorSigned(size: number, divisor: number): void {
    if (divisor === 0) throw this.fault(Vector.DE, 0)
    if (size === 1) {
      const n = signExtend(this.regs[Reg.EAX] & 0xffff, 2)
      const d = signExtend(divisor, 1)
      const q = Math.trunc(n / d)
      if (q < -0x80 || q > 0x7f) throw this.fault(Vector.DE, 0)
      this.setReg(2, Reg.EAX, (q & 0xff) | ((n % d & 0xff) << 8))
    } else if (size === 2) {
      const n = ((this.regs[Reg.EDX] & 0xffff) << 16) | (this.regs[Reg.EAX] & 0xffff)
      const d = signExtend(divisor, 2)
      const q = Math.trunc(n / d)
      if (q < -0x8000 || q > 0x7fff) throw this.fault(Vector.DE, 0)
      this.setReg(2, Reg.EAX, q)
      this.setReg(2, Reg.EDX, n % d)
    } else {
      let hi = this.regs[Reg.EDX]
      let lo = this.regs[Reg.EAX]
      const negative = hi >>> 31 === 1
      if (negative) {
        lo = -lo >>> 0
        hi = (~hi + (lo === 0 ? 1 : 0)) >>> 0
      }
      const divisorNegative = divisor >>> 31 === 1
      const magnitude = divisorNegative ? -divisor >>> 0 : divisor
      if (hi >= magnitude) throw this.fault(Vector.DE, 0)
      divide64(hi, lo, magnitude, this.quotient)
      const q = this.quotient[0]
      const r = this.quotient[1]
      const quotientNegative = negative !== divisorNegative
      if (q > (quotientNegative ? 0x80000000 : 0x7fffffff)) throw this.fault(Vector.DE, 0)
      this.regs[Reg.EAX] = quotientNegative ? -q >>> 0 : q
      this.regs[Reg.EDX] = negative ? -r >>> 0 : r
    }
    this.flags = (this.flags & ~(SF | ZF | PF)) | AF
  }

  /**
   * DAA/DAS (SDM Vol. 2A pseudo-code). OF is undefined; the host CPU (AMD,
   * fixtures/bcd-hardware.json) sets it as the signed overflow of the adjustment:
   * AL's sign went from 0 to 1 (DAA) or from 1 to 0 (DAS).
   */
  private decimalAdjust(subtract: boolean): void {
    const al = this.regs[Reg.EAX] & 0xff
    const oldCf = this.flags & CF
    let r = al
    let cf = 0
    let af = 0
    if ((al & 0xf) > 9 || (this.flags & AF) !== 0) {
      r = subtract ? al - 6 : al + 6
      cf = oldCf !== 0 || r < 0 || r > 0xff ? CF : 0
      r &= 0xff
      af = AF
    }
    if (al > 0x99 || oldCf !== 0) {
      r = (subtract ? r - 0x60 : r + 0x60) & 0xff
      cf = CF
    } else if (!subtract) {
      cf = 0
    }
    this.setReg(1, Reg.EAX, r)
    const of = (subtract ? al & ~r : ~al & r) & 0x80 ? OF : 0
    this.flags = (this.flags & ~(CF | AF | ZF | SF | PF | OF)) | zsp(r, 1) | cf | af | of
  }

  /** AAA/AAS. OF, SF, ZF and PF are undefined and left unchanged. */
  private asciiAdjust(subtract: boolean): void {
    let ax = this.regs[Reg.EAX] & 0xffff
    const adjust = (ax & 0xf) > 9 || (this.flags & AF) !== 0
    if (adjust) {
      if (subtract) {
        ax = (ax - 6) & 0xffff
        ax = (ax - 0x100) & 0xffff
      } else {
        ax = (ax + 0x106) & 0xffff
      }
    }
    this.setReg(2, Reg.EAX, ax & 0xff0f)
    this.flags = adjust ? this.flags | AF | CF : this.flags & ~(AF | CF)
  }

  /** AAM: #DE for a zero base. OF, AF and CF are undefined; the host CPU (AMD, fixtures/bcd-hardware.json) clears them. */
  private asciiAdjustMultiply(base: number): void {
    if (base === 0) throw this.fault(Vector.DE, 0)
    const al = this.regs[Reg.EAX] & 0xff
    const r = al % base
    this.setReg(2, Reg.EAX, (Math.floor(al / base) << 8) | r)
    this.flags = (this.flags & ~(ZF | SF | PF | OF | AF | CF)) | zsp(r, 1)
  }

  /**
   * AAD. OF, AF and CF are undefined; the host CPU (AMD, fixtures/bcd-hardware.json)
   * gives those of the byte addition AL + (AH * base).
   */
  private asciiAdjustDivide(base: number): void {
    const ax = this.regs[Reg.EAX]
    const al = ax & 0xff
    const product = (((ax >>> 8) & 0xff) * base) & 0xff
    const r = (al + product) & 0xff
    this.setReg(2, Reg.EAX, r)
    this.flags = addFlags(al, product, r, 1, 0, this.flags)
  }

  private group5(): void {
    const osz = this.opSize
    this.decodeModrm()
    switch (this.regField) {
      case 0:
        return this.incDecRm(osz, false)
      case 1:
        return this.incDecRm(osz, true)
      case 2:
        return this.callNear(this.readRm(osz))
      case 3:
      case 5: {
        this.requireMemoryOperand()
        const offset = this.readMem(this.eaSeg, this.eaOff, osz)
        const selector = this.readMem(this.eaSeg, this.offsetAdd(this.eaOff, osz), 2)
        if (this.regField === 3) this.farCall(selector, offset)
        else this.farJump(selector, offset)
        return
      }
      case 4:
        this.pc = this.nearTarget(this.readRm(osz))
        return
      case 6:
        return this.pushValue(this.readRm(osz))
      default:
        throw this.undefinedOpcode()
    }
  }

  private pushValue(v: number): void {
    this.stackBegin()
    this.push(this.opSize, v)
    this.stackCommit()
  }

  private pushSegment(seg: number): void {
    this.stackBegin()
    this.pushSelector(this.opSize, this.segSelector[seg])
    this.stackCommit()
  }

  private popSegment(seg: number): void {
    this.stackBegin()
    const selector = this.pop(this.opSize) & 0xffff
    this.prepareSegment(seg, selector)
    this.stackCommit()
    this.commitSegment(seg, selector)
    if (seg === Seg.SS) this.movSs()
  }

  /** MOV SS / POP SS: interrupts and the single-step trap wait until after the next instruction (SDM Vol. 3A, 6.8.3). */
  private movSs(): void {
    this.shadowSet = SHADOW_MOV_SS
    this.noStepTrap = true
  }

  /** POP r/m: a memory operand based on ESP is addressed with ESP already incremented. */
  private popRm(): void {
    const osz = this.opSize
    this.espBias = osz
    try {
      this.decodeModrm()
    } finally {
      this.espBias = 0
    }
    if (this.regField !== 0) throw this.undefinedOpcode()
    this.stackBegin()
    const v = this.pop(osz)
    if (this.mod === 3) {
      this.stackCommit()
      this.setReg(osz, this.rm, v)
    } else {
      this.writeMem(this.eaSeg, this.eaOff, osz, v)
      this.stackCommit()
    }
  }

  private pushAll(): void {
    const osz = this.opSize
    const originalSp = this.getReg(osz, Reg.ESP)
    this.stackBegin()
    for (let r = Reg.EAX; r <= Reg.EDI; r++) this.push(osz, r === Reg.ESP ? originalSp : this.getReg(osz, r))
    this.stackCommit()
  }

  private popAll(): void {
    const osz = this.opSize
    this.stackBegin()
    const di = this.pop(osz)
    const si = this.pop(osz)
    const bp = this.pop(osz)
    this.stackRelease(osz)
    const bx = this.pop(osz)
    const dx = this.pop(osz)
    const cx = this.pop(osz)
    const ax = this.pop(osz)
    this.stackCommit()
    this.setReg(osz, Reg.EDI, di)
    this.setReg(osz, Reg.ESI, si)
    this.setReg(osz, Reg.EBP, bp)
    this.setReg(osz, Reg.EBX, bx)
    this.setReg(osz, Reg.EDX, dx)
    this.setReg(osz, Reg.ECX, cx)
    this.setReg(osz, Reg.EAX, ax)
  }

  private popFlags(): void {
    const osz = this.opSize
    this.stackBegin()
    const image = this.pop(osz)
    const cpl = this.cpl
    let changeable = STATUS_FLAGS | TF | DF | NT
    if (osz === 4) changeable |= AC | ID | RF
    if (cpl === 0) changeable |= IOPL
    if (cpl <= this.iopl) changeable |= IF
    this.stackCommit()
    // POPF always clears RF.
    this.flags = ((this.flags & ~changeable) | (image & changeable) | EFLAGS_FIXED) & ~RF
  }

  private enter(): void {
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

  private leave(): void {
    const osz = this.opSize
    this.sp = this.regs[Reg.EBP]
    const bp = this.pop(osz)
    this.stackCommit()
    this.setReg(osz, Reg.EBP, bp)
  }

  private loadFarPointer(seg: number): void {
    const osz = this.opSize
    this.decodeModrm()
    if (this.mod === 3) {
      // In protected mode C4/C5 with a register operand are VEX prefixes.
      if (this.protectedMode && (seg === Seg.ES || seg === Seg.DS)) {
        throw this.unimplemented("VEX-encoded (AVX) instruction is not modelled", false)
      }
      throw this.undefinedOpcode()
    }
    const offset = this.readMem(this.eaSeg, this.eaOff, osz)
    const selector = this.readMem(this.eaSeg, this.offsetAdd(this.eaOff, osz), 2)
    this.prepareSegment(seg, selector)
    this.setReg(osz, this.regField, offset)
    this.commitSegment(seg, selector)
  }

  private loop(op: number): void {
    const disp = signExtend(this.fetch8(), 1)
    const count = fit(this.regs[Reg.ECX] - 1, this.addrSize)
    let taken = count !== 0
    if (op === 0xe0) taken &&= (this.flags & ZF) === 0
    else if (op === 0xe1) taken &&= (this.flags & ZF) !== 0
    const target = taken ? this.nearTarget(this.pc + disp) : this.pc
    this.setReg(this.addrSize, Reg.ECX, count)
    this.pc = target
  }

  private bitTest(kind: number, immediate: boolean): void {
    const osz = this.opSize
    const bits = osz * 8
    let bit: number
    if (immediate) {
      bit = this.fetch8() & (bits - 1)
    } else {
      this.decodeModrm()
      const offset = this.getReg(osz, this.regField)
      bit = offset & (bits - 1)
      // A register bit offset reaches outside the memory operand: signed, in operand-sized steps.
      if (this.mod !== 3) {
        this.eaOff = this.offsetAdd(this.eaOff, Math.floor(signExtend(offset, osz) / bits) * osz)
      }
    }
    const v = this.readRm(osz)
    const cf = (v >>> bit) & 1
    if (kind !== 0) {
      const mask = 1 << bit
      this.writeRm(osz, fit(kind === 1 ? v | mask : kind === 2 ? v & ~mask : v ^ mask, osz))
    }
    // CF is the bit; OF, SF, AF and PF are undefined and left unchanged; ZF is unaffected.
    this.flags = (this.flags & ~CF) | cf
  }

  /** BSF/BSR. A zero source sets ZF and leaves the destination unchanged (as Intel and AMD hardware do). */
  private bitScan(reverse: boolean): void {
    const osz = this.opSize
    this.decodeModrm()
    const v = this.readRm(osz)
    if (v === 0) {
      this.flags |= ZF
      return
    }
    this.setReg(osz, this.regField, reverse ? 31 - Math.clz32(v) : 31 - Math.clz32(v & -v))
    this.flags &= ~ZF
  }

  private exchangeAdd(size: number): void {
    this.decodeModrm()
    const dest = this.readRm(size)
    const src = this.getReg(size, this.regField)
    const sum = fit(dest + src, size)
    if (this.mod === 3) {
      this.setReg(size, this.regField, dest)
      this.setReg(size, this.rm, sum)
    } else {
      this.writeRm(size, sum)
      this.setReg(size, this.regField, dest)
    }
    this.flags = addFlags(dest, src, sum, size, 0, this.flags)
  }

  /** CMPXCHG8B m64: only ZF changes; the destination is written either way, as on hardware. */
  private compareExchange8Bytes(): void {
    // An 8-byte operand must be 8-aligned for #AC.
    if (((this.segBase[this.eaSeg] + this.eaOff) & 7) !== 0) this.checkAlignment()
    const high = this.offsetAdd(this.eaOff, 4)
    const lo = this.readMem(this.eaSeg, this.eaOff, 4)
    const hi = this.readMem(this.eaSeg, high, 4)
    const equal = lo === this.regs[Reg.EAX] && hi === this.regs[Reg.EDX]
    this.writeMem(this.eaSeg, this.eaOff, 4, equal ? this.regs[Reg.EBX] : lo)
    this.writeMem(this.eaSeg, high, 4, equal ? this.regs[Reg.ECX] : hi)
    if (equal) {
      this.flags |= ZF
    } else {
      this.regs[Reg.EAX] = lo
      this.regs[Reg.EDX] = hi
      this.flags &= ~ZF
    }
  }

  /** BOUND: #BR (a fault) when the signed index lies outside [lower, upper]. */
  private checkBounds(): void {
    const osz = this.opSize
    this.decodeModrm()
    if (this.mod === 3) {
      // Outside real mode 62 with a register operand is the EVEX prefix.
      if (this.protectedMode) throw this.unimplemented("EVEX-encoded (AVX-512) instruction is not modelled", false)
      throw this.undefinedOpcode()
    }
    const lower = signExtend(this.readMem(this.eaSeg, this.eaOff, osz), osz)
    const upper = signExtend(this.readMem(this.eaSeg, this.offsetAdd(this.eaOff, osz), osz), osz)
    const index = signExtend(this.getReg(osz, this.regField), osz)
    if (index < lower || index > upper) throw this.fault(Vector.BR, 0)
  }

  /** CMPXCHG: the destination is written either way (the old value when the comparison fails), as on hardware. */
  private compareExchange(size: number): void {
    this.decodeModrm()
    const dest = this.readRm(size)
    const acc = this.getReg(size, Reg.EAX)
    const diff = fit(acc - dest, size)
    const equal = diff === 0
    if (equal) {
      this.writeRm(size, this.getReg(size, this.regField))
    } else {
      if (this.mod !== 3) this.writeRm(size, dest)
      this.setReg(size, Reg.EAX, dest)
    }
    this.flags = subFlags(acc, dest, diff, size, 0, this.flags)
  }

  private moveControlRegister(toCr: boolean): void {
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

  /** MOV CR encodings treat the ModRM byte as register-register whatever its mod. */
  private decodeModrmRegisterOnly(): void {
    const b = this.fetch8()
    this.mod = 3
    this.regField = (b >>> 3) & 7
    this.rm = b & 7
  }

  private group7(): void {
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

  // ---------------------------------------------------------------- system segments and descriptor queries

  /** 0F 00: SLDT, STR, LLDT, LTR, VERR, VERW (not recognised in real mode). */
  private group6(): void {
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
  private loadLdtr(selector: number): void {
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
  private loadTr(selector: number): void {
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
  private queryDescriptor(selector: number): boolean {
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
  private loadAccessOrLimit(limit: boolean): void {
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
  private verify(selector: number, write: boolean): void {
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
  private adjustRpl(): void {
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

  // ---------------------------------------------------------------- I/O

  /** Exit qualification for I/O instructions (SDM Vol. 3C, Table 28-5). */
  private ioQualification(size: number, isIn: boolean, isString: boolean, immediate: boolean, port: number): number {
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

  private portInAccumulator(size: number, port: number, immediate: boolean): void {
    this.checkIoPermission(port, size)
    const v = this.exits.portIn(port, size as IoSize, this.ioQualification(size, true, false, immediate, port))
    this.setReg(size, Reg.EAX, v)
  }

  private portOutAccumulator(size: number, port: number, immediate: boolean): void {
    this.checkIoPermission(port, size)
    const v = this.getReg(size, Reg.EAX)
    this.exits.portOut(port, size as IoSize, v, this.ioQualification(size, false, false, immediate, port))
  }

  // ---------------------------------------------------------------- string instructions

  private countRegister(): number {
    return this.addrSize === 4 ? this.regs[Reg.ECX] : this.regs[Reg.ECX] & 0xffff
  }

  private indexRegister(r: number): number {
    return this.addrSize === 4 ? this.regs[r] : this.regs[r] & 0xffff
  }

  private advanceIndex(r: number, size: number): void {
    const delta = (this.flags & DF) !== 0 ? -size : size
    this.setReg(this.addrSize, r, fit(this.regs[r] + delta, this.addrSize))
  }

  /**
   * After one iteration of a rep-prefixed string instruction: count down, and
   * keep EIP on the instruction while iterations remain. `zfCondition` applies
   * the REPE/REPNE test of CMPS/SCAS.
   */
  private repeatAfterIteration(zfCondition: boolean): void {
    const count = fit(this.regs[Reg.ECX] - 1, this.addrSize)
    this.setReg(this.addrSize, Reg.ECX, count)
    if (count === 0) return
    if (zfCondition && ((this.flags & ZF) !== 0) !== (this.repPrefix === 0xf3)) return
    this.pc = this.instructionStart
  }

  private stringOp(kind: StringOp, size: number): void {
    const rep = this.repPrefix !== 0
    if (rep && this.countRegister() === 0) return
    switch (kind) {
      case StringOp.Movs: {
        const v = this.readMem(this.dataSeg, this.indexRegister(Reg.ESI), size)
        this.writeMem(Seg.ES, this.indexRegister(Reg.EDI), size, v)
        this.advanceIndex(Reg.ESI, size)
        this.advanceIndex(Reg.EDI, size)
        break
      }
      case StringOp.Cmps: {
        const a = this.readMem(this.dataSeg, this.indexRegister(Reg.ESI), size)
        const b = this.readMem(Seg.ES, this.indexRegister(Reg.EDI), size)
        this.advanceIndex(Reg.ESI, size)
        this.advanceIndex(Reg.EDI, size)
        this.flags = subFlags(a, b, fit(a - b, size), size, 0, this.flags)
        break
      }
      case StringOp.Stos:
        this.writeMem(Seg.ES, this.indexRegister(Reg.EDI), size, this.getReg(size, Reg.EAX))
        this.advanceIndex(Reg.EDI, size)
        break
      case StringOp.Lods: {
        const v = this.readMem(this.dataSeg, this.indexRegister(Reg.ESI), size)
        this.setReg(size, Reg.EAX, v)
        this.advanceIndex(Reg.ESI, size)
        break
      }
      default: {
        const a = this.getReg(size, Reg.EAX)
        const b = this.readMem(Seg.ES, this.indexRegister(Reg.EDI), size)
        this.advanceIndex(Reg.EDI, size)
        this.flags = subFlags(a, b, fit(a - b, size), size, 0, this.flags)
        break
      }
    }
    if (rep) this.repeatAfterIteration(kind === StringOp.Cmps || kind === StringOp.Scas)
  }

  private inString(size: number): void {
    const port = this.regs[Reg.EDX] & 0xffff
    this.checkIoPermission(port, size)
    const rep = this.repPrefix !== 0
    if (rep && this.countRegister() === 0) return
    const di = this.indexRegister(Reg.EDI)
    // Protection checks come before the port is read.
    this.probeWrite(this.checkedLinear(Seg.ES, di, size, true), size)
    const v = this.exits.portIn(port, size as IoSize, this.ioQualification(size, true, true, false, port))
    this.writeMem(Seg.ES, di, size, v)
    this.advanceIndex(Reg.EDI, size)
    if (rep) this.repeatAfterIteration(false)
  }

  private outString(size: number): void {
    const port = this.regs[Reg.EDX] & 0xffff
    this.checkIoPermission(port, size)
    const rep = this.repPrefix !== 0
    if (rep && this.countRegister() === 0) return
    const v = this.readMem(this.dataSeg, this.indexRegister(Reg.ESI), size)
    this.exits.portOut(port, size as IoSize, v, this.ioQualification(size, false, true, false, port))
    this.advanceIndex(Reg.ESI, size)
    if (rep) this.repeatAfterIteration(false)
  }
}

