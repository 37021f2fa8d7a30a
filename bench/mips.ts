/**
 * Guest MIPS of the interpreter through the kernel API, on four small loops that stress
 * different parts of it, in real mode, flat 32-bit protected mode, and 32-bit protected
 * mode with paging on (every access translated through identity-mapped 4 KiB pages).
 * Part of `npm run bench` (bench/suite.ts).
 */
import * as Either from "effect/Either"
import type { CpuMode } from "../src/events/MachineConfig.ts"
import { createMachine } from "../src/qemu/machine.ts"
import { le16, le32, median } from "./stats.ts"

export type MipsMode = "real" | "pm32" | "pm32+paging"
const mipsModes: ReadonlyArray<MipsMode> = ["real", "pm32", "pm32+paging"]

/** A loop that runs about `iterations` times and ends with HLT, in 16-bit and 32-bit code. */
interface Loop {
  readonly name: string
  readonly what: string
  readonly code32: (iterations: number) => number[]
  /** 16-bit registers and addressing; the counter stays 32-bit (one operand-size prefix) so the loop can run as long. */
  readonly code16: (iterations: number) => number[]
}

// The 16-bit loops address the arrays through DS = 0, below the boot sector at 0x7c00.
const loops: ReadonlyArray<Loop> = [
  {
    name: "alu",
    what: "add/xor/sub/shl/dec/jnz on registers",
    // mov ecx, n; l: add eax, ecx; xor edx, eax; sub ebx, edx; shl esi, 1; dec ecx; jnz l; hlt
    code32: (n) => [0xb9, ...le32(n), 0x01, 0xc8, 0x31, 0xc2, 0x29, 0xd3, 0xd1, 0xe6, 0x49, 0x75, 0xf5, 0xf4],
    // mov ecx, n; l: add ax, cx; xor dx, ax; sub bx, dx; shl si, 1; dec ecx; jnz l; hlt
    code16: (n) => [0x66, 0xb9, ...le32(n), 0x01, 0xc8, 0x31, 0xc2, 0x29, 0xd3, 0xd1, 0xe6, 0x66, 0x49, 0x75, 0xf4, 0xf4]
  },
  {
    name: "memory",
    what: "load, read-modify-write and index arithmetic on a 4 KiB array",
    // mov ecx, n; mov ebx, 0x200000; xor esi, esi
    // l: mov eax, [ebx+esi*4]; add [ebx+esi*4+4], eax; inc esi; and esi, 1023; dec ecx; jnz l; hlt
    code32: (n) => [
      0xb9, ...le32(n), 0xbb, ...le32(0x200000), 0x31, 0xf6,
      0x8b, 0x04, 0xb3, 0x01, 0x44, 0xb3, 0x04, 0x46, 0x81, 0xe6, ...le32(1023), 0x49, 0x75, 0xef, 0xf4
    ],
    // mov ecx, n; mov bx, 0x2000; xor si, si
    // l: mov ax, [bx+si]; add [bx+si+2], ax; inc si; inc si; and si, 0xffe; dec ecx; jnz l; hlt
    code16: (n) => [
      0x66, 0xb9, ...le32(n), 0xbb, ...le16(0x2000), 0x31, 0xf6,
      0x8b, 0x00, 0x01, 0x40, 0x02, 0x46, 0x46, 0x81, 0xe6, ...le16(0xffe), 0x66, 0x49, 0x75, 0xf1, 0xf4
    ]
  },
  {
    name: "string",
    what: "rep movs of 4 KiB, one step per iteration",
    // mov ebp, n/1024; o: mov esi, 0x200000; mov edi, 0x201000; mov ecx, 1024; rep movsd; dec ebp; jnz o; hlt
    code32: (n) => [
      0xbd, ...le32(Math.max(1, Math.floor(n / 1024))),
      0xbe, ...le32(0x200000), 0xbf, ...le32(0x201000), 0xb9, ...le32(1024), 0xf3, 0xa5, 0x4d, 0x75, 0xec, 0xf4
    ],
    // mov bp, n/2048; o: mov si, 0x2000; mov di, 0x3000; mov cx, 2048; rep movsw; dec bp; jnz o; hlt
    code16: (n) => [
      0xbd, ...le16(Math.min(0xffff, Math.max(1, Math.floor(n / 2048)))),
      0xbe, ...le16(0x2000), 0xbf, ...le16(0x3000), 0xb9, ...le16(2048), 0xf3, 0xa5, 0x4d, 0x75, 0xf2, 0xf4
    ]
  },
  {
    name: "branchy",
    what: "data-dependent jcc, call/ret",
    // mov ecx, n; l: test cl, 1; jz s; call f; s: dec ecx; jnz l; hlt; f: inc eax; ret
    code32: (n) => [0xb9, ...le32(n), 0xf6, 0xc1, 0x01, 0x74, 0x05, 0xe8, 0x04, 0x00, 0x00, 0x00, 0x49, 0x75, 0xf3, 0xf4, 0x40, 0xc3],
    // mov ecx, n; l: test cl, 1; jz s; call f; s: dec ecx; jnz l; hlt; f: inc ax; ret
    code16: (n) => [0x66, 0xb9, ...le32(n), 0xf6, 0xc1, 0x01, 0x74, 0x03, 0xe8, 0x05, 0x00, 0x66, 0x49, 0x75, 0xf4, 0xf4, 0x40, 0xc3]
  }
]

const PAGE_DIRECTORY = 0x300000
const PAGE_TABLE = 0x301000

/**
 * Identity-maps 0–4 MiB with 4 KiB pages (code, stack and the loops' arrays are all
 * there) and turns paging on, as guests/paging.S does; the loop follows. Its ~3,000
 * instructions count in the total, a rounding error on millions.
 */
const enablePaging = [
  // mov edi, PT; mov eax, P|W; mov ecx, 1024; fill: stosd; add eax, 4096; loop fill
  0xbf, ...le32(PAGE_TABLE), 0xb8, ...le32(0x3), 0xb9, ...le32(1024), 0xab, 0x05, ...le32(0x1000), 0xe2, 0xf8,
  // mov dword [PD], PT|P|W; mov eax, PD; mov cr3, eax
  0xc7, 0x05, ...le32(PAGE_DIRECTORY), ...le32(PAGE_TABLE | 0x3), 0xb8, ...le32(PAGE_DIRECTORY), 0x0f, 0x22, 0xd8,
  // mov eax, cr0; or eax, CR0.PG; mov cr0, eax
  0x0f, 0x20, 0xc0, 0x0d, ...le32(0x80000000), 0x0f, 0x22, 0xc0
]

const machineMode = (mode: MipsMode): CpuMode => (mode === "real" ? "real" : "pm32")

const image = (loop: Loop, mode: MipsMode, iterations: number): Uint8Array =>
  Uint8Array.from(mode === "real" ? loop.code16(iterations) : mode === "pm32" ? loop.code32(iterations) : [...enablePaging, ...loop.code32(iterations)])

const runOnce = (loop: Loop, mode: MipsMode, iterations: number): { instructions: number; ms: number } => {
  const load = mode === "real" ? 0x7c00 : 0x100000
  const machine = Either.getOrThrow(
    createMachine({ memoryMiB: 16, loadAddress: load, entry: load, mode: machineMode(mode), instructionLimit: Number.MAX_SAFE_INTEGER }, image(loop, mode, iterations))
  )
  const start = performance.now()
  const exit = machine.vcpu.run()
  const ms = performance.now() - start
  if (exit._tag !== "KVM_EXIT_HLT") throw new Error(`${loop.name} (${mode}): expected HLT, got ${exit._tag}`)
  return { instructions: machine.vcpu.instructionsRetired, ms }
}

export interface MipsResult {
  readonly mode: MipsMode
  readonly loop: string
  readonly what: string
  readonly instructions: number
  readonly mipsMedian: number
  readonly mipsBest: number
}

/** Each loop in each mode: one short warm-up run for the JIT, then the median and best of `runs`. */
export const measureMips = (options: { readonly iterations: number; readonly runs: number }): MipsResult[] =>
  mipsModes.flatMap((mode) =>
    loops.map((loop) => {
      runOnce(loop, mode, Math.ceil(options.iterations / 10))
      const runs = Array.from({ length: options.runs }, () => runOnce(loop, mode, options.iterations))
      const mips = runs.map((r) => r.instructions / r.ms / 1000)
      return { mode, loop: loop.name, what: loop.what, instructions: runs[0]!.instructions, mipsMedian: median(mips), mipsBest: Math.max(...mips) }
    }))
