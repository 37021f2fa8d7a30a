import fc from "fast-check"
import type { MachineConfig } from "../../src/events/MachineConfig.ts"

/** Where generated flat 32-bit programs are loaded; scratch data lives a few pages above. */
export const LOAD = 0x100000
export const SCRATCH = 0x200000
/** A GPA no memslot covers: touching it is MMIO. */
export const MMIO_GPA = 0xfebf0000

export const pm32Config = (overrides: Partial<MachineConfig> = {}): MachineConfig => ({
  memoryMiB: 16,
  loadAddress: LOAD,
  entry: LOAD,
  mode: "pm32",
  instructionLimit: 1_000_000,
  ...overrides
})

/** A 32-bit value as its four little-endian bytes, for immediates in hand-assembled code. */
export const le32 = (v: number): number[] => [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff]

/** General registers a generated program may write: every one but ESP. */
const reg = fc.constantFrom(0, 1, 2, 3, 5, 6, 7)
const imm32 = fc.integer({ min: 0, max: 0xffffffff })

/**
 * One straight-line 32-bit instruction, hand-encoded: ALU, shifts, multiply, stack,
 * memory on fresh pages (EPT violations), MMIO, port I/O and CPUID. Each is defined
 * whatever the registers hold, so any sequence runs to its end.
 */
export const instruction: fc.Arbitrary<number[]> = fc.oneof(
  fc.tuple(reg, imm32).map(([r, v]) => [0xb8 + r, ...le32(v)]), // mov r32, imm32
  fc.tuple(fc.constantFrom(0x01, 0x09, 0x11, 0x19, 0x21, 0x29, 0x31, 0x39), reg, reg).map(([op, s, d]) => [op, 0xc0 | (s << 3) | d]),
  fc.tuple(fc.constantFrom(0x40, 0x48), reg).map(([op, r]) => [op + r]), // inc/dec
  fc.tuple(fc.constantFrom(0, 1, 2, 3, 4, 5, 7), reg, fc.integer({ min: 0, max: 31 })).map(([ext, r, n]) => [0xc1, 0xc0 | (ext << 3) | r, n]),
  fc.tuple(fc.constantFrom(2, 3), reg).map(([ext, r]) => [0xf7, 0xc0 | (ext << 3) | r]), // not/neg
  fc.tuple(reg, reg).map(([d, s]) => [0x0f, 0xaf, 0xc0 | (d << 3) | s]), // imul r32, r/m32
  fc.tuple(reg, reg).map(([a, b]) => [0x50 + a, 0x58 + b]), // push a; pop b
  fc.tuple(fc.integer({ min: 0, max: 63 }), fc.boolean()).map(([page, store]) => [store ? 0xa3 : 0xa1, ...le32(SCRATCH + page * 0x1000 + 0x10)]),
  fc.boolean().map((store) => [store ? 0xa3 : 0xa1, ...le32(MMIO_GPA)]), // MMIO read or write
  fc.constant([0xe6, 0xe9]), // out 0xe9, al (debugcon)
  fc.constant([0x66, 0xba, 0xfd, 0x03, 0xec]), // mov dx, 0x3fd; in al, dx (UART LSR)
  fc.constant([0x0f, 0xa2]) // cpuid
)

/** A program: instructions, then `hlt`. */
export const program: fc.Arbitrary<Uint8Array> = fc
  .array(instruction, { minLength: 1, maxLength: 40 })
  .map((parts) => Uint8Array.from([...parts.flat(), 0xf4]))
