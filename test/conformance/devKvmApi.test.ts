/**
 * The /dev/kvm backend speaks the same API as the model: the scenarios of
 * test/kernel/kvmApi.test.ts that do not depend on events or virtual time, run on
 * both backends side by side. Skipped with the reason where /dev/kvm is not usable.
 */
import { describe, expect, it } from "vitest"
import { allocateGuestMemory, createDevKvmVm, devKvmAvailability, KvmUnavailable } from "../../src/devkvm/devKvm.ts"
import { KVM_GET_REGS, KVM_GET_SREGS, KVM_RUN, KVM_SET_USER_MEMORY_REGION } from "../../src/devkvm/kvmAbi.ts"
import { EventLog } from "../../src/events/EventLog.ts"
import type { KvmRunExit, KvmSegment, KvmVcpuApi, KvmVmApi } from "../../src/kernel/api.ts"
import { createVm } from "../../src/kernel/kvm.ts"

const kvmState = devKvmAvailability()
if (!kvmState.usable) console.log(`/dev/kvm backend tests skipped: ${kvmState.reason}`)

const LOAD = 0x1000
const flat = (selector: number, type: number): KvmSegment => ({
  base: 0, limit: 0xffffffff, selector, type, present: true, dpl: 0, db: true, s: true, l: false, g: true, avl: false, unusable: false
})

const backends: ReadonlyArray<[string, () => { vm: KvmVmApi; ram: Uint8Array }]> = [
  ["model", () => ({ vm: createVm(new EventLog()), ram: new Uint8Array(0x10000) })],
  ["kvm", () => ({ vm: createDevKvmVm(), ram: allocateGuestMemory(0x10000) })],
  ["kvm, copied memslot", () => ({ vm: createDevKvmVm(), ram: new Uint8Array(0x10000) })]
]

const boot = (make: () => { vm: KvmVmApi; ram: Uint8Array }, code: number[]): { vcpu: KvmVcpuApi; ram: Uint8Array } => {
  const { vm, ram } = make()
  ram.set(code, LOAD)
  vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memory: ram })
  const vcpu = vm.createVcpu(0)
  const sregs = vcpu.getSregs()
  vcpu.setSregs({ ...sregs, cs: flat(8, 0xb), ds: flat(16, 3), es: flat(16, 3), ss: flat(16, 3), fs: flat(16, 3), gs: flat(16, 3), cr0: sregs.cr0 | 1 })
  vcpu.setRegs({ ...vcpu.getRegs(), rip: LOAD, rsp: LOAD, rflags: 2 })
  return { vcpu, ram }
}

const expectTag = <T extends KvmRunExit["_tag"]>(exit: KvmRunExit, tag: T): Extract<KvmRunExit, { _tag: T }> => {
  expect(exit._tag).toBe(tag)
  return exit as Extract<KvmRunExit, { _tag: T }>
}

describe("ioctl numbers are linux/kvm.h's", () => {
  it("computes _IO/_IOR/_IOW as the kernel headers do", () => {
    expect(KVM_RUN).toBe(0xae80)
    expect(KVM_GET_REGS).toBe(0x8090ae81)
    expect(KVM_GET_SREGS).toBe(0x8138ae83)
    expect(KVM_SET_USER_MEMORY_REGION).toBe(0x4020ae46)
  })
})

describe.skipIf(!kvmState.usable).each(backends)("the KVM-shaped API on %s", (_name, make) => {
  it("OUT leaves with the data; IN completes with what userspace put in the exit", () => {
    // mov al, 0x41; out 0xe9, al; mov dx, 0x3fd; in al, dx; hlt
    const { vcpu } = boot(make, [0xb0, 0x41, 0xe6, 0xe9, 0x66, 0xba, 0xfd, 0x03, 0xec, 0xf4])
    const out = expectTag(vcpu.run(), "KVM_EXIT_IO")
    expect([out.direction, out.port, out.size, out.count, [...out.data]]).toEqual(["out", 0xe9, 1, 1, [0x41]])
    const inn = expectTag(vcpu.run(), "KVM_EXIT_IO")
    expect([inn.direction, inn.port, inn.size, [...inn.data]]).toEqual(["in", 0x3fd, 1, [0]])
    inn.data[0] = 0x60
    expectTag(vcpu.run(), "KVM_EXIT_HLT")
    expect(vcpu.getRegs()).toMatchObject({ rax: 0x60, rip: LOAD + 10 })
  })

  it("MMIO: a read completes from the exit's data, a read-modify-write leaves twice", () => {
    // mov eax, [0xfebf0000]; add dword [0xfebf0000], 5; hlt
    const { vcpu } = boot(make, [0xa1, 0x00, 0x00, 0xbf, 0xfe, 0x83, 0x05, 0x00, 0x00, 0xbf, 0xfe, 0x05, 0xf4])
    const read = expectTag(vcpu.run(), "KVM_EXIT_MMIO")
    expect([read.physAddr, read.isWrite, read.len]).toEqual([0xfebf0000, false, 4])
    read.data.set([0x78, 0x56, 0x34, 0x12])
    const rmwRead = expectTag(vcpu.run(), "KVM_EXIT_MMIO")
    expect(vcpu.getRegs().rax).toBe(0x12345678)
    expect(rmwRead.isWrite).toBe(false)
    rmwRead.data.set([10, 0, 0, 0])
    const write = expectTag(vcpu.run(), "KVM_EXIT_MMIO")
    expect([write.isWrite, [...write.data]]).toEqual([true, [15, 0, 0, 0]])
    expectTag(vcpu.run(), "KVM_EXIT_HLT")
  })

  it("guest stores reach userspace's array, and userspace's writes reach the guest", () => {
    // mov eax, [0x8000]; mov [0x8004], eax; hlt
    const { vcpu, ram } = boot(make, [0xa1, 0x00, 0x80, 0, 0, 0xa3, 0x04, 0x80, 0, 0, 0xf4])
    ram.set([1, 2, 3, 4], 0x8000)
    expectTag(vcpu.run(), "KVM_EXIT_HLT")
    expect([...ram.subarray(0x8004, 0x8008)]).toEqual([1, 2, 3, 4])
  })

  it("answers CPUID from the table userspace set", () => {
    // xor eax, eax; cpuid; hlt
    const { vcpu } = boot(make, [0x31, 0xc0, 0x0f, 0xa2, 0xf4])
    vcpu.setCpuid([{ function: 0, index: 0, significantIndex: false, eax: 1, ebx: 0x756e6547, ecx: 0x6c65746e, edx: 0x49656e69 }])
    expectTag(vcpu.run(), "KVM_EXIT_HLT")
    expect(vcpu.getRegs()).toMatchObject({ rax: 1, rbx: 0x756e6547, rcx: 0x6c65746e, rdx: 0x49656e69 })
  })

  it("round-trips the segment registers and control registers", () => {
    const { vcpu } = boot(make, [0xf4])
    const s = vcpu.getSregs()
    expect(s.cs).toEqual(flat(8, 0xb))
    expect(s.cr0 & 1).toBe(1)
    vcpu.setSregs({ ...s, gdt: { base: 0x600, limit: 23 }, idt: { base: 0x800, limit: 255 } })
    expect(vcpu.getSregs()).toMatchObject({ gdt: { base: 0x600, limit: 23 }, idt: { base: 0x800, limit: 255 } })
  })
})

describe("where /dev/kvm cannot be used", () => {
  it("the error is one tagged value with a reason", () => {
    const e = new KvmUnavailable({ reason: 'open("/dev/kvm"): Permission denied' })
    expect(e._tag).toBe("KvmUnavailable")
    expect(e.message).toBe('/dev/kvm is not usable: open("/dev/kvm"): Permission denied')
  })
})
