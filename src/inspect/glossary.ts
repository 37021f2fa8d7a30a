/**
 * The terms a reader of `vmrr explain` meets, each defined once, the first time it is
 * used. Definitions follow the Intel SDM (Vol. 3C) and the KVM API documentation.
 */
export const glossary = {
  "VMX non-root mode":
    "the CPU mode a guest runs in under Intel VT-x: instructions run natively until one the hypervisor asked to intercept, which causes a VM exit",
  "VM exit":
    "the CPU stops running the guest, saves its state in the VMCS with an exit reason and a qualification, and jumps to the hypervisor (here KVM)",
  "VM entry": "VMLAUNCH or VMRESUME: the hypervisor loads the guest state from the VMCS and the guest continues where it stopped",
  "exit qualification": "a VMCS field with the details of a VM exit: for I/O, the port, size and direction; for EPT, the kind of access",
  EPT: "extended page tables: the second translation, guest-physical to host memory, that the hypervisor owns; KVM fills it on demand",
  "EPT violation":
    "an access to a guest-physical page the EPT does not map (or maps without the right permission); KVM either maps RAM or finds MMIO",
  "EPT misconfiguration": "an EPT entry with a deliberately invalid combination of bits; KVM plants one on MMIO pages so later accesses exit at once",
  memslot: "a region of guest-physical memory backed by userspace memory, registered with KVM_SET_USER_MEMORY_REGION",
  MMIO: "memory-mapped I/O: a device's registers at guest-physical addresses no memslot covers; each access is emulated",
  "port I/O": "IN/OUT instructions to the 64 KiB x86 I/O space, where PC devices like the 16550 UART live; each one is a VM exit",
  KVM_RUN: "the vCPU ioctl QEMU calls to run the guest; it returns when KVM needs userspace, with the reason in kvm_run.exit_reason",
  "vCPU kick": "a way for the host to make KVM_RUN return promptly (QEMU sends a signal to the vCPU thread): KVM_EXIT_INTR",
  "host input": "something from outside the guest and machine (a key typed on the console); recorded with its virtual time so a replay is exact",
  "virtual time": "vmrr's clock: the number of guest instructions retired, so a replay sees every event at the same time",
  "real-time clock mode":
    "--clock realtime: the timers follow the host's monotonic clock, as QEMU's do without -icount; each reading that moves a timer, or that the guest reads, is recorded",
  "interrupt injection": "KVM writes an interrupt vector into the VM-entry interruption-information field; the guest takes it at entry",
  "exception injection": "KVM writes an exception vector (and error code) into the VM-entry interruption-information field, as if the instruction had raised it",
  "interrupt window":
    "the moment the guest can take an interrupt again (IF = 1 and no STI/MOV SS shadow); KVM asks for a VM exit when it opens"
} as const

export type Term = keyof typeof glossary
