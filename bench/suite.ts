/**
 * The benchmark suite: `npm run bench`. A measurement, not a test: it prints tables and
 * writes the numbers as JSON, for the same guests every time, and says next to each of
 * the project's speed targets whether it is met.
 *
 *   npm run bench                    the full suite (about a minute on a 2-core machine)
 *   npm run bench -- --quick         tiny sizes: a smoke run of every part in seconds
 *   npm run bench -- --json FILE     where the JSON goes (default bench/results/latest.json;
 *                                    with --quick, only when given)
 *   npm run bench -- --markdown      the tables as Markdown
 *   npm run bench -- --readme        also puts the Markdown tables in README.md's "Speed" section
 *
 * Parts: guest MIPS (mips.ts); the I/O exit round trip on the model and on /dev/kvm
 * (ioRoundTrip.ts); the trace codec (codec.ts); and record, replay and seek on traces of
 * the I/O loop of two sizes, each phase in a child process (phase.ts) so that its peak
 * memory is its own: the same peaks for both sizes show memory staying bounded.
 */
import { fork } from "node:child_process"
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs"
import { arch, cpus, loadavg, platform, tmpdir } from "node:os"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import { parseArgs } from "node:util"
import { ioLoopEvents, measureCodec } from "./codec.ts"
import { iterationsFor } from "./ioLoop.ts"
import { measureIoRoundTrip } from "./ioRoundTrip.ts"
import { measureMips } from "./mips.ts"
import { judgeTargets, liveAfterFullGc, renderReport, replaceBetweenMarkers, type SuiteResults, type TraceResult } from "./report.ts"
import { median } from "./stats.ts"
import type { SeekTimes, Timed } from "./traceBench.ts"

const { values: args } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    json: { type: "string" },
    markdown: { type: "boolean", default: false },
    readme: { type: "boolean", default: false }
  }
})

if (args.quick && args.readme) {
  console.error("bench: --readme takes a full run: --quick's numbers mean nothing")
  process.exit(2)
}

const sizes = args.quick
  ? { mips: { iterations: 100_000, runs: 1 }, io: { iterations: 10_000, kvmIterations: 1_000, runs: 1 }, codecIterations: 2_000, traceEvents: [20_000], seeks: 3 }
  : { mips: { iterations: 5_000_000, runs: 3 }, io: { iterations: 1_000_000, kvmIterations: 20_000, runs: 5 }, codecIterations: 200_000, traceEvents: [1_000_000, 10_000_000], seeks: 20 }

const repoRoot = fileURLToPath(new URL("..", import.meta.url))
const jsonPath = args.json ?? (args.quick ? undefined : join(repoRoot, "bench", "results", "latest.json"))
const MiB = 2 ** 20

const started = performance.now()
const progress = (what: string): void => void process.stderr.write(`bench: ${((performance.now() - started) / 1000).toFixed(0).padStart(3)} s  ${what}\n`)

/** What a phase's process reports: its result, its peak RSS, and the most heap a full GC left live. */
type PhaseResult<A> = A & { readonly maxRssBytes: number; readonly liveHeapMiB: number | undefined }

/**
 * Runs one phase of phase.ts in a child process. Its peak RSS depends on how far V8 let
 * the heap grow before collecting, which varies from run to run; what stays live after
 * each full GC (from --trace-gc's Mark-Compact lines) is what the phase really holds.
 */
const inChild = <A>(...phaseArgs: string[]): Promise<PhaseResult<A>> =>
  new Promise((resolve, reject) => {
    const child = fork(join(repoRoot, "bench", "phase.ts"), phaseArgs, {
      cwd: repoRoot,
      execArgv: ["--import", "tsx", "--trace-gc"],
      stdio: ["ignore", "pipe", "inherit", "ipc"]
    })
    let result: (A & { readonly maxRssBytes: number }) | undefined
    let gcLog = ""
    child.stdout!.on("data", (d: Buffer) => void (gcLog += d.toString()))
    child.on("message", (m) => (result = m as A & { readonly maxRssBytes: number }))
    child.on("error", reject)
    child.on("exit", (code) =>
      result !== undefined && code === 0
        ? resolve({ ...result, liveHeapMiB: liveAfterFullGc(gcLog) })
        : reject(new Error(`bench phase ${phaseArgs.join(" ")} failed (exit code ${code})`)))
  })

const rate = (t: Timed) => ({ seconds: t.seconds, cpuSeconds: t.cpuSeconds, eventsPerSecond: t.events / t.seconds })

/** Records a trace of about `events` events, replays it and seeks in it: three processes. */
const measureTrace = async (events: number, dir: string): Promise<TraceResult> => {
  const iterations = iterationsFor(events)
  const path = join(dir, `io-loop-${events}.vmrr`)
  progress(`recording ${events} events`)
  const recorded = await inChild<{ run: Timed; record: Timed }>("record", path, String(iterations))
  progress(`replaying ${events} events`)
  const replayed = await inChild<{ replay: Timed }>("replay", path)
  progress(`seeking in ${events} events`)
  const sought = await inChild<{ seek: SeekTimes }>("seek", path, String(sizes.seeks))
  const bytes = statSync(path).size
  rmSync(path)
  const { run, record } = recorded
  const { replay } = replayed
  const { seek } = sought
  return {
    events: record.events,
    iterations,
    bytes,
    bytesPerEvent: bytes / record.events,
    checkpoints: seek.checkpoints,
    run: rate(run),
    record: rate(record),
    recordOverhead: record.seconds / run.seconds - 1,
    replay: rate(replay),
    replayOverRecord: replay.events / replay.seconds / (record.events / record.seconds),
    seek: {
      count: seek.wall.length,
      openMilliseconds: seek.openSeconds * 1000,
      medianMilliseconds: median(seek.wall) * 1000,
      maxMilliseconds: Math.max(...seek.wall) * 1000,
      cpuMedianMilliseconds: median(seek.cpu) * 1000
    },
    peakRssMiB: { record: recorded.maxRssBytes / MiB, replay: replayed.maxRssBytes / MiB, seek: sought.maxRssBytes / MiB },
    liveHeapMiB: { record: recorded.liveHeapMiB, replay: replayed.liveHeapMiB, seek: sought.liveHeapMiB }
  }
}

const main = async (): Promise<void> => {
  const cpu = cpus()
  const machine = {
    cpu: cpu[0]?.model.trim() ?? "unknown",
    cores: cpu.length,
    node: process.version,
    platform: `${platform()} ${arch()}`,
    date: new Date().toISOString().slice(0, 16).replace("T", " ") + " UTC",
    loadAverage: loadavg()[0]!
  }
  progress("guest MIPS")
  const mips = measureMips(sizes.mips)
  progress("I/O exit round trip")
  const ioRoundTrip = await measureIoRoundTrip(sizes.io)
  progress("trace codec")
  const codecEvents = ioLoopEvents(sizes.codecIterations)
  const codec = { events: codecEvents.length, ...measureCodec(codecEvents) }
  progress("a process that only loads the modules")
  const baselineRssMiB = (await inChild<object>("baseline")).maxRssBytes / MiB
  const dir = mkdtempSync(join(tmpdir(), "vmrr-bench-"))
  const traces: TraceResult[] = []
  try {
    for (const events of sizes.traceEvents) traces.push(await measureTrace(events, dir))
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
  const measured = { mips, ioRoundTrip, traces }
  const results: SuiteResults = {
    machine,
    quick: args.quick,
    durationSeconds: (performance.now() - started) / 1000,
    ...measured,
    codec,
    baselineRssMiB,
    targets: judgeTargets(measured)
  }
  console.log(renderReport(results, args.markdown ? "markdown" : "text"))
  if (jsonPath !== undefined) {
    mkdirSync(dirname(jsonPath), { recursive: true })
    writeFileSync(jsonPath, `${JSON.stringify(results, null, 2)}\n`)
    progress(`results written to ${jsonPath}`)
  }
  if (args.readme) {
    const readme = join(repoRoot, "README.md")
    writeFileSync(readme, replaceBetweenMarkers(readFileSync(readme, "utf8"), renderReport(results, "markdown")))
    progress("README.md's Speed section updated")
  }
}

main().catch((e) => {
  console.error(e)
  process.exitCode = 1
})
