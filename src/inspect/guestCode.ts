import type { KvmSregs } from "../kernel/api.ts"
import { disassemble } from "../kernel/cpu/disassembler.ts"
import { CR0_PG, CR4_PSE } from "../kernel/cpu/paging.ts"

/**
 * Reading the guest's code as a debugger does: CS:rip to a linear address, then through
 * the guest's page tables to guest-physical RAM. Like QEMU's
 * `x86_cpu_get_phys_page_debug`, the walk happens in userspace and has no side effects
 * (no A/D bits, no TLB, no fault): it only looks.
 */

/** The longest x86 instruction. */
const MAX_INSTRUCTION = 15

/** The instruction a VM exit happened on: where, its bytes, and its AT&T text. */
export interface GuestInstruction {
  /** The exit's rip (an offset in CS). */
  readonly rip: number
  /** CS.base + rip. */
  readonly linear: number
  readonly bytes: Uint8Array
  readonly text: string
}

const read32 = (ram: Uint8Array, address: number): number | undefined =>
  address + 4 <= ram.length ? (ram[address] | (ram[address + 1] << 8) | (ram[address + 2] << 16) | (ram[address + 3] << 24)) >>> 0 : undefined

/** Linear to guest-physical with 32-bit paging (4 KiB and, under CR4.PSE, 4 MiB pages); undefined if not mapped. */
export const debugTranslate = (ram: Uint8Array, sregs: Pick<KvmSregs, "cr0" | "cr3" | "cr4">, linear: number): number | undefined => {
  if ((sregs.cr0 & CR0_PG) === 0) return linear >>> 0
  const pde = read32(ram, ((sregs.cr3 & 0xfffff000) | ((linear >>> 20) & 0xffc)) >>> 0)
  if (pde === undefined || (pde & 1) === 0) return undefined
  if ((pde & 0x80) !== 0 && (sregs.cr4 & CR4_PSE) !== 0) return ((pde & 0xffc00000) | (linear & 0x3fffff)) >>> 0
  const pte = read32(ram, ((pde & 0xfffff000) | ((linear >>> 10) & 0xffc)) >>> 0)
  if (pte === undefined || (pte & 1) === 0) return undefined
  return ((pte & 0xfffff000) | (linear & 0xfff)) >>> 0
}

/**
 * The instruction at CS:rip, read from RAM and disassembled in the code size CS gives.
 * Undefined when its first byte is not in RAM (code fetched from MMIO, an unmapped page).
 */
export const instructionAt = (ram: Uint8Array, sregs: KvmSregs, rip: number): GuestInstruction | undefined => {
  const linear = (sregs.cs.base + rip) >>> 0
  const bytes: number[] = []
  for (let i = 0; i < MAX_INSTRUCTION; i++) {
    const physical = debugTranslate(ram, sregs, (linear + i) >>> 0)
    if (physical === undefined || physical >= ram.length) break
    bytes.push(ram[physical])
  }
  if (bytes.length === 0) return undefined
  const fetched = Uint8Array.from(bytes)
  const { text, length } = disassemble(fetched, 0, { codeSize: sregs.cs.db ? 32 : 16 }, rip)
  return { rip, linear, bytes: fetched.slice(0, length), text }
}

/** `f3 6e`: an instruction's bytes as objdump shows them. */
export const hexBytes = (bytes: Uint8Array): string => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join(" ")
