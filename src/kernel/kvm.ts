import type { EventLog } from "../events/EventLog.ts"
import type { KvmVcpuApi, KvmVmApi, UserspaceMemoryRegion } from "./api.ts"
import { Memslots } from "./memslots.ts"
import { Vcpu } from "./vcpu.ts"

/** A VM fd: memslots shared by its vCPUs, each with its own view through EPT. */
export class Vm implements KvmVmApi {
  private readonly memslots = new Memslots()
  private readonly vcpus = new Map<number, Vcpu>()

  constructor(private readonly log: EventLog) {}

  setUserMemoryRegion(region: UserspaceMemoryRegion): void {
    this.memslots.setUserMemoryRegion(region)
  }

  createVcpu(id: number): KvmVcpuApi {
    if (this.vcpus.has(id)) throw new RangeError(`vCPU ${id} already exists`)
    if (id < 0 || id > 255) throw new RangeError(`vCPU id ${id} is out of range 0..255`)
    const vcpu = new Vcpu(id, this.memslots, this.log)
    this.vcpus.set(id, vcpu)
    return vcpu
  }
}

/** /dev/kvm: KVM_CREATE_VM. Events from the VM's tracepoints go to `log`. */
export const createVm = (log: EventLog): KvmVmApi => new Vm(log)
