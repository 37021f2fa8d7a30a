/**
 * QEMU's side of interrupts on a PC: the chips it hosts for each irqchip mode, the
 * board's interrupt lines (GSIs) between them, and what `kvm_arch_pre_run` and the
 * exit handlers do with a userspace irqchip (KVM_INTERRUPT, `request_interrupt_window`,
 * KVM_EXIT_HLT, KVM_EXIT_IRQ_WINDOW_OPEN, KVM_EXIT_IOAPIC_EOI).
 *
 *   kernel     RTC here; its IRQ8 goes to the kernel with KVM_IRQ_LINE
 *   split      PIC, IOAPIC, PIT and RTC here; the PIC's vector goes in with KVM_INTERRUPT,
 *              the IOAPIC's messages with KVM_SIGNAL_MSI to the in-kernel LAPIC
 *   userspace  everything here, the LAPIC too; every vector goes in with KVM_INTERRUPT
 *
 * Chip states are the plain data of `src/hw`, held in public fields so a checkpoint
 * can keep them. The RTC (IRQ8) and serial0 (IRQ4) drive their lines as levels. The RTC is created at the guest's first access to it, from the wall
 * clock the host-input port gives (a `HostClock` event, replayed from the trace).
 *
 * The timers count virtual time, or in real-time mode the host clock the VM was given
 * (`KvmTimerClock`): then a guest access to a timer takes a fresh reading, and a
 * deadline is handed to KVM (`userspaceDeadline`), which kicks the vCPU out when the
 * clock reaches it.
 */
import type { EventLog } from "../events/EventLog.ts"
import type { IrqchipMode } from "../events/MachineConfig.ts"
import type { IoSize } from "../hw/clock.ts"
import {
  picHandlesPort,
  picInitial,
  picInterruptAcknowledge,
  picIntr,
  picIoRead,
  picIoWrite,
  picSetIrq,
  PIC_ELCR_SLAVE,
  PIC_SLAVE_CMD,
  PIC_SLAVE_DATA,
  type PicPairState
} from "../hw/intc/i8259.ts"
import {
  IOAPIC_BASE,
  IOAPIC_NUM_PINS,
  IOAPIC_SIZE,
  ioapicEoi,
  ioapicInitial,
  ioapicRead,
  ioapicSetIrq,
  ioapicWrite,
  RTE_MASKED,
  RTE_REMOTE_IRR,
  DM_FIXED,
  type ApicMessage,
  type IoapicResult,
  type IoapicState
} from "../hw/intc/ioapic.ts"
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
import { ioapicPinOfGsi, picLineOfGsi, PIT_GSI, RTC_GSI } from "../hw/pcIrqRouting.ts"
import { RTC_PORT_DATA, rtcAdvance, rtcCreate, rtcHandlesPort, rtcIoRead, rtcIoWrite, rtcIrqLevel, rtcNextDeadline, type RtcState } from "../hw/rtc/mc146818.ts"
import { pitAdvance, pitCreate, pitHandlesPort, pitIoRead, pitIoWrite, pitNextDeadline, type PitState } from "../hw/timer/i8254.ts"
import { msiOf, type KvmIrqchipVcpuApi, type KvmIrqchipVmApi, type KvmVcpuApi, type KvmVmApi } from "../kernel/api.ts"
import type { HostInputPort, HostTimerClock } from "./hostInput.ts"

const earliest = (a: number | undefined, b: number | undefined, c: number | undefined): number =>
  Math.min(a ?? Number.POSITIVE_INFINITY, b ?? Number.POSITIVE_INFINITY, c ?? Number.POSITIVE_INFINITY)

export class QemuInterrupts {
  pic: PicPairState | undefined
  ioapic: IoapicState | undefined
  pit: PitState | undefined
  /** Userspace irqchip only. */
  lapic: LapicState | undefined
  /** Undefined until the guest first touches ports 0x70/0x71. */
  rtc: RtcState | undefined
  /** The levels QEMU's level-driving devices (RTC, serial) last put on their lines, one bit per GSI. */
  lines = 0

  constructor(
    readonly mode: IrqchipMode,
    private readonly shift: number,
    private readonly log: EventLog,
    private readonly vm: KvmVmApi & KvmIrqchipVmApi,
    private readonly vcpu: KvmVcpuApi & KvmIrqchipVcpuApi,
    private readonly input: HostInputPort,
    /** Real-time mode: the clock the timers follow (`shift` is then 0). */
    readonly clock?: HostTimerClock
  ) {
    if (mode !== "kernel") {
      this.pic = picInitial
      this.ioapic = ioapicInitial
      this.pit = pitCreate(shift)
    }
    if (mode === "userspace") this.lapic = lapicCreate({ shift, id: vcpu.id, bsp: vcpu.id === 0 })
  }

  /** The timers' time: virtual time, or in real-time mode the clock's latest delivered reading. */
  private get now(): number {
    return this.clock?.now ?? this.vcpu.instructionsRetired
  }

  /**
   * The time a guest access to a timer sees: in real-time mode, a fresh host reading if
   * it is later, after what expired by then has fired (as before a KVM_RUN).
   */
  private nowForAccess(): number {
    if (this.clock?.read(this.clock.now + 1, false) === true) this.advance()
    return this.now
  }

  private stamp() {
    return { seq: this.log.nextSeq, vcpu: this.vcpu.id, time: this.vcpu.instructionsRetired }
  }

  // ---- the board's lines ----------------------------------------------------------

  /** A device drives `gsi`: the in-kernel irqchip's KVM_IRQ_LINE, or QEMU's own PIC and IOAPIC. */
  setIrq(gsi: number, level: boolean): void {
    if (this.mode === "kernel") return this.vm.irqLine(gsi, level)
    this.log.push({ _tag: "SetIrq", ...this.stamp(), gsi, level, hostedIn: "userspace" })
    const line = picLineOfGsi(gsi)
    if (line >= 0 && this.pic !== undefined) {
      this.pic = picSetIrq(this.pic, line, level)
      const chip = line < 8 ? this.pic.master : this.pic.slave
      this.log.push({ _tag: "PicSetIrq", ...this.stamp(), irq: line, level, imr: chip.imr, elcr: chip.elcr, intr: picIntr(this.pic), hostedIn: "userspace" })
    }
    const pin = ioapicPinOfGsi(gsi)
    if (pin >= 0 && this.ioapic !== undefined) {
      const r = ioapicSetIrq(this.ioapic, pin, level)
      const low = r.state.rteLow[pin]!
      this.log.push({
        _tag: "IoapicSetIrq", ...this.stamp(), pin, level, vector: low & 0xff,
        masked: (low & RTE_MASKED) !== 0, delivered: r.messages.length > 0, hostedIn: "userspace"
      })
      this.takeIoapic(r)
    }
  }

  private pulse(gsi: number, edges: number): void {
    for (let i = 0; i < edges; i++) {
      this.setIrq(gsi, true)
      this.setIrq(gsi, false)
    }
  }

  private takeIoapic(r: IoapicResult): void {
    this.ioapic = r.state
    for (const m of r.messages) this.deliverApic(m)
  }

  /** An IOAPIC message: to QEMU's LAPIC, or as an MSI to the kernel's. */
  private deliverApic(msg: ApicMessage): void {
    if (this.mode === "split") return this.vm.signalMsi(msiOf(msg.vector, msg.deliveryMode, msg.logical, msg.dest, msg.level))
    const lapic = this.lapic
    if (lapic === undefined || !lapicMatchDest(lapic, msg.logical, msg.dest)) return
    this.lapic = lapicAcceptIrq(lapic, msg)
    this.traceAccept(msg.deliveryMode, msg.level, msg.vector)
  }

  private traceAccept(deliveryMode: number, level: boolean, vector: number): void {
    this.log.push({ _tag: "ApicAcceptIrq", ...this.stamp(), apicId: this.lapic!.id & 0xff, deliveryMode, level, vector: vector & 0xff, hostedIn: "userspace" })
  }

  /** A device's interrupt output as a level: the line moves (and is traced) only when it changes. */
  driveLine(gsi: number, level: boolean): void {
    const bit = 1 << gsi
    if (((this.lines & bit) !== 0) === level) return
    this.lines = level ? this.lines | bit : this.lines & ~bit
    this.setIrq(gsi, level)
  }

  private updateRtcLine(): void {
    this.driveLine(RTC_GSI, rtcIrqLevel(this.rtc!))
  }

  // ---- timers -----------------------------------------------------------------------

  /** The next deadline of a timer QEMU hosts (what it arms KVM's kick for), in the timers' time, or +Infinity. */
  nextDeadline(): number {
    return earliest(
      this.pit === undefined ? undefined : pitNextDeadline(this.pit),
      this.rtc === undefined ? undefined : rtcNextDeadline(this.rtc),
      this.lapic === undefined ? undefined : lapicNextDeadline(this.lapic)
    )
  }

  /** Brings QEMU's timers to now and raises what expired. */
  advance(): void {
    const now = this.now
    if (this.pit !== undefined) {
      const r = pitAdvance(this.pit, now)
      this.pit = r.state
      if (r.irq0Edges > 0) {
        this.log.push({ _tag: "TimerExpiry", ...this.stamp(), timer: "pit", count: r.irq0Edges, hostedIn: "userspace" })
        this.pulse(PIT_GSI, r.irq0Edges)
      }
    }
    if (this.rtc !== undefined) {
      const deadline = rtcNextDeadline(this.rtc)
      this.rtc = rtcAdvance(this.rtc, now)
      if (deadline !== undefined && deadline <= now) {
        this.log.push({ _tag: "TimerExpiry", ...this.stamp(), timer: "rtc", count: 1, hostedIn: "userspace" })
      }
      this.updateRtcLine()
    }
    if (this.lapic !== undefined) {
      const before = this.lapic
      const deadline = lapicNextDeadline(before)
      this.lapic = lapicAdvance(before, now)
      if (deadline !== undefined && deadline <= now) {
        this.log.push({ _tag: "TimerExpiry", ...this.stamp(), timer: "lapic", count: 1, hostedIn: "userspace" })
        if (this.lapic.irr !== before.irr) this.traceAccept(DM_FIXED, false, this.lapic.lvt[LVT_TIMER]! & 0xff)
      }
    }
  }

  // ---- kvm_arch_pre_run and the exits ------------------------------------------------

  /** The vCPU is halted (KVM_GET_MP_STATE), in the kernel or handed back to it by `onHlt`. */
  get halted(): boolean {
    return this.vcpu.getMpState() === "halted"
  }

  /** CPU_INTERRUPT_HARD: an interrupt QEMU holds for the CPU. Never in kernel mode. */
  private hardInterrupt(): boolean {
    if (this.pic === undefined) return false
    const lapic = this.lapic
    if (lapic !== undefined && lapicPendingVector(lapic) >= 0) return true
    return (lapic === undefined || lapicAcceptsPicInterrupts(lapic)) && picIntr(this.pic)
  }

  /** `cpu_get_pic_interrupt`: the LAPIC's vector first, then the PIC's INTA cycle. */
  private acknowledge(): number {
    const lapic = this.lapic
    if (lapic !== undefined && lapicPendingVector(lapic) >= 0) {
      const ack = lapicAcknowledge(lapic)
      this.lapic = ack.state
      return ack.vector
    }
    const ack = picInterruptAcknowledge(this.pic!)
    this.pic = ack.state
    return ack.vector
  }

  /**
   * `kvm_arch_pre_run`: inject with KVM_INTERRUPT when the last exit said the guest is
   * ready, then ask for an interrupt window while anything is still waiting.
   */
  beforeRun(): void {
    if (this.mode === "kernel") return
    const vcpu = this.vcpu
    if (this.hardInterrupt() && vcpu.readyForInterruptInjection && vcpu.ifFlag) vcpu.interrupt(this.acknowledge())
    vcpu.requestInterruptWindow = this.hardInterrupt()
  }

  /**
   * KVM_EXIT_HLT, as QEMU's `kvm_handle_halt`: with IF = 0 nothing can wake the vCPU
   * and the run is over (false). Otherwise it goes on at once if an interrupt is
   * waiting, or is handed back to KVM halted (KVM_SET_MP_STATE), where virtual time
   * runs on to QEMU's next timer, the kick.
   */
  onHlt(): boolean {
    if (!this.vcpu.ifFlag) return false
    if (!this.hardInterrupt()) this.vcpu.setMpState("halted")
    return true
  }

  /** KVM_EXIT_IOAPIC_EOI (split irqchip): the guest's EOI for a level-triggered vector reaches QEMU's IOAPIC. */
  onIoapicEoi(vector: number): void {
    if (this.ioapic !== undefined) this.ioapicEoi(vector)
  }

  private ioapicEoi(vector: number): void {
    const before = this.ioapic!
    for (let pin = 0; pin < IOAPIC_NUM_PINS; pin++) {
      const low = before.rteLow[pin]!
      if ((low & RTE_REMOTE_IRR) !== 0 && (low & 0xff) === vector) {
        this.log.push({ _tag: "AckIrq", ...this.stamp(), irqchip: "ioapic", pin, hostedIn: "userspace" })
      }
    }
    this.takeIoapic(ioapicEoi(before, vector))
  }

  // ---- port I/O and MMIO ------------------------------------------------------------

  claims(space: "io" | "mmio", address: number): boolean {
    if (space === "io") return rtcHandlesPort(address) || (this.pic !== undefined && (picHandlesPort(address) || pitHandlesPort(address)))
    if (this.ioapic !== undefined && address >= IOAPIC_BASE && address < IOAPIC_BASE + IOAPIC_SIZE) return true
    return this.lapic !== undefined && lapicHwEnabled(this.lapic) && address >= this.lapicBase && address < this.lapicBase + LAPIC_SIZE
  }

  private get lapicBase(): number {
    return (this.lapic!.apicBase & 0xfffff000) >>> 0
  }

  read(space: "io" | "mmio", address: number, size: IoSize): number {
    const now = this.timeFor(space, address)
    if (space === "io") {
      if (rtcHandlesPort(address)) {
        const r = rtcIoRead(this.theRtc(), address, now, size)
        this.rtc = r.state
        this.updateRtcLine()
        return r.value
      }
      if (pitHandlesPort(address)) {
        const r = pitIoRead(this.pit!, address, now, size)
        this.pit = r.state
        this.pulse(PIT_GSI, r.irq0Edges)
        return r.value
      }
      const r = picIoRead(this.pic!, address, size)
      this.pic = r.state
      return r.value
    }
    if (address >= IOAPIC_BASE && address < IOAPIC_BASE + IOAPIC_SIZE) {
      const r = ioapicRead(this.ioapic!, address - IOAPIC_BASE, size)
      this.ioapic = r.state
      return r.value
    }
    const r = lapicRead(this.lapic!, address - this.lapicBase, size, now)
    this.lapic = r.state
    return r.value
  }

  write(space: "io" | "mmio", address: number, size: IoSize, value: number): void {
    const now = this.timeFor(space, address)
    if (space === "io") {
      if (rtcHandlesPort(address)) {
        this.rtc = rtcIoWrite(this.theRtc(), address, value, now, size)
        return this.updateRtcLine()
      }
      if (pitHandlesPort(address)) {
        const r = pitIoWrite(this.pit!, address, value, now, size)
        this.pit = r.state
        return this.pulse(PIT_GSI, r.irq0Edges)
      }
      const before = this.pic!
      this.pic = picIoWrite(before, address, value, size)
      return this.traceAcks(before, address)
    }
    if (address >= IOAPIC_BASE && address < IOAPIC_BASE + IOAPIC_SIZE) {
      return this.takeIoapic(ioapicWrite(this.ioapic!, address - IOAPIC_BASE, size, value))
    }
    const lapic = this.lapic!
    const r = lapicWrite(lapic, address - this.lapicBase, size, value, now)
    this.lapic = r.state
    if (r.state.irr !== lapic.irr && r.eoi === undefined) this.traceAccept((r.state.icrLow >> 8) & 7, false, r.state.icrLow & 0xff)
    const eoi = r.eoi
    if (eoi === undefined) return
    this.log.push({ _tag: "Eoi", ...this.stamp(), apicId: lapic.id & 0xff, vector: eoi.vector, level: eoi.level, hostedIn: "userspace" })
    if (eoi.level && eoi.vector >= 0) this.ioapicEoi(eoi.vector)
  }

  /** The time an access sees: the PIT's ports, the RTC's data port and the LAPIC timer's registers read the clock. */
  private timeFor(space: "io" | "mmio", address: number): number {
    const timed =
      space === "io"
        ? address === RTC_PORT_DATA || (this.pit !== undefined && pitHandlesPort(address))
        : this.lapic !== undefined && address >= this.lapicBase && address < this.lapicBase + LAPIC_SIZE && lapicTimerRegister(address - this.lapicBase)
    return timed ? this.nowForAccess() : this.now
  }

  /** kvm_ack_irq for each in-service bit a PIC command cleared. */
  private traceAcks(before: PicPairState, port: number): void {
    const slave = port === PIC_SLAVE_CMD || port === PIC_SLAVE_DATA || port === PIC_ELCR_SLAVE
    const cleared = slave ? before.slave.isr & ~this.pic!.slave.isr : before.master.isr & ~this.pic!.master.isr
    for (let i = 0; i < 8; i++) {
      if ((cleared & (1 << i)) !== 0) this.log.push({ _tag: "AckIrq", ...this.stamp(), irqchip: "pic", pin: slave ? i + 8 : i, hostedIn: "userspace" })
    }
  }

  /** The RTC, powered on at the guest's first access from the host's wall clock (recorded as HostClock). */
  private theRtc(): RtcState {
    if (this.rtc !== undefined) return this.rtc
    const epochSeconds = this.input.wallClock()
    this.log.push({ _tag: "HostClock", ...this.stamp(), device: "rtc", epochSeconds })
    this.rtc = rtcCreate({ shift: this.shift, epochSeconds, now: this.now })
    return this.rtc
  }
}
