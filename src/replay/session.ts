/**
 * A replay session: a recorded run that can be positioned anywhere, run forward and
 * looked at, with every event it produces checked against the recording (rr's replay
 * session; the gdb stub drives one).
 *
 * Usage:
 *
 *   const session = yield* openReplaySession("run.vmrr")   // Effect, scoped (the file stays open)
 *   session.seekTime(1000)          // instruction count: the state before instruction #1000 runs
 *   session.seekEvent(42)           // the state at the instruction event #42 happens at
 *   session.stepInstruction()       // one instruction forward
 *   session.continueUntil((s) => s.registers().regs.rip === 0x7c10, 1e6)
 *   session.registers()             // KVM_GET_REGS + KVM_GET_SREGS
 *   session.readPhysical(0x7c00, 16)
 *   session.readLinear(0x7c00, 16)  // through the guest's page tables; undefined if unmapped
 *   session.position                // { time, seq }: instructions retired, events produced
 *
 * and backwards with `reverse.ts` (step back, previous event, previous write). The
 * methods are synchronous, for a debugger's packet loop; they throw tagged errors:
 * `SessionError` (a position the recording does not have), `ReplayDivergence` (the
 * model did something else than the recording), `TraceCorrupt` / `TraceIoError` (the
 * file), `VmStateError` (a checkpoint that does not load).
 *
 * Positions. Virtual time t is "t instructions have retired". The state at time t is
 * the one the run is in when the t-th instruction has just retired, before anything
 * else happens at t (so a VM exit the next instruction causes comes after it). An
 * event happens at its `time`; the state at an event is the state at its time. Every
 * way of reaching a time (from the start, a checkpoint, or another position) gives the
 * same state: the vCPU is stopped there by KVM_SET_GUEST_DEBUG, a stop the event
 * stream does not see.
 */
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import type * as Scope from "effect/Scope"
import { eventsEqual } from "../events/trace/equality.ts"
import type { TraceError } from "../events/trace/errors.ts"
import { lastAtOrBefore, openSeekableTrace, type SeekableTrace } from "../events/trace/traceIndex.ts"
import type { Checkpoint } from "../events/trace/schema.ts"
import type { VmEvent } from "../events/VmEvent.ts"
import type { KvmRegs, KvmSregs } from "../kernel/api.ts"
import { disassemble } from "../kernel/cpu/disassembler.ts"
import { createVm } from "../kernel/kvm.ts"
import { cpuExecOnce, logRunEnd, type RunOutcome } from "../qemu/cpuExec.ts"
import { type RecordedHostInput, ScheduledHostInput } from "../qemu/hostInput.ts"
import { createMachine } from "../qemu/machine.ts"
import { isStateful, loadVmState, type StatefulMachine, type VmStateError } from "../qemu/vmstate.ts"
import { checkpointRegisters, CONTEXT_EVENTS, type MachinePoint, registerDifferences, ReplayDivergence } from "./divergence.ts"

/** A request the recording cannot satisfy: one line saying why. */
export class SessionError extends Data.TaggedError("SessionError")<{ readonly reason: string }> {
  override get message(): string {
    return this.reason
  }
}

export interface Position {
  /** Instructions retired. */
  readonly time: number
  /** Events produced so far: the next event is number `seq`. */
  readonly seq: number
}

export interface Registers {
  readonly regs: KvmRegs
  readonly sregs: KvmSregs
}

const hex = (n: number): string => `0x${(n >>> 0).toString(16)}`

/** Above this many instructions ahead, a later checkpoint beats running forward from where the session is. */
const FORWARD_PREFERRED = 20_000

export class ReplaySession {
  private machine!: StatefulMachine
  private outcome: RunOutcome | undefined
  /** The time whose first moment the session is at, if it is at one (see Positions). */
  private atFirstMomentOf: number | undefined
  private chunkIndex = -1
  private chunkEvents: ReadonlyArray<VmEvent> = []
  private readonly checkpoints = new Map<number, Checkpoint>()
  private inputs: ReadonlyArray<RecordedHostInput> | undefined
  /** The next recorded checkpoint the replay will pass: its state is checked there. */
  private nextCheckpoint = 0
  /** The time of the last event: where the recording ends. */
  readonly endTime: number

  constructor(readonly trace: SeekableTrace) {
    if (trace.header.backend === "kvm") throw new SessionError({ reason: "the trace was recorded on real KVM: its positions are not instruction counts the model can seek to" })
    if (trace.index.eventCount === 0) throw new SessionError({ reason: "the trace holds no events" })
    this.endTime = this.recorded(trace.index.eventCount - 1)!.time
    this.restore(-1)
  }

  // ---- where the session is ---------------------------------------------------

  get position(): Position {
    return { time: this.machine.vcpu.instructionsRetired, seq: this.machine.log.nextSeq }
  }

  /** How the run ended, once the session has replayed its end. */
  get ended(): RunOutcome | undefined {
    return this.outcome
  }

  /** The number of events in the recording. */
  get eventCount(): number {
    return this.trace.index.eventCount
  }

  /** Recorded event `seq`, or undefined past the end of the recording. */
  recorded(seq: number): VmEvent | undefined {
    const i = this.trace.chunkOfEvent(seq)
    if (i < 0) return undefined
    if (i !== this.chunkIndex) {
      this.chunkEvents = this.trace.chunk(i)
      this.chunkIndex = i
    }
    return this.chunkEvents[seq - this.trace.index.chunkSeqs[i]!]
  }

  // ---- moving -------------------------------------------------------------------

  /** The state at time `t` (0 ≤ t ≤ endTime). */
  seekTime(t: number): Position {
    if (!Number.isSafeInteger(t) || t < 0 || t > this.endTime) {
      throw new SessionError({ reason: `instruction count ${t} is outside the recording (0 to ${this.endTime})` })
    }
    if (this.atFirstMomentOf === t) return this.position
    const here = this.machine.vcpu.instructionsRetired
    const checkpoint = t === 0 ? -1 : lastAtOrBefore(this.trace.index.checkpointTimes, t - 1)
    const checkpointTime = checkpoint < 0 ? 0 : this.trace.index.checkpointTimes[checkpoint]!
    const forwardFromHere = here < t && this.outcome === undefined && !(checkpointTime > here + FORWARD_PREFERRED)
    if (!forwardFromHere) this.restore(checkpoint)
    this.runTo(t)
    return this.position
  }

  /** The state at the time event `seq` happens at. */
  seekEvent(seq: number): Position {
    const event = this.recorded(seq)
    if (!Number.isSafeInteger(seq) || event === undefined) {
      throw new SessionError({ reason: `event ${seq} is outside the recording (0 to ${this.eventCount - 1})` })
    }
    return this.seekTime(event.time)
  }

  /**
   * Replays forward until event `seq` has been produced and verified, to the end of the
   * exit that produced it (replay --to): from the nearest checkpoint before it, or from
   * here when that is closer (or when `fromHere` asks for it and here is before it).
   */
  replayToEvent(seq: number, fromHere = false): Position {
    if (!Number.isSafeInteger(seq) || seq < 0 || seq >= this.eventCount) {
      throw new SessionError({ reason: `event ${seq} is outside the recording (0 to ${this.eventCount - 1})` })
    }
    const checkpoint = lastAtOrBefore(this.trace.index.checkpointSeqs, seq)
    const checkpointSeq = checkpoint < 0 ? 0 : this.trace.index.checkpointSeqs[checkpoint]!
    const here = this.machine.log.nextSeq
    if (here > seq || (checkpointSeq > here && !fromHere)) this.restore(checkpoint)
    while (this.outcome === undefined && this.machine.log.nextSeq <= seq) this.iterate()
    return this.position
  }

  stepInstruction(): Position {
    if (this.outcome !== undefined) throw new SessionError({ reason: "the run has ended: there is no next instruction" })
    return this.seekTime(this.machine.vcpu.instructionsRetired + 1)
  }

  /**
   * Steps one instruction at a time until `condition` holds (checked after each step) or
   * `maxInstructions` have run; true if it held. What a debugger's `continue` with
   * breakpoints needs.
   */
  continueUntil(condition: (session: ReplaySession) => boolean, maxInstructions: number): boolean {
    const stop = Math.min(this.endTime, this.machine.vcpu.instructionsRetired + maxInstructions)
    while (this.outcome === undefined && this.machine.vcpu.instructionsRetired < stop) {
      this.stepInstruction()
      if (condition(this)) return true
    }
    return false
  }

  /**
   * Runs forward to time `t` (≥ now) in steps of `every` instructions, calling `atStop`
   * at each stop; for searches that look at the machine as it goes (reverse.ts).
   */
  sweepForward(t: number, every: number, atStop: (session: ReplaySession) => void): void {
    while (this.outcome === undefined && this.machine.vcpu.instructionsRetired < t) {
      this.seekTime(Math.min(t, this.machine.vcpu.instructionsRetired + every))
      atStop(this)
    }
  }

  // ---- looking ------------------------------------------------------------------

  registers(): Registers {
    return { regs: this.machine.vcpu.getRegs(), sregs: this.machine.vcpu.getSregs() }
  }

  /** Guest RAM; undefined where the range leaves RAM. */
  readPhysical(address: number, length: number): Uint8Array | undefined {
    const ram = this.machine.ram
    if (address < 0 || length < 0 || address + length > ram.length) return undefined
    return ram.slice(address, address + length)
  }

  /** Linear to guest-physical through the guest's page tables (as a gdb stub's debug walk); undefined if not mapped. */
  translate(linear: number): number | undefined {
    const { cr0, cr3, cr4 } = this.machine.vcpu.getSregs()
    if ((cr0 & 0x80000000) === 0) return linear >>> 0
    const read32 = (pa: number) => {
      const b = this.readPhysical(pa, 4)
      return b === undefined ? 0 : (b[0] | (b[1] << 8) | (b[2] << 16) | (b[3] << 24)) >>> 0
    }
    const pde = read32(((cr3 & 0xfffff000) + ((linear >>> 22) << 2)) >>> 0)
    if ((pde & 1) === 0) return undefined
    if ((pde & 0x80) !== 0 && (cr4 & 0x10) !== 0) return ((pde & 0xffc00000) | (linear & 0x3fffff)) >>> 0
    const pte = read32(((pde & 0xfffff000) + (((linear >>> 12) & 0x3ff) << 2)) >>> 0)
    if ((pte & 1) === 0) return undefined
    return ((pte & 0xfffff000) | (linear & 0xfff)) >>> 0
  }

  /** Guest memory by linear address, page by page; undefined if any byte is unmapped or outside RAM. */
  readLinear(address: number, length: number): Uint8Array | undefined {
    const out = new Uint8Array(length)
    for (let done = 0; done < length;) {
      const linear = (address + done) >>> 0
      const n = Math.min(length - done, 0x1000 - (linear & 0xfff))
      const pa = this.translate(linear)
      const bytes = pa === undefined ? undefined : this.readPhysical(pa, n)
      if (bytes === undefined) return undefined
      out.set(bytes, done)
      done += n
    }
    return out
  }

  /** The instruction at CS:EIP, disassembled (AT&T), with its address. */
  currentInstruction(): { readonly address: number; readonly text: string } {
    const { regs, sregs } = this.registers()
    const address = (sregs.cs.base + regs.rip) >>> 0
    let bytes: Uint8Array | undefined
    for (let n = 15; n > 0 && bytes === undefined; n--) bytes = this.readLinear(address, n)
    if (bytes === undefined) return { address, text: "(unmapped)" }
    return { address, text: disassemble(bytes, 0, { codeSize: sregs.cs.db ? 32 : 16 }, sregs.cs.base === 0 ? regs.rip : address).text }
  }

  /** The registers under RunEnd's names, and the instruction about to execute. */
  machinePoint(): MachinePoint {
    const { regs: r, sregs: s } = this.registers()
    const { address, text } = this.currentInstruction()
    return {
      time: this.position.time,
      registers: {
        eax: r.rax, ecx: r.rcx, edx: r.rdx, ebx: r.rbx, esp: r.rsp, ebp: r.rbp, esi: r.rsi, edi: r.rdi,
        eip: r.rip, eflags: r.rflags, cr0: s.cr0, cr3: s.cr3
      },
      instruction: `${hex(address)}: ${text}`
    }
  }

  /** The machine, for state sections and searches (reverse.ts); not for moving it. */
  get current(): StatefulMachine {
    return this.machine
  }

  // ---- inside -------------------------------------------------------------------

  private checkpoint(i: number): Checkpoint {
    let cp = this.checkpoints.get(i)
    if (cp === undefined) {
      cp = this.trace.checkpoint(i)
      this.checkpoints.set(i, cp)
    }
    return cp
  }

  private recordedInputs(): ReadonlyArray<RecordedHostInput> {
    if (this.inputs === undefined) {
      this.inputs = this.trace.index.inputSeqs.map((seq) => this.recorded(seq) as RecordedHostInput)
    }
    return this.inputs
  }

  /** A fresh machine at checkpoint `i` (-1: the start), as an incoming migration builds one. */
  private restore(i: number): void {
    const seq = i < 0 ? 0 : this.trace.index.checkpointSeqs[i]!
    // What the host gave before the checkpoint is in the restored state; the rest comes at its recorded time.
    const port = new ScheduledHostInput(this.recordedInputs().filter((e) => e.seq >= seq))
    const built = createMachine(this.trace.header.config, this.trace.header.image, createVm, port)
    if (Either.isLeft(built)) throw new SessionError({ reason: built.left.message })
    const machine = built.right
    if (!isStateful(machine)) throw new SessionError({ reason: "this kernel cannot restore checkpoints" })
    if (i >= 0) {
      const target = this.checkpoint(i)
      const earlier: Array<Readonly<Record<string, unknown>>> = []
      for (let k = 0; k < i; k++) earlier.push(this.checkpoint(k).sections)
      loadVmState(machine, target.sections, earlier)
      machine.log.nextSeq = target.seq
    }
    this.machine = machine
    this.nextCheckpoint = i + 1
    this.outcome = undefined
    this.atFirstMomentOf = i < 0 ? 0 : undefined
  }

  /** Runs to the first moment of time `t`, or to the end of the run. */
  private runTo(t: number): void {
    const vcpu = this.machine.vcpu
    vcpu.setGuestDebug({ stopAtInstructionsRetired: t })
    try {
      while (this.outcome === undefined && vcpu.instructionsRetired < t) this.iterate()
    } finally {
      vcpu.setGuestDebug({})
    }
    this.atFirstMomentOf = vcpu.instructionsRetired === t ? t : undefined
  }

  /** One pass of the vCPU loop (kvm_cpu_exec), then every event it produced is checked. */
  private iterate(): void {
    const machine = this.machine
    this.atFirstMomentOf = undefined
    let outcome: RunOutcome | undefined
    try {
      outcome = cpuExecOnce(machine)
      if (outcome !== undefined) logRunEnd(machine, outcome)
    } catch (e) {
      throw new SessionError({ reason: `the model failed while replaying: ${e instanceof Error ? e.message : String(e)}` })
    }
    this.outcome = outcome
    for (const actual of machine.log.drain()) {
      const expected = this.recorded(actual.seq)
      if (expected !== undefined && eventsEqual(expected, actual)) continue
      if (expected === undefined && !this.trace.index.fromEndFrame) {
        throw new SessionError({ reason: `the recording is cut off after event ${this.eventCount - 1}: nothing to check event ${actual.seq} against` })
      }
      throw this.divergence(actual.seq, expected, actual)
    }
    if (outcome !== undefined && machine.log.nextSeq < this.eventCount) {
      throw this.divergence(machine.log.nextSeq, this.recorded(machine.log.nextSeq), undefined)
    }
    this.checkState()
  }

  /** Passing a recorded checkpoint: the registers must be the recorded ones. */
  private checkState(): void {
    const { checkpointSeqs: seqs, checkpointTimes: times } = this.trace.index
    const seq = this.machine.log.nextSeq
    while (this.nextCheckpoint < seqs.length && seqs[this.nextCheckpoint]! < seq) this.nextCheckpoint++
    const j = this.nextCheckpoint
    if (j >= seqs.length || seqs[j] !== seq || times[j] !== this.machine.vcpu.instructionsRetired) return
    this.nextCheckpoint++
    const recorded = checkpointRegisters(this.checkpoint(j))
    const replay = this.machinePoint()
    if (registerDifferences(recorded, replay.registers).length === 0) return
    const context = this.divergence(seq, undefined, undefined).context
    throw new ReplayDivergence({ index: seq, expected: undefined, actual: undefined, context, point: { atCheckpoint: j, replay, recorded, recordedFrom: `checkpoint ${j}` } })
  }

  private divergence(index: number, expected: VmEvent | undefined, actual: VmEvent | undefined): ReplayDivergence {
    const context: VmEvent[] = []
    for (let s = Math.max(0, index - CONTEXT_EVENTS); s < index; s++) context.push(this.recorded(s)!)
    return new ReplayDivergence({ index, expected, actual, context })
  }
}

/** Opens a trace for a session; the session lives as long as the scope. */
export const openReplaySession = (path: string): Effect.Effect<ReplaySession, SessionFailure, Scope.Scope> =>
  Effect.flatMap(openSeekableTrace(path), (trace) => sessionEffect(() => new ReplaySession(trace)))

/** Errors a session's methods throw, as the failures of an Effect. */
export type SessionFailure = SessionError | ReplayDivergence | TraceError | VmStateError

/** Runs synchronous session calls at the Effect edge: tagged throws become failures, anything else a defect. */
export const sessionEffect = <A>(f: () => A): Effect.Effect<A, SessionFailure> =>
  Effect.try({
    try: f,
    catch: (e) => e
  }).pipe(
    Effect.catchAll((e) => {
      const tag = typeof e === "object" && e !== null && "_tag" in e ? (e as { _tag: unknown })._tag : undefined
      return tag === "SessionError" || tag === "ReplayDivergence" || tag === "TraceCorrupt" || tag === "TraceIoError" || tag === "VmStateError"
        ? Effect.fail(e as SessionFailure)
        : Effect.die(e)
    })
  )
