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
 *   session.replayToEnd()           // vmrr replay: on to the end of the run
 *
 * and backwards with `reverse.ts` (step back, previous event, previous write). The
 * methods are synchronous, for a debugger's packet loop; they throw tagged errors:
 * `SessionError` (a position the recording does not have), `ReplayDivergence` (the
 * model did something else than the recording), `TraceCorrupt` / `TraceIoError` (the
 * file; `replayToEnd` says ReplayTraceDamaged, with how far it verified), `VmStateError`
 * (a checkpoint that does not load).
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
import { TraceCorrupt, type TraceError } from "../events/trace/errors.ts"
import { rawEvents, releaseRawChunk } from "../events/rawEvents.ts"
import { packRawEvents } from "../events/trace/packedEvents.ts"
import { RawChunkVerifier, type VerifierOptions } from "../events/trace/packerThread.ts"
import { lastAtOrBefore, openSeekableTrace, type SeekableTrace } from "../events/trace/traceIndex.ts"
import type { EventLog } from "../events/EventLog.ts"
import { type Checkpoint, formatVersion } from "../events/trace/schema.ts"
import type { RecordedHostInput, VmEvent } from "../events/VmEvent.ts"
import type { KvmRegs, KvmSregs } from "../kernel/api.ts"
import { disassemble } from "../kernel/cpu/disassembler.ts"
import { Vm } from "../kernel/kvm.ts"
import { cpuExecOnce, logRunEnd, type RunOutcome } from "../qemu/cpuExec.ts"
import { ScheduledHostInput } from "../qemu/hostInput.ts"
import { createMachine, type KernelFactory } from "../qemu/machine.ts"
import { isStateful, loadVmState, type StatefulMachine, type VmStateError } from "../qemu/vmstate.ts"
import { checkpointRegisters, CONTEXT_EVENTS, type MachinePoint, type RegisterSet, registerDifferences, registerParts, ReplayDivergence, ReplayTraceDamaged } from "./divergence.ts"

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

const bytesEqual = (a: Uint8Array, b: Uint8Array): boolean => a.length === b.length && Buffer.compare(a, b) === 0

/** Above this many instructions ahead, a later checkpoint beats running forward from where the session is. */
const FORWARD_PREFERRED = 20_000

/**
 * Decoded checkpoints kept for restores (reverse steps restore the same ones again and
 * again): this many at most, holding at most this many bytes of guest RAM, whatever the
 * trace's length.
 */
const CHECKPOINT_CACHE_ENTRIES = 64
const CHECKPOINT_CACHE_BYTES = 64 * 1024 * 1024

/** A checkpoint's RAM section (vmstate.ts): the frames KVM_GET_DIRTY_LOG named since the one before, and their pages. */
const ramSection = (checkpoint: Checkpoint): { readonly frames?: unknown; readonly pages?: unknown } | undefined =>
  checkpoint.sections["ram"] as { readonly frames?: unknown; readonly pages?: unknown } | undefined

const ramBytes = (checkpoint: Checkpoint): number => {
  const pages = ramSection(checkpoint)?.pages
  return pages instanceof Uint8Array ? pages.length : 0
}

export class ReplaySession {
  private machine!: StatefulMachine
  private outcome: RunOutcome | undefined
  /** The time whose first moment the session is at, if it is at one (see Positions). */
  private atFirstMomentOf: number | undefined
  /** The recorded chunk last read: events [chunkFirst, chunkEnd). */
  private chunkFirst = 0
  private chunkEnd = 0
  private chunkEvents: ReadonlyArray<VmEvent> = []
  /** Most recently used last (Map order); always holds the last one used. */
  private readonly checkpoints = new Map<number, Checkpoint>()
  private cachedBytes = 0
  /**
   * Which checkpoints saved each guest page, ascending, for checkpoints [0, ramIndexed):
   * a restore loads the latest copy of every page, not every checkpoint before its target.
   */
  private readonly ramWriters = new Map<number, number[]>()
  private ramIndexed = 0
  private inputs: ReadonlyArray<RecordedHostInput> | undefined
  /** The next recorded checkpoint the replay will pass: it stops there and checks its state. */
  private nextCheckpoint = 0
  /**
   * Events before this one have been checked against the recording (during `replayToEnd`,
   * or handed to `verifier`, whose results come later: see there).
   */
  private verified = 0
  /** Checks whole recorded chunks on the packer thread: set during `replayToEnd` only. */
  private verifier: RawChunkVerifier | undefined
  /** The RAM and the VM of the machine before this one, which nothing uses any more. */
  private spareRam: Uint8Array | undefined
  private spareVm: Vm | undefined
  /**
   * The model's kernel, whose guest RAM and VM's per-frame tables are the spare ones
   * cleared (as new ones are): a restore allocates neither.
   */
  private readonly kernel: KernelFactory = Object.assign((log: EventLog) => {
    const vm = new Vm(log, this.spareVm?.takeFrameTables())
    this.spareVm = undefined
    return vm
  }, {
    allocateRam: (bytes: number) => {
      const ram = this.spareRam?.length === bytes ? this.spareRam.fill(0) : new Uint8Array(bytes)
      this.spareRam = undefined
      return ram
    }
  })
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
    if (seq >= this.chunkFirst && seq < this.chunkEnd) return this.chunkEvents[seq - this.chunkFirst]
    const i = this.trace.chunkOfEvent(seq)
    if (i < 0) return undefined
    const first = this.trace.index.chunkSeqs[i]!
    const events = this.trace.chunk(i)
    this.chunkFirst = first
    this.chunkEnd = first + events.length
    this.chunkEvents = events
    return events[seq - first]
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
    while (this.outcome === undefined && this.machine.log.nextSeq <= seq) this.iterate(Number.POSITIVE_INFINITY)
    return this.position
  }

  /**
   * Replays from here to the end of the run (`vmrr replay`), every event and every
   * checkpoint's state checked, and a recording that goes on after the run or stops
   * before it is a divergence. Returns the number of events verified, counted from the
   * start. A recording that cannot be read to its end throws ReplayTraceDamaged (with
   * the events verified before the damage) once the replay reaches the damage.
   *
   * Whole recorded chunks (format 3) are checked on the packer thread (packerThread.ts,
   * `options`) while the replay goes on to the next ones. That changes when a difference
   * is found, never what is reported: whatever stops the replay (the end, an error) waits
   * for the results of the chunks before it first, and a chunk found different is
   * replayed again from the checkpoint before it (as a seek does) and checked in-thread,
   * event by event, which throws what a replay checking every chunk in-thread throws.
   */
  replayToEnd(options: VerifierOptions = {}): number {
    const here = this.trace.chunkOfEvent(this.machine.log.nextSeq)
    const verifier = new RawChunkVerifier(options, here < 0 ? 0 : this.trace.index.chunkSeqs.length - here)
    this.verifier = verifier
    try {
      for (;;) {
        let different: number | undefined
        try {
          while (this.outcome === undefined) this.advance(Number.POSITIVE_INFINITY)
          different = verifier.finish()
          if (different === undefined) break
        } catch (e) {
          // What stops the replay comes after the chunks handed off so far: their results first.
          if (verifier.pending === 0) throw e
          different = verifier.finish()
          if (different === undefined) throw e
        }
        this.recheck(different)
      }
    } catch (e) {
      if (e instanceof TraceCorrupt) throw new ReplayTraceDamaged({ verified: this.verified, cause: e })
      throw e
    } finally {
      this.verifier = undefined
      verifier.discard()
    }
    const damage = this.trace.index.damage
    if (damage !== undefined) throw new ReplayTraceDamaged({ verified: this.verified, cause: damage })
    return this.verified
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
    const { address, text } = this.currentInstruction()
    return { time: this.position.time, registers: this.registerSet(), instruction: `${hex(address)}: ${text}` }
  }

  /** The registers under RunEnd's names: what a checkpoint check compares, without disassembling. */
  private registerSet(): RegisterSet {
    const { regs: r, sregs: s } = this.registers()
    return {
      eax: r.rax, ecx: r.rcx, edx: r.rdx, ebx: r.rbx, esp: r.rsp, ebp: r.rbp, esi: r.rsi, edi: r.rdi,
      eip: r.rip, eflags: r.rflags, cr0: s.cr0, cr3: s.cr3
    }
  }

  /** The machine, for state sections and searches (reverse.ts); not for moving it. */
  get current(): StatefulMachine {
    return this.machine
  }

  // ---- inside -------------------------------------------------------------------

  /** Checkpoint `i`, from the cache or the trace. */
  private checkpoint(i: number): Checkpoint {
    const cached = this.checkpoints.get(i)
    if (cached !== undefined) {
      this.checkpoints.delete(i)
      this.checkpoints.set(i, cached)
      return cached
    }
    const checkpoint = this.trace.checkpoint(i)
    this.checkpoints.set(i, checkpoint)
    this.cachedBytes += ramBytes(checkpoint)
    for (const [k, old] of this.checkpoints) {
      if ((this.cachedBytes <= CHECKPOINT_CACHE_BYTES && this.checkpoints.size <= CHECKPOINT_CACHE_ENTRIES) || k === i) break
      this.checkpoints.delete(k)
      this.cachedBytes -= ramBytes(old)
    }
    return checkpoint
  }

  /** Adds checkpoint number `ramIndexed` to the page index. */
  private indexRam(checkpoint: Checkpoint): void {
    const frames = ramSection(checkpoint)?.frames
    if (Array.isArray(frames)) {
      for (const frame of frames as ReadonlyArray<number>) {
        const writers = this.ramWriters.get(frame)
        if (writers === undefined) this.ramWriters.set(frame, [this.ramIndexed])
        else writers.push(this.ramIndexed)
      }
    }
    this.ramIndexed++
  }

  /**
   * The checkpoints before `i` that hold the latest copy, as of checkpoint `i`, of a page
   * `i` does not save itself, oldest first: with `i`'s own RAM section they give all of
   * guest RAM at `i`, however many checkpoints came before it.
   */
  private ramSourcesBefore(i: number): number[] {
    while (this.ramIndexed <= i) this.indexRam(this.checkpoint(this.ramIndexed))
    const sources = new Set<number>()
    for (const writers of this.ramWriters.values()) {
      const latest = writers[lastAtOrBefore(writers, i)]
      if (latest !== undefined && latest !== i) sources.add(latest)
    }
    return [...sources].sort((a, b) => a - b)
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
    const built = createMachine(this.trace.header.config, this.trace.header.image, this.kernel, port)
    if (Either.isLeft(built)) throw new SessionError({ reason: built.left.message })
    const machine = built.right
    if (!isStateful(machine)) throw new SessionError({ reason: "this kernel cannot restore checkpoints" })
    if (i >= 0) {
      const earlier = this.ramSourcesBefore(i).map((k) => this.checkpoint(k).sections)
      const target = this.checkpoint(i)
      loadVmState(machine, target.sections, earlier)
      machine.log.nextSeq = target.seq
    }
    // The machine replaced is garbage once the new one is whole (until then a failed restore leaves the session as it was).
    const replaced = this.machine as StatefulMachine | undefined
    this.spareRam = replaced?.ram
    this.spareVm = replaced?.vm instanceof Vm ? replaced.vm : undefined
    this.machine = machine
    this.nextCheckpoint = i + 1
    this.verified = seq
    this.outcome = undefined
    this.atFirstMomentOf = i < 0 ? 0 : undefined
  }

  /** Runs to the first moment of time `t`, or to the end of the run. */
  private runTo(t: number): void {
    while (this.outcome === undefined && this.machine.vcpu.instructionsRetired < t) this.advance(t)
    this.atFirstMomentOf = this.machine.vcpu.instructionsRetired === t ? t : undefined
  }

  /** One pass of the vCPU loop, then every event it produced is checked, and the state if it is at a checkpoint. */
  private iterate(stop: number): void {
    this.step(stop)
    this.check(this.machine.log.drainEvents())
  }

  /** Forward, not past time `stop`: through a whole recorded chunk when the session is at the start of one, else one pass. */
  private advance(stop: number): void {
    const seq = this.machine.log.nextSeq
    const i = this.trace.chunkOfEvent(seq)
    if (i >= 0 && this.trace.index.chunkSeqs[i] === seq) this.replayChunk(i, stop)
    else this.iterate(stop)
  }

  /**
   * Replays recorded chunk `i` from its first event to its last (or to time `stop`), and
   * checks it whole: the events produced, packed as a recording packs them, must be its
   * bytes (cheaper than unpacking it and comparing event by event). Anything else (other
   * bytes, a chunk of format 2, a stop or a run's end before the chunk's end, a pass that
   * goes past it) is checked event by event, which says where and how they differ.
   */
  private replayChunk(i: number, stop: number): void {
    const end = this.trace.index.chunkSeqs[i + 1] ?? this.eventCount
    // The passes' events stay in the log until the chunk is whole.
    this.runPasses(end, stop)
    const produced = this.machine.log.drain()
    const whole = produced.count > 0 && this.machine.log.nextSeq === end
    if (whole && this.verifier !== undefined && this.trace.header.formatVersion === formatVersion) {
      // Checked later (replayToEnd): counted as verified, and the replay goes on. The
      // worker reads the recorded chunk from the file itself; one it cannot read is
      // "different", and the in-thread recheck reads it again and says why.
      this.verified = end
      const different = this.verifier.verify(i, produced, { at: this.trace.chunkFrameAt(i), read: () => this.trace.packedChunk(i) })
      if (different === undefined) this.check([])
      else this.recheck(different)
      return
    }
    const recorded = this.trace.packedChunk(i)
    const same = whole && recorded !== undefined && bytesEqual(packRawEvents(produced).bytes, recorded)
    const events = same ? [] : rawEvents(produced)
    releaseRawChunk(produced)
    if (same) this.verified = end
    this.check(events)
  }

  /**
   * Recorded chunk `i`, handed to the verifier, is not what the replay produced: the
   * results after it are dropped, the session goes back to the checkpoint before the
   * chunk (the start if that one does not load) and replays to the chunk's end checking
   * in-thread, which throws the divergence if the chunk's events differ. Other bytes
   * with the same events (a recording packed otherwise) go on from the chunk's end, every
   * chunk from there checked in-thread: a recording packed otherwise has more such chunks,
   * and each would go back to its checkpoint again.
   */
  private recheck(i: number): void {
    this.verifier?.discard()
    this.verifier = undefined
    const first = this.trace.index.chunkSeqs[i]!
    const end = this.trace.index.chunkSeqs[i + 1] ?? this.eventCount
    const checkpoint = lastAtOrBefore(this.trace.index.checkpointSeqs, first)
    try {
      this.restore(checkpoint)
    } catch (e) {
      if (checkpoint < 0) throw e
      this.restore(-1)
    }
    while (this.outcome === undefined && this.machine.log.nextSeq < end) this.advance(Number.POSITIVE_INFINITY)
  }

  /** One pass of the vCPU loop (kvm_cpu_exec), not past time `stop`. Its events stay in the log, not yet checked. */
  private step(stop: number): void {
    this.runPasses(Number.POSITIVE_INFINITY, stop, 1)
  }

  /**
   * Passes of the vCPU loop (kvm_cpu_exec) until the log reaches event `end`, time
   * reaches `stop`, the run ends or `passes` have run. The vCPU stops at `stop` or at the
   * next recorded checkpoint, whichever comes first (KVM_SET_GUEST_DEBUG: the event
   * stream does not see the stop), armed again only once reached. The events stay in the
   * log, not yet checked.
   */
  private runPasses(end: number, stop: number, passes = Number.POSITIVE_INFINITY): void {
    const machine = this.machine
    const vcpu = machine.vcpu
    const log = machine.log
    this.atFirstMomentOf = undefined
    let armed = -1
    try {
      for (let n = 0; n < passes && this.outcome === undefined && log.nextSeq < end && vcpu.instructionsRetired < stop; n++) {
        if (vcpu.instructionsRetired >= armed) armed = this.armStop(stop)
        const outcome = cpuExecOnce(machine)
        if (outcome !== undefined) {
          logRunEnd(machine, outcome)
          this.outcome = outcome
        }
      }
    } catch (e) {
      throw new SessionError({ reason: `the model failed while replaying: ${e instanceof Error ? e.message : String(e)}` })
    }
  }

  /** Arms the stop at `stop` or at the next recorded checkpoint, whichever comes first; returns it. */
  private armStop(stop: number): number {
    const checkpointTime = this.trace.index.checkpointTimes[this.nextCheckpoint]
    const now = this.machine.vcpu.instructionsRetired
    const at = checkpointTime !== undefined && checkpointTime > now ? Math.min(stop, checkpointTime) : stop
    this.machine.vcpu.setGuestDebug({ stopAtInstructionsRetired: at })
    return at
  }

  /** Checks produced events, in order, then that a run that ended produced them all, then the state if it is at a checkpoint. */
  private check(produced: ReadonlyArray<VmEvent>): void {
    const machine = this.machine
    for (const actual of produced) {
      const expected = this.recorded(actual.seq)
      if (expected !== undefined && eventsEqual(expected, actual)) {
        this.verified = actual.seq + 1
        continue
      }
      if (expected === undefined) {
        // Past the last recorded event: the run went on longer, or the recording was cut there.
        const damage = this.trace.index.damage
        if (damage !== undefined) throw damage
        if (!this.trace.index.fromEndFrame) {
          throw new SessionError({ reason: `the recording is cut off after event ${this.eventCount - 1}: nothing to check event ${actual.seq} against` })
        }
      }
      throw this.divergence(actual.seq, expected, actual)
    }
    if (this.outcome !== undefined && machine.log.nextSeq < this.eventCount) {
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
    // Only its registers are read, and it is not cached: a replay passes each checkpoint once.
    const recorded = checkpointRegisters(this.checkpoints.get(j) ?? this.trace.checkpointPart(j, registerParts))
    if (registerDifferences(recorded, this.registerSet()).length === 0) return
    const replay = this.machinePoint()
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
export type SessionFailure = SessionError | ReplayDivergence | ReplayTraceDamaged | TraceError | VmStateError

/** Runs synchronous session calls at the Effect edge: tagged throws become failures, anything else a defect. */
export const sessionEffect = <A>(f: () => A): Effect.Effect<A, SessionFailure> =>
  Effect.try({
    try: f,
    catch: (e) => e
  }).pipe(
    Effect.catchAll((e) => {
      const tag = typeof e === "object" && e !== null && "_tag" in e ? (e as { _tag: unknown })._tag : undefined
      return tag === "SessionError" || tag === "ReplayDivergence" || tag === "ReplayTraceDamaged" || tag === "TraceCorrupt" || tag === "TraceIoError" || tag === "VmStateError"
        ? Effect.fail(e as SessionFailure)
        : Effect.die(e)
    })
  )
