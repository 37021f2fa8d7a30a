import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { Reg, Seg } from "../../../src/kernel/cpu/cpu.ts"
import { CODE, hex, type Machine, protectedMode, SEL, setGate, STACK_TOP } from "../../support/cpuHarness.ts"
import { le32 } from "../../support/programs.ts"

const PD = 0x10000
const PT0 = 0x11000
const PT1 = 0x12000
const FRAMES = 0x30000
const HANDLER = 0x4000

interface Setup {
  readonly wp: boolean
  readonly pse: boolean
  readonly user: boolean
  readonly large: boolean
  readonly pdeFlags: number
  readonly pteFlags: ReadonlyArray<number>
}

/** Paging with linear 4-8 MiB mapped by random entries (a PT of 8 pages, or one 4 MiB page); #PF to a conforming handler so CPL 3 needs no TSS. */
const build = (s: Setup): Machine => {
  const m = protectedMode([])
  for (let i = 0; i < 0x110; i++) m.mem.load(PT0 + i * 4, le32((i << 12) | 0x7))
  m.mem.load(PD, le32(PT0 | 0x7))
  m.mem.load(PD + 4, le32(s.large ? 0x00000080 | s.pdeFlags : PT1 | s.pdeFlags))
  s.pteFlags.forEach((f, i) => m.mem.load(PT1 + i * 4, le32((FRAMES + i * 0x1000) | f)))
  // Entry 7 of the test GDT becomes a conforming ring-0 code segment for the handler.
  m.mem.load(0x500 + SEL.executeOnly, [0xff, 0xff, 0, 0, 0, 0x9e, 0xcf, 0])
  setGate(m, 14, HANDLER, 0xe, 0, SEL.executeOnly)
  m.cpu.cr3 = PD
  m.cpu.cr4 = s.pse ? 1 << 4 : 0
  m.cpu.cr0 = (0xe0000011 | (s.wp ? 1 << 16 : 0)) >>> 0
  if (s.user) {
    for (let i = 0; i < 6; i++) {
      m.cpu.segSelector[i] = 0x4b
      m.cpu.segAttr[i] = 0xc0f3
    }
    m.cpu.segSelector[Seg.CS] = 0x43
    m.cpu.segAttr[Seg.CS] = 0xc0fb
  }
  return m
}

const access = (write: boolean, size: number, address: number): number[] => {
  const op = size === 1 ? (write ? 0xa2 : 0xa0) : write ? 0xa3 : 0xa1
  return [...(size === 2 ? [0x66] : []), op, ...le32(address)]
}

const observe = (m: Machine) => ({
  eip: m.cpu.eip,
  eax: m.cpu.regs[Reg.EAX],
  esp: m.cpu.regs[Reg.ESP],
  cr2: m.cpu.cr2,
  errorCode: m.mem.peek32(STACK_TOP - 16),
  tables: [...m.mem.bytes.subarray(PD, PD + 8), ...m.mem.bytes.subarray(PT1, PT1 + 40)],
  data: Buffer.from(m.mem.bytes.subarray(FRAMES, FRAMES + 0x9000)).toString("base64")
})

describe("the TLB is transparent while the page tables do not change", () => {
  it("any sequence of accesses gives the same registers, faults, CR2, A/D bits and memory as walking every time", () => {
    const flags = fc.integer({ min: 0, max: 0x7f }).map((f) => f & 0x67)
    fc.assert(
      fc.property(
        fc.record({
          wp: fc.boolean(),
          pse: fc.boolean(),
          user: fc.boolean(),
          large: fc.boolean(),
          pdeFlags: flags,
          pteFlags: fc.array(flags, { minLength: 9, maxLength: 9 })
        }),
        fc.array(
          fc.record({
            write: fc.boolean(),
            size: fc.constantFrom(1, 2, 4),
            page: fc.integer({ min: 0, max: 7 }),
            offset: fc.oneof(fc.integer({ min: 0, max: 0xfff }), fc.constantFrom(0xffe, 0xfff, 0xffd))
          }),
          { minLength: 1, maxLength: 25 }
        ),
        (setup, ops) => {
          const cached = build(setup)
          const walked = build(setup)
          const segs = [...cached.cpu.segSelector]
          const attrs = [...cached.cpu.segAttr]
          for (const [i, op] of ops.entries()) {
            const code = access(op.write, op.size, 0x400000 + op.page * 0x1000 + op.offset)
            for (const m of [cached, walked]) {
              m.mem.load(CODE, code)
              m.cpu.eip = CODE
              m.cpu.regs[Reg.ESP] = STACK_TOP
              m.cpu.regs[Reg.EAX] = 0x11223344 + i
              m.mem.load(STACK_TOP - 16, le32(0xffffffff))
              segs.forEach((v, s) => {
                m.cpu.segSelector[s] = v
                m.cpu.segAttr[s] = attrs[s]
              })
            }
            walked.cpu.flushTlb()
            cached.cpu.run(1)
            walked.cpu.run(1)
            expect(observe(cached), `op ${i}: ${JSON.stringify(op)}`).toEqual(observe(walked))
          }
        }
      ),
      { numRuns: 300 }
    )
  })
})
