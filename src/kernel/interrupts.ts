/**
 * Interrupt delivery to one vCPU, as KVM's x86.c (`inject_pending_event`,
 * `vcpu_block`) and lapic.c do it: the LAPIC when the irqchip is in the kernel, the
 * vector userspace queued with KVM_INTERRUPT, interrupt-window exiting, and HLT.
 *
 * An interrupt is injected at VM entry only when the guest can take it: EFLAGS.IF = 1
 * and no interrupt shadow (STI, MOV SS). Otherwise interrupt-window exiting is armed
 * and the vCPU runs until STI, POPF or IRET sets IF (then, past an STI's shadow, one
 * instruction at a time) and the window opens: the INTERRUPT_WINDOW exit (7). A halted vCPU (HLT handled in the kernel, or
 * KVM_SET_MP_STATE from userspace) retires no instructions: its virtual time skips to
 * the next timer deadline or the kick, whichever comes first.
 */
import type { EventLog } from "../events/EventLog.ts"
import { ExitReason, KvmExit, KvmInternalError } from "../events/exitReasons.ts"
import { DM_FIXED, type ApicMessage } from "../hw/intc/ioapic.ts"
import {
  lapicAcceptIrq,
  lapicAcceptsPicInterrupts,
  lapicAcknowledge,
  lapicAdvance,
  lapicCreate,
  lapicHwEnabled,
  lapicMatchDest,
  lapicNextDeadline,
  lapicPendingVector,
  lapicRead,
  lapicTimerRegister,
  lapicWrite,
  LAPIC_SIZE,
  LVT_TIMER,
  type LapicState
} from "../hw/intc/lapic.ts"
import { pitHandlesPort } from "../hw/timer/i8254.ts"
import type { KvmMpState, KvmRunExit, KvmTimerClock } from "./api.ts"
import { CpuStop, type Cpu } from "./cpu/cpu.ts"
import type { KvmIrqchip } from "./irqchip.ts"
import { memoLast } from "./memo.ts"

/** EFLAGS.IF. */
const IF = 1 << 9

/**
 * Real-time mode: while a timer is armed, the running vCPU looks at the host clock
 * whenever virtual time passes a multiple of this many instructions (where a host's
 * timer interrupt would have kicked it). Points fixed in virtual time, so that a
 * replay, and a stop for a debugger or a checkpoint, looks at the same points.
 */
export const CLOCK_POLL_INSNS = 1024

/** The VM-wide half this vCPU needs: the in-kernel PIC/IOAPIC/PIT (kernel mode) and whether a LAPIC lives here. */
export interface VmInterrupts {
  readonly irqchip: KvmIrqchip | undefined
  readonly shift: number
  /** KVM_CAP_SPLIT_IRQCHIP: the IOAPIC is in userspace and level EOIs go there. */
  readonly split: boolean
  /** Real-time mode: the host clock the timers follow (then `shift` is 0); absent: they follow virtual time. */
  readonly clock?: KvmTimerClock | undefined
}

/** What the vCPU's exit handlers log for this file (kept in one place, vcpu.ts). */
export interface ExitLog {
  exit(reason: number, handledIn: "kernel" | "userspace"): void
  /** VM entry, if the last exit has not been followed by one yet. */
  entry(): void
}

/** Why the interpreter was stopped after an instruction. */
type StopCause = "hlt-userspace" | "hlt-kernel" | "recheck" | "ioapic-eoi"

export class VcpuInterrupts {
  private lapicState: LapicState | undefined
  /**
   * The time of the last VM entry's timer check. Before the LAPIC timer's deadline
   * nothing happens but its clock moving on, so the check leaves the state as it is
   * and reading it (`lapic`) brings it to this time: the same state, without a new one per entry.
   */
  private timersAt = 0
  private readonly lapicDeadline = memoLast(lapicNextDeadline)
  private readonly lapicVector = memoLast(lapicPendingVector)
  /** KVM_INTERRUPT's vector, waiting for injection; -1 for none. */
  queuedVector = -1
  /** `kvm_run.request_interrupt_window`, set by userspace before KVM_RUN. */
  requestInterruptWindow = false
  mpState: KvmMpState = "runnable"
  /** Who armed interrupt-window exiting, if it is armed. */
  window: "kernel" | "userspace" | undefined
  /** Virtual time at which the vCPU last halted. */
  haltedAt = 0
  private stopCause: StopCause | undefined
  private eoiVector = -1
  /** Real-time mode: the running vCPU looks at the host clock again once virtual time reaches this. */
  private nextPoll = 0

  constructor(
    private readonly id: number,
    private readonly cpu: Cpu,
    private readonly log: EventLog,
    private readonly vm: VmInterrupts,
    private readonly exits: ExitLog
  ) {
    if (vm.irqchip !== undefined || vm.split) this.lapicState = lapicCreate({ shift: vm.shift, id, bsp: id === 0 })
  }

  /** The in-kernel LAPIC (kernel and split irqchip), else undefined; as KVM_GET_LAPIC reads it. */
  get lapic(): LapicState | undefined {
    const s = this.lapicState
    // Before the deadline: no expiry, only the clock moves on. Not stored: a checkpoint's
    // read leaves the vCPU as it was (a copy of another shape stored there slowed every VM entry after).
    return s === undefined ? undefined : lapicAdvance(s, this.timersAt)
  }

  /** KVM_SET_LAPIC: the state stands as given until the next VM entry advances it. */
  set lapic(state: LapicState | undefined) {
    this.lapicState = state
    this.timersAt = 0
  }

  private get time(): number {
    return this.cpu.retired
  }

  /** IF = 1 and no interrupt shadow: an injected interrupt would be taken now. */
  get interruptible(): boolean {
    return (this.cpu.getEflags() & IF) !== 0 && this.cpu.interruptShadow === 0
  }

  get ifFlag(): boolean {
    return (this.cpu.getEflags() & IF) !== 0
  }

  /** `ready_for_interrupt_injection`: interruptible, nothing queued, and the LAPIC (if any) takes PIC interrupts. */
  get readyForInterruptInjection(): boolean {
    return this.interruptible && this.queuedVector < 0 && (this.lapicState === undefined || lapicAcceptsPicInterrupts(this.lapicState))
  }

  interrupt(vector: number): void {
    if (this.queuedVector >= 0) throw new RangeError(`KVM_INTERRUPT: vector ${this.queuedVector} is still waiting for injection`)
    if (!Number.isInteger(vector) || vector < 0 || vector > 255) throw new RangeError(`KVM_INTERRUPT: vector ${vector} is out of range 0..255`)
    this.queuedVector = vector
  }

  setMpState(state: KvmMpState): void {
    if (state === "halted" && this.mpState !== "halted") this.haltedAt = this.time
    this.mpState = state
  }

  // ---- timers ---------------------------------------------------------------------

  /**
   * Where the vCPU must stop for its timers, in instructions retired: the next in-kernel
   * deadline (PIT, LAPIC timer), or in real-time mode the next look at the host clock
   * while any timer is armed; +Infinity for none.
   */
  nextDeadline(): number {
    if (this.vm.clock === undefined) return this.timerDeadline()
    return Number.isFinite(this.timerDeadline()) ? this.nextPoll : Number.POSITIVE_INFINITY
  }

  /** The next timer deadline in the timers' time; in real-time mode QEMU's deadline counts too (it kicks the vCPU). */
  private timerDeadline(): number {
    const pit = this.vm.irqchip?.nextDeadline()
    const apic = this.lapicTimerDeadline()
    return Math.min(pit ?? Number.POSITIVE_INFINITY, apic ?? Number.POSITIVE_INFINITY, this.vm.clock?.userspaceDeadline ?? Number.POSITIVE_INFINITY)
  }

  /** The timers' time: virtual time, or in real-time mode the host clock's latest delivered reading. */
  private get timerTime(): number {
    return this.vm.clock?.now ?? this.time
  }

  /**
   * The time a guest access to a timer register sees: in real-time mode, a fresh host
   * reading if it is later, after what expired by then has fired (as at a VM entry).
   */
  private timerTimeForAccess(): number {
    const clock = this.vm.clock
    if (clock === undefined) return this.time
    if (clock.read(clock.now + 1, false)) this.expireTimers()
    return clock.now
  }

  /** The time an in-kernel chip's port sees: the PIT's ports read the clock, the PIC's need none. */
  timeForPort(port: number): number {
    return pitHandlesPort(port) ? this.timerTimeForAccess() : this.timerTime
  }

  /**
   * Real-time mode: reads the host clock if a timer is armed, keeping the reading only
   * if it reached the earliest deadline (a replay, finding none recorded here, decides
   * the same); true if one was delivered.
   */
  private pollClock(clock: KvmTimerClock, halted: boolean): boolean {
    const due = this.timerDeadline()
    return Number.isFinite(due) && clock.read(due, halted)
  }

  private lapicTimerDeadline(): number | undefined {
    return this.lapicState === undefined ? undefined : this.lapicDeadline(this.lapicState)
  }

  private expireTimers(): void {
    const now = this.timerTime
    this.vm.irqchip?.advance(now)
    const lapic = this.lapicState
    if (lapic === undefined) return
    this.timersAt = now
    const deadline = this.lapicTimerDeadline()
    if (deadline === undefined || deadline > now) return
    const next = lapicAdvance(lapic, now)
    this.lapicState = next
    this.log.push({ _tag: "TimerExpiry", seq: this.log.nextSeq, vcpu: this.id, time: this.time, timer: "lapic", count: 1, hostedIn: "kernel" })
    if (next.irr !== lapic.irr) this.traceAccept(DM_FIXED, false, next.lvt[LVT_TIMER]! & 0xff)
  }

  // ---- before each VM entry ------------------------------------------------------

  /**
   * What KVM does between an exit and the next entry: block while halted, fire due
   * timers, then inject an interrupt or arm the interrupt window. Returns an exit
   * when KVM_RUN must return instead of entering.
   */
  beforeEntry(kickTime: number): { readonly exit: KvmRunExit; readonly detail?: string } | undefined {
    const cpu = this.cpu
    const clock = this.vm.clock
    if (this.mpState === "halted") {
      for (;;) {
        this.expireTimers()
        if (this.ifFlag && this.pendingSource() !== undefined) {
          this.log.push({ _tag: "VcpuWakeup", seq: this.log.nextSeq, vcpu: this.id, time: this.time, waited: this.time - this.haltedAt })
          this.mpState = "runnable"
          break
        }
        // Userspace holds an interrupt (split irqchip) and asked for the window: it is open now (KVM's vcpu_run).
        if (this.requestInterruptWindow && this.readyForInterruptInjection) {
          this.setWindow(undefined)
          return { exit: { _tag: "KVM_EXIT_IRQ_WINDOW_OPEN", exitReason: KvmExit.KVM_EXIT_IRQ_WINDOW_OPEN } }
        }
        if (cpu.retired >= kickTime) return { exit: { _tag: "KVM_EXIT_INTR", exitReason: KvmExit.KVM_EXIT_INTR }, detail: "instruction budget reached" }
        if (clock !== undefined && Number.isFinite(this.timerDeadline())) {
          // Real time: the host clock must reach the deadline; until it has, userspace gets the vCPU back to wait.
          if (clock.now >= clock.userspaceDeadline) return this.userspaceTimerDue()
          if (this.pollClock(clock, true)) continue
          return { exit: { _tag: "KVM_EXIT_INTR", exitReason: KvmExit.KVM_EXIT_INTR }, detail: "halted until the host clock reaches the next timer" }
        }
        // Nothing retires while halted: virtual time runs on to what can wake the vCPU (in real time, no timer is armed).
        const wake = Math.min(kickTime, clock === undefined ? this.nextDeadline() : Number.POSITIVE_INFINITY)
        if (!Number.isFinite(wake)) {
          return { exit: { _tag: "KVM_EXIT_INTR", exitReason: KvmExit.KVM_EXIT_INTR }, detail: "halted with no timer and no kick to wake it" }
        }
        cpu.retired = wake
      }
    } else {
      if (clock !== undefined && cpu.retired >= this.nextPoll && Number.isFinite(this.timerDeadline())) {
        this.nextPoll = (Math.floor(cpu.retired / CLOCK_POLL_INSNS) + 1) * CLOCK_POLL_INSNS
        this.pollClock(clock, false)
      }
      this.expireTimers()
      if (clock !== undefined && clock.now >= clock.userspaceDeadline) return this.userspaceTimerDue()
    }
    if (this.window !== undefined && this.interruptible) {
      // The window opened at an instruction that stopped the interpreter (STI, POPF, IRET).
      const opened = this.windowExit()
      if (opened !== undefined && opened !== "kernel") return { exit: opened }
    }
    const source = this.pendingSource()
    if (source !== undefined) {
      if (this.interruptible) {
        this.setWindow(undefined)
        return this.inject(source)
      }
      this.armWindow("kernel")
    } else if (this.requestInterruptWindow) {
      if (this.interruptible) {
        // Interrupt-window exiting with the window already open exits before the first instruction.
        this.exits.entry()
        this.exits.exit(ExitReason.INTERRUPT_WINDOW, "userspace")
        return { exit: { _tag: "KVM_EXIT_IRQ_WINDOW_OPEN", exitReason: KvmExit.KVM_EXIT_IRQ_WINDOW_OPEN } }
      }
      this.armWindow("userspace")
    } else {
      this.setWindow(undefined)
    }
    return undefined
  }

  /** Real time: the host clock has reached a timer of QEMU's, which kicks the vCPU out to fire it. */
  private userspaceTimerDue(): { readonly exit: KvmRunExit; readonly detail: string } {
    return { exit: { _tag: "KVM_EXIT_INTR", exitReason: KvmExit.KVM_EXIT_INTR }, detail: "the host clock reached a timer of userspace" }
  }

  /** KVM_SET_VCPU_EVENTS and the model's emulation state: the window as a checkpoint saw it. */
  restoreWindow(by: "kernel" | "userspace" | undefined, haltedAt: number): void {
    this.setWindow(by)
    this.haltedAt = haltedAt
    this.stopCause = undefined
    this.eoiVector = -1
  }

  private setWindow(by: "kernel" | "userspace" | undefined): void {
    this.window = by
    this.cpu.interruptWindowExiting = by !== undefined
  }

  /**
   * How many instructions the vCPU may run before the kernel must look again: while
   * the window is armed, one if IF = 1 (the shadow ends after one instruction), else
   * until STI, POPF or IRET stops it.
   */
  stepsAllowed(budget: number): number {
    return this.window !== undefined && this.ifFlag ? 1 : budget
  }

  private armWindow(by: "kernel" | "userspace"): void {
    if (this.window === by) return
    this.setWindow(by)
    const blockedBy = (this.cpu.getEflags() & IF) === 0 ? "if" : "shadow"
    this.log.push({ _tag: "IrqWindowRequest", seq: this.log.nextSeq, vcpu: this.id, time: this.time, requestedBy: by, blockedBy })
  }

  /**
   * After one instruction with the window armed: if it opened, the INTERRUPT_WINDOW
   * exit. KVM handles its own in the kernel (the next entry injects); a window
   * userspace asked for returns KVM_EXIT_IRQ_WINDOW_OPEN.
   */
  windowExit(): KvmRunExit | "kernel" | undefined {
    const by = this.window
    if (by === undefined || !this.interruptible) return undefined
    this.setWindow(undefined)
    this.exits.exit(ExitReason.INTERRUPT_WINDOW, by)
    return by === "kernel" ? "kernel" : { _tag: "KVM_EXIT_IRQ_WINDOW_OPEN", exitReason: KvmExit.KVM_EXIT_IRQ_WINDOW_OPEN }
  }

  /** Where the next interrupt would come from (KVM: ExtINT from the PIC or KVM_INTERRUPT first, then the LAPIC). */
  private pendingSource(): "KVM_INTERRUPT" | "pic" | "lapic" | undefined {
    if (this.queuedVector >= 0) return "KVM_INTERRUPT"
    const lapic = this.lapicState
    if ((lapic === undefined || lapicAcceptsPicInterrupts(lapic)) && this.vm.irqchip?.picIntr === true) return "pic"
    if (lapic !== undefined && this.lapicVector(lapic) >= 0) return "lapic"
    return undefined
  }

  private inject(source: "KVM_INTERRUPT" | "pic" | "lapic"): { readonly exit: KvmRunExit; readonly detail?: string } | undefined {
    let vector: number
    if (source === "KVM_INTERRUPT") {
      vector = this.queuedVector
      this.queuedVector = -1
    } else if (source === "pic") {
      vector = this.vm.irqchip!.acknowledgePic()
    } else {
      const ack = lapicAcknowledge(this.lapicState!)
      this.lapicState = ack.state
      vector = ack.vector
    }
    this.log.push({ _tag: "InjVirq", seq: this.log.nextSeq, vcpu: this.id, time: this.time, vector, source })
    const stop = this.cpu.injectExternalInterrupt(vector)
    if (stop === CpuStop.TripleFault) {
      this.exits.exit(ExitReason.TRIPLE_FAULT, "userspace")
      return { exit: { _tag: "KVM_EXIT_SHUTDOWN", exitReason: KvmExit.KVM_EXIT_SHUTDOWN } }
    }
    if (stop === CpuStop.InternalError) {
      const detail = `cannot deliver interrupt vector ${vector}: ${this.cpu.internalError?.reason ?? "the interpreter stopped"}`
      return {
        exit: { _tag: "KVM_EXIT_INTERNAL_ERROR", exitReason: KvmExit.KVM_EXIT_INTERNAL_ERROR, suberror: KvmInternalError.KVM_INTERNAL_ERROR_DELIVERY_EV, detail },
        detail
      }
    }
    return undefined
  }

  // ---- stops after an instruction -------------------------------------------------

  /** HLT's exit: blocked in the kernel with an in-kernel LAPIC and IF = 1, else to userspace (`KVM_EXIT_HLT`). */
  hlt(): "kernel" | "userspace" {
    const inKernel = this.lapicState !== undefined && this.ifFlag
    this.stop(inKernel ? "hlt-kernel" : "hlt-userspace")
    return inKernel ? "kernel" : "userspace"
  }

  /** An in-kernel chip changed: look for an interrupt before the next instruction, as KVM does on re-entry. */
  recheck(): void {
    this.stop("recheck")
  }

  private stop(cause: StopCause): void {
    // A halt outranks a recheck queued by the same instruction.
    if (this.stopCause === undefined || cause !== "recheck") this.stopCause = cause
    this.cpu.requestStop()
  }

  /** The interpreter stopped (CpuStop.Stop): the exit to return, or undefined to go on in the kernel. */
  afterStop(): KvmRunExit | undefined {
    const cause = this.stopCause
    this.stopCause = undefined
    switch (cause) {
      case "hlt-userspace":
        return { _tag: "KVM_EXIT_HLT", exitReason: KvmExit.KVM_EXIT_HLT }
      case "hlt-kernel":
        this.setMpState("halted")
        return undefined
      case "ioapic-eoi": {
        const vector = this.eoiVector
        this.eoiVector = -1
        return { _tag: "KVM_EXIT_IOAPIC_EOI", exitReason: KvmExit.KVM_EXIT_IOAPIC_EOI, vector }
      }
      default:
        return undefined
    }
  }

  // ---- the in-kernel LAPIC ---------------------------------------------------------

  handlesMmio(gpa: number): boolean {
    const lapic = this.lapicState
    if (lapic === undefined || !lapicHwEnabled(lapic)) return false
    const base = (lapic.apicBase & 0xfffff000) >>> 0
    return gpa >= base && gpa < base + LAPIC_SIZE
  }

  mmioRead(gpa: number, size: 1 | 2 | 4): number {
    const offset = gpa - ((this.lapicState!.apicBase & 0xfffff000) >>> 0)
    const now = lapicTimerRegister(offset) ? this.timerTimeForAccess() : this.timerTime
    const lapic = this.lapic!
    const r = lapicRead(lapic, offset, size, now)
    this.lapicState = r.state
    return r.value
  }

  mmioWrite(gpa: number, size: 1 | 2 | 4, value: number): void {
    const offset = gpa - ((this.lapicState!.apicBase & 0xfffff000) >>> 0)
    const now = lapicTimerRegister(offset) ? this.timerTimeForAccess() : this.timerTime
    const lapic = this.lapic!
    const r = lapicWrite(lapic, offset, size, value, now)
    this.lapicState = r.state
    if (r.state.irr !== lapic.irr && r.eoi === undefined) {
      // A self-IPI through the ICR.
      this.traceAccept((r.state.icrLow >> 8) & 7, false, r.state.icrLow & 0xff)
    }
    const eoi = r.eoi
    if (eoi !== undefined) {
      this.log.push({ _tag: "Eoi", seq: this.log.nextSeq, vcpu: this.id, time: this.time, apicId: lapic.id, vector: eoi.vector, level: eoi.level, hostedIn: "kernel" })
      if (eoi.level && eoi.vector >= 0) {
        if (this.vm.split) {
          this.eoiVector = eoi.vector
          this.stop("ioapic-eoi")
          return
        }
        this.vm.irqchip?.eoi(eoi.vector)
      }
    }
    this.recheck()
  }

  /** An interrupt message for this vCPU's LAPIC (IOAPIC, MSI): kvm_apic_accept_irq if it is the destination. */
  accept(msg: ApicMessage): void {
    const lapic = this.lapicState
    if (lapic === undefined || !lapicMatchDest(lapic, msg.logical, msg.dest)) return
    this.lapicState = lapicAcceptIrq(lapic, msg)
    this.traceAccept(msg.deliveryMode, msg.level, msg.vector)
  }

  private traceAccept(deliveryMode: number, level: boolean, vector: number): void {
    this.log.push({
      _tag: "ApicAcceptIrq", seq: this.log.nextSeq, vcpu: this.id, time: this.time,
      apicId: this.lapicState!.id & 0xff, deliveryMode, level, vector: vector & 0xff, hostedIn: "kernel"
    })
  }
}
