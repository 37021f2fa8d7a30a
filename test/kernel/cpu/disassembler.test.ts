/**
 * Cross-check of the disassembler against GNU objdump (`-b binary -m i386` / `-m i8086`).
 *
 * The generator walks the one-byte and 0F maps: every opcode, with every one of the 256
 * ModRM bytes for the opcodes that take one, random SIB/displacement/immediate bytes,
 * and prefixes (66, 67, segment overrides, rep/repz/repnz on string instructions, lock
 * on the read-modify-write forms). Instruction lengths come from our decoder; each
 * instruction sits in its own 16-byte slot padded with NOPs, so a length disagreement
 * cannot shift the instructions after it. objdump runs once per code size.
 *
 * Skipped (counted, not compared): encodings we print as (bad) — x87, MMX/SSE, the
 * 0F 38/3A maps, undefined encodings, and SALC (D6), which the interpreter runs but
 * which we print as (bad) like objdump. Not generated, because objdump reads them as
 * instructions this CPU does not have: 0F 1A/1B (MPX; hint NOPs here), 0F 1C /0 with
 * memory (CLDEMOTE), 0F AE F1-F7/F9-FF (fences here, (bad) to objdump), 3E before
 * FF /2, /4 (NOTRACK), an unused 66 before a 0F opcode (an SSE form to objdump), F2/F3
 * outside the string instructions, and segment overrides where no memory operand uses them.
 *
 * Normalised before comparing: whitespace only (objdump pads the mnemonic to a column).
 */
import { spawnSync } from "node:child_process"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, it } from "vitest"
import { disassemble } from "../../../src/kernel/cpu/disassembler.ts"

/** Spot checks that run without objdump (expected texts are objdump 2.40's). */
describe("disassembler", () => {
  const cases: [16 | 32, number, number[], string][] = [
    [32, 0, [0x8b, 0x04, 0x85, 0xf8, 0xff, 0xff, 0xff], "mov    -0x8(,%eax,4),%eax"],
    [32, 0, [0x04, 0x20], "add    $0x20,%al"],
    [32, 0, [0x83, 0x00, 0xff], "addl   $0xffffffff,(%eax)"],
    [32, 0, [0x66, 0x6a, 0xff], "pushw  $0xffff"],
    [32, 0, [0x8c, 0xc0], "mov    %es,%eax"],
    [32, 0, [0x64, 0xa1, 0, 0, 0, 0], "mov    %fs:0x0,%eax"],
    [32, 0, [0xf3, 0xa4], "rep movsb %ds:(%esi),%es:(%edi)"],
    [32, 0, [0xf0, 0x01, 0x18], "lock add %ebx,(%eax)"],
    [32, 0, [0xea, 0x00, 0x00, 0x10, 0x00, 0x08, 0x00], "ljmp   $0x8,$0x100000"],
    [32, 0x1000, [0xe8, 0x00, 0x00, 0x00, 0x00], "call   0x1005"],
    [32, 0x3c, [0x66, 0x70, 0x00], "data16 jo 0x3f"],
    [32, 0, [0x0f, 0xba, 0x20, 0x01], "btl    $0x1,(%eax)"],
    [32, 0, [0x0f, 0x20, 0xc0], "mov    %cr0,%eax"],
    [16, 0, [0x8b, 0x47, 0xf8], "mov    -0x8(%bx),%ax"],
    [16, 0, [0x8b, 0x06, 0x34, 0x12], "mov    0x1234,%ax"],
    [16, 0, [0x66, 0xcf], "iretl"],
    [16, 0, [0x98], "cbtw"]
  ]
  it.each(cases)("%i-bit code at %i: %j is %s", (codeSize, address, bytes, text) => {
    expect(disassemble(Uint8Array.from(bytes), 0, { codeSize }, address)).toEqual({ text, length: bytes.length })
  })

  it("prints what the decoder leaves to the executor (x87, SSE) as one (bad) byte", () => {
    expect(disassemble(Uint8Array.of(0xd9, 0xc0), 0, { codeSize: 32 }, 0)).toEqual({ text: "(bad)", length: 1 })
    expect(disassemble(Uint8Array.of(0x0f, 0x58, 0xc0), 0, { codeSize: 32 }, 0)).toEqual({ text: "(bad)", length: 1 })
    expect(disassemble(Uint8Array.of(0x8b), 0, { codeSize: 32 }, 0)).toEqual({ text: "(bad)", length: 1 })
  })
})

const SLOT = 16
const NOP = 0x90

const objdumpAvailable = spawnSync("objdump", ["--version"]).status === 0
if (!objdumpAvailable) console.log("disassembler cross-check skipped: objdump is not installed")

/** A small deterministic PRNG (xorshift32), so a failure reproduces. */
function random(seed: number): () => number {
  let s = seed >>> 0 || 1
  return () => {
    s ^= s << 13
    s >>>= 0
    s ^= s >>> 17
    s ^= s << 5
    s >>>= 0
    return s & 0xff
  }
}

const SEGMENT_PREFIXES = [0x26, 0x2e, 0x36, 0x3e, 0x64, 0x65]
const STRING_OPS = new Set([0x6c, 0x6d, 0x6e, 0x6f, 0xa4, 0xa5, 0xa6, 0xa7, 0xaa, 0xab, 0xac, 0xad, 0xae, 0xaf])
const PREFIX_BYTES = new Set([0x26, 0x2e, 0x36, 0x3e, 0x64, 0x65, 0x66, 0x67, 0xf0, 0xf2, 0xf3, 0x0f])
/** Lockable read-modify-write opcodes (with a memory operand), as the interpreter accepts them. */
function lockable(op: number[], modrm: number): boolean {
  if (modrm >= 0xc0) return false
  const reg = (modrm >>> 3) & 7
  if (op.length === 2) return [0xab, 0xb3, 0xbb, 0xb0, 0xb1, 0xc0, 0xc1].includes(op[1]) || (op[1] === 0xba && reg >= 5)
  const o = op[0]
  if (o < 0x40) return (o & 6) === 0 && (o & 0x38) !== 0x38
  if (o >= 0x80 && o <= 0x83) return reg !== 7
  if (o === 0x86 || o === 0x87) return true
  if (o === 0xf6 || o === 0xf7) return reg === 2 || reg === 3
  if (o === 0xfe || o === 0xff) return reg <= 1
  return false
}

interface Case {
  bytes: number[]
  prefixes: number[]
  text: string
  /** Which opcode (0x000-0x1ff) and ModRM form it covers, for the report. */
  key: string
}

function generate(codeSize: 16 | 32, seed: number): { cases: Case[]; skipped: number; opcodes: Set<number> } {
  const next = random(seed)
  const cases: Case[] = []
  const opcodes = new Set<number>()
  let skipped = 0
  const scratch = new Uint8Array(32)
  const tryCase = (prefixes: number[], opcode: number[], modrm: number | undefined, key: string): string | undefined => {
    const bytes = [...prefixes, ...opcode, ...(modrm === undefined ? [] : [modrm])]
    scratch.fill(0)
    bytes.forEach((b, i) => (scratch[i] = b))
    for (let i = bytes.length; i < scratch.length; i++) scratch[i] = next()
    const { text, length } = disassemble(scratch, 0, { codeSize }, cases.length * SLOT)
    if (text === "(bad)") return undefined
    cases.push({ bytes: Array.from(scratch.subarray(0, length)), prefixes, text, key })
    return text
  }
  const opcodeList: number[][] = []
  for (let b = 0; b < 256; b++) if (!PREFIX_BYTES.has(b)) opcodeList.push([b])
  // 0F 1A/1B are hint NOPs here but MPX (bndldx, bndmov, …) to objdump.
  for (let b = 0; b < 256; b++) if (b !== 0x1a && b !== 0x1b) opcodeList.push([0x0f, b])
  for (const opcode of opcodeList) {
    const value = opcode.length === 2 ? 0x100 | opcode[1] : opcode[0]
    // Does it take a ModRM byte? Ask the decoder (through the disassembler's length).
    const probe = new Uint8Array(16)
    probe.set(opcode)
    probe[opcode.length] = 0xc0
    const plain = disassemble(probe, 0, { codeSize }, 0)
    probe[opcode.length] = 0x80
    const withDisp = disassemble(probe, 0, { codeSize }, 0)
    const takesModrm = plain.length !== withDisp.length || (value >= 0x120 && value <= 0x123)
    // Without a ModRM byte, 16 draws of immediates and prefixes.
    const forms = takesModrm ? Array.from({ length: 256 }, (_, m) => m) : new Array<undefined>(16).fill(undefined)
    for (const modrm of forms) {
      // 0F AE F1-F7/F9-FF: fences to the CPU (and to the interpreter), (bad) to objdump.
      if (value === 0x1ae && modrm !== undefined && modrm > 0xf0 && modrm !== 0xf8) continue
      // 0F 1C /0 with memory: a hint NOP to the interpreter, CLDEMOTE to objdump.
      if (value === 0x11c && modrm !== undefined && modrm < 0xc0 && (modrm & 0x38) === 0) continue
      const key = `${value.toString(16)}/${modrm === undefined ? "-" : modrm.toString(16)}`
      const base = tryCase([], opcode, modrm, key)
      if (base === undefined) {
        skipped++
        continue
      }
      opcodes.add(value)
      // A prefixed variant per form: operand size, address size, segment, lock, rep.
      const choice = next() % 7
      const prefixes: number[] = []
      if (choice === 0) prefixes.push(0x66)
      else if (choice === 1) prefixes.push(0x67)
      else if (choice === 2) prefixes.push(0x66, 0x67)
      else if (choice === 3) {
        let seg = SEGMENT_PREFIXES[next() % 6]
        // 3E before an indirect CALL/JMP is NOTRACK to objdump.
        if (value === 0xff && seg === 0x3e) seg = 0x26
        // Only where the override applies to a memory operand: objdump spells a bare 2E/3E
        // before branches as hints (",pn") or "notrack".
        const t = tryCase([seg], opcode, modrm, key)
        if (t !== undefined && !/%[ecsdfg]s:/.test(t)) cases.pop()
        continue
      } else if (choice === 4 && modrm !== undefined && lockable(opcode, modrm)) prefixes.push(0xf0)
      else if (choice === 5 && opcode.length === 1 && STRING_OPS.has(opcode[0])) prefixes.push(next() & 1 ? 0xf3 : 0xf2)
      else if (choice === 6 && opcode.length === 1 && (STRING_OPS.has(opcode[0]) || (modrm !== undefined && modrm < 0xc0))) {
        // Several at once: lock or rep, a segment override, 66 and 67.
        if (modrm !== undefined && lockable(opcode, modrm)) prefixes.push(0xf0)
        if (STRING_OPS.has(opcode[0])) prefixes.push(next() & 1 ? 0xf3 : 0xf2)
        prefixes.push(SEGMENT_PREFIXES[next() % 6], 0x66, 0x67)
        if (opcode[0] === 0xff) prefixes[prefixes.length - 3] = 0x26
      }
      if (prefixes.length > 0) {
        const t = tryCase(prefixes, opcode, modrm, key)
        // An unused 66 in the 0F map selects another instruction (SSE) to objdump.
        if (t !== undefined && opcode.length === 2 && /^data(16|32)/.test(t)) cases.pop()
      }
    }
  }
  return { cases, skipped, opcodes }
}

interface Line {
  address: number
  bytes: string
  text: string
}

function objdump(blob: Uint8Array, machine: string): Map<number, Line> {
  const dir = mkdtempSync(join(tmpdir(), "vmrr-objdump-"))
  try {
    const file = join(dir, "code.bin")
    writeFileSync(file, blob)
    const out = spawnSync("objdump", ["-D", "-b", "binary", "-m", machine, "--insn-width=16", file], {
      encoding: "utf8",
      maxBuffer: 1 << 28
    })
    if (out.status !== 0) throw new Error(`objdump failed: ${out.stderr}`)
    const lines = new Map<number, Line>()
    for (const raw of out.stdout.split("\n")) {
      const m = /^\s*([0-9a-f]+):\t([0-9a-f ]+?)\s*\t(.*)$/.exec(raw)
      if (m === null) continue
      const address = parseInt(m[1], 16)
      lines.set(address, { address, bytes: m[2], text: m[3] })
    }
    return lines
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

/** Whitespace only: objdump pads the mnemonic to a column. */
const normalise = (text: string): string => text.trim().replace(/\s+/g, " ")
const mnemonicOf = (text: string): string => {
  const words = normalise(text).split(" ")
  // Prefix words (lock, rep, data16, …) belong to the mnemonic; operands are the last word.
  return (words.length > 1 && /[%$(]|^0x/.test(words[words.length - 1]) ? words.slice(0, -1) : words).join(" ")
}

describe.skipIf(!objdumpAvailable)("disassembler against objdump", () => {
  for (const [codeSize, machine] of [
    [32, "i386"],
    [16, "i8086"]
  ] as const) {
    it(`agrees with objdump -m ${machine} on lengths, mnemonics and operands`, () => {
      const { cases, skipped, opcodes } = generate(codeSize, 0x5eed + codeSize)
      const blob = new Uint8Array(cases.length * SLOT).fill(NOP)
      cases.forEach((c, i) => blob.set(c.bytes, i * SLOT))
      const lines = objdump(blob, machine)
      const lengthMismatches: string[] = []
      const mnemonicMismatches: string[] = []
      const operandMismatches: string[] = []
      cases.forEach((c, i) => {
        const line = lines.get(i * SLOT)
        const hexBytes = c.bytes.map((b) => b.toString(16).padStart(2, "0")).join(" ")
        const where = `${c.key} [${hexBytes}] ours "${c.text}" objdump "${line?.text ?? "?"}"`
        if (line === undefined || line.bytes !== hexBytes) lengthMismatches.push(where)
        else if (mnemonicOf(line.text) !== mnemonicOf(c.text)) mnemonicMismatches.push(where)
        else if (normalise(line.text) !== normalise(c.text)) operandMismatches.push(where)
      })
      const withPrefix = (p: number): number => cases.filter((c) => c.prefixes.includes(p)).length
      const tally = [0x66, 0x67, 0xf0, 0xf2, 0xf3, ...SEGMENT_PREFIXES].map((p) => `${p.toString(16)}: ${withPrefix(p)}`).join(", ")
      console.log(
        `objdump -m ${machine}: ${cases.length} instructions over ${opcodes.size} opcodes checked ` +
          `(with prefix ${tally}), ` +
          `${skipped} (bad) forms skipped; mismatches: ${lengthMismatches.length} length, ` +
          `${mnemonicMismatches.length} mnemonic, ${operandMismatches.length} operand`
      )
      for (const m of [...lengthMismatches, ...mnemonicMismatches, ...operandMismatches].slice(0, 400)) console.log(m)
      expect(lengthMismatches).toEqual([])
      expect(mnemonicMismatches).toEqual([])
      expect(operandMismatches).toEqual([])
    })
  }
})
