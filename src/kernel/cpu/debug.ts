import { RF, TF } from "./alu.ts"
import { Paging } from "./paging.ts"
import { type DebuggerWatchpoint, Seg, Vector } from "./state.ts"

const DR6_BS = 1 << 14

/** DR7 LEN encodings: 1, 2, 8 (undefined outside 64-bit mode; taken as 8), 4 bytes. */
const BREAKPOINT_LENGTH = Int32Array.of(1, 2, 8, 4)

/** DR0-DR7: instruction and data breakpoints and the single-step trap. */
export abstract class DebugFeatures extends Paging {
  /**
   * After an instruction (or one iteration of a rep string instruction) completes:
   * RF, if it was set, has done its job and clears; a single-step (TF at the start)
   * or a data breakpoint hit raises #DB as a trap, returning to the next instruction,
   * with DR6.BS / DR6.Bn set (SDM Vol. 3B, 18.2.3 and 18.3.1).
   */
  protected debugAfterInstruction(startFlags: number): void {
    if ((startFlags & RF) !== 0) this.flags &= ~RF
    let bits = this.dataBreakHit
    if ((startFlags & TF) !== 0 && !this.noStepTrap) bits |= DR6_BS
    if (bits === 0) return
    this.dr[6] |= bits
    this.instructionStart = this.eip
    throw this.fault(Vector.DB, 0)
  }

  /** Recomputes whether any DR7 breakpoint or debugger watchpoint is enabled; call after changing `dr` from outside. */
  debugRegistersChanged(): void {
    this.breakpointsArmed = (this.dr[7] & 0xff) !== 0 || this.debuggerWatchpoints.length > 0
  }

  /** A host debugger's data watchpoints (KVM_SET_GUEST_DEBUG): seen by the debugger, never by the guest. */
  setDebuggerWatchpoints(watchpoints: ReadonlyArray<DebuggerWatchpoint>): void {
    this.debuggerWatchpoints = watchpoints.map((w) => ({ ...w }))
    this.debuggerHits = 0
    this.debugRegistersChanged()
  }

  /**
   * An enabled execute breakpoint (R/W = 00) on the linear address of the next
   * instruction is a #DB fault before it runs, unless EFLAGS.RF suppresses it.
   */
  protected checkInstructionBreakpoint(): void {
    if ((this.flags & RF) !== 0) return
    const linear = (this.segBase[Seg.CS] + this.eip) >>> 0
    const dr7 = this.dr[7]
    let hit = 0
    for (let n = 0; n < 4; n++) {
      if (((dr7 >>> (n * 2)) & 3) !== 0 && ((dr7 >>> (16 + n * 4)) & 3) === 0 && this.dr[n] === linear) hit |= 1 << n
    }
    if (hit === 0) return
    this.dr[6] |= hit
    this.instructionStart = this.eip
    this.dbFault = true
    throw this.fault(Vector.DB, 0)
  }

  /** Data breakpoints (R/W = 01 write, 11 read or write) whose aligned range the access overlaps; reported after the instruction. */
  protected checkDataBreakpoint(linear: number, size: number, write: boolean): void {
    const dr7 = this.dr[7]
    for (let n = 0; n < 4; n++) {
      if (((dr7 >>> (n * 2)) & 3) === 0) continue
      const rw = (dr7 >>> (16 + n * 4)) & 3
      if (rw !== 3 && !(rw === 1 && write)) continue
      const len = BREAKPOINT_LENGTH[(dr7 >>> (18 + n * 4)) & 3]
      const base = (this.dr[n] & ~(len - 1)) >>> 0
      if (linear <= base + len - 1 && base <= linear + size - 1) this.dataBreakHit |= 1 << n
    }
    const watched = this.debuggerWatchpoints
    for (let n = 0; n < watched.length; n++) {
      const w = watched[n]
      if (w.access === (write ? "read" : "write")) continue
      if (linear <= w.linear + w.length - 1 && w.linear <= linear + size - 1) this.debuggerHits |= 1 << n
    }
  }
}
