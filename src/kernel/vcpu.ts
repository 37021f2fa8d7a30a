import type { EventLog } from "../events/EventLog.ts"
import { ExitReason, KvmExit, KvmInternalError } from "../events/exitReasons.ts"
import {
  MSR_IA32_SYSENTER_CS,
  MSR_IA32_SYSENTER_EIP,
  MSR_IA32_SYSENTER_ESP,
  MSR_IA32_TSC,
  readExitData,
  writeExitData,
  type CpuidEntry,
  type KvmCompletion,
  type KvmDebugRegs,
  type KvmEmulationState,
  type KvmGuestDebug,
  type KvmHostTscApi,
  type KvmIrqchipVcpuApi,
  type KvmMpState,
  type KvmMsrEntry,
  type KvmRegs,
  type KvmRunExit,
  type KvmSregs,
  type KvmVcpuApi,
  type KvmVcpuEvents,
  type KvmVcpuStateApi
} from "./api.ts"
import type { LapicState } from "../hw/intc/lapic.ts"
import { LEAVE_CPU, LeaveCpu, PORT_IO_LEAVES, type ExitingInstructions, type IoSize } from "./cpu/bus.ts"
import { Cpu, CpuStop, Reg, Seg } from "./cpu/cpu.ts"
import { EmulationFailure, Ept, type EptExits } from "./ept.ts"
import type { Memslots } from "./memslots.ts"
import { VcpuInterrupts, type VmInterrupts } from "./interrupts.ts"
import type { KvmIrqchip } from "./irqchip.ts"
import { accessRightsOf, segmentOf } from "./segments.ts"

type Mutable<T> = { -readonly [K in keyof T]: T[K] }
type IoExit = Mutable<Extract<KvmRunExit, { _tag: "KVM_EXIT_IO" }>>
type MmioExit = Mutable<Extract<KvmRunExit, { _tag: "KVM_EXIT_MMIO" }>>

const hex = (n: number): string => `0x${(n >>> 0).toString(16)}`

/**
 * A vCPU as kvm.ko runs it: the interpreter plays VMX non-root; this class plays the
 * VM-exit handlers. Exits KVM can finish itself (CPUID, EPT violations on RAM) are
 * handled inline and the guest re-entered; the rest leave KVM_RUN for userspace.
 *
 * An instruction that needs userspace (port I/O, MMIO) is abandoned with EIP on it;
 * when userspace has answered, the next KVM_RUN executes it again with the answers
 * queued as completions, as KVM's emulator does with `complete_userspace_io`. An IN or
 * OUT, which has nothing left to do but take the answer, is retired without the interpreter.
 */
export class Vcpu implements KvmVcpuApi, KvmVcpuStateApi, KvmIrqchipVcpuApi, KvmHostTscApi, ExitingInstructions, EptExits {
  readonly cpu: Cpu
  /** The LAPIC (in-kernel irqchip), KVM_INTERRUPT, the interrupt window and HLT. */
  readonly irq: VcpuInterrupts
  private cpuidTable: ReadonlyArray<CpuidEntry> = []
  private kickTime = Number.POSITIVE_INFINITY
  /** IA32_TSC minus what it counts (virtual time, or the host counter in real-time mode), set by a WRMSR to it. */
  private tscOffset = 0
  /** Real-time mode: the host's counter, as userspace provides it (see KvmHostTscApi). */
  private hostTsc: (() => number) | undefined

  /** The exit KVM_RUN returned last, read back on the next run (IN and MMIO read data). */
  private pendingExit: KvmRunExit | undefined
  /** The I/O and MMIO exits, reused by every exit as `kvm_run` is (a checkpoint gets copies). */
  private readonly ioExit: IoExit = { _tag: "KVM_EXIT_IO", exitReason: KvmExit.KVM_EXIT_IO, direction: "out", port: 0, size: 1, count: 1, data: new Uint8Array(1) }
  private readonly mmioExit: MmioExit = { _tag: "KVM_EXIT_MMIO", exitReason: KvmExit.KVM_EXIT_MMIO, physAddr: 0, isWrite: false, len: 1, data: new Uint8Array(1) }
  private readonly exitData = { 1: new Uint8Array(1), 2: new Uint8Array(2), 4: new Uint8Array(4) }
  /**
   * Accesses the emulator completed with userspace's help, replayed when the instruction
   * runs again: the first `completionCount` records (reused, not reallocated per exit).
   */
  private readonly completions: KvmCompletion[] = []
  private completionCount = 0
  private completionCursor = 0
  /**
   * The instruction being emulated is an IN or OUT that left from this vCPU's own run
   * (not a restored state and no register set since): the CPU may retire it without stepping it again.
   */
  private portIoLeft = false
  /** Re-executing an instruction that left for userspace: further accesses are part of the same emulation. */
  private emulating = false
  /** The VM exit for the current instruction is already in the log. */
  private exitLogged = false
  /** KVM_SET_GUEST_DEBUG: a debugger's stop, in instructions retired. */
  private debugStop = Number.POSITIVE_INFINITY
  /** The last KVM_RUN ended in a debugger's stop: the re-entry is not traced either. */
  private resumingFromDebug = false
  /** An exit was handled in the kernel and the VM entry after it is not logged yet (it follows any injection). */
  private entryPending = false

  constructor(
    readonly id: number,
    memslots: Memslots,
    private readonly log: EventLog,
    private readonly vmInterrupts: VmInterrupts = { irqchip: undefined, shift: 0, split: false }
  ) {
    this.cpu = new Cpu(new Ept(memslots, this), this)
    this.cpu.resetToRealMode()
    this.irq = new VcpuInterrupts(id, this.cpu, log, vmInterrupts, {
      exit: (reason, handledIn) => {
        // Exits between instructions (the window, a fault delivering an interrupt) report where the guest stands.
        this.logExit(reason, 0, handledIn, undefined, this.cpu.eip)
        this.entryPending = true
      },
      entry: () => {
        if (this.entryPending) this.logEntry()
      }
    })
  }

  private get irqchip(): KvmIrqchip | undefined {
    return this.vmInterrupts.irqchip
  }

  get instructionsRetired(): number {
    return this.cpu.retired
  }

  kickAt(instructionsRetired: number): void {
    this.kickTime = instructionsRetired
  }

  setCpuid(entries: ReadonlyArray<CpuidEntry>): void {
    this.cpuidTable = entries.map((e) => ({ ...e }))
  }

  // ---- KVM_RUN -------------------------------------------------------------

  run(): KvmRunExit {
    if (this.pendingExit !== undefined) this.completeUserspaceExit(this.pendingExit)
    this.pendingExit = undefined
    if (this.resumingFromDebug) this.resumingFromDebug = false
    else if (this.emulating) this.logEntry()
    else this.entryPending = true
    const cpu = this.cpu
    for (;;) {
      let stop: CpuStop
      if (this.emulating) {
        if (cpu.retired >= this.debugStop) return this.debugExit()
        if (this.portIoLeft && this.completionCount === 1 && cpu.retireLeftPortIo(this.completions[0].value)) {
          stop = CpuStop.Budget
        } else {
          this.completionCursor = 0
          this.exitLogged = true
          stop = this.guarded(1)
        }
        if (stop !== CpuStop.Left) {
          this.emulating = false
          this.completionCount = 0
          this.portIoLeft = false
        }
        if (stop === CpuStop.Budget) continue
      } else {
        // Between exit and entry, as KVM's vcpu_run: block while halted, fire due timers, inject.
        if (cpu.retired < this.kickTime) {
          const held = this.irq.beforeEntry(this.kickTime)
          if (held !== undefined) return this.leave(held.exit, held.detail)
        }
        if (this.entryPending) this.logEntry()
        const budget = this.kickTime - cpu.retired
        if (budget <= 0) return this.leave({ _tag: "KVM_EXIT_INTR", exitReason: KvmExit.KVM_EXIT_INTR }, "instruction budget reached")
        // After the kick: a stop for the debugger must not come between a kick and the input delivered at it.
        if (cpu.retired >= this.debugStop) return this.debugExit()
        this.exitLogged = false
        // Up to the next in-kernel timer, or less while waiting for an interrupt window.
        const steps = this.irq.stepsAllowed(Math.min(budget, this.debugStop - cpu.retired, this.irq.nextDeadline() - cpu.retired))
        stop = this.guarded(steps)
        if (stop === CpuStop.Budget) {
          const opened = this.irq.windowExit()
          if (opened !== undefined && opened !== "kernel") return this.leave(opened)
          continue
        }
      }
      switch (stop) {
        case CpuStop.Left:
          this.emulating = true
          return this.leave(this.pendingExit!)
        case CpuStop.Stop: {
          const exit = this.irq.afterStop()
          if (exit === undefined) continue
          return this.leave(exit)
        }
        case CpuStop.TripleFault:
          this.logExit(ExitReason.TRIPLE_FAULT, 0, "userspace")
          return this.leave({ _tag: "KVM_EXIT_SHUTDOWN", exitReason: KvmExit.KVM_EXIT_SHUTDOWN })
        default: {
          const e = cpu.internalError
          const bytes = e ? e.bytes.map((b) => b.toString(16).padStart(2, "0")).join(" ") : ""
          const detail = e
            ? `emulation failure at ${hex(e.address)}: ${e.reason} [${bytes}]`
            : "emulation failure: the interpreter stopped without saying why"
          return this.leave(
            { _tag: "KVM_EXIT_INTERNAL_ERROR", exitReason: KvmExit.KVM_EXIT_INTERNAL_ERROR, suberror: KvmInternalError.KVM_INTERNAL_ERROR_EMULATION, detail },
            detail
          )
        }
      }
    }
  }

  /** Runs the interpreter; a JS exception from it is a model bug, reported as an emulation failure, never thrown. */
  private guarded(budget: number): CpuStop {
    try {
      return this.cpu.run(budget)
    } catch (cause) {
      if (cause instanceof LeaveCpu) throw new Error("LEAVE_CPU escaped the interpreter")
      const reason =
        cause instanceof EmulationFailure ? cause.message : `interpreter bug: ${cause instanceof Error ? cause.message : String(cause)}`
      const cpu = this.cpu
      cpu.internalError = { address: (cpu.segBase[Seg.CS] + cpu.instructionStart) >>> 0, bytes: [], reason }
      return CpuStop.InternalError
    }
  }

  /** KVM_EXIT_DEBUG for the debugger's stop: untraced, and nothing for the next run to complete. */
  private debugExit(): KvmRunExit {
    this.resumingFromDebug = true
    return { _tag: "KVM_EXIT_DEBUG", exitReason: KvmExit.KVM_EXIT_DEBUG }
  }

  private leave(exit: KvmRunExit, detail?: string): KvmRunExit {
    this.log.userspaceExit(this.id, this.cpu.retired, exit.exitReason, detail)
    this.pendingExit = exit
    return exit
  }

  /** Userspace answered the last exit: queue its data for the instruction's second execution. */
  private completeUserspaceExit(exit: KvmRunExit): void {
    if (exit._tag === "KVM_EXIT_IO") {
      const value = readExitData(exit.data, 0, exit.size)
      if (exit.direction === "in") this.logPio("in", exit.port, exit.size, value)
      this.complete("pio", exit.port, exit.size, exit.direction === "out", value)
    } else if (exit._tag === "KVM_EXIT_MMIO") {
      const value = readExitData(exit.data, 0, exit.len)
      if (!exit.isWrite) this.logMmio("read", exit.physAddr, exit.len, value)
      this.complete("mmio", exit.physAddr, exit.len, exit.isWrite, value)
    }
  }

  private complete(kind: "pio" | "mmio", address: number, size: number, isWrite: boolean, value: number): void {
    const c = this.completions[this.completionCount]
    if (c === undefined) this.completions.push({ kind, address, size, isWrite, value })
    else {
      c.kind = kind
      c.address = address
      c.size = size
      c.isWrite = isWrite
      c.value = value
    }
    this.completionCount++
  }

  /** The next queued completion if it answers this access; otherwise undefined (the access must leave). */
  private takeCompletion(kind: "pio" | "mmio", address: number, size: number, isWrite: boolean): KvmCompletion | undefined {
    if (this.completionCursor >= this.completionCount) return undefined
    const c = this.completions[this.completionCursor]
    if (c.kind !== kind || c.address !== address || c.size !== size || c.isWrite !== isWrite) {
      throw new Error(
        `re-executed instruction made a different access (${kind} ${hex(address)}/${size}${isWrite ? " write" : ""}) than the one userspace completed (${c.kind} ${hex(c.address)}/${c.size}${c.isWrite ? " write" : ""})`
      )
    }
    this.completionCursor++
    return c
  }

  // ---- exits raised by the interpreter ---------------------------------------

  portIn(port: number, size: IoSize, qualification: number): number {
    const done = this.takeCompletion("pio", port, size, false)
    if (done !== undefined) return done.value
    const chip = this.irqchip
    if (chip?.handlesPort(port) === true) {
      this.logExit(ExitReason.IO_INSTRUCTION, qualification, "kernel")
      const value = chip.pioRead(port, size, this.irq.timeForPort(port))
      this.logPio("in", port, size, value)
      this.handledInKernel()
      return value
    }
    this.logExitOnce(ExitReason.IO_INSTRUCTION, qualification, "userspace")
    this.pendingExit = this.ioExitOf("in", port, size, 0)
    this.portIoLeft = true
    return PORT_IO_LEAVES
  }

  portOut(port: number, size: IoSize, value: number, qualification: number): boolean {
    if (this.takeCompletion("pio", port, size, true) !== undefined) return false
    const chip = this.irqchip
    if (chip?.handlesPort(port) === true) {
      this.logExit(ExitReason.IO_INSTRUCTION, qualification, "kernel")
      this.logPio("out", port, size, value)
      chip.pioWrite(port, size, value, this.irq.timeForPort(port))
      this.handledInKernel()
      return false
    }
    this.logExitOnce(ExitReason.IO_INSTRUCTION, qualification, "userspace")
    this.logPio("out", port, size, value)
    this.pendingExit = this.ioExitOf("out", port, size, value)
    this.portIoLeft = true
    return true
  }

  /** KVM_EXIT_IO for one access, `data` holding what the guest wrote (zeros for IN). */
  private ioExitOf(direction: "in" | "out", port: number, size: IoSize, value: number): IoExit {
    const exit = this.ioExit
    exit.direction = direction
    exit.port = port
    exit.size = size
    exit.data = this.exitData[size]
    writeExitData(exit.data, 0, size, value)
    return exit
  }

  /** KVM_EXIT_MMIO for one access, `data` holding what the guest wrote (zeros for a read). */
  private mmioExitOf(gpa: number, isWrite: boolean, len: 1 | 2 | 4, value: number): MmioExit {
    const exit = this.mmioExit
    exit.physAddr = gpa
    exit.isWrite = isWrite
    exit.len = len
    exit.data = this.exitData[len]
    writeExitData(exit.data, 0, len, value)
    return exit
  }

  mmioRead(gpa: number, len: 1 | 2 | 4): number {
    const done = this.takeCompletion("mmio", gpa, len, false)
    if (done !== undefined) return done.value
    if (this.kernelMmio(gpa)) {
      this.logExitOnce(ExitReason.EPT_MISCONFIG, 0, "kernel", gpa)
      const value = this.irq.handlesMmio(gpa) ? this.irq.mmioRead(gpa, len) : this.irqchip!.mmioRead(gpa, len)
      this.logMmio("read", gpa, len, value)
      this.handledInKernel()
      return value
    }
    this.logExitOnce(ExitReason.EPT_MISCONFIG, 0, "userspace", gpa)
    this.logMmio("unsatisfied-read", gpa, len, 0)
    this.pendingExit = this.mmioExitOf(gpa, false, len, 0)
    throw LEAVE_CPU
  }

  mmioWrite(gpa: number, len: 1 | 2 | 4, value: number): void {
    if (this.takeCompletion("mmio", gpa, len, true) !== undefined) return
    if (this.kernelMmio(gpa)) {
      this.logExitOnce(ExitReason.EPT_MISCONFIG, 0, "kernel", gpa)
      this.logMmio("write", gpa, len, value)
      if (this.irq.handlesMmio(gpa)) this.irq.mmioWrite(gpa, len, value)
      else this.irqchip!.mmioWrite(gpa, len, value)
      this.handledInKernel()
      return
    }
    this.logExitOnce(ExitReason.EPT_MISCONFIG, 0, "userspace", gpa)
    this.logMmio("write", gpa, len, value)
    this.pendingExit = this.mmioExitOf(gpa, true, len, value)
    throw LEAVE_CPU
  }

  /** The LAPIC page or the IOAPIC, when the irqchip is in the kernel: KVM's own MMIO devices. */
  private kernelMmio(gpa: number): boolean {
    return this.irq.handlesMmio(gpa) || this.irqchip?.handlesMmio(gpa) === true
  }

  /**
   * An exit finished in the kernel by an irqchip device: the guest goes on, but only
   * after the next entry has looked for an interrupt the access may have raised.
   */
  private handledInKernel(): void {
    this.entryPending = true
    this.exitLogged = false
    this.irq.recheck()
  }

  eptViolation(gpa: number, access: number, outcome: "mapped" | "mmio"): void {
    const inKernel = outcome === "mapped" || this.kernelMmio(gpa)
    this.logExit(ExitReason.EPT_VIOLATION, access, inKernel ? "kernel" : "userspace", gpa)
    this.log.push({ _tag: "PageFault", seq: this.log.nextSeq, vcpu: this.id, time: this.cpu.retired, gpa, errorCode: access, outcome })
    if (outcome === "mapped") this.logEntry()
    // An MMIO frame's first access is emulated right away, under this same exit.
    else this.exitLogged = true
  }

  cpuid(): void {
    this.logExit(ExitReason.CPUID, 0, "kernel")
    const regs = this.cpu.regs
    const leaf = regs[Reg.EAX]
    const subleaf = regs[Reg.ECX]
    const entry = this.lookupCpuid(leaf, subleaf)
    regs[Reg.EAX] = entry?.eax ?? 0
    regs[Reg.EBX] = entry?.ebx ?? 0
    regs[Reg.ECX] = entry?.ecx ?? 0
    regs[Reg.EDX] = entry?.edx ?? 0
    this.logEntryAfterSkip()
  }

  /** HLT (12): blocks in the kernel with an in-kernel LAPIC and IF = 1, else KVM_EXIT_HLT. */
  hlt(): void {
    const handledIn = this.irq.hlt()
    this.logExit(ExitReason.HLT, 0, handledIn)
    if (handledIn === "kernel") this.entryPending = true
  }

  // ---- KVM_INTERRUPT, kvm_run's interrupt fields, LAPIC and MP state ioctls ----------

  interrupt(vector: number): void {
    this.irq.interrupt(vector)
  }

  get requestInterruptWindow(): boolean {
    return this.irq.requestInterruptWindow
  }

  set requestInterruptWindow(on: boolean) {
    this.irq.requestInterruptWindow = on
  }

  get readyForInterruptInjection(): boolean {
    return this.irq.readyForInterruptInjection
  }

  get ifFlag(): boolean {
    return this.irq.ifFlag
  }

  getLapic(): LapicState | undefined {
    return this.irq.lapic
  }

  setLapic(state: LapicState): void {
    if (this.irq.lapic === undefined) throw new RangeError("KVM_SET_LAPIC: this vCPU has no in-kernel LAPIC (no KVM_CREATE_IRQCHIP)")
    this.irq.lapic = state
  }

  getMpState(): KvmMpState {
    return this.irq.mpState
  }

  setMpState(state: KvmMpState): void {
    this.irq.setMpState(state)
  }

  /**
   * MSR_READ (31), handled in the kernel as kvm_get_msr does: the SYSENTER MSRs live in
   * the guest state; the TSC is virtual time plus the guest's offset. Any other MSR is
   * unknown here and KVM injects #GP(0) (the CPU raises it when this returns false).
   */
  rdmsr(index: number): boolean {
    this.logExit(ExitReason.MSR_READ, 0, "kernel")
    const cpu = this.cpu
    let lo = 0
    let hi = 0
    let known = true
    switch (index >>> 0) {
      case MSR_IA32_TSC: {
        const tsc = this.guestTsc()
        lo = tsc % 0x100000000
        hi = Math.floor(tsc / 0x100000000)
        break
      }
      case MSR_IA32_SYSENTER_CS:
        lo = cpu.sysenterCs
        break
      case MSR_IA32_SYSENTER_ESP:
        lo = cpu.sysenterEsp
        break
      case MSR_IA32_SYSENTER_EIP:
        lo = cpu.sysenterEip
        break
      default:
        known = false
    }
    if (known) {
      cpu.regs[Reg.EAX] = lo
      cpu.regs[Reg.EDX] = hi
    }
    this.endMsrExit(known)
    return known
  }

  /** MSR_WRITE (32): the same MSRs; a TSC write sets the offset that makes the TSC read the value now (KVM's kvm_write_tsc). */
  wrmsr(index: number, low: number, high: number): boolean {
    this.logExit(ExitReason.MSR_WRITE, 0, "kernel")
    const cpu = this.cpu
    let known = true
    switch (index >>> 0) {
      case MSR_IA32_TSC:
        this.tscOffset = (high >>> 0) * 0x100000000 + (low >>> 0) - this.tscSource()
        break
      case MSR_IA32_SYSENTER_CS:
        cpu.sysenterCs = low & 0xffff
        break
      case MSR_IA32_SYSENTER_ESP:
        cpu.sysenterEsp = low >>> 0
        break
      case MSR_IA32_SYSENTER_EIP:
        cpu.sysenterEip = low >>> 0
        break
      default:
        known = false
    }
    this.endMsrExit(known)
    return known
  }

  /**
   * The entry after MSR_READ/MSR_WRITE: past the instruction, or — for an MSR KVM does not
   * emulate — at it with #GP(0) injected (the CPU delivers it when rdmsr/wrmsr return false).
   */
  private endMsrExit(known: boolean): void {
    if (known) return this.logEntryAfterSkip()
    this.log.push({ _tag: "InjException", seq: this.log.nextSeq, vcpu: this.id, time: this.cpu.retired, vector: 13, errorCode: 0 })
    this.logEntry()
  }

  /**
   * RDTSC (16). KVM normally lets RDTSC run without an exit; here it exits so that the
   * value comes from virtual time (one tick per retired instruction), or in real-time
   * mode from a recorded host reading, and replay stays deterministic.
   */
  rdtsc(): void {
    this.logExit(ExitReason.RDTSC, 0, "kernel")
    const tsc = this.guestTsc()
    this.cpu.regs[Reg.EAX] = tsc % 0x100000000
    this.cpu.regs[Reg.EDX] = Math.floor(tsc / 0x100000000)
    this.logEntryAfterSkip()
  }

  /** The guest TSC, as RDTSC and RDMSR read it: the counter plus the offset a WRMSR to IA32_TSC set (never negative). */
  private guestTsc(): number {
    return Math.max(0, this.tscSource() + this.tscOffset)
  }

  /**
   * What the guest TSC counts: retired instructions, or in real-time mode the host's
   * counter, logged (HostTsc) so that a replay reads the same.
   */
  private tscSource(): number {
    if (this.hostTsc === undefined) return this.cpu.retired
    const value = Math.max(0, Math.floor(this.hostTsc()))
    this.log.push({ _tag: "HostTsc", seq: this.log.nextSeq, vcpu: this.id, time: this.cpu.retired, value })
    return value
  }

  /**
   * KVM's kvm_cpuid(): an exact entry, else Intel's rule (get_out_of_range_cpuid_entry)
   * that a leaf past the maximum of its class (basic, 0x400000xx, 0x8000xxxx,
   * 0xc000xxxx) reads as the maximum basic leaf; a missing leaf within range reads as 0.
   */
  private lookupCpuid(leaf: number, subleaf: number): CpuidEntry | undefined {
    const find = (fn: number) => this.cpuidTable.find((e) => e.function === fn && (!e.significantIndex || e.index === subleaf))
    const exact = find(leaf)
    if (exact !== undefined) return exact
    const basic = this.cpuidTable.find((e) => e.function === 0)
    if (basic === undefined) return undefined
    const classLeaf =
      leaf >= 0x40000000 && leaf <= 0x4fffffff ? (leaf & 0xffffff00) >>> 0 : leaf >= 0xc0000000 ? 0xc0000000 : (leaf & 0x80000000) >>> 0
    const max = this.cpuidTable.find((e) => e.function === classLeaf)?.eax
    if (max !== undefined && leaf <= max >>> 0) return undefined
    return find(basic.eax)
  }

  // ---- events ---------------------------------------------------------------

  private logEntry(rip = this.cpu.eip): void {
    this.entryPending = false
    this.log.vmEntry(this.id, this.cpu.retired, rip)
  }

  /** The entry after an exit the kernel emulated: like kvm_skip_emulated_instruction, at the next instruction. */
  private logEntryAfterSkip(): void {
    this.logEntry(this.cpu.instructionStart + this.cpu.instructionLength)
  }

  private logExitOnce(reason: number, qualification: number, handledIn: "kernel" | "userspace", gpa?: number): void {
    if (this.exitLogged) return
    this.exitLogged = true
    this.logExit(reason, qualification, handledIn, gpa)
  }

  private logExit(reason: number, qualification: number, handledIn: "kernel" | "userspace", gpa?: number, rip = this.cpu.instructionStart): void {
    const cpu = this.cpu
    const length = reportsInstructionLength(reason) ? cpu.instructionLength : 0
    this.log.vmExit(this.id, cpu.retired, reason, qualification, gpa, rip, length, handledIn)
  }

  private logPio(direction: "in" | "out", port: number, size: IoSize, value: number): void {
    this.log.pio(this.id, this.cpu.retired, direction, port, size, value)
  }

  private logMmio(op: "read" | "write" | "unsatisfied-read", gpa: number, length: 1 | 2 | 4, value: number): void {
    this.log.mmio(this.id, this.cpu.retired, op, gpa, length, value)
  }

  // ---- register ioctls ---------------------------------------------------------

  getRegs(): KvmRegs {
    const r = this.cpu.regs
    return {
      rax: r[Reg.EAX], rbx: r[Reg.EBX], rcx: r[Reg.ECX], rdx: r[Reg.EDX],
      rsi: r[Reg.ESI], rdi: r[Reg.EDI], rsp: r[Reg.ESP], rbp: r[Reg.EBP],
      rip: this.cpu.eip >>> 0, rflags: this.cpu.getEflags() >>> 0
    }
  }

  setRegs(regs: KvmRegs): void {
    const r = this.cpu.regs
    r[Reg.EAX] = regs.rax; r[Reg.EBX] = regs.rbx; r[Reg.ECX] = regs.rcx; r[Reg.EDX] = regs.rdx
    r[Reg.ESI] = regs.rsi; r[Reg.EDI] = regs.rdi; r[Reg.ESP] = regs.rsp; r[Reg.EBP] = regs.rbp
    this.cpu.eip = regs.rip >>> 0
    this.cpu.setEflags(regs.rflags)
    this.portIoLeft = false
  }

  getSregs(): KvmSregs {
    const c = this.cpu
    return {
      cs: segmentAt(c, Seg.CS), ds: segmentAt(c, Seg.DS), es: segmentAt(c, Seg.ES),
      fs: segmentAt(c, Seg.FS), gs: segmentAt(c, Seg.GS), ss: segmentAt(c, Seg.SS),
      gdt: { base: c.gdtrBase >>> 0, limit: c.gdtrLimit },
      idt: { base: c.idtrBase >>> 0, limit: c.idtrLimit },
      cr0: c.cr0 >>> 0, cr2: c.cr2 >>> 0, cr3: c.cr3 >>> 0, cr4: c.cr4 >>> 0,
      tr: segmentOf(c.trSelector, c.trBase, c.trLimit, c.trAttr),
      ldt: segmentOf(c.ldtrSelector, c.ldtrBase, c.ldtrLimit, c.ldtrAttr)
    }
  }

  setSregs(sregs: KvmSregs): void {
    const c = this.cpu
    const put = (s: Seg, v: KvmSregs["cs"]) => {
      c.segSelector[s] = v.selector
      c.segBase[s] = v.base
      c.segLimit[s] = v.limit
      c.segAttr[s] = accessRightsOf(v)
    }
    put(Seg.CS, sregs.cs); put(Seg.DS, sregs.ds); put(Seg.ES, sregs.es)
    put(Seg.FS, sregs.fs); put(Seg.GS, sregs.gs); put(Seg.SS, sregs.ss)
    c.gdtrBase = sregs.gdt.base; c.gdtrLimit = sregs.gdt.limit
    c.idtrBase = sregs.idt.base; c.idtrLimit = sregs.idt.limit
    c.cr0 = sregs.cr0; c.cr2 = sregs.cr2; c.cr3 = sregs.cr3; c.cr4 = sregs.cr4
    if (sregs.tr !== undefined) {
      c.trSelector = sregs.tr.selector; c.trBase = sregs.tr.base >>> 0; c.trLimit = sregs.tr.limit >>> 0; c.trAttr = accessRightsOf(sregs.tr)
    }
    if (sregs.ldt !== undefined) {
      c.ldtrSelector = sregs.ldt.selector; c.ldtrBase = sregs.ldt.base >>> 0; c.ldtrLimit = sregs.ldt.limit >>> 0; c.ldtrAttr = accessRightsOf(sregs.ldt)
    }
    // KVM_SET_SREGS reloads the MMU context: no translation cached from before survives.
    c.flushTlb()
    this.portIoLeft = false
  }

  // ---- state ioctls (snapshots) ------------------------------------------------

  getDebugRegs(): KvmDebugRegs {
    const dr = this.cpu.dr
    return { db: [dr[0], dr[1], dr[2], dr[3]], dr6: dr[6], dr7: dr[7] }
  }

  setDebugRegs(regs: KvmDebugRegs): void {
    const dr = this.cpu.dr
    for (let i = 0; i < 4; i++) dr[i] = regs.db[i]
    dr[6] = regs.dr6
    dr[7] = regs.dr7
    this.cpu.debugRegistersChanged()
  }

  getMsrs(indices: ReadonlyArray<number>): KvmMsrEntry[] {
    const c = this.cpu
    const out: KvmMsrEntry[] = []
    // By index: a for-of runs the iterator protocol, slow in code a checkpoint runs this rarely.
    for (let i = 0; i < indices.length; i++) {
      const index = indices[i]
      switch (index) {
        // The offset over virtual time, even in real-time mode: a checkpoint reads nothing from the host and restores the offset exactly.
        case MSR_IA32_TSC: out.push({ index, data: c.retired + this.tscOffset }); break
        case MSR_IA32_SYSENTER_CS: out.push({ index, data: c.sysenterCs }); break
        case MSR_IA32_SYSENTER_ESP: out.push({ index, data: c.sysenterEsp >>> 0 }); break
        case MSR_IA32_SYSENTER_EIP: out.push({ index, data: c.sysenterEip >>> 0 }); break
      }
    }
    return out
  }

  /** As KVM_SET_MSRS: the TSC is set relative to the current virtual time, so set that first. */
  setMsrs(entries: ReadonlyArray<KvmMsrEntry>): void {
    const c = this.cpu
    for (const { index, data } of entries) {
      switch (index) {
        case MSR_IA32_TSC: this.tscOffset = data - c.retired; break
        case MSR_IA32_SYSENTER_CS: c.sysenterCs = data & 0xffff; break
        case MSR_IA32_SYSENTER_ESP: c.sysenterEsp = data >>> 0; break
        case MSR_IA32_SYSENTER_EIP: c.sysenterEip = data >>> 0; break
        default: throw new RangeError(`KVM_SET_MSRS: MSR 0x${index.toString(16)} is not one this vCPU has`)
      }
    }
  }

  getVcpuEvents(): KvmVcpuEvents {
    return { interruptShadow: this.cpu.interruptShadow, queuedInterrupt: this.irq.queuedVector }
  }

  setVcpuEvents(events: KvmVcpuEvents): void {
    this.cpu.interruptShadow = events.interruptShadow
    this.irq.queuedVector = events.queuedInterrupt ?? -1
  }

  getEmulationState(): KvmEmulationState {
    const exit = this.pendingExit
    const completions: KvmCompletion[] = []
    for (let i = 0; i < this.completionCount; i++) {
      const c = this.completions[i]
      completions.push({ kind: c.kind, address: c.address, size: c.size, isWrite: c.isWrite, value: c.value })
    }
    // Optional keys absent, not undefined; built without conditional spreads (checkpoints call this often).
    const state: KvmEmulationState = {
      instructionsRetired: this.cpu.retired,
      // The I/O and MMIO exit records are reused by the next exit.
      pendingExit: exit !== undefined && "data" in exit ? { ...exit, data: exit.data.slice() } : exit,
      completions,
      emulating: this.emulating
    }
    if (this.irq.window !== undefined) state.interruptWindow = this.irq.window
    state.haltedAt = this.irq.haltedAt
    if (this.resumingFromDebug) state.debugStopped = true
    return state
  }

  setEmulationState(state: KvmEmulationState): void {
    this.cpu.retired = state.instructionsRetired
    this.pendingExit = state.pendingExit
    this.completionCount = 0
    for (const c of state.completions) this.complete(c.kind, c.address, c.size, c.isWrite, c.value)
    this.completionCursor = 0
    this.emulating = state.emulating
    this.portIoLeft = false
    this.irq.restoreWindow(state.interruptWindow, state.haltedAt ?? 0)
    this.exitLogged = state.emulating
    this.resumingFromDebug = state.debugStopped === true
    this.cpu.internalError = undefined
    this.cpu.flushTlb()
    this.cpu.dropDecodedInstructions()
  }

  setHostTsc(read: (() => number) | undefined): void {
    this.hostTsc = read
  }

  setGuestDebug(debug: KvmGuestDebug): void {
    this.debugStop = debug.stopAtInstructionsRetired ?? Number.POSITIVE_INFINITY
    if (debug.watchpoints !== undefined) this.cpu.setDebuggerWatchpoints(debug.watchpoints)
  }

  getDebugStatus(): number {
    const status = this.cpu.debuggerHits
    this.cpu.debuggerHits = 0
    return status
  }
}

/** KVM_GET_SREGS's view of segment register `s` (a function, not a closure per call: checkpoints read these often). */
const segmentAt = (c: Cpu, s: Seg) => segmentOf(c.segSelector[s], c.segBase[s], c.segLimit[s], c.segAttr[s])

/**
 * The VM-exit instruction length is defined only for exits an instruction causes by
 * executing (SDM Vol. 3C 28.2.5); EPT faults, triple faults and interrupt windows leave it undefined, shown as 0.
 */
const reportsInstructionLength = (reason: number): boolean =>
  reason !== ExitReason.EPT_VIOLATION &&
  reason !== ExitReason.EPT_MISCONFIG &&
  reason !== ExitReason.TRIPLE_FAULT &&
  reason !== ExitReason.INTERRUPT_WINDOW

