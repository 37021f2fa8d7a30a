import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import { describeEvent } from "../events/describe.ts"
import type { TraceError } from "../events/trace/errors.ts"
import { eventsEqual } from "../events/trace/equality.ts"
import { openTrace } from "../events/trace/reader.ts"
import type { TraceHeader } from "../events/trace/schema.ts"
import type { VmEvent, VmEventTag } from "../events/VmEvent.ts"
import { CONTEXT_EVENTS, contextLines, type MachinePoint, pointLines } from "./divergence.ts"
import { openReplaySession, type ReplaySession } from "./session.ts"

/** The first event where two traces part, in the form of a replay divergence. */
export interface FirstDifference {
  readonly index: number
  readonly a: VmEvent | undefined
  readonly b: VmEvent | undefined
  /** The last events before it (the same on both sides), oldest first. */
  readonly context: ReadonlyArray<VmEvent>
  /** Each run's machine where they part, when both traces can be replayed there. */
  readonly point?: { readonly a: MachinePoint; readonly b: MachinePoint }
}

export interface DiffReport {
  readonly first: FirstDifference | undefined
  /** Events by kind on each side, over the whole of each trace. */
  readonly counts: ReadonlyArray<{ readonly kind: string; readonly a: number; readonly b: number }>
  readonly totalA: number
  readonly totalB: number
  /** What differs in the headers (image, machine config), one phrase each. */
  readonly headerDifferences: ReadonlyArray<string>
}

export class TracesDiffer extends Data.TaggedError("TracesDiffer")<FirstDifference> {
  override get message(): string {
    const show = (e: VmEvent | undefined) => (e === undefined ? "(end of trace)" : describeEvent(e))
    return `traces differ at event #${this.index}: A has ${show(this.a)}, B has ${show(this.b)}`
  }

  get details(): ReadonlyArray<string> {
    const point = this.point
    const at = point === undefined ? [] : pointLines(["A", "B"], point.a, point.b)
    return [...at, ...contextLines(this.context)]
  }
}

/** Kinds in the order a run meets them; kinds not listed follow in the order found. */
const kindOrder: ReadonlyArray<VmEventTag> = [
  "VmEntry", "VmExit", "PageFault", "Pio", "Mmio", "UserspaceExit", "DeviceOutput", "HostInput", "Unassigned", "RunEnd", "Tracepoint"
]

const headerDifferences = (a: TraceHeader, b: TraceHeader): string[] => {
  const out: string[] = []
  if (a.imageSha256 !== b.imageSha256) out.push("the guest images differ")
  const backendA = a.backend ?? "model"
  const backendB = b.backend ?? "model"
  if (backendA !== backendB) out.push(`they were recorded on different backends (A ${backendA}, B ${backendB})`)
  const keys = Object.keys(a.config) as Array<keyof TraceHeader["config"]>
  const changed = keys.filter((k) => a.config[k] !== b.config[k])
  if (changed.length > 0) out.push(`the machine configs differ (${changed.join(", ")})`)
  return out
}

/**
 * Compares two traces event by event: the first difference (with the events before
 * it) and the count of every kind of event on each side. Reads both once, in step.
 */
export const diffTraces = (pathA: string, pathB: string): Effect.Effect<DiffReport, TraceError> =>
  Effect.scoped(
    Effect.gen(function* () {
      const a = yield* openTrace(pathA)
      const b = yield* openTrace(pathB)
      const countA = new Map<string, number>()
      const countB = new Map<string, number>()
      const context: VmEvent[] = []
      let first: FirstDifference | undefined
      let index = 0
      const pairs = Stream.zipAll(a.events, {
        other: b.events,
        defaultSelf: undefined as VmEvent | undefined,
        defaultOther: undefined as VmEvent | undefined
      })
      yield* Stream.runForEach(pairs, ([x, y]) =>
        Effect.sync(() => {
          if (x !== undefined) countA.set(x._tag, (countA.get(x._tag) ?? 0) + 1)
          if (y !== undefined) countB.set(y._tag, (countB.get(y._tag) ?? 0) + 1)
          if (first !== undefined) return
          if (x !== undefined && y !== undefined && eventsEqual(x, y)) {
            context.push(x)
            if (context.length > CONTEXT_EVENTS) context.shift()
          } else {
            first = { index, a: x, b: y, context: context.slice() }
          }
          index++
        })
      )
      const kinds = [...kindOrder, ...[...countA.keys(), ...countB.keys()].filter((k) => !kindOrder.includes(k as VmEventTag))]
      const counts = [...new Set(kinds)]
        .map((kind) => ({ kind, a: countA.get(kind) ?? 0, b: countB.get(kind) ?? 0 }))
        .filter((row) => row.a > 0 || row.b > 0)
      const sum = (m: Map<string, number>) => [...m.values()].reduce((n, c) => n + c, 0)
      if (first !== undefined) first = { ...first, ...(yield* pointOf(pathA, pathB, first)) }
      return { first, counts, totalA: sum(countA), totalB: sum(countB), headerDifferences: headerDifferences(a.header, b.header) }
    })
  )

/** The side-by-side table of event counts, as `vmrr diff` prints it. */
export const formatCounts = (report: DiffReport): string => {
  const row = (kind: string, a: number | string, b: number | string) => `${kind.padEnd(16)}${String(a).padStart(10)}${String(b).padStart(10)}`
  return [
    row("event kind", "A", "B"),
    ...report.counts.map((r) => row(r.kind, r.a, r.b)),
    row("total", report.totalA, report.totalB)
  ].map((line) => `${line}\n`).join("")
}

/**
 * Both runs at the time the first difference happens at (the earlier side's), replayed
 * from their traces; nothing when either cannot be (a trace from real KVM, a cut trace
 * that ends before it …): the events still say where they part.
 */
const pointOf = (pathA: string, pathB: string, first: FirstDifference): Effect.Effect<Pick<FirstDifference, "point">> => {
  const time = Math.min(first.a?.time ?? Number.POSITIVE_INFINITY, first.b?.time ?? Number.POSITIVE_INFINITY)
  const at = (session: ReplaySession) => {
    session.seekTime(Math.min(time, session.endTime))
    return session.machinePoint()
  }
  return Effect.scoped(
    Effect.gen(function* () {
      const a = yield* openReplaySession(pathA)
      const b = yield* openReplaySession(pathB)
      return yield* Effect.try(() => ({ point: { a: at(a), b: at(b) } }))
    })
  ).pipe(Effect.orElseSucceed(() => ({})))
}
