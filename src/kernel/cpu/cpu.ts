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
 * current iteration only). `pc` is the execution cursor in the decoded
 * instruction; EIP moves only at commit.
 *
 * One CPU, one class per concern, each extending the one before (so every layer
 * sees the state and the services below it, and the hot path stays monomorphic):
 *
 *   state.ts            registers, segment caches, CRs, DRs, modes, faults as values
 *   paging.ts           linear → guest-physical: page walk, TLB, page-straddling accesses
 *   debug.ts            instruction and data breakpoints, single-step
 *   addressing.ts       segment checks and segmented data reads/writes
 *   fetch.ts            instruction fetch and the decoded-instruction cache
 *   operands.ts         registers by size, ModRM operands, effective addresses
 *   stack.ts            push/pop on SS:ESP with deferred commit
 *   segmentLoading.ts   descriptor reads and checks, segment-register loads
 *   privilege.ts        TSS stack switch, call gates, outer-ring returns
 *   exceptions.ts       delivery through the IVT/IDT, double and triple faults
 *   controlTransfer.ts  jumps, calls, returns, IRET, LOOP, ENTER/LEAVE, SYSENTER/SYSEXIT
 *   instructions.ts     ALU, shifts, multiply/divide, BCD, bit operations, push/pop forms
 *   system.ts           CR/DR moves, descriptor tables, LDTR/TR, LAR/LSL/VERR/VERW, ARPL
 *   io.ts               IN/OUT with the I/O permission checks
 *   strings.ts          string instructions and rep prefixes
 *   cpu.ts (here)       reset, the run loop, and dispatch of the decoded opcode
 *
 * and beside them `decoder.ts` (the decoder and the decoded form), `alu.ts` (flags
 * and arithmetic as pure functions), `descriptors.ts` (descriptor formats) and
 * `translationBlock.ts` (hot code compiled to JavaScript, which the run loop calls).
 */
import { addFlags, AF, aluFlags, AluOp, aluResult, CF, decFlags, DF, EFLAGS_FIXED, fit, IF, incFlags, logicFlags, OF, PF, RF, SF, signExtend, subFlags, TF, VM, ZF } from "./alu.ts"
import { type ExitingInstructions, LEAVE_CPU, type PhysicalMemory } from "./bus.ts"
import { Instruction } from "./decoder.ts"
import { ATTR_DB, REAL_MODE_CODE_ATTR, REAL_MODE_DATA_ATTR } from "./descriptors.ts"
import { CpuStop, GUEST_FAULT, INTERNAL_STOP, Reg, Seg, Vector } from "./state.ts"
import { StringInstructions, StringOp } from "./strings.ts"
import { CR0_EM, CR0_MP, CR0_TS } from "./system.ts"

export { CpuStop, type CpuInternalError, Reg, Seg, Vector } from "./state.ts"

const CR4_TSD = 1 << 2

/** Interrupt shadow kinds, as the VMCS interruptibility-state bits. */
const SHADOW_STI = 1

export class Cpu extends StringInstructions {
  constructor(mem: PhysicalMemory, exits: ExitingInstructions) {
    super(mem, exits)
    this.resetToRealMode()
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
          const d = this.fetchInstruction()
          const block = d.block
          if (
            block !== undefined &&
            block.length <= remaining + 1 &&
            this.mayRunAhead &&
            this.eip + block.byteLength - 1 <= this.segLimit[Seg.CS]
          ) {
            const before = this.retired
            const n = block.run(this, this.eip, remaining + 1)
            this.blockProgress = 0
            this.retired = before + n
            if (n !== 0) {
              remaining -= n - 1
              this.interruptShadow = 0
              if (this.stopRequested) {
                this.stopRequested = false
                return CpuStop.Stop
              }
              continue
            }
          }
          this.stepBudget = remaining
          this.step(d)
          if (this.leaving) {
            this.leaving = false
            this.eip = this.instructionStart
            return CpuStop.Left
          }
          this.retired++
          // A rep string instruction ran further iterations, each a step (see StringInstructions.stringOp).
          if (this.blockProgress !== 0) {
            remaining -= this.blockProgress
            this.blockProgress = 0
          }
          this.interruptShadow = this.shadowSet
          if ((startFlags & (TF | RF)) !== 0 || this.dataBreakHit !== 0) this.debugAfterInstruction(startFlags)
          if (this.stopRequested) {
            this.stopRequested = false
            return CpuStop.Stop
          }
        }
        return CpuStop.Budget
      } catch (e) {
        // Inside a translation block: the instructions it retired before this one count (retired is already up to date).
        const progress = this.blockProgress
        if (progress !== 0) {
          this.blockProgress = 0
          remaining -= progress
          this.interruptShadow = 0
        }
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

  /**
   * Retires the IN or OUT that left the CPU (CpuStop.Left) once userspace has completed
   * it, as stepping it again with the completion would: IN's value to the accumulator,
   * EIP past it. False when the interpreter must step it again instead: EIP moved since,
   * or a single-step trap, a breakpoint or a requested stop comes with the retirement.
   */
  retireLeftPortIo(value: number): boolean {
    const op = this.insn.opcode
    // E4-E7 and EC-EF: IN and OUT with an immediate port or DX (bit 1: OUT; bit 0: not AL).
    if ((op & 0x1f4) !== 0xe4 || this.eip !== this.instructionStart) return false
    if ((this.flags & (TF | RF)) !== 0 || this.breakpointsArmed || this.stopRequested) return false
    if ((op & 2) === 0) this.setReg((op & 1) === 0 ? 1 : this.opSize, Reg.EAX, value)
    this.eip = this.pc
    this.retired++
    this.interruptShadow = 0
    return true
  }

  /** Decodes the instruction at CS:EIP (or finds it decoded) and makes it the one in progress. */
  protected fetchInstruction(): Instruction {
    const start = this.eip
    this.instructionStart = start
    this.pc = start
    return this.decodeAt(start, (this.segAttr[Seg.CS] & ATTR_DB) !== 0)
  }

  /** Runs `d` through the interpreter from inside a translation block, which has set EIP and instructionStart. */
  stepInBlock(d: Instruction): void {
    this.pc = this.instructionStart
    this.step(d)
  }

  /** Executes `d`, the instruction fetchInstruction returned. */
  protected step(d: Instruction): void {
    const start = this.instructionStart
    this.insn = d
    this.opSize = d.opSize
    this.addrSize = d.addrSize
    this.segOverride = d.segment
    this.repPrefix = d.rep
    this.pc = start + d.opcodeEnd
    const op = d.bytes[d.opcodeEnd - 1]
    if (d.lock) this.checkLockable(op)
    else if (d.opSize === 4 && this.fastPath(op, d)) {
      this.eip = this.pc
      return
    }
    this.execute(op)
    this.eip = this.pc
  }

  /**
   * The commonest 32-bit register forms, executed straight from the decoded form;
   * false for anything else (the general path then runs it). Same semantics as the
   * general path: these instructions touch no memory and cannot leave the CPU.
   */
  protected fastPath(op: number, d: Instruction): boolean {
    const regs = this.regs
    if (op < 0x40) {
      if ((op & 5) !== 1 || d.modrm < 0xc0) return false
      const reg = (d.modrm >>> 3) & 7
      const rm = d.modrm & 7
      const dst = (op & 2) !== 0 ? reg : rm
      const a = regs[dst]
      const b = regs[(op & 2) !== 0 ? rm : reg]
      let r: number
      switch (op >>> 3) {
        case AluOp.Add:
          r = (a + b) >>> 0
          this.flags = addFlags(a, b, r, 4, 0, this.flags)
          break
        case AluOp.Or:
          r = (a | b) >>> 0
          this.flags = logicFlags(r, 4, this.flags)
          break
        case AluOp.And:
          r = (a & b) >>> 0
          this.flags = logicFlags(r, 4, this.flags)
          break
        case AluOp.Xor:
          r = (a ^ b) >>> 0
          this.flags = logicFlags(r, 4, this.flags)
          break
        case AluOp.Sub:
          r = (a - b) >>> 0
          this.flags = subFlags(a, b, r, 4, 0, this.flags)
          break
        case AluOp.Cmp:
          this.flags = subFlags(a, b, (a - b) >>> 0, 4, 0, this.flags)
          this.pc = this.instructionStart + d.modrmEnd
          return true
        default:
          r = aluResult(op >>> 3, a, b, 4, this.flags)
          this.flags = aluFlags(op >>> 3, a, b, r, 4, this.flags)
          break
      }
      regs[dst] = r
      this.pc = this.instructionStart + d.modrmEnd
      return true
    }
    if (op < 0x50) {
      const a = regs[op & 7]
      if (op < 0x48) {
        const r = (a + 1) >>> 0
        regs[op & 7] = r
        this.flags = incFlags(a, r, 4, this.flags)
      } else {
        const r = (a - 1) >>> 0
        regs[op & 7] = r
        this.flags = decFlags(a, r, 4, this.flags)
      }
      return true
    }
    if (op >= 0x70 && op < 0x80) {
      const next = this.instructionStart + d.length
      this.pc = this.condition(op & 15) ? this.nearTarget(next + ((d.imm << 24) >> 24)) : next
      return true
    }
    if (op >= 0xb8 && op < 0xc0) {
      regs[op & 7] = d.imm
      this.pc = this.instructionStart + d.length
      return true
    }
    return false
  }

  /**
   * LOCK is #UD unless the instruction is one of the read-modify-write forms the SDM
   * lists (ADD…XOR except CMP, BT[SRC], XCHG, XADD, CMPXCHG, CMPXCHG8B, INC/DEC, NOT/NEG)
   * with a memory destination. Peeks at the opcode and ModRM without consuming them.
   */
  protected checkLockable(op: number): void {
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

  protected execute(op: number): void {
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
        this.popFlags()
        return this.interruptWindowCheck()
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
        this.interruptReturn()
        return this.interruptWindowCheck()
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
        return this.interruptWindowCheck()
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

  protected executeTwoByte(op: number): void {
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
}
