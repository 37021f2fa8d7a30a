/**
 * The i386 register file as gdb numbers it, and the target description that tells gdb
 * so. gdb's i386 architecture needs the x87 registers in `org.gnu.gdb.i386.core` besides
 * the 16 integer registers; the interpreter has no x87, so those are described (with
 * their sizes) but always sent as unavailable (`xx`), which gdb shows as `<unavailable>`.
 */
import type { KvmRegs, KvmSregs } from "../kernel/api.ts"
import { le32Hex } from "./packets.ts"

/** gdb's numbering: eax ecx edx ebx esp ebp esi edi eip eflags cs ss ds es fs gs (0–15). */
const GENERAL_REGISTERS = ["eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi", "eip", "eflags", "cs", "ss", "ds", "es", "fs", "gs"] as const
const X87_DATA = ["st0", "st1", "st2", "st3", "st4", "st5", "st6", "st7"]
const X87_CONTROL = ["fctrl", "fstat", "ftag", "fiseg", "fioff", "foseg", "fooff", "fop"]

/** Bytes of register `n`: 4 for the integer and x87 control registers, 10 for st0–st7. */
const registerSize = (n: number): number | undefined =>
  n >= 0 && n < 16 ? 4 : n < 24 ? 10 : n < 32 ? 4 : undefined

const REGISTER_COUNT = 32

/** The 16 integer registers, each a 32-bit value (segment registers: their selectors). */
export type GeneralRegisters = Uint32Array

export const readGeneralRegisters = (r: KvmRegs, s: KvmSregs): GeneralRegisters =>
  Uint32Array.of(
    r.rax, r.rcx, r.rdx, r.rbx, r.rsp, r.rbp, r.rsi, r.rdi, r.rip, r.rflags,
    s.cs.selector, s.ss.selector, s.ds.selector, s.es.selector, s.fs.selector, s.gs.selector
  )

/** Registers 0 to 9 (eax … eflags) are what KVM_SET_REGS sets; the selectors are not writable (their caches would have to follow). */
export const WRITABLE_REGISTERS = 10

export const kvmRegsOf = (g: GeneralRegisters): KvmRegs => ({
  rax: g[0], rcx: g[1], rdx: g[2], rbx: g[3], rsp: g[4], rbp: g[5], rsi: g[6], rdi: g[7], rip: g[8], rflags: g[9]
})

const unavailable = (n: number): string => "xx".repeat(registerSize(n) ?? 0)

/** The `g` reply: every register in order. */
export const encodeAllRegisters = (g: GeneralRegisters): string => {
  let out = ""
  for (let n = 0; n < REGISTER_COUNT; n++) out += n < 16 ? le32Hex(g[n]) : unavailable(n)
  return out
}

/** The `p n` reply, or undefined for a register gdb has no number for. */
export const encodeRegister = (g: GeneralRegisters, n: number): string | undefined =>
  n < 16 ? le32Hex(g[n]) : registerSize(n) === undefined ? undefined : unavailable(n)

const reg = (name: string, bits: number, type: string, regnum?: number): string =>
  `  <reg name="${name}" bitsize="${bits}" type="${type}"${regnum === undefined ? "" : ` regnum="${regnum}"`}/>`

/** The `target.xml` served through qXfer:features:read. */
export const TARGET_XML = [
  '<?xml version="1.0"?>',
  '<!DOCTYPE target SYSTEM "gdb-target.dtd">',
  "<target>",
  "<architecture>i386</architecture>",
  '<feature name="org.gnu.gdb.i386.core">',
  '  <flags id="i386_eflags" size="4">',
  ...[["CF", 0], ["", 1], ["PF", 2], ["AF", 4], ["ZF", 6], ["SF", 7], ["TF", 8], ["IF", 9], ["DF", 10], ["OF", 11], ["NT", 14], ["RF", 16], ["VM", 17], ["AC", 18], ["VIF", 19], ["VIP", 20], ["ID", 21]].map(
    ([name, bit]) => `    <field name="${name}" start="${bit}" end="${bit}"/>`
  ),
  "  </flags>",
  ...GENERAL_REGISTERS.map((name, n) =>
    reg(name, 32, name === "eip" ? "code_ptr" : name === "esp" || name === "ebp" ? "data_ptr" : name === "eflags" ? "i386_eflags" : "int32", n === 0 ? 0 : undefined)
  ),
  ...X87_DATA.map((name) => reg(name, 80, "i387_ext")),
  ...X87_CONTROL.map((name) => reg(name, 32, "int")),
  "</feature>",
  "</target>",
  ""
].join("\n")
