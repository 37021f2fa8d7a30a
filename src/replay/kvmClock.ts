/**
 * The model on real KVM's clock, for replaying a trace recorded on /dev/kvm: virtual
 * time counts KVM_RUN calls that entered the guest instead of instructions, and a kick
 * is an immediate exit, exactly as `src/devkvm` keeps time. Host input recorded on KVM
 * then reaches the model at the same KVM_RUN, and a run cut short by `--limit` is cut
 * at the same exit.
 */
import type { KvmVcpuApi, KvmVmApi } from "../kernel/api.ts"
import { createVm } from "../kernel/kvm.ts"
import type { KernelFactory } from "../qemu/machine.ts"

const NO_BUDGET = Number.MAX_SAFE_INTEGER

/**
 * A model vCPU whose clock is KVM_RUN calls. A kicked run enters the model with no
 * instruction budget: like KVM_RUN with `immediate_exit`, it still completes an IN or
 * MMIO read userspace answered, then returns KVM_EXIT_INTR, and does not count.
 */
const onExitClock = (inner: KvmVcpuApi): KvmVcpuApi => {
  let runs = 0
  let kick = Number.POSITIVE_INFINITY
  return {
    id: inner.id,
    clock: "exits",
    get instructionsRetired() {
      return runs
    },
    kickAt(time) {
      kick = time
    },
    run() {
      if (runs >= kick) {
        inner.kickAt(inner.instructionsRetired)
      } else {
        inner.kickAt(NO_BUDGET)
        runs++
      }
      return inner.run()
    },
    getRegs: () => inner.getRegs(),
    setRegs: (regs) => inner.setRegs(regs),
    getSregs: () => inner.getSregs(),
    setSregs: (sregs) => inner.setSregs(sregs),
    setCpuid: (entries) => inner.setCpuid(entries)
  }
}

/**
 * The model's VM with every vCPU on KVM's clock, without the irqchip and state ioctls
 * (so no interrupt controllers and no checkpoints). KVM's in-kernel PIT runs on host
 * time, which a trace does not record, so a KVM trace of a guest that takes interrupts
 * cannot be re-executed here; guests without interrupts replay exactly.
 */
export const modelOnKvmClock: KernelFactory = (log) => {
  const vm = createVm(log)
  const wrapped: KvmVmApi = {
    setUserMemoryRegion: (region) => vm.setUserMemoryRegion(region),
    createVcpu: (id) => onExitClock(vm.createVcpu(id))
  }
  return wrapped
}
