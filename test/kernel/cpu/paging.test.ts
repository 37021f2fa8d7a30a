import { describe, expect, it } from "vitest"
import { CpuStop, Reg } from "../../../src/kernel/cpu/cpu.ts"
import { CODE, hex, type Machine, protectedMode, setGate, STACK_TOP } from "../../support/cpuHarness.ts"
import { le32 } from "../../support/programs.ts"

const PD = 0x10000
const PT0 = 0x11000
const PT1 = 0x12000
const PF_HANDLER = 0x4000
const P = 1
const RW = 2
const US = 4
const A = 0x20
const D = 0x40
const PS = 0x80

/**
 * Flat PM at CPL 0 with paging on: linear 0-4 MiB identity-mapped by PT0 (user, writable),
 * linear 4 MiB+ through PT1 (empty until a test fills it), #PF handler at 0x4000.
 */
const paged = (code: string, cr4 = 0): Machine => {
  const m = protectedMode(hex(code))
  for (let i = 0; i < 0x110; i++) m.mem.load(PT0 + i * 4, le32((i << 12) | P | RW | US))
  m.mem.load(PD, le32(PT0 | P | RW | US))
  m.mem.load(PD + 4, le32(PT1 | P | RW | US))
  setGate(m, 14, PF_HANDLER)
  m.mem.load(PF_HANDLER, hex("f4"))
  m.cpu.cr3 = PD
  m.cpu.cr4 = cr4
  m.cpu.cr0 = (0x80010011 | 0x60000000) >>> 0
  return m
}
const setPte = (m: Machine, table: number, index: number, value: number): void => m.mem.load(table + index * 4, le32(value))

describe("32-bit paging", () => {
  it("CR0.PG can be set by MOV CR0 and translates through a 4 KiB page, setting A then D exactly", () => {
    const m = protectedMode(hex("0f 22 d8 0f 22 c0 a1 10 00 40 00 89 1d 14 00 40 00 f4"))
    for (let i = 0; i < 0x110; i++) m.mem.load(PT0 + i * 4, le32((i << 12) | P | RW))
    m.mem.load(PD, le32(PT0 | P | RW))
    m.mem.load(PD + 4, le32(PT1 | P | RW))
    setPte(m, PT1, 0, 0x30000 | P | RW)
    m.mem.load(0x30010, le32(0xcafebabe))
    // mov cr3, eax; mov cr0, eax; mov eax, [0x400010]; mov [0x400014], ebx
    m.cpu.regs[Reg.EAX] = PD
    m.cpu.run(1)
    expect(m.cpu.cr3).toBe(PD)
    m.cpu.regs[Reg.EAX] = 0xe0000011
    m.cpu.run(1)
    expect(m.cpu.cr0 >>> 31).toBe(1)
    m.cpu.regs[Reg.EBX] = 0x11223344
    m.cpu.run(1)
    expect(m.cpu.regs[Reg.EAX]).toBe(0xcafebabe)
    expect(m.mem.peek32(PD + 4)).toBe(PT1 | P | RW | A)
    expect(m.mem.peek32(PT1)).toBe(0x30000 | P | RW | A)
    // The code page's PTE got A (fetches) but not D.
    expect(m.mem.peek32(PT0 + 4)).toBe(0x1000 | P | RW | A)
    m.cpu.run(1)
    expect(m.mem.peek32(0x30014)).toBe(0x11223344)
    expect(m.mem.peek32(PT1)).toBe(0x30000 | P | RW | A | D)
    expect(m.mem.peek32(PD + 4)).toBe(PT1 | P | RW | A)
  })

  it("4 MiB pages with CR4.PSE: A and D in the PDE; without PSE the PS bit is ignored", () => {
    const m = paged("a1 34 12 80 00 89 1d 38 12 80 00", 1 << 4)
    m.mem.load(PD + 8, le32(0x00000000 | PS | P | RW))
    m.mem.load(0x1234, le32(0x5555aaaa))
    m.cpu.run(1)
    expect(m.cpu.regs[Reg.EAX]).toBe(0x5555aaaa)
    expect(m.mem.peek32(PD + 8)).toBe(PS | P | RW | A)
    m.cpu.regs[Reg.EBX] = 0x01020304
    m.cpu.run(1)
    expect(m.mem.peek32(0x1238)).toBe(0x01020304)
    expect(m.mem.peek32(PD + 8)).toBe(PS | P | RW | A | D)

    // PSE off: the same PDE points to a page table at physical 0 (PS ignored).
    const n = paged("a1 00 00 80 00")
    n.mem.load(PD + 8, le32(0x00000000 | PS | P | RW))
    n.mem.load(0, le32(0x31000 | P))
    n.mem.load(0x31000, le32(0x77))
    n.cpu.run(1)
    expect(n.cpu.regs[Reg.EAX]).toBe(0x77)
  })

  const faultCase = (code: string, setup: (m: Machine) => void): Machine => {
    const m = paged(code)
    setup(m)
    m.cpu.regs[Reg.EBX] = 0xdeadbeef
    expect(m.cpu.run(2)).toBe(CpuStop.Stop)
    return m
  }

  it("#PF on a not-present PDE or PTE: error code W/R, CR2, the faulting EIP pushed", () => {
    // read, PTE not present
    let m = faultCase("a1 10 00 40 00", () => {})
    expect(m.cpu.eip).toBe(PF_HANDLER + 1)
    expect(m.cpu.cr2).toBe(0x400010)
    expect(m.mem.peek32(STACK_TOP - 16)).toBe(0)
    expect(m.mem.peek32(STACK_TOP - 12)).toBe(CODE)
    // The PDE was used (A set); the not-present PTE is untouched.
    expect(m.mem.peek32(PD + 4) & A).toBe(A)
    // write, PDE not present
    m = faultCase("89 1d 00 00 c0 00", () => {})
    expect(m.cpu.cr2).toBe(0xc00000)
    expect(m.mem.peek32(STACK_TOP - 16)).toBe(2)
  })

  it("supervisor writes to a read-only page: #PF (P|W) with CR0.WP, allowed without", () => {
    const ro = (m: Machine) => setPte(m, PT1, 0, 0x30000 | P | US)
    const m = faultCase("89 1d 00 00 40 00", ro)
    expect(m.mem.peek32(STACK_TOP - 16)).toBe(3)
    expect(m.cpu.cr2).toBe(0x400000)
    expect(m.mem.peek32(0x30000)).toBe(0)
    const n = paged("89 1d 00 00 40 00")
    ro(n)
    n.cpu.cr0 = (n.cpu.cr0 & ~(1 << 16)) >>> 0
    n.cpu.regs[Reg.EBX] = 0xdeadbeef
    n.cpu.run(1)
    expect(n.mem.peek32(0x30000)).toBe(0xdeadbeef)
    expect(n.mem.peek32(PT1)).toBe(0x30000 | P | US | A | D)
  })

  it("a reserved bit in a 4 MiB PDE is #PF with P and RSVD", () => {
    const m = paged("a1 00 00 80 00", 1 << 4)
    m.mem.load(PD + 8, le32(0x2000 | PS | P | RW))
    m.cpu.run(2)
    expect(m.mem.peek32(STACK_TOP - 16)).toBe(9)
    expect(m.cpu.cr2).toBe(0x800000)
  })

  it("the TLB keeps a stale translation until INVLPG, and until a CR3 load", () => {
    // mov eax,[0x400000]; mov eax,[0x400000]; invlpg [0x400000]; mov eax,[0x400000]
    const m = paged("a1 00 00 40 00 a1 00 00 40 00 0f 01 3d 00 00 40 00 a1 00 00 40 00 0f 22 d9 a1 00 00 40 00")
    setPte(m, PT1, 0, 0x30000 | P | RW)
    m.mem.load(0x30000, le32(0x1111))
    m.mem.load(0x31000, le32(0x2222))
    m.mem.load(0x32000, le32(0x3333))
    m.cpu.run(1)
    expect(m.cpu.regs[Reg.EAX]).toBe(0x1111)
    setPte(m, PT1, 0, 0x31000 | P | RW)
    m.cpu.run(1)
    expect(m.cpu.regs[Reg.EAX]).toBe(0x1111)
    m.cpu.run(2)
    expect(m.cpu.regs[Reg.EAX]).toBe(0x2222)
    setPte(m, PT1, 0, 0x32000 | P | RW)
    m.cpu.regs[Reg.ECX] = PD
    m.cpu.run(2)
    expect(m.cpu.regs[Reg.EAX]).toBe(0x3333)
  })

  it("with CR4.PGE a global page's translation survives a CR3 load but not INVLPG; without PGE the G bit does nothing", () => {
    // mov eax,[0x400000]; mov cr3, ecx; mov eax,[0x400000]; invlpg [0x400000]; mov eax,[0x400000]
    const code = "a1 00 00 40 00 0f 22 d9 a1 00 00 40 00 0f 01 3d 00 00 40 00 a1 00 00 40 00"
    for (const pge of [true, false]) {
      const m = paged(code, pge ? 1 << 7 : 0)
      setPte(m, PT1, 0, 0x30000 | P | RW | 0x100)
      m.mem.load(0x30000, le32(0x1111))
      m.mem.load(0x31000, le32(0x2222))
      m.cpu.regs[Reg.ECX] = PD
      m.cpu.run(1)
      setPte(m, PT1, 0, 0x31000 | P | RW | 0x100)
      m.cpu.run(2)
      expect(m.cpu.regs[Reg.EAX]).toBe(pge ? 0x1111 : 0x2222)
      m.cpu.run(2)
      expect(m.cpu.regs[Reg.EAX]).toBe(0x2222)
    }
  })

  it("an access crossing into a not-present page faults before writing the first page; CR2 is the second page", () => {
    const m = paged("89 1d fe 0f 40 00")
    setPte(m, PT1, 0, 0x30000 | P | RW)
    m.cpu.regs[Reg.EBX] = 0xdeadbeef
    m.cpu.run(2)
    expect(m.cpu.eip).toBe(PF_HANDLER + 1)
    expect(m.cpu.cr2).toBe(0x401000)
    expect(m.mem.peek16(0x30ffe)).toBe(0)
    expect(m.mem.peek32(STACK_TOP - 16)).toBe(2)
    // Mapped: the two halves go to two different frames.
    const n = paged("89 1d fe 0f 40 00")
    setPte(n, PT1, 0, 0x30000 | P | RW)
    setPte(n, PT1, 1, 0x50000 | P | RW)
    n.cpu.regs[Reg.EBX] = 0xdeadbeef
    n.cpu.run(1)
    expect(n.mem.peek16(0x30ffe)).toBe(0xbeef)
    expect(n.mem.peek16(0x50000)).toBe(0xdead)
  })

  it("an instruction fetch from a not-present page is #PF with I/D clear (no NX in 32-bit paging), CR2 the fetched byte, EIP the instruction", () => {
    // jmp 0x400fff: the mov there (8b c3) has its ModRM byte on the not-present page 0x401000.
    const m = paged("e9 fa ff 3f 00")
    setPte(m, PT1, 0, 0x30000 | P | RW)
    m.mem.load(0x30fff, hex("8b"))
    expect(m.cpu.run(3)).toBe(CpuStop.Stop)
    expect(m.cpu.eip).toBe(PF_HANDLER + 1)
    expect(m.cpu.cr2).toBe(0x401000)
    expect(m.mem.peek32(STACK_TOP - 16)).toBe(0)
    expect(m.mem.peek32(STACK_TOP - 12)).toBe(0x400fff)
  })

  it("MOV CR0 with PG and without PE is #GP", () => {
    const m = protectedMode(hex("0f 22 c0"))
    setGate(m, 13, 0x4000)
    m.cpu.regs[Reg.EAX] = 0x80000000
    m.cpu.run(1)
    expect(m.cpu.eip).toBe(0x4000)
  })
})
