import { exitReasonName, ExitReason, ioQualification } from "../events/exitReasons.ts"
import type { VmEvent } from "../events/VmEvent.ts"
import { type ExitFlow, exitFlows, flowDuration } from "./exitFlow.ts"

/**
 * `perf kvm stat report` computed from a trace. perf times an exit from `kvm_exit` to
 * the next `kvm_entry` in host nanoseconds; here the clock is virtual time (guest
 * instructions retired), so handling that needs no guest progress costs 0 and what
 * shows up is time the vCPU spent out of the guest while virtual time moved on (a halt
 * waiting for a timer, a kick).
 */

export const statsKeys = ["reason", "port", "mmio", "vector"] as const
export type StatsKey = (typeof statsKeys)[number]

export interface StatsRow {
  /** The exit reason, `0x3f8:POUT`, `0xfebf0000:W` or the vector, as perf prints them. */
  readonly key: string
  readonly handledIn: "kernel" | "userspace"
  readonly samples: number
  readonly samplesPercent: number
  readonly timePercent: number
  readonly minTime: number
  readonly maxTime: number
  readonly avgTime: number
  /** perf's "( +- x% )": the standard error of the mean, relative to the mean. */
  readonly relStddevPercent: number
}

export interface StatsReport {
  readonly by: StatsKey
  readonly rows: ReadonlyArray<StatsRow>
  readonly totalSamples: number
  readonly totalTime: number
}

const hex = (n: number): string => `0x${n.toString(16)}`

/** perf's column title for each grouping. */
const columnTitle: Record<StatsKey, string> = {
  reason: "VM-EXIT",
  port: "IO Port Access",
  mmio: "MMIO Access",
  vector: "Injected vector"
}

/** The vector injected at the entry that ends the trip (`kvm_inj_virq`). */
const vectorOf = (flow: ExitFlow): number | undefined => {
  for (const e of flow.handling) if (e._tag === "InjVirq") return e.vector
  return undefined
}

/** The row a trip counts in under `by`, or undefined when it does not belong to that table (perf's --event). */
const keyOf = (flow: ExitFlow, by: StatsKey): string | undefined => {
  const exit = flow.exit
  if (exit === undefined) return undefined
  switch (by) {
    case "reason":
      return exitReasonName(exit.reason)
    case "port":
      if (exit.reason !== ExitReason.IO_INSTRUCTION) return undefined
      return `${hex(ioQualification.port(exit.qualification))}:${ioQualification.isIn(exit.qualification) ? "PIN" : "POUT"}`
    case "mmio": {
      const mmio = flow.handling.find((e): e is Extract<VmEvent, { _tag: "Mmio" }> => e._tag === "Mmio")
      return mmio === undefined ? undefined : `${hex(mmio.gpa)}:${mmio.op === "write" ? "W" : "R"}`
    }
    case "vector": {
      const vector = vectorOf(flow)
      return vector === undefined ? undefined : hex(vector)
    }
  }
}

interface Accumulator {
  key: string
  handledIn: "kernel" | "userspace"
  samples: number
  timed: number
  total: number
  sumSquares: number
  min: number
  max: number
}

export const computeStats = (events: Iterable<VmEvent>, by: StatsKey): StatsReport => {
  const rows = new Map<string, Accumulator>()
  let totalSamples = 0
  let totalTime = 0
  for (const flow of exitFlows(events)) {
    const key = keyOf(flow, by)
    if (key === undefined || flow.exit === undefined) continue
    const id = `${key}\u0000${flow.exit.handledIn}`
    let row = rows.get(id)
    if (row === undefined) {
      row = { key, handledIn: flow.exit.handledIn, samples: 0, timed: 0, total: 0, sumSquares: 0, min: Infinity, max: 0 }
      rows.set(id, row)
    }
    row.samples++
    totalSamples++
    // A trip the run ended in has no entry: counted, like perf's unfinished events, but not timed.
    const time = flowDuration(flow)
    if (time === undefined) continue
    row.timed++
    row.total += time
    row.sumSquares += time * time
    row.min = Math.min(row.min, time)
    row.max = Math.max(row.max, time)
    totalTime += time
  }
  const percent = (part: number, whole: number): number => (whole === 0 ? 0 : (part / whole) * 100)
  return {
    by,
    totalSamples,
    totalTime,
    rows: [...rows.values()]
      .sort((a, b) => b.samples - a.samples || a.key.localeCompare(b.key) || a.handledIn.localeCompare(b.handledIn))
      .map((r) => {
        const avg = r.timed === 0 ? 0 : r.total / r.timed
        const variance = r.timed < 2 ? 0 : (r.sumSquares - r.timed * avg * avg) / (r.timed - 1)
        const sem = Math.sqrt(Math.max(0, variance) / Math.max(1, r.timed))
        return {
          key: r.key,
          handledIn: r.handledIn,
          samples: r.samples,
          samplesPercent: percent(r.samples, totalSamples),
          timePercent: percent(r.total, totalTime),
          minTime: r.timed === 0 ? 0 : r.min,
          maxTime: r.max,
          avgTime: avg,
          relStddevPercent: percent(sem, avg)
        }
      })
  }
}

/** Virtual time in perf's `%9.2fus` slot, `t` as in `vmrr dump`'s `t=`: guest instructions retired. */
const time = (t: number): string => t.toFixed(2).padStart(9)

/** The table in `perf kvm stat report`'s column layout, with a last column for where each exit was handled. */
export const formatStats = (report: StatsReport): string => {
  const width = 20
  // perf separates these with blank lines; without them the report reads the same and stays grep- and diff-friendly.
  const lines = [
    "Analyze events for all VMs, all VCPUs (times are virtual: guest instructions retired):",
    `${columnTitle[report.by].padStart(width)} ${"Samples".padStart(10)} ${"Samples%".padStart(9)} ${"Time%".padStart(9)} ${"Min Time".padStart(11)} ${"Max Time".padStart(11)} ${"Avg time".padStart(16)}${" ".repeat(11)}Handled`
  ]
  for (const r of report.rows) {
    lines.push(
      `${r.key.padStart(width)} ${String(r.samples).padStart(10)} ${r.samplesPercent.toFixed(2).padStart(8)}% ${r.timePercent.toFixed(2).padStart(8)}% ` +
        `${time(r.minTime)}t  ${time(r.maxTime)}t  ${time(r.avgTime)}t  ( +-${r.relStddevPercent.toFixed(2).padStart(7)}% ) ${r.handledIn}`
    )
  }
  lines.push(`Total Samples:${report.totalSamples}, Total events handled time:${report.totalTime.toFixed(2)}t.`)
  return `${lines.join("\n")}\n`
}
