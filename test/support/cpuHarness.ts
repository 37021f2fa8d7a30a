import { Cpu, Reg, Seg } from "../../src/kernel/cpu/cpu.ts"
import { FlatMemory } from "./flatMemory.ts"
import { RecordingExits } from "./recordingExits.ts"

/** Where test code is loaded and starts. */
export const CODE = 0x1000
export const STACK_TOP = 0x8000
export const GDT = 0x500
export const IDT = 0x800

/** Selectors of the test GDT. */
export const SEL = {
  code32: 0x08,
  data32: 0x10,
  readOnly: 0x18,
  notPresent: 0x20,
  code16: 0x28,
  smallData: 0x30,
  executeOnly: 0x38
} as const

export interface Machine {
  readonly cpu: Cpu
  readonly mem: FlatMemory
  readonly exits: RecordingExits
}

/** "66 b8 34 12" → bytes. */
export const hex = (s: string): number[] =>
  s
    .trim()
    .split(/\s+/)
    .filter((t) => t.length > 0)
    .map((t) => parseInt(t, 16))

/** An 8-byte segment descriptor as two little-endian dwords' bytes. */
export const descriptor = (base: number, limit: number, access: number, flags: number): number[] => {
  const lo = ((base & 0xffff) << 16) | (limit & 0xffff)
  const hi = (base & 0xff000000) | ((flags & 0xf) << 20) | (limit & 0xf0000) | ((access & 0xff) << 8) | ((base >>> 16) & 0xff)
  return [lo, lo >>> 8, lo >>> 16, lo >>> 24, hi, hi >>> 8, hi >>> 16, hi >>> 24].map((b) => b & 0xff)
}

/** The test GDT, in the order of {@link SEL}. */
export const testGdt = (): number[] => [
  ...descriptor(0, 0, 0, 0),
  ...descriptor(0, 0xfffff, 0x9a, 0xc),
  ...descriptor(0, 0xfffff, 0x92, 0xc),
  ...descriptor(0, 0xfffff, 0x90, 0xc),
  ...descriptor(0, 0xfffff, 0x12, 0xc),
  ...descriptor(0, 0xffff, 0x9a, 0x0),
  ...descriptor(0x20000, 0xff, 0x92, 0x4),
  ...descriptor(0, 0xfffff, 0x98, 0xc)
]

const machine = (): Machine => {
  const mem = new FlatMemory()
  const exits = new RecordingExits()
  const cpu = new Cpu(mem, exits)
  exits.cpu = cpu
  return { cpu, mem, exits }
}

/** Real mode, every segment 0, code at CS:IP 0000:1000, SS:SP 0000:8000, the IVT at 0. */
export const realMode = (code: ArrayLike<number>): Machine => {
  const m = machine()
  const { cpu } = m
  cpu.segSelector[Seg.CS] = 0
  cpu.segBase[Seg.CS] = 0
  cpu.eip = CODE
  cpu.regs[Reg.ESP] = STACK_TOP
  cpu.idtrLimit = 0x3ff
  m.mem.load(CODE, code)
  return m
}

/**
 * Flat 32-bit protected mode at CPL 0, as a kernel's set_sregs would leave it:
 * GDT at 0x500, an empty IDT (no present gates) at 0x800, ESP 0x8000.
 */
export const protectedMode = (code: ArrayLike<number>): Machine => {
  const m = machine()
  const { cpu, mem } = m
  const gdt = testGdt()
  mem.load(GDT, gdt)
  cpu.gdtrBase = GDT
  cpu.gdtrLimit = gdt.length - 1
  cpu.idtrBase = IDT
  cpu.idtrLimit = 256 * 8 - 1
  cpu.cr0 = 0x60000011
  for (let s = 0; s < 6; s++) {
    cpu.segSelector[s] = SEL.data32
    cpu.segBase[s] = 0
    cpu.segLimit[s] = 0xffffffff
    cpu.segAttr[s] = 0xc093
  }
  cpu.segSelector[Seg.CS] = SEL.code32
  cpu.segAttr[Seg.CS] = 0xc09b
  cpu.eip = CODE
  cpu.regs[Reg.ESP] = STACK_TOP
  mem.load(CODE, code)
  return m
}

/** A 32-bit interrupt (type 0xE) or trap (0xF) gate in the protected-mode test IDT. */
export const setGate = (m: Machine, vector: number, offset: number, type = 0xe, dpl = 0, selector: number = SEL.code32): void => {
  const lo = ((selector & 0xffff) << 16) | (offset & 0xffff)
  const hi = (offset & 0xffff0000) | 0x8000 | (dpl << 13) | (type << 8)
  const at = IDT + vector * 8
  m.mem.load(at, [lo, lo >>> 8, lo >>> 16, lo >>> 24, hi, hi >>> 8, hi >>> 16, hi >>> 24].map((b) => b & 0xff))
}

/** A real-mode IVT entry. */
export const setVector = (m: Machine, vector: number, segment: number, offset: number): void => {
  m.mem.load(vector * 4, [offset & 0xff, offset >>> 8, segment & 0xff, segment >>> 8])
}
