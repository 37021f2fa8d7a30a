import { describe, expect, it } from "vitest"
import { CpuStop, Reg, Seg } from "../../../src/kernel/cpu/cpu.ts"
import { CODE, GDT, hex, protectedMode, realMode, SEL, setGate, testGdt } from "../../support/cpuHarness.ts"

const HANDLER = 0x4000

describe("entering and leaving protected mode", () => {
  it("real mode → LGDT, CR0.PE, far JMP → flat 32-bit code with descriptors loaded from the GDT", () => {
    // cli; lgdt [gdtr]; mov eax,cr0; or al,1; mov cr0,eax; jmp 08:pm32; gdtr: dw 3fh, dd 500h
    // pm32: mov ax,10h; mov ds,ax; mov ss,ax; mov esp,9000h; push 1234h;
    //       mov dword [5000h],0deadbeefh; call sub; hlt; sub: mov eax,cr0; and eax,-2; ret
    const m = realMode(
      hex(
        "fa 0f 01 16 13 10 0f 20 c0 0c 01 0f 22 c0 ea 19 10 08 00 3f 00 00 05 00 00 66 b8 10 00 8e d8 8e d0 " +
          "bc 00 90 00 00 68 34 12 00 00 c7 05 00 50 00 00 ef be ad de e8 01 00 00 00 f4 0f 20 c0 83 e0 fe c3"
      )
    )
    m.mem.load(GDT, testGdt())
    expect(m.cpu.run(100)).toBe(CpuStop.Stop)
    expect(m.cpu.cr0 & 1).toBe(1)
    expect(m.cpu.gdtrBase).toBe(GDT)
    expect(m.cpu.gdtrLimit).toBe(0x3f)
    expect(m.cpu.segSelector[Seg.CS]).toBe(SEL.code32)
    expect(m.cpu.segBase[Seg.CS]).toBe(0)
    expect(m.cpu.segLimit[Seg.CS]).toBe(0xffffffff)
    expect(m.cpu.segAttr[Seg.CS]).toBe(0xc09b)
    expect(m.cpu.segAttr[Seg.DS]).toBe(0xc093)
    expect(m.cpu.segAttr[Seg.SS]).toBe(0xc093)
    // The processor sets the accessed bit in the descriptors it loads.
    expect(m.mem.bytes[GDT + 8 + 5]).toBe(0x9b)
    expect(m.mem.bytes[GDT + 16 + 5]).toBe(0x93)
    expect(m.mem.peek32(0x5000)).toBe(0xdeadbeef)
    expect(m.mem.peek32(0x9000 - 4)).toBe(0x1234)
    expect(m.cpu.regs[Reg.EAX]).toBe(0x60000010)
    expect(m.cpu.regs[Reg.ESP]).toBe(0x9000 - 4)
    expect(m.cpu.eip).toBe(0x103b)
  })

  it("PM → 16-bit code segment → clear PE → real mode, keeping the 4 GiB data limit (unreal mode)", () => {
    const m = protectedMode(
      hex(
        "66 b8 10 00 8e d8 ea 0d 10 00 00 28 00 0f 20 c0 24 fe 0f 22 c0 ea 1a 10 00 00 31 c0 8e d8 " +
          "66 bb 00 00 10 00 67 66 8b 03 f4"
      )
    )
    m.mem.load(0x100000, [0x44, 0x33, 0x22, 0x11])
    expect(m.cpu.run(100)).toBe(CpuStop.Stop)
    expect(m.cpu.cr0 & 1).toBe(0)
    expect(m.cpu.segSelector[Seg.CS]).toBe(0)
    expect(m.cpu.segAttr[Seg.CS] & 0x4000).toBe(0)
    expect(m.cpu.segLimit[Seg.DS]).toBe(0xffffffff)
    expect(m.cpu.regs[Reg.EAX]).toBe(0x11223344)
  })
})

describe("protected-mode segment loads and far transfers", () => {
  it("far JMP to a data segment is #GP(selector)", () => {
    const m = protectedMode(hex("ea 00 30 00 00 10 00"))
    setGate(m, 13, HANDLER)
    m.cpu.run(1)
    expect(m.cpu.eip).toBe(HANDLER)
    expect(m.mem.peek32(m.cpu.regs[Reg.ESP])).toBe(SEL.data32)
  })

  it("far CALL pushes CS:EIP and RETF returns", () => {
    const m = protectedMode(hex("9a 00 20 00 00 08 00 f4"))
    m.mem.load(0x2000, hex("b8 01 00 00 00 cb"))
    expect(m.cpu.run(100)).toBe(CpuStop.Stop)
    expect(m.cpu.regs[Reg.EAX]).toBe(1)
    expect(m.cpu.eip).toBe(CODE + 8)
    expect(m.mem.peek32(0x8000 - 4)).toBe(SEL.code32)
    expect(m.mem.peek32(0x8000 - 8)).toBe(CODE + 7)
    expect(m.cpu.regs[Reg.ESP]).toBe(0x8000)
  })

  it("a byte-granular data segment applies its base and limit", () => {
    // mov ax,30h; mov ds,ax; mov eax,[0fch]; mov eax,[100h]
    const m = protectedMode(hex("66 b8 30 00 8e d8 a1 fc 00 00 00 a1 00 01 00 00"))
    setGate(m, 13, HANDLER)
    m.mem.load(0x200fc, [1, 2, 3, 4])
    m.cpu.run(3)
    expect(m.cpu.segBase[Seg.DS]).toBe(0x20000)
    expect(m.cpu.segLimit[Seg.DS]).toBe(0xff)
    expect(m.cpu.regs[Reg.EAX]).toBe(0x04030201)
    m.cpu.run(1)
    expect(m.cpu.eip).toBe(HANDLER)
    expect(m.mem.peek32(m.cpu.regs[Reg.ESP] + 4)).toBe(CODE + 11)
  })

  it("LGDT/SGDT/LIDT/SIDT round-trip; SMSW; LMSW cannot clear PE", () => {
    // lgdt [6000h]; sgdt [6010h]; lidt [6020h]; sidt [6030h]; smsw eax; lmsw bx
    const m = protectedMode(hex("0f 01 15 00 60 00 00 0f 01 05 10 60 00 00 0f 01 1d 20 60 00 00 0f 01 0d 30 60 00 00 0f 01 e0 0f 01 f3"))
    m.mem.load(0x6000, [0x27, 0x00, 0x00, 0x10, 0x02, 0x00])
    m.mem.load(0x6020, [0xff, 0x07, 0x00, 0x20, 0x03, 0x80])
    m.cpu.regs[Reg.EBX] = 0x000e
    m.cpu.run(6)
    expect([m.cpu.gdtrBase, m.cpu.gdtrLimit]).toEqual([0x21000, 0x27])
    expect([m.cpu.idtrBase, m.cpu.idtrLimit]).toEqual([0x80032000, 0x7ff])
    expect([...m.mem.bytes.subarray(0x6010, 0x6016)]).toEqual([0x27, 0x00, 0x00, 0x10, 0x02, 0x00])
    expect([...m.mem.bytes.subarray(0x6030, 0x6036)]).toEqual([0xff, 0x07, 0x00, 0x20, 0x03, 0x80])
    expect(m.cpu.regs[Reg.EAX]).toBe(0x60000011)
    expect(m.cpu.cr0).toBe(0x6000001f)
  })

  it("MOV to CR3/CR4 and back; setting CR0.PG with an empty page directory faults on the next fetch", () => {
    // mov cr3, ebx; mov ecx, cr3; mov cr4, eax; mov cr0, edx
    const m = protectedMode(hex("0f 22 db 0f 20 d9 0f 22 e0 0f 22 c2"))
    m.cpu.regs[Reg.EBX] = 0x5000
    m.cpu.regs[Reg.EAX] = 0x10
    m.cpu.regs[Reg.EDX] = 0x80000011
    // #PF on the fetch at CODE+12, then #PF again reading the IDT (not mapped): #DF, then shutdown.
    expect(m.cpu.run(10)).toBe(CpuStop.TripleFault)
    expect(m.cpu.regs[Reg.ECX]).toBe(0x5000)
    expect(m.cpu.cr4).toBe(0x10)
    expect(m.cpu.cr0 >>> 0).toBe(0x80000011)
    expect(m.cpu.eip).toBe(CODE + 12)
  })

  it("POP SS/DS and PUSH FS in 32-bit code; a 32-bit PUSH of a selector writes 16 bits", () => {
    // push ds; pop es; push fs
    const m = protectedMode(hex("1e 07 0f a0"))
    m.mem.load(0x8000 - 4, [0xaa, 0xbb, 0xcc, 0xdd])
    m.cpu.segSelector[Seg.FS] = 0
    m.cpu.run(3)
    expect(m.cpu.segSelector[Seg.ES]).toBe(SEL.data32)
    expect(m.mem.peek32(0x8000 - 4)).toBe(0xddcc0000)
    expect(m.cpu.regs[Reg.ESP]).toBe(0x8000 - 4)
  })
})
