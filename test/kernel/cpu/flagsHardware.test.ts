/**
 * Differential test of results and defined flags against instructions executed
 * natively (fixtures/generate-flags.c, fixtures/generate-bcd.c). Flags the SDM
 * leaves undefined are masked.
 */
import { readFileSync } from "node:fs"
import { describe, expect, it } from "vitest"
import { AF, CF, OF, PF, SF, ZF } from "../../../src/kernel/cpu/alu.ts"
import { CpuStop, Reg } from "../../../src/kernel/cpu/cpu.ts"
import { protectedMode } from "../../support/cpuHarness.ts"

type Row = [name: string, size: number, flagsIn: number, eax: number, ecx: number, eaxOut: number, edxOut: number, flagsOut: number]

type BcdRow = [name: string, flagsIn: number, eax: number, eaxOut: number, flagsOut: number]

const rows = JSON.parse(readFileSync(new URL("./fixtures/flags-hardware.json", import.meta.url), "utf8")) as Row[]

const ALU = ["add", "or", "adc", "sbb", "and", "sub", "xor", "cmp"]
const SHIFTS = ["rol", "ror", "rcl", "rcr", "shl", "shr", "sal", "sar"]
const ALL = CF | PF | AF | ZF | SF | OF

/** The encoding the generator used: the operation on AL/AX/EAX with CL/CX/ECX. */
const encode = (name: string, size: number): number[] => {
  const prefix = size === 2 ? [0x66] : []
  const pick = (op8: number, opv: number) => (size === 1 ? op8 : opv)
  const alu = ALU.indexOf(name)
  if (alu >= 0) return [...prefix, pick(alu * 8, alu * 8 + 1), 0xc8]
  const shift = SHIFTS.indexOf(name)
  if (shift >= 0) return [...prefix, pick(0xd2, 0xd3), 0xc0 | (shift << 3)]
  switch (name) {
    case "shld":
      return [...prefix, 0x0f, 0xa5, 0xd0]
    case "shrd":
      return [...prefix, 0x0f, 0xad, 0xd0]
    case "inc":
      return [...prefix, pick(0xfe, 0xff), 0xc0]
    case "dec":
      return [...prefix, pick(0xfe, 0xff), 0xc8]
    case "neg":
      return [...prefix, pick(0xf6, 0xf7), 0xd8]
    case "not":
      return [...prefix, pick(0xf6, 0xf7), 0xd0]
    case "mul":
      return [...prefix, pick(0xf6, 0xf7), 0xe1]
    case "imul":
      return [...prefix, pick(0xf6, 0xf7), 0xe9]
    default:
      return [...prefix, 0x0f, 0xaf, 0xc1]
  }
}

/** Flags the SDM defines for the row (unchanged flags count as defined). */
const definedFlags = (name: string, size: number, ecx: number): number => {
  if (name === "or" || name === "and" || name === "xor") return ALL & ~AF
  if (name.includes("mul")) return CF | OF
  if (name === "shld" || name === "shrd") {
    const count = ecx & 31
    return count === 0 ? ALL : SF | ZF | PF | CF | (count === 1 ? OF : 0)
  }
  const shift = SHIFTS.indexOf(name)
  if (shift < 0) return ALL
  const count = ecx & 31
  if (count === 0) return ALL
  const of = count === 1 ? OF : 0
  if (shift < 4) return (ALL & ~(CF | OF)) | CF | of
  const cfDefined = name === "sar" || count < size * 8 ? CF : 0
  return SF | ZF | PF | cfDefined | of
}

const run = (row: Row) => {
  const [name, size, flagsIn, eax, ecx] = row
  const m = protectedMode(encode(name, size))
  m.cpu.regs[Reg.EAX] = eax
  m.cpu.regs[Reg.ECX] = ecx
  m.cpu.regs[Reg.EDX] = name.includes("mul") ? 0x5a5a5a5a : name.startsWith("sh") && name.endsWith("d") ? 0x9abcdef1 : 0
  m.cpu.setEflags(flagsIn)
  expect(m.cpu.run(1)).toBe(CpuStop.Budget)
  return m.cpu
}

describe("results and defined flags match hardware", () => {
  const byName = new Map<string, Row[]>()
  for (const row of rows) byName.set(row[0], [...(byName.get(row[0]) ?? []), row])
  for (const [name, group] of byName) {
    it(`${name} (${group.length} cases, 8/16/32-bit)`, () => {
      for (const row of group) {
        const [, size, flagsIn, eax, ecx, eaxOut, edxOut, flagsOut] = row
        // A 16-bit SHLD/SHRD by more than 16 has an undefined result.
        if ((name === "shld" || name === "shrd") && (ecx & 31) > size * 8) continue
        const cpu = run(row)
        const mask = definedFlags(name, size, ecx)
        const context = `${name}/${size * 8} eax=${eax.toString(16)} ecx=${ecx.toString(16)} flagsIn=${flagsIn.toString(16)}`
        expect(cpu.regs[Reg.EAX].toString(16), context).toBe(eaxOut.toString(16))
        expect(cpu.regs[Reg.EDX].toString(16), context).toBe(edxOut.toString(16))
        expect((cpu.getEflags() & mask).toString(16), context).toBe((flagsOut & mask).toString(16))
      }
    })
  }

  const bcd = JSON.parse(readFileSync(new URL("./fixtures/bcd-hardware.json", import.meta.url), "utf8")) as BcdRow[]
  const BCD: Record<string, { code: number[]; defined: number }> = {
    daa: { code: [0x27], defined: ALL & ~OF },
    das: { code: [0x2f], defined: ALL & ~OF },
    // OF, SF, ZF and PF are undefined; the model follows this host (see asciiAdjust).
    aaa: { code: [0x37], defined: ALL },
    aas: { code: [0x3f], defined: ALL },
    aam: { code: [0xd4, 10], defined: SF | ZF | PF },
    aad: { code: [0xd5, 10], defined: SF | ZF | PF },
    aam7: { code: [0xd4, 7], defined: SF | ZF | PF },
    aad7: { code: [0xd5, 7], defined: SF | ZF | PF }
  }
  for (const [name, { code, defined }] of Object.entries(BCD)) {
    it(`${name} for every AL (32-bit process)`, () => {
      for (const [, flagsIn, eax, eaxOut, flagsOut] of bcd.filter((r) => r[0] === name)) {
        const m = protectedMode(code)
        m.cpu.regs[Reg.EAX] = eax
        m.cpu.setEflags(flagsIn)
        m.cpu.run(1)
        const context = `${name} eax=${eax.toString(16)} flagsIn=${flagsIn.toString(16)}`
        expect(m.cpu.regs[Reg.EAX].toString(16), context).toBe(eaxOut.toString(16))
        expect((m.cpu.getEflags() & defined).toString(16), context).toBe((flagsOut & defined).toString(16))
      }
    })
  }

  it("logic operations clear AF (Intel behaviour for an undefined flag)", () => {
    for (const row of rows.filter((r) => r[0] === "and" || r[0] === "or" || r[0] === "xor")) {
      expect(run(row).getEflags() & AF).toBe(0)
    }
  })

  it("MUL/IMUL leave undefined flags unchanged", () => {
    for (const row of rows.filter((r) => r[0].includes("mul"))) {
      expect(run(row).getEflags() & (SF | ZF | AF | PF)).toBe(row[2] & (SF | ZF | AF | PF))
    }
  })

  it("shifts, rotates and SHLD/SHRD set even the undefined flags (OF past count 1, AF) as this host CPU does", () => {
    for (const row of rows.filter((r) => SHIFTS.includes(r[0]) || r[0] === "shld" || r[0] === "shrd")) {
      const [name, size, flagsIn, eax, ecx, eaxOut, , flagsOut] = row
      const cpu = run(row)
      const context = `${name}/${size * 8} eax=${eax.toString(16)} ecx=${ecx.toString(16)} flagsIn=${flagsIn.toString(16)}`
      expect(cpu.regs[Reg.EAX].toString(16), context).toBe(eaxOut.toString(16))
      expect((cpu.getEflags() & ALL).toString(16), context).toBe((flagsOut & ALL).toString(16))
    }
  })
})
