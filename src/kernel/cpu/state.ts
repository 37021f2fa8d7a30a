import { AC, DF, EFLAGS_FIXED, EFLAGS_WRITABLE, IOPL, OF, PF } from "./alu.ts"
import { type ExitingInstructions, type PhysicalMemory } from "./bus.ts"
import { attrDpl } from "./descriptors.ts"

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

/** A host debugger's data watchpoint on linear addresses. */
export interface DebuggerWatchpoint {
  readonly linear: number
  readonly length: number
  readonly access: "write" | "read" | "read-write"
}

/** Thrown inside the interpreter for a guest exception; details in the Cpu's fault fields. */
export class GuestFault {
  readonly _tag = "GuestFault"
}

export const GUEST_FAULT = new GuestFault()

/** Thrown inside the interpreter after recording an internal error. */
export class InternalStop {
  readonly _tag = "InternalStop"
}

export const INTERNAL_STOP = new InternalStop()
export const CR0_PE = 1 << 0
export const CR0_NE = 1 << 5

/** Filled TLB slots remembered for a cheap flush; past this many, a flush clears the whole array. */
export const TLB_LIST_CAPACITY = 4096
const NO_TLB = new Int32Array(0)

/**
 * Architectural state (registers, segment caches, control and debug registers), the
 * instruction in progress and the mode queries: the base every other layer extends.
 */
export abstract class CpuState {
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
  /**
   * Steps retired since the run loop last counted, by a translation block before the
   * instruction in progress or by a rep string instruction's earlier iterations.
   */
  blockProgress = 0
  /** Steps the run loop allows after the one in progress. */
  protected stepBudget = 0
  instructionStart = 0
  internalError: CpuInternalError | undefined = undefined
  protected flags = EFLAGS_FIXED
  protected pc = 0
  protected opSize = 2
  protected addrSize = 2
  protected segOverride = -1
  protected repPrefix = 0
  protected mod = 0
  protected regField = 0
  protected rm = 0
  protected eaSeg = 0
  protected eaOff = 0
  /** Added to ESP when it is a base register: POP r/m addresses its operand with ESP already incremented. */
  protected espBias = 0
  /** Stack pointer of the instruction in progress; stackCommit() makes it ESP. */
  protected sp = 0
  protected stopRequested = false
  /**
   * The IN or OUT in progress leaves the CPU for userspace: the run loop abandons it, as
   * a thrown LEAVE_CPU would (translation blocks hold no IN or OUT, so only the loop looks).
   */
  protected leaving = false
  protected faultVector = 0
  protected faultCode = 0
  /** The descriptor being loaded: read and checked, not yet in a segment cache. */
  protected descLo = 0
  protected descHi = 0
  protected descAddress = 0
  protected loadBase = 0
  protected loadLimit = 0
  protected loadAttr = 0
  protected readonly quotient = new Uint32Array(2)
  /** Linear page → frame | TLB_* rights; allocated on the first walk. */
  protected tlb: Int32Array = NO_TLB
  protected readonly tlbList = new Int32Array(TLB_LIST_CAPACITY)
  protected tlbCount = 0
  protected tlbHasLarge = false
  /** The inner stack read from the TSS by prepareInnerStack. */
  protected tssSs = 0
  protected tssEsp = 0
  /** SS as it was before a stack switch began, to undo it if a push faults. */
  protected savedSsSelector = 0
  protected savedSsBase = 0
  protected savedSsLimit = 0
  protected savedSsAttr = 0
  /** Call-gate parameters in transit from the old stack to the new one (at most 31). */
  protected readonly params = new Uint32Array(32)
  /** The shadow the instruction in progress opens (SHADOW_*), made current when it retires. */
  protected shadowSet = 0
  /** The instruction in progress must not be followed by a single-step trap (it delivered an interrupt, or loaded SS). */
  protected noStepTrap = false
  /** Some DR7 enable bit is set: instruction and data breakpoints are checked. */
  protected breakpointsArmed = false
  /** DR6.B0-B3 of data breakpoints the instruction in progress hit. */
  protected dataBreakHit = 0
  /** A host debugger's watchpoints (see DebugFeatures.setDebuggerWatchpoints), and one bit per watchpoint accessed since it last looked. */
  protected debuggerWatchpoints: ReadonlyArray<DebuggerWatchpoint> = []
  debuggerHits = 0
  /** The instruction checked its operand's alignment as a whole; its partial accesses do not. */
  protected alignmentChecked = false
  /** The #DB being delivered is an instruction-breakpoint fault (pushes RF set). */
  protected dbFault = false

  constructor(
    protected readonly mem: PhysicalMemory,
    protected readonly exits: ExitingInstructions
  ) {}

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

  requestStop(): void {
    this.stopRequested = true
  }

  protected get protectedMode(): boolean {
    return (this.cr0 & CR0_PE) !== 0
  }

  /** CPL is SS.DPL, as in the VMCS guest state. */
  protected get cpl(): number {
    return this.protectedMode ? attrDpl(this.segAttr[Seg.SS]) : 0
  }

  protected get iopl(): number {
    return (this.flags & IOPL) >>> 12
  }

  protected requireCpl0(): void {
    if (this.protectedMode && this.cpl !== 0) throw this.fault(Vector.GP, 0)
  }

  /** CLI/STI sensitivity (no PVI/VME: #GP at CPL > IOPL). */
  protected requireIopl(): void {
    if (this.protectedMode && this.cpl > this.iopl) throw this.fault(Vector.GP, 0)
  }

  protected fault(vector: number, code: number): GuestFault {
    this.faultVector = vector
    this.faultCode = code
    return GUEST_FAULT
  }

  protected undefinedOpcode(): GuestFault {
    return this.fault(Vector.UD, 0)
  }
}
