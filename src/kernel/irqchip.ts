/**
 * KVM's in-kernel irqchip for one VM: the 8259A pair and the IOAPIC
 * (KVM_CREATE_IRQCHIP, arch/x86/kvm/i8259.c and ioapic.c), the PIT (KVM_CREATE_PIT2,
 * i8254.c) and the GSI routing between them (irq_comm.c). The chips are the pure
 * models of `src/hw`; this class holds their state, answers their ports and MMIO in
 * the kernel, and traces what they decide. Each vCPU's LAPIC lives with the vCPU
 * (`interrupts.ts`); messages for it go through `deliver`. In split mode
 * (KVM_CAP_SPLIT_IRQCHIP) there is no instance: only the LAPICs are in the kernel.
 */
import type { EventLog } from "../events/EventLog.ts"
import type { IoSize } from "../hw/clock.ts"
import {
  picHandlesPort,
  picInitial,
  picIntr,
  picInterruptAcknowledge,
  picIoRead,
  picIoWrite,
  picSetIrq,
  PIC_SLAVE_CMD,
  PIC_SLAVE_DATA,
  PIC_ELCR_SLAVE,
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
  type ApicMessage,
  type IoapicResult,
  type IoapicState
} from "../hw/intc/ioapic.ts"
import { ioapicPinOfGsi, picLineOfGsi, PIT_GSI } from "../hw/pcIrqRouting.ts"
import { pitAdvance, pitCreate, pitHandlesPort, pitIoRead, pitIoWrite, pitNextDeadline, type PitState } from "../hw/timer/i8254.ts"
import { memoLast } from "./memo.ts"

/** Where the chip's events are stamped: the vCPU whose exit (or ioctl) is being handled, at its virtual time. */
export interface IrqchipClock {
  readonly vcpu: number
  readonly time: number
}

export class KvmIrqchip {
  pic: PicPairState = picInitial
  ioapic: IoapicState = ioapicInitial
  private pitState: PitState | undefined
  /**
   * The time `advance` last brought the timers to. Before the PIT's next deadline
   * nothing happens but its clock moving on, so `advance` leaves the state as it is
   * and reading it (`pit`) brings it to this time: the same state, without a new one per VM entry.
   */
  private advancedTo = 0
  private readonly pitDeadline = memoLast(pitNextDeadline)
  private readonly picOutput = memoLast(picIntr)

  constructor(
    private readonly log: EventLog,
    private readonly shift: number,
    private readonly now: () => IrqchipClock,
    /** Hands an IOAPIC (or MSI) message to the LAPICs it names. */
    private readonly deliver: (msg: ApicMessage) => void
  ) {}

  createPit(): void {
    this.pitState = pitCreate(this.shift)
  }

  /** The PIT (after KVM_CREATE_PIT2), as KVM_GET_PIT2 reads it. */
  get pit(): PitState | undefined {
    const s = this.pitState
    // Before the deadline: no edge, only the tick moves on.
    if (s !== undefined) this.pitState = pitAdvance(s, this.advancedTo).state
    return this.pitState
  }

  /** KVM_SET_PIT2: the state stands as given until the next VM entry advances it. */
  set pit(state: PitState | undefined) {
    this.pitState = state
    this.advancedTo = 0
  }

  /** The PIC's INTR output (KVM's kvm_pic_read_irq is `acknowledgePic`). */
  get picIntr(): boolean {
    return this.picOutput(this.pic)
  }

  /** The INTA cycle at injection: the vector the CPU gets. */
  acknowledgePic(): number {
    const ack = picInterruptAcknowledge(this.pic)
    this.pic = ack.state
    return ack.vector
  }

  /** KVM_IRQ_LINE, and the in-kernel PIT's own line: kvm_set_irq through the routing table. */
  setIrq(gsi: number, level: boolean): void {
    const { vcpu, time } = this.now()
    this.log.push({ _tag: "SetIrq", seq: this.log.nextSeq, vcpu, time, gsi, level, hostedIn: "kernel" })
    const line = picLineOfGsi(gsi)
    if (line >= 0) {
      this.pic = picSetIrq(this.pic, line, level)
      const chip = line < 8 ? this.pic.master : this.pic.slave
      this.log.push({
        _tag: "PicSetIrq", seq: this.log.nextSeq, vcpu, time, irq: line, level,
        imr: chip.imr, elcr: chip.elcr, intr: picIntr(this.pic), hostedIn: "kernel"
      })
    }
    const pin = ioapicPinOfGsi(gsi)
    if (pin >= 0) {
      const r = ioapicSetIrq(this.ioapic, pin, level)
      const low = r.state.rteLow[pin]!
      this.log.push({
        _tag: "IoapicSetIrq", seq: this.log.nextSeq, vcpu, time, pin, level,
        vector: low & 0xff, masked: (low & RTE_MASKED) !== 0, delivered: r.messages.length > 0, hostedIn: "kernel"
      })
      this.takeIoapic(r)
    }
  }

  private takeIoapic(r: IoapicResult): void {
    this.ioapic = r.state
    for (const m of r.messages) this.deliver(m)
  }

  // ---- PIT ------------------------------------------------------------------

  nextDeadline(): number | undefined {
    return this.pitState === undefined ? undefined : this.pitDeadline(this.pitState)
  }

  /** Brings the PIT to `now`; each rising edge of OUT0 is a pulse on GSI 0, as KVM's PIT injects it. */
  advance(now: number): void {
    if (this.pitState === undefined) return
    this.advancedTo = now
    const deadline = this.nextDeadline()
    if (deadline === undefined || now < deadline) return
    const r = pitAdvance(this.pitState, now)
    this.pitState = r.state
    if (r.irq0Edges === 0) return
    const { vcpu, time } = this.now()
    this.log.push({ _tag: "TimerExpiry", seq: this.log.nextSeq, vcpu, time, timer: "pit", count: r.irq0Edges, hostedIn: "kernel" })
    this.pulse(r.irq0Edges)
  }

  private pulse(edges: number): void {
    for (let i = 0; i < edges; i++) {
      this.setIrq(PIT_GSI, true)
      this.setIrq(PIT_GSI, false)
    }
  }

  // ---- port I/O and MMIO handled in the kernel ------------------------------

  handlesPort(port: number): boolean {
    return picHandlesPort(port) || (this.pitState !== undefined && pitHandlesPort(port))
  }

  pioRead(port: number, size: IoSize, now: number): number {
    if (this.pitState !== undefined && pitHandlesPort(port)) {
      const r = pitIoRead(this.pitState, port, now, size)
      this.pitState = r.state
      this.pulse(r.irq0Edges)
      return r.value
    }
    const r = picIoRead(this.pic, port, size)
    this.pic = r.state
    return r.value
  }

  pioWrite(port: number, size: IoSize, value: number, now: number): void {
    if (this.pitState !== undefined && pitHandlesPort(port)) {
      const r = pitIoWrite(this.pitState, port, value, now, size)
      this.pitState = r.state
      this.pulse(r.irq0Edges)
      return
    }
    const before = this.pic
    this.pic = picIoWrite(before, port, value, size)
    this.traceAcks(before, port)
  }

  /** kvm_ack_irq for every in-service bit an EOI command cleared (what KVM notifies its ack notifiers of). */
  private traceAcks(before: PicPairState, port: number): void {
    const slave = port === PIC_SLAVE_CMD || port === PIC_SLAVE_DATA || port === PIC_ELCR_SLAVE
    const cleared = slave ? before.slave.isr & ~this.pic.slave.isr : before.master.isr & ~this.pic.master.isr
    if (cleared === 0) return
    const { vcpu, time } = this.now()
    for (let i = 0; i < 8; i++) {
      if ((cleared & (1 << i)) === 0) continue
      this.log.push({ _tag: "AckIrq", seq: this.log.nextSeq, vcpu, time, irqchip: "pic", pin: slave ? i + 8 : i, hostedIn: "kernel" })
    }
  }

  handlesMmio(gpa: number): boolean {
    return gpa >= IOAPIC_BASE && gpa < IOAPIC_BASE + IOAPIC_SIZE
  }

  mmioRead(gpa: number, size: IoSize): number {
    const r = ioapicRead(this.ioapic, gpa - IOAPIC_BASE, size)
    this.ioapic = r.state
    return r.value
  }

  mmioWrite(gpa: number, size: IoSize, value: number): void {
    this.takeIoapic(ioapicWrite(this.ioapic, gpa - IOAPIC_BASE, size, value))
  }

  /** A LAPIC's EOI of a level-triggered vector, broadcast to the IOAPIC (kvm_ioapic_update_eoi). */
  eoi(vector: number): void {
    const before = this.ioapic
    const r = ioapicEoi(before, vector)
    const { vcpu, time } = this.now()
    for (let pin = 0; pin < IOAPIC_NUM_PINS; pin++) {
      if ((before.rteLow[pin]! & RTE_REMOTE_IRR) !== 0 && (before.rteLow[pin]! & 0xff) === vector) {
        this.log.push({ _tag: "AckIrq", seq: this.log.nextSeq, vcpu, time, irqchip: "ioapic", pin, hostedIn: "kernel" })
      }
    }
    this.takeIoapic(r)
  }
}
