/**
 * Guest MIPS of the interpreter through the kernel API, on small loops that stress
 * different parts of it. A measurement, not a test: `npm run bench`.
 *
 *   npm run bench              print the table
 *   npm run bench -- --json F  also write the numbers to F
 */
import { writeFileSync } from "node:fs"
import * as Either from "effect/Either"
import { createMachine } from "../src/qemu/machine.ts"

const LOAD = 0x100000
const le32 = (v: number) => [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, v >>> 24]

/** A loop that runs about `iterations` times and ends with HLT. */
interface Loop {
  readonly name: string
  readonly what: string
  readonly code: (iterations: number) => number[]
}

const loops: ReadonlyArray<Loop> = [
  {
    name: "alu",
    what: "add/xor/sub/shl/dec/jnz on registers",
    // mov ecx, n; l: add eax, ecx; xor edx, eax; sub ebx, edx; shl esi, 1; dec ecx; jnz l; hlt
    code: (n) => [0xb9, ...le32(n), 0x01, 0xc8, 0x31, 0xc2, 0x29, 0xd3, 0xd1, 0xe6, 0x49, 0x75, 0xf5, 0xf4]
  },
  {
    name: "memory",
    what: "load, read-modify-write and index arithmetic on a 4 KiB array",
    // mov ecx, n; mov ebx, 0x200000; xor esi, esi
    // l: mov eax, [ebx+esi*4]; add [ebx+esi*4+4], eax; inc esi; and esi, 1022; dec ecx; jnz l; hlt
    code: (n) => [
      0xb9, ...le32(n), 0xbb, ...le32(0x200000), 0x31, 0xf6,
      0x8b, 0x04, 0xb3, 0x01, 0x44, 0xb3, 0x04, 0x46, 0x81, 0xe6, ...le32(1022), 0x49, 0x75, 0xef, 0xf4
    ]
  },
  {
    name: "string",
    what: "rep movsd of 4 KiB, one step per iteration",
    // mov ebp, n/1024; o: mov esi, 0x200000; mov edi, 0x201000; mov ecx, 1024; rep movsd; dec ebp; jnz o; hlt
    code: (n) => [
      0xbd, ...le32(Math.max(1, Math.floor(n / 1024))),
      0xbe, ...le32(0x200000), 0xbf, ...le32(0x201000), 0xb9, ...le32(1024), 0xf3, 0xa5, 0x4d, 0x75, 0xec, 0xf4
    ]
  },
  {
    name: "branchy",
    what: "data-dependent jcc, call/ret",
    // mov ecx, n; l: test cl, 1; jz s; call f; s: dec ecx; jnz l; hlt; f: inc eax; ret
    code: (n) => [0xb9, ...le32(n), 0xf6, 0xc1, 0x01, 0x74, 0x05, 0xe8, 0x04, 0x00, 0x00, 0x00, 0x49, 0x75, 0xf3, 0xf4, 0x40, 0xc3]
  }
]

const measure = (loop: Loop, iterations: number): { instructions: number; ms: number } => {
  const image = Uint8Array.from(loop.code(iterations))
  const machine = Either.getOrThrow(
    createMachine({ memoryMiB: 16, loadAddress: LOAD, entry: LOAD, mode: "pm32", instructionLimit: Number.MAX_SAFE_INTEGER }, image)
  )
  const start = performance.now()
  const exit = machine.vcpu.run()
  const ms = performance.now() - start
  if (exit._tag !== "KVM_EXIT_HLT") throw new Error(`${loop.name}: expected HLT, got ${exit._tag}`)
  return { instructions: machine.vcpu.instructionsRetired, ms }
}

const ITERATIONS = 5_000_000
const RUNS = 5
const results = loops.map((loop) => {
  measure(loop, ITERATIONS / 10) // warm up the JIT
  const runs = Array.from({ length: RUNS }, () => measure(loop, ITERATIONS))
  const mips = runs.map((r) => r.instructions / r.ms / 1000).sort((a, b) => a - b)
  return { loop: loop.name, what: loop.what, instructions: runs[0].instructions, mipsMedian: mips[Math.floor(RUNS / 2)], mipsBest: mips[RUNS - 1] }
})

console.log(`guest MIPS, flat 32-bit PM, ${RUNS} runs each (median / best), node ${process.version}`)
console.log(`${"loop".padEnd(9)}${"instructions".padStart(14)}${"median".padStart(9)}${"best".padStart(9)}  what`)
for (const r of results) {
  console.log(`${r.loop.padEnd(9)}${String(r.instructions).padStart(14)}${r.mipsMedian.toFixed(1).padStart(9)}${r.mipsBest.toFixed(1).padStart(9)}  ${r.what}`)
}
const jsonAt = process.argv.indexOf("--json")
if (jsonAt >= 0 && process.argv[jsonAt + 1] !== undefined) {
  writeFileSync(process.argv[jsonAt + 1], `${JSON.stringify({ node: process.version, runs: RUNS, results }, null, 2)}\n`)
}
