/**
 * The suite's results as data (what `--json` writes) and as tables (what it prints):
 * plain aligned text for a terminal, or Markdown for the README's "Speed" section.
 * Pure: no measuring here, so it can be tested on made-up numbers.
 */
import { EVENTS_PER_ITERATION } from "./ioLoop.ts"
import type { IoRoundTrip } from "./ioRoundTrip.ts"
import type { MipsResult } from "./mips.ts"

export interface Machine {
  readonly cpu: string
  readonly cores: number
  readonly node: string
  readonly platform: string
  readonly date: string
  /** The 1-minute load average when the suite started: above the core count, other work shared the CPUs. */
  readonly loadAverage: number
}

export interface Rate {
  readonly seconds: number
  /** The process's CPU time, for reading numbers from a loaded machine. */
  readonly cpuSeconds: number
  readonly eventsPerSecond: number
}

/** The record / replay / seek measurements on one trace of the I/O loop, each phase in a process of its own. */
export interface TraceResult {
  readonly events: number
  readonly iterations: number
  readonly bytes: number
  readonly bytesPerEvent: number
  readonly checkpoints: number
  readonly run: Rate
  readonly record: Rate
  /** Recording's extra time over the same run unrecorded, as a fraction (0.05 = 5 %). */
  readonly recordOverhead: number
  readonly replay: Rate
  /** Replay's speed as a multiple of recording's (events per second over events per second). */
  readonly replayOverRecord: number
  readonly seek: {
    readonly count: number
    readonly openMilliseconds: number
    readonly medianMilliseconds: number
    readonly maxMilliseconds: number
    readonly cpuMedianMilliseconds: number
  }
  /** Peak resident memory of each phase's process, in MiB. */
  readonly peakRssMiB: { readonly record: number; readonly replay: number; readonly seek: number }
  /** The most heap any full GC of each phase left live, in MiB (undefined: no full GC ran). */
  readonly liveHeapMiB: { readonly record: number | undefined; readonly replay: number | undefined; readonly seek: number | undefined }
}

export interface CodecResult {
  readonly events: number
  readonly encodeEventsPerSecond: number
  readonly decodeEventsPerSecond: number
  readonly bytesPerEvent: number
}

export interface Target {
  readonly name: string
  readonly target: string
  readonly measured: string
  readonly met: boolean
}

export interface SuiteResults {
  readonly machine: Machine
  readonly quick: boolean
  readonly durationSeconds: number
  readonly mips: ReadonlyArray<MipsResult>
  readonly ioRoundTrip: IoRoundTrip
  readonly codec: CodecResult
  /** A process that loads the benchmark's modules and does nothing: what every phase's peak includes. */
  readonly baselineRssMiB: number
  /** Smallest first; the largest is the one the targets are judged on. */
  readonly traces: ReadonlyArray<TraceResult>
  readonly targets: ReadonlyArray<Target>
}

const fixed = (n: number, digits: number): string => n.toFixed(digits)
const millions = (perSecond: number): string => `${fixed(perSecond / 1e6, 2)} M/s`
const percent = (fraction: number): string => `${fixed(fraction * 100, 1)} %`
/** 10000000 → "10M", 1000000 → "1M", 50000 → "50k", 1234 → "1234". */
export const count = (n: number): string =>
  n >= 1e6 && n % 1e5 === 0 ? `${n / 1e6}M` : n >= 1e3 && n % 100 === 0 ? `${n / 1e3}k` : String(n)

/** A trace by the size it was asked for ("10M events"); its exact count (a few events more: start and end) is in the JSON. */
const traceSize = (t: TraceResult): string => `${count(t.iterations * EVENTS_PER_ITERATION)} events`

/** The issue's targets, each judged on the measurement it names (the largest trace for the trace ones). */
export const judgeTargets = (r: Pick<SuiteResults, "mips" | "ioRoundTrip" | "traces">): Target[] => {
  const alu = r.mips.find((m) => m.mode === "pm32" && m.loop === "alu")
  const big = r.traces[r.traces.length - 1]
  const targets: Target[] = []
  if (alu !== undefined) targets.push({ name: "ALU loop (pm32)", target: "≥ 150 MIPS", measured: `${fixed(alu.mipsMedian, 1)} MIPS`, met: alu.mipsMedian >= 150 })
  const io = r.ioRoundTrip.modelRecordedMicroseconds
  targets.push({ name: "I/O exit round trip, recording", target: "≤ 0.5 µs", measured: `${fixed(io, 3)} µs`, met: io <= 0.5 })
  if (big !== undefined) {
    const on = `(${traceSize(big)})`
    targets.push(
      { name: `record overhead ${on}`, target: "≤ 5 %", measured: percent(big.recordOverhead), met: big.recordOverhead <= 0.05 },
      { name: `replay speed / record speed ${on}`, target: "≥ 0.9×", measured: `${fixed(big.replayOverRecord, 2)}×`, met: big.replayOverRecord >= 0.9 },
      { name: `bytes per event on disk ${on}`, target: "≤ 12", measured: fixed(big.bytesPerEvent, 2), met: big.bytesPerEvent <= 12 },
      { name: `seek to a random event, median ${on}`, target: "< 50 ms", measured: `${fixed(big.seek.medianMilliseconds, 1)} ms`, met: big.seek.medianMilliseconds < 50 }
    )
  }
  return targets
}

/**
 * The largest heap left after a full GC in a `--trace-gc` log, in MiB: V8 prints
 * `Mark-Compact <before> (<committed>) -> <after> (<committed>) MB` for each one.
 */
export const liveAfterFullGc = (gcLog: string): number | undefined => {
  const after = [...gcLog.matchAll(/Mark-Compact[^\n]*? -> ([\d.]+) \(/g)].map((m) => Number(m[1]))
  return after.length === 0 ? undefined : Math.max(...after)
}

/** A titled table: the first row is the header. */
export interface Table {
  readonly title: string
  readonly rows: ReadonlyArray<ReadonlyArray<string>>
}

const tables = (r: SuiteResults): Table[] => {
  const modes = [...new Set(r.mips.map((m) => m.mode))]
  const loops = [...new Set(r.mips.map((m) => m.loop))]
  const mipsOf = (loop: string, mode: string) => r.mips.find((m) => m.loop === loop && m.mode === mode)
  const io = r.ioRoundTrip
  const kvm = io.kvm
  const trace = (label: string, cell: (t: TraceResult) => string): string[] => [label, ...r.traces.map(cell)]
  return [
    {
      title: "Targets",
      rows: [["measure", "target", "measured", ""], ...r.targets.map((t) => [t.name, t.target, t.measured, t.met ? "met" : "not met"])]
    },
    {
      title: "Guest MIPS (median of runs)",
      rows: [
        ["loop", ...modes, "what"],
        ...loops.map((loop) => [loop, ...modes.map((mode) => fixed(mipsOf(loop, mode)?.mipsMedian ?? Number.NaN, 1)), r.mips.find((m) => m.loop === loop)!.what])
      ]
    },
    {
      title: `I/O exit round trip (out 0x80 → exit → device → entry; ${count(io.iterations)} iterations, fastest run)`,
      rows: [
        ["path", "µs per round trip"],
        ["model, not recorded", fixed(io.modelMicroseconds, 3)],
        ["model, recorded", fixed(io.modelRecordedMicroseconds, 3)],
        "skipped" in kvm
          ? ["/dev/kvm (--backend kvm)", `skipped: ${kvm.skipped}`]
          : [`/dev/kvm (--backend kvm, ${count(kvm.iterations)} iterations)`, `${fixed(kvm.microseconds, 3)} (model / KVM = ${fixed(kvm.modelOverKvm, 2)}×)`]
      ]
    },
    {
      title: "Record, replay, seek (the I/O loop; each phase in its own process)",
      rows: [
        ["trace", ...r.traces.map(traceSize)],
        trace("run, not recorded", (t) => millions(t.run.eventsPerSecond)),
        trace("run, recorded", (t) => millions(t.record.eventsPerSecond)),
        trace("record overhead", (t) => percent(t.recordOverhead)),
        trace("replay, verified (vmrr replay)", (t) => millions(t.replay.eventsPerSecond)),
        trace("replay speed / record speed", (t) => `${fixed(t.replayOverRecord, 2)}×`),
        trace("trace size", (t) => `${fixed(t.bytes / 2 ** 20, 1)} MiB, ${t.checkpoints} checkpoints`),
        trace("bytes per event on disk", (t) => fixed(t.bytesPerEvent, 2)),
        trace("open + index", (t) => `${fixed(t.seek.openMilliseconds, 1)} ms`),
        trace("seek to a random event", (t) => `median ${fixed(t.seek.medianMilliseconds, 1)} ms, max ${fixed(t.seek.maxMilliseconds, 1)} ms (${t.seek.count} seeks)`),
        ...([["record", "recording"], ["replay", "replaying"], ["seek", "seeking"]] as const).map(([phase, doing]) =>
          trace(`peak RSS (live heap), ${doing}`, (t) => `${fixed(t.peakRssMiB[phase], 0)} MiB (${t.liveHeapMiB[phase] === undefined ? "no full GC" : `${fixed(t.liveHeapMiB[phase], 0)} MiB`})`))
      ]
    },
    {
      title: `Trace codec (${count(r.codec.events)} events of the I/O loop, in chunks as recorded)`,
      rows: [
        ["encode", "decode", "bytes per event"],
        [millions(r.codec.encodeEventsPerSecond), millions(r.codec.decodeEventsPerSecond), fixed(r.codec.bytesPerEvent, 2)]
      ]
    }
  ]
}

/** Which machine, when, how loaded, and how long the whole suite took. */
const machineLines = (r: SuiteResults): string[] => [
  `machine: ${r.machine.cpu}, ${r.machine.cores} cores, ${r.machine.platform}, node ${r.machine.node}`,
  `run: ${r.machine.date}, load average ${fixed(r.machine.loadAverage, 1)} at the start, ${fixed(r.durationSeconds, 0)} s in all` +
    `${r.quick ? " (--quick: tiny sizes, not comparable)" : ""}; a process that only loads the modules peaks at ${fixed(r.baselineRssMiB, 0)} MiB`
]

const escapeCell = (cell: string): string => cell.replaceAll("|", "\\|")

export const renderTable = (table: Table, format: "text" | "markdown"): string => {
  if (format === "markdown") {
    const [head, ...body] = table.rows
    const line = (cells: ReadonlyArray<string>) => `| ${cells.map(escapeCell).join(" | ")} |`
    return [`**${table.title}**`, "", line(head!), `|${head!.map(() => " --- |").join("")}`, ...body.map(line)].join("\n")
  }
  const widths = table.rows[0]!.map((_, i) => Math.max(...table.rows.map((row) => (row[i] ?? "").length)))
  const line = (cells: ReadonlyArray<string>) => cells.map((c, i) => c.padEnd(widths[i]!)).join("  ").trimEnd()
  return [table.title, ...table.rows.map(line)].join("\n")
}

export const renderReport = (r: SuiteResults, format: "text" | "markdown"): string =>
  [machineLines(r).join(format === "markdown" ? "  \n" : "\n"), ...tables(r).map((t) => renderTable(t, format))].join("\n\n")

const START = "<!-- bench:start -->"
const END = "<!-- bench:end -->"

/** `document` with what lies between its bench markers replaced by `content`. */
export const replaceBetweenMarkers = (document: string, content: string): string => {
  const start = document.indexOf(START)
  const end = document.indexOf(END)
  if (start < 0 || end < start) throw new Error(`no ${START} … ${END} section to put the results in`)
  return `${document.slice(0, start + START.length)}\n${content}\n${document.slice(end)}`
}
