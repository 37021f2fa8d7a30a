import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import type { VmEvent } from "../events/VmEvent.ts"
import type { RecordedHostInput } from "../qemu/hostInput.ts"
import { eventsEqual } from "../events/trace/equality.ts"
import type { TraceCorrupt, TraceError } from "../events/trace/errors.ts"
import type { TraceHeader } from "../events/trace/schema.ts"
import { openTrace } from "../events/trace/reader.ts"
import type { MachineSetupError } from "../qemu/errors.ts"
import { openSeekableTrace } from "../events/trace/traceIndex.ts"
import { CONTEXT_EVENTS, ReplayDivergence } from "./divergence.ts"
import { withDivergencePoint } from "./divergencePoint.ts"
import { hostInputReplay, isHostInput, runWithHostInput } from "./hostInput.ts"
import { modelOnKvmClock } from "./kvmClock.ts"
import { isUserspaceVisible, UserspaceComparison } from "./userspaceView.ts"

export { CONTEXT_EVENTS, contextLines, ReplayDivergence } from "./divergence.ts"

/** The trace is damaged; everything before the damage was verified. */
export class ReplayTraceDamaged extends Data.TaggedError("ReplayTraceDamaged")<{
  readonly verified: number
  readonly cause: TraceCorrupt
}> {
  override get message(): string {
    return `${this.verified} events verified before the damage; ${this.cause.message}`
  }
}

export interface ReplayReport {
  readonly verified: number
}

export type ReplayError = TraceError | MachineSetupError | ReplayDivergence | ReplayTraceDamaged

/**
 * Rebuilds the machine from the trace header, re-executes the guest and compares
 * every produced event with the recorded one, in order. The first difference, a
 * missing event or an extra one stops the replay.
 */
export const replayTrace = (path: string): Effect.Effect<ReplayReport, ReplayError> =>
  Effect.flatMap(traceInputs(path), (inputs) =>
    Effect.scoped(Effect.flatMap(openTrace(path), (trace) => replayEvents(trace.header, trace.events, inputs)))).pipe(
    Effect.catchTag("ReplayDivergence", (d) => Effect.flip(locateDivergence(path, d)))
  )

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
const traceInputs = (path: string): Effect.Effect<RecordedHostInput[], TraceError> =>
  Effect.scoped(
    Effect.flatMap(openSeekableTrace(path), (trace) =>
      Effect.sync(() => {
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
      }))
  )

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
  Effect.suspend((): Effect.Effect<ReplayReport, ReplayError> => {
    const onKvm = header.backend === "kvm"
    const comparison = new UserspaceComparison()
    const same = onKvm ? (a: VmEvent, b: VmEvent) => comparison.equal(a, b) : eventsEqual
    const view = (s: Stream.Stream<VmEvent, TraceError | MachineSetupError>) => (onKvm ? Stream.filter(s, isUserspaceVisible) : s)
    const context: VmEvent[] = []
    let verified = 0
    const compared = Stream.zipAll(view(recorded), {
      other: view(Stream.provideLayer(runWithHostInput(header.config, header.image, onKvm ? modelOnKvmClock : undefined), hostInputReplay(inputs))),
      defaultSelf: undefined as VmEvent | undefined,
      defaultOther: undefined as VmEvent | undefined
    })
    return Stream.runForEach(compared, ([expected, actual]) => {
      if (expected !== undefined && actual !== undefined && same(expected, actual)) {
        verified++
        context.push(expected)
        if (context.length > CONTEXT_EVENTS) context.shift()
        return Effect.void
      }
      return Effect.fail(new ReplayDivergence({ index: verified, expected, actual, context: context.slice() }))
    }).pipe(
      Effect.catchTag("TraceCorrupt", (cause) => Effect.fail(new ReplayTraceDamaged({ verified, cause }))),
      Effect.map(() => ({ verified }))
    )
  })
