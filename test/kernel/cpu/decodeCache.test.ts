/**
 * The decoded-instruction cache (cpu.ts decodeAt): cached instructions are keyed by
 * guest-physical address and CS.D, and go stale when their frame is written, by the
 * guest or by anyone else writing through the EPT. These tests run the CPU on the
 * kernel's EPT (the memory that counts writes), where the cache is on.
 */
import { describe, expect, it } from "vitest"
import { Cpu, CpuStop, Reg, Seg } from "../../../src/kernel/cpu/cpu.ts"
import { Ept } from "../../../src/kernel/ept.ts"
import { Memslots } from "../../../src/kernel/memslots.ts"
import { hex } from "../../support/cpuHarness.ts"
import { ramOnlyExits } from "../../support/ramOnly.ts"
import { RecordingExits } from "../../support/recordingExits.ts"
import { le32 } from "../../support/programs.ts"

interface Rig {
  readonly cpu: Cpu
  readonly ram: Uint8Array
  readonly memslots: Memslots
  readonly exits: RecordingExits
}

/** 4 MiB of RAM at 0, flat 32-bit protected mode at CPL 0, code at `at`. */
const rig = (at: number, code: number[]): Rig => {
  const memslots = new Memslots()
  const ram = new Uint8Array(4 << 20)
  memslots.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memory: ram })
  const exits = new RecordingExits()
  const cpu = new Cpu(new Ept(memslots, ramOnlyExits), exits)
  exits.cpu = cpu
  cpu.cr0 = 0x60000011
  for (let s = 0; s < 6; s++) {
    cpu.segBase[s] = 0
    cpu.segLimit[s] = 0xffffffff
    cpu.segAttr[s] = 0xc093
  }
  cpu.segAttr[Seg.CS] = 0xc09b
  cpu.regs[Reg.ESP] = 0x8000
  cpu.eip = at
  ram.set(code, at)
  return { cpu, ram, memslots, exits }
}

const runToHlt = (cpu: Cpu): void => {
  expect(cpu.run(10_000)).toBe(CpuStop.Stop)
}

describe("decoded-instruction cache", () => {
  it("sees an instruction the guest rewrote in the same page", () => {
    // mov ecx, 2; l: mov eax, 1; add ebx, eax; mov byte [0x10006], 7; dec ecx; jnz l; hlt
    const { cpu } = rig(0x10000, hex("b9 02 00 00 00 b8 01 00 00 00 01 c3 c6 05 06 00 01 00 07 49 75 ef f4"))
    runToHlt(cpu)
    // The second pass runs `mov eax, 7`: 1 + 7.
    expect(cpu.regs[Reg.EBX]).toBe(8)
  })

  it("sees an instruction the guest rewrote in another page", () => {
    // call 0x11000; mov byte [0x11001], 9; call 0x11000; hlt — at 0x11000: mov eax, 5; add ebx, eax; ret
    const { cpu, ram } = rig(0x10000, hex("e8 fb 0f 00 00 c6 05 01 10 01 00 09 e8 ef 0f 00 00 f4"))
    ram.set(hex("b8 05 00 00 00 01 c3 c3"), 0x11000)
    runToHlt(cpu)
    expect(cpu.regs[Reg.EBX]).toBe(5 + 9)
  })

  it("sees a rewritten byte of an instruction that straddles two pages", () => {
    // At 0x11ffe: mov eax, imm32 with its immediate split over 0x11fff-0x12002; then add ebx, eax; ret.
    // Main: call it; rewrite the byte at 0x12000 (second page); call it again; hlt.
    const { cpu, ram } = rig(0x10000, hex("e8 f9 1f 00 00 c6 05 00 20 01 00 02 e8 ed 1f 00 00 f4"))
    ram.set(hex("b8 01 00 00 00 01 c3 c3"), 0x11ffe)
    runToHlt(cpu)
    expect(cpu.regs[Reg.EBX]).toBe(1 + 0x201)
  })

  it("sees a write from elsewhere in the kernel (another vCPU's EPT) to a cached code page", () => {
    const { cpu, memslots } = rig(0x10000, hex("b8 01 00 00 00 f4"))
    runToHlt(cpu)
    expect(cpu.regs[Reg.EAX]).toBe(1)
    new Ept(memslots, ramOnlyExits).write8(0x10001, 0x42)
    cpu.eip = 0x10000
    runToHlt(cpu)
    expect(cpu.regs[Reg.EAX]).toBe(0x42)
  })

  it("keeps cached code when only data next to it in the same page is written", () => {
    // The stack grows down from the code's first byte, as a real-mode boot sector's does:
    // mov ecx, 40; l: call f; dec ecx; jnz l; hlt; f: ret
    const { cpu, memslots } = rig(0x10800, hex("b9 28 00 00 00 e8 04 00 00 00 49 75 f8 f4 c3"))
    cpu.regs[Reg.ESP] = 0x10800
    runToHlt(cpu)
    expect(cpu.regs[Reg.ECX]).toBe(0)
    // 40 return addresses were pushed into the page, and no cached instruction went stale.
    expect(memslots.frameWrites[0x10]).toBe(40)
    expect(memslots.codeWrites[0x10]).toBe(0)
    // A write onto the code does make it stale: the next run decodes `mov ecx, 0x42`.
    new Ept(memslots, ramOnlyExits).write8(0x10801, 0x42)
    expect(memslots.codeWrites[0x10]).toBe(1)
    cpu.eip = 0x10800
    cpu.regs[Reg.ECX] = 0
    cpu.run(1)
    expect(cpu.regs[Reg.ECX]).toBe(0x42)
  })

  it("decodes the same bytes again when CS.D changes", () => {
    // b8 01 00 00 00: mov eax, 1 (32-bit code) or mov ax, 1 then add [bx+si], al (16-bit code).
    const { cpu } = rig(0x10000, hex("b8 01 00 00 00 f4"))
    cpu.regs[Reg.EAX] = 0xffff0000
    runToHlt(cpu)
    expect(cpu.regs[Reg.EAX]).toBe(1)
    expect(cpu.eip).toBe(0x10006)
    cpu.segAttr[Seg.CS] = 0x009b
    cpu.segLimit[Seg.CS] = 0xffff
    cpu.segBase[Seg.CS] = 0x10000
    cpu.eip = 0
    cpu.regs[Reg.EAX] = 0xffff0000
    expect(cpu.run(1)).toBe(CpuStop.Budget)
    expect(cpu.regs[Reg.EAX]).toBe(0xffff0001)
    expect(cpu.eip).toBe(3)
  })

  it("follows the page tables, not the linear address, when paging changes the mapping", () => {
    // Linear 0x400000 maps to 0x20000 through PD_A and to 0x21000 through PD_B.
    const PD_A = 0x30000
    const PD_B = 0x31000
    const PT_LOW = 0x32000
    const PT_A = 0x33000
    const PT_B = 0x34000
    const { cpu, ram } = rig(0x10000, [])
    for (let i = 0; i < 1024; i++) ram.set(le32((i << 12) | 3), PT_LOW + i * 4)
    ram.set(le32(0x20000 | 3), PT_A)
    ram.set(le32(0x21000 | 3), PT_B)
    ram.set(le32(PT_LOW | 3), PD_A)
    ram.set(le32(PT_A | 3), PD_A + 4)
    ram.set(le32(PT_LOW | 3), PD_B)
    ram.set(le32(PT_B | 3), PD_B + 4)
    ram.set(hex("b8 0a 00 00 00 f4"), 0x20000)
    ram.set(hex("b8 0b 00 00 00 f4"), 0x21000)
    cpu.cr0 = (0x80000000 | 0x60000011) >>> 0
    cpu.cr3 = PD_A
    cpu.flushTlb()
    cpu.eip = 0x400000
    runToHlt(cpu)
    expect(cpu.regs[Reg.EAX]).toBe(0x0a)
    cpu.cr3 = PD_B
    cpu.flushTlb()
    cpu.eip = 0x400000
    runToHlt(cpu)
    expect(cpu.regs[Reg.EAX]).toBe(0x0b)
  })

  it("still faults on a fetch beyond the CS limit for a cached instruction", () => {
    const { cpu } = rig(0x10000, hex("b8 01 00 00 00 f4"))
    runToHlt(cpu)
    // The same bytes, now with a CS limit that cuts the immediate: #GP(0) on the fetch, through the IDT.
    cpu.segLimit[Seg.CS] = 0x10002
    cpu.eip = 0x10000
    cpu.idtrLimit = 0
    expect(cpu.run(1)).toBe(CpuStop.TripleFault)
    expect(cpu.eip).toBe(0x10000)
  })
})
