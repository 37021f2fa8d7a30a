import type { EventLog } from "../events/EventLog.ts"
import type { ApicMessage } from "../hw/intc/ioapic.ts"
import type { PitState } from "../hw/timer/i8254.ts"
import {
  KVM_IRQCHIP_IOAPIC,
  KVM_IRQCHIP_PIC_MASTER,
  type KvmIrqchip as KvmIrqchipState,
  type KvmIrqchipVmApi,
  type KvmMsi,
  type KvmTimerClock,
  type KvmTimerClockApi,
  type KvmVcpuApi,
  type KvmVmApi,
  type KvmVmStateApi,
  type UserspaceMemoryRegion
} from "./api.ts"
import type { VmInterrupts } from "./interrupts.ts"
import { KvmIrqchip } from "./irqchip.ts"
import { type FrameTables, Memslots } from "./memslots.ts"
import { Vcpu } from "./vcpu.ts"

/** A VM fd: memslots shared by its vCPUs, each with its own view through EPT. */
export class Vm implements KvmVmApi, KvmVmStateApi, KvmIrqchipVmApi, KvmTimerClockApi, VmInterrupts {
  private readonly memslots: Memslots
  private readonly vcpus = new Map<number, Vcpu>()
  shift = 0
  irqchip: KvmIrqchip | undefined
  split = false
  clock: KvmTimerClock | undefined

  /** `tables`: zeroed per-frame tables to use instead of new ones (see FrameTables). */
  constructor(
    private readonly log: EventLog,
    tables?: FrameTables
  ) {
    this.memslots = new Memslots(tables)
  }

  /** The per-frame tables, zeroed, for a VM built after this one (this one must not be used again). */
  takeFrameTables(): FrameTables {
    return this.memslots.takeTables()
  }

  setUserMemoryRegion(region: UserspaceMemoryRegion): void {
    this.memslots.setUserMemoryRegion(region)
  }

  getDirtyLog(slot: number, into?: Uint8Array): Uint8Array {
    return this.memslots.getDirtyLog(slot, into)
  }

  getEptEntries(): Array<[number, number]> {
    return this.memslots.getEptEntries()
  }

  setEptEntries(entries: ReadonlyArray<readonly [number, number]>): void {
    this.memslots.setEptEntries(entries)
  }

  createVcpu(id: number): KvmVcpuApi {
    if (this.vcpus.has(id)) throw new RangeError(`vCPU ${id} already exists`)
    if (id < 0 || id > 255) throw new RangeError(`vCPU id ${id} is out of range 0..255`)
    const vcpu = new Vcpu(id, this.memslots, this.log, this)
    this.vcpus.set(id, vcpu)
    return vcpu
  }

  // ---- the in-kernel irqchip ----------------------------------------------------

  setIcountShift(shift: number): void {
    if (!Number.isInteger(shift) || shift < 0 || shift > 10) throw new RangeError(`icount shift ${shift} is out of range 0..10`)
    if (this.irqchip !== undefined || this.split) throw new RangeError("the icount shift must be set before the irqchip is created")
    this.shift = shift
  }

  /** Real-time mode: the chips then count ns of this clock (shift 0) instead of instructions. */
  setTimerClock(clock: KvmTimerClock): void {
    if (this.irqchip !== undefined || this.split) throw new RangeError("the timer clock must be set before the irqchip is created")
    this.shift = 0
    this.clock = clock
  }

  createIrqchip(): void {
    this.beforeIrqchip("KVM_CREATE_IRQCHIP")
    this.irqchip = this.newIrqchip()
  }

  enableSplitIrqchip(): void {
    this.beforeIrqchip("KVM_CAP_SPLIT_IRQCHIP")
    this.split = true
  }

  createPit2(): void {
    if (this.irqchip?.pit !== undefined) throw new RangeError("KVM_CREATE_PIT2: the PIT already exists")
    // The in-kernel PIT raises its line on the in-kernel PIC and IOAPIC: split mode keeps it in userspace.
    if (this.irqchip === undefined) throw new RangeError("KVM_CREATE_PIT2 needs the in-kernel PIC and IOAPIC (KVM_CREATE_IRQCHIP)")
    this.irqchip.createPit()
  }

  irqLine(irq: number, level: boolean): void {
    if (this.irqchip === undefined) throw new RangeError("KVM_IRQ_LINE needs the in-kernel PIC and IOAPIC (KVM_CREATE_IRQCHIP)")
    this.irqchip.setIrq(irq, level)
  }

  signalMsi(msi: KvmMsi): void {
    if (this.irqchip === undefined && !this.split) throw new RangeError("KVM_SIGNAL_MSI needs in-kernel LAPICs")
    const data = msi.data
    this.deliver({
      vector: data & 0xff,
      deliveryMode: (data >> 8) & 7,
      logical: (msi.address & 4) !== 0,
      dest: (msi.address >>> 12) & 0xff,
      level: (data & 0x8000) !== 0,
      pin: -1
    })
  }

  getIrqchip(chipId: KvmIrqchipState["chipId"]): KvmIrqchipState {
    const chip = this.irqchip
    if (chip === undefined) throw new RangeError("KVM_GET_IRQCHIP: no in-kernel PIC and IOAPIC")
    if (chipId === KVM_IRQCHIP_IOAPIC) return { chipId, ioapic: chip.ioapic }
    return { chipId, pic: chipId === KVM_IRQCHIP_PIC_MASTER ? chip.pic.master : chip.pic.slave }
  }

  setIrqchip(state: KvmIrqchipState): void {
    const chip = this.irqchip
    if (chip === undefined) throw new RangeError("KVM_SET_IRQCHIP: no in-kernel PIC and IOAPIC")
    if (state.chipId === KVM_IRQCHIP_IOAPIC) chip.ioapic = state.ioapic
    else chip.pic = state.chipId === KVM_IRQCHIP_PIC_MASTER ? { master: state.pic, slave: chip.pic.slave } : { master: chip.pic.master, slave: state.pic }
  }

  getPit2(): PitState {
    const pit = this.irqchip?.pit
    if (pit === undefined) throw new RangeError("KVM_GET_PIT2: no in-kernel PIT")
    return pit
  }

  setPit2(state: PitState): void {
    if (this.irqchip?.pit === undefined) throw new RangeError("KVM_SET_PIT2: no in-kernel PIT")
    this.irqchip.pit = state
  }

  private beforeIrqchip(what: string): void {
    if (this.irqchip !== undefined || this.split) throw new RangeError(`${what}: the VM already has an irqchip`)
    if (this.vcpus.size > 0) throw new RangeError(`${what} must come before the first KVM_CREATE_VCPU`)
  }

  private newIrqchip(): KvmIrqchip {
    const clock = () => {
      // One vCPU drives virtual time; its id and clock stamp the chips' events.
      const first = this.vcpus.values().next().value as Vcpu | undefined
      return { vcpu: first?.id ?? 0, time: first?.instructionsRetired ?? 0 }
    }
    return new KvmIrqchip(this.log, this.shift, clock, (msg) => this.deliver(msg))
  }

  /** An APIC-bus message to every in-kernel LAPIC it names. */
  private deliver(msg: ApicMessage): void {
    for (const vcpu of this.vcpus.values()) vcpu.irq.accept(msg)
  }
}

/** /dev/kvm: KVM_CREATE_VM. Events from the VM's tracepoints go to `log`. */
export const createVm = (log: EventLog): KvmVmApi => new Vm(log)
