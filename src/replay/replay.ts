import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { eventsEqual } from "../events/trace/equality.ts"
import type { TraceError } from "../events/trace/errors.ts"
import { openTrace } from "../events/trace/reader.ts"
import type { TraceHeader } from "../events/trace/schema.ts"
import { openSeekableTrace, type SeekableTrace } from "../events/trace/traceIndex.ts"
import { isHostInput, type RecordedHostInput, type VmEvent } from "../events/VmEvent.ts"
import { cpuExecOnce, logRunEnd } from "../qemu/cpuExec.ts"
import type { MachineSetupError } from "../qemu/errors.ts"
import { createMachine, type Machine } from "../qemu/machine.ts"
import { CONTEXT_EVENTS, ReplayDivergence, ReplayTraceDamaged } from "./divergence.ts"
import { withDivergencePoint } from "./divergencePoint.ts"
import { HostInput, hostInputReplay } from "./hostInput.ts"
import { modelOnKvmClock } from "./kvmClock.ts"
import { ReplaySession, sessionEffect, type SessionFailure } from "./session.ts"
import { isUserspaceVisible, UserspaceComparison } from "./userspaceView.ts"

export { CONTEXT_EVENTS, contextLines, ReplayDivergence, ReplayTraceDamaged } from "./divergence.ts"

export interface ReplayReport {
  readonly verified: number
}

export type ReplayError = TraceError | MachineSetupError | SessionFailure

/**
 * Rebuilds the machine from the trace header, re-executes the guest and compares
 * every produced event with the recorded one, in order. The first difference, a
 * missing event or an extra one stops the replay.
 *
 * A trace of the model replays in a replay session from its start (session.ts): plain
 * synchronous code reading one chunk at a time, which also checks the machine's state
 * at every recorded checkpoint. A trace from real KVM (or one without events) goes
 * through `replayEvents`.
 */
export const replayTrace = (path: string): Effect.Effect<ReplayReport, ReplayError> =>
  Effect.scoped(Effect.flatMap(openSeekableTrace(path), (trace) => replaySeekable(path, trace))).pipe(
    Effect.catchTag("ReplayDivergence", (d) => Effect.flip(locateDivergence(path, d)))
  )

const replaySeekable = (path: string, trace: SeekableTrace): Effect.Effect<ReplayReport, ReplayError, Scope.Scope> =>
  trace.header.backend === "kvm" || trace.index.eventCount === 0
    ? Effect.flatMap(openTrace(path), (opened) => replayEvents(opened.header, opened.events, traceInputs(trace)))
    : Effect.map(sessionEffect(() => new ReplaySession(trace).replayToEnd()), (verified) => ({ verified }))

/** The divergence with the machine at its point (registers, instruction), when the trace can be seeked. */
const locateDivergence = (path: string, d: ReplayDivergence): Effect.Effect<ReplayDivergence> =>
  Effect.scoped(Effect.map(openSeekableTrace(path), (trace) => withDivergencePoint(trace, d))).pipe(
    Effect.orElseSucceed(() => d)
  )

/**
 * The trace's host inputs, ahead of the comparison: the machine needs each before it
 * reaches its time. The index says which events they are, so only their chunks are
 * read; damage is left for the replay to report (the inputs before it are enough).
 */
const traceInputs = (trace: SeekableTrace): RecordedHostInput[] => {
  const inputs: RecordedHostInput[] = []
  try {
    for (const seq of trace.index.inputSeqs) {
      const i = trace.chunkOfEvent(seq)
      const event = trace.chunk(i)[seq - trace.index.chunkSeqs[i]!]
      if (event !== undefined && isHostInput(event)) inputs.push(event)
    }
  } catch {
    // A damaged chunk: the replay stops there with the damage, after the inputs read so far.
  }
  return inputs
}

/**
 * Replays a recording given its header and its events, from a file or from memory.
 * `inputs` are the recording's HostInput events (from memory: `recordedInputs(events)`);
 * they are fed back at their recorded times and nothing is read from the host.
 *
 * A trace recorded on the real /dev/kvm is re-executed on the model, kept on KVM's clock
 * (kvmClock.ts: its limit and host-input times count KVM_RUN calls), and checked on what
 * userspace saw (userspaceView.ts): the model against the machine.
 */
export const replayEvents = (
  header: Pick<TraceHeader, "config" | "image" | "backend">,
  recorded: Stream.Stream<VmEvent, TraceError>,
  inputs: ReadonlyArray<RecordedHostInput> = []
): Effect.Effect<ReplayReport, ReplayError> =>
  Effect.suspend(() => {
    const onKvm = header.backend === "kvm"
    const built = Effect.flatMap(HostInput, ({ port }) => createMachine(header.config, header.image, onKvm ? modelOnKvmClock : undefined, port))
    return Effect.flatMap(Effect.provide(built, hostInputReplay(inputs)), (machine) => {
      const check = new EventCheck(machine, onKvm)
      const failed = (d: ReplayDivergence | undefined) => (d === undefined ? Effect.void : Effect.fail(d))
      return Stream.runForEachChunk(recorded, (events) => Effect.suspend(() => failed(check.recorded(events)))).pipe(
        Effect.zipRight(Effect.suspend(() => failed(check.end()))),
        Effect.catchTag("TraceCorrupt", (cause) => Effect.fail(new ReplayTraceDamaged({ verified: check.verified, cause }))),
        Effect.map(() => ({ verified: check.verified }))
      )
    })
  })

/**
 * The synchronous core of `replayEvents`: runs the vCPU loop as far as the recorded
 * events it is handed, one chunk at a time, and compares each produced event with the
 * recorded one (on KVM's traces, only what userspace sees).
 */
class EventCheck {
  /** Events verified so far: the index of the next one. */
  verified = 0
  private produced: VmEvent[] = []
  private next = 0
  private ended = false
  /** The last CONTEXT_EVENTS verified events, a ring indexed by `verified`. */
  private readonly context: VmEvent[] = []
  private readonly same: (recorded: VmEvent, produced: VmEvent) => boolean

  constructor(private readonly machine: Machine, private readonly onKvm: boolean) {
    const comparison = new UserspaceComparison()
    this.same = onKvm ? (a, b) => comparison.equal(a, b) : eventsEqual
  }

  /** The first recorded event that differs from the run, if any. */
  recorded(events: Chunk.Chunk<VmEvent>): ReplayDivergence | undefined {
    for (const expected of Chunk.toReadonlyArray(events)) {
      if (this.onKvm && !isUserspaceVisible(expected)) continue
      const actual = this.produce()
      if (actual === undefined || !this.same(expected, actual)) return this.divergence(expected, actual)
      this.context[this.verified % CONTEXT_EVENTS] = expected
      this.verified++
    }
    return undefined
  }

  /** The recording has ended: so must the run. */
  end(): ReplayDivergence | undefined {
    const actual = this.produce()
    return actual === undefined ? undefined : this.divergence(undefined, actual)
  }

  /** The run's next event (that is compared), running the vCPU loop as far as needed; undefined once the run is over. */
  private produce(): VmEvent | undefined {
    for (;;) {
      while (this.next < this.produced.length) {
        const event = this.produced[this.next++]!
        if (!this.onKvm || isUserspaceVisible(event)) return event
      }
      if (this.ended) return undefined
      const outcome = cpuExecOnce(this.machine)
      if (outcome !== undefined) {
        logRunEnd(this.machine, outcome)
        this.ended = true
      }
      this.produced = this.machine.log.drainEvents()
      this.next = 0
    }
  }

  private divergence(expected: VmEvent | undefined, actual: VmEvent | undefined): ReplayDivergence {
    const n = Math.min(this.verified, CONTEXT_EVENTS)
    const context = Array.from({ length: n }, (_, k) => this.context[(this.verified - n + k) % CONTEXT_EVENTS]!)
    return new ReplayDivergence({ index: this.verified, expected, actual, context })
  }
}
