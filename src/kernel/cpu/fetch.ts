import { Addressing } from "./addressing.ts"
import { fit, RF, signExtend, TF } from "./alu.ts"
import { codeGranuleMask } from "./bus.ts"
import { Decoder, Instruction } from "./decoder.ts"
import { CR0_PG } from "./paging.ts"
import { Seg, Vector } from "./state.ts"
import { BLOCK_THRESHOLD, translateBlock } from "./translationBlock.ts"

/** Slots of the decoded-instruction cache, direct-mapped on the guest-physical address of the first byte. */
const CACHE_SLOTS = 1 << 13

/** Instruction fetch and the decoded-instruction cache, keyed by guest-physical address. */
export abstract class InstructionFetch extends Addressing {
  protected readonly decoder = new Decoder({ fetchCode: (index) => this.fetchCode(index) })
  /** Decoded instructions that are not cached. */
  protected readonly scratch = new Instruction()
  /** The instruction in progress. */
  protected insn = this.scratch
  /** Per guest frame, a count of writes that hit cached code (from the memory); undefined: nothing is cached. */
  protected readonly codeWrites: Uint32Array | undefined = this.mem.codeGranules === undefined ? undefined : this.mem.codeWrites
  /** Per guest frame, the 128-byte pieces holding cached code: the memory watches writes to them. */
  private readonly codeGranules: Uint32Array = this.mem.codeGranules ?? new Uint32Array(0)
  /**
   * The decoded-instruction cache, direct-mapped (empty without codeWrites). A slot's
   * instruction is made at its first use: a vCPU a restore builds for a short replay
   * uses few of them.
   */
  private readonly cache: Array<Instruction | undefined> = new Array<Instruction | undefined>(this.codeWrites === undefined ? 0 : CACHE_SLOTS).fill(undefined)

  /** A code byte the block compiler reads ahead, in a frame already fetched from (so without EPT side effects). */
  private readonly readCode = (physical: number): number => this.mem.fetch8(physical)

  /** Forgets every decoded instruction (and its block): guest memory or state was replaced from outside. */
  dropDecodedInstructions(): void {
    for (const d of this.cache) if (d !== undefined) d.mode = -1
  }

  /**
   * Compile hot code into translation blocks and run rep iterations back to back (off:
   * every step is interpreted on its own, for comparison; the results are the same).
   */
  translationBlocks = true

  /**
   * Steps may run back to back, without the run loop's checks between them: blocks and
   * batching are on, and no single-step trap, RF or breakpoint needs a look after each.
   */
  protected get mayRunAhead(): boolean {
    return this.translationBlocks && (this.flags & (TF | RF)) === 0 && !this.breakpointsArmed
  }

  /** Byte `index` of the instruction at CS:instructionStart, with the checks of an instruction fetch. */
  protected fetchCode(index: number): number {
    const off = this.instructionStart + index
    if (off > this.segLimit[Seg.CS] || index >= 15) throw this.fault(Vector.GP, 0)
    const linear = (this.segBase[Seg.CS] + off) >>> 0
    return this.mem.fetch8((this.cr0 & CR0_PG) === 0 ? linear : this.translate(linear, this.userAccess))
  }

  /**
   * Decodes the instruction at CS:`start` (`code32` is CS.D): from the cache when the
   * same guest-physical bytes were decoded in the same mode and their frame has not
   * been written since. The first byte is translated (and faults) as its fetch would;
   * a hit then only needs the CS limit to cover the instruction. Instructions that
   * cross a frame, and those the executor finishes decoding itself, are decoded every time.
   */
  protected decodeAt(start: number, code32: boolean): Instruction {
    const writes = this.codeWrites
    const limit = this.segLimit[Seg.CS]
    if (writes === undefined || start > limit) {
      this.decoder.decode(this.scratch, code32)
      return this.scratch
    }
    const linear = (this.segBase[Seg.CS] + start) >>> 0
    const pa = (this.cr0 & CR0_PG) === 0 ? linear : this.translate(linear, this.userAccess)
    const slot = (pa ^ (pa >>> 13)) & (CACHE_SLOTS - 1)
    const d = this.cache[slot] ?? (this.cache[slot] = new Instruction())
    const mode = code32 ? 1 : 0
    const codeVersion = writes[pa >>> 12]
    if (d.physical === pa && d.mode === mode && d.writes === codeVersion && start + d.length - 1 <= limit) {
      if (d.block === undefined && ++d.heat === BLOCK_THRESHOLD && this.translationBlocks) {
        d.block = translateBlock(pa, codeVersion, code32, this.readCode)
        if (d.block !== undefined) this.codeGranules[pa >>> 12] |= codeGranuleMask(pa, pa + d.block.byteLength - 1)
      }
      return d
    }
    d.mode = -1
    this.decoder.decode(d, code32)
    if (d.complete && (pa & 0xfff) + d.length <= 0x1000) {
      d.physical = pa
      d.mode = mode
      d.writes = codeVersion
      this.codeGranules[pa >>> 12] |= codeGranuleMask(pa, pa + d.length - 1)
    }
    return d
  }

  /** The next byte of the instruction, past what execution has read (pc). */
  protected fetch8(): number {
    const b = this.decoder.byte(this.insn, this.pc - this.instructionStart)
    this.pc++
    return b
  }

  protected fetch16(): number {
    const lo = this.fetch8()
    return lo | (this.fetch8() << 8)
  }

  protected fetch32(): number {
    const lo = this.fetch16()
    return (lo | (this.fetch16() << 16)) >>> 0
  }

  protected fetchImm(size: number): number {
    return size === 1 ? this.fetch8() : size === 2 ? this.fetch16() : this.fetch32()
  }

  /** An 8-bit immediate sign-extended to `size`. */
  protected fetchImm8As(size: number): number {
    return fit(signExtend(this.fetch8(), 1), size)
  }
}
