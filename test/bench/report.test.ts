import { describe, expect, it } from "vitest"
import { count, judgeTargets, liveAfterFullGc, renderReport, renderTable, replaceBetweenMarkers, type SuiteResults, type TraceResult } from "../../bench/report.ts"

/** The benchmark suite's report on made-up numbers: what it judges and how it prints, never a time. */

const trace = (iterations: number, overrides: Partial<TraceResult> = {}): TraceResult => ({
  events: iterations * 5 + 7,
  iterations,
  bytes: iterations * 5 * 3,
  bytesPerEvent: 3,
  checkpoints: iterations / 10_000,
  run: { seconds: 1, cpuSeconds: 1, eventsPerSecond: 5e6 },
  record: { seconds: 1.04, cpuSeconds: 1.04, eventsPerSecond: 4.8e6 },
  recordOverhead: 0.04,
  replay: { seconds: 1, cpuSeconds: 1, eventsPerSecond: 5e6 },
  replayOverRecord: 1.04,
  seek: { count: 20, openMilliseconds: 2, medianMilliseconds: 12, maxMilliseconds: 30, cpuMedianMilliseconds: 11 },
  peakRssMiB: { record: 180, replay: 170, seek: 160 },
  liveHeapMiB: { record: 20, replay: 25, seek: undefined },
  ...overrides
})

const results = (traces: TraceResult[]): SuiteResults => {
  const measured = {
    mips: [
      { mode: "real" as const, loop: "alu", what: "registers", instructions: 30e6, mipsMedian: 120, mipsBest: 130 },
      { mode: "pm32" as const, loop: "alu", what: "registers", instructions: 30e6, mipsMedian: 151, mipsBest: 160 }
    ],
    ioRoundTrip: { iterations: 200_000, modelMicroseconds: 0.3, modelRecordedMicroseconds: 0.6, kvm: { skipped: "/dev/kvm is not usable: no" } },
    traces
  }
  return {
    machine: { cpu: "Test CPU", cores: 2, node: "v20.0.0", platform: "linux x64", date: "2026-01-01 00:00 UTC", loadAverage: 0.5 },
    quick: false,
    durationSeconds: 170,
    ...measured,
    codec: { events: 1_000_000, encodeEventsPerSecond: 1.2e7, decodeEventsPerSecond: 9e6, bytesPerEvent: 3.02 },
    baselineRssMiB: 150,
    targets: judgeTargets(measured)
  }
}

describe("the benchmark report", () => {
  it("judges each target on its measurement, the trace ones on the largest trace", () => {
    const targets = judgeTargets(results([trace(200_000, { recordOverhead: 0.5 }), trace(2_000_000, { seek: { ...trace(1).seek, medianMilliseconds: 50 } })]))
    expect(targets.map((t) => [t.name, t.measured, t.met])).toEqual([
      ["ALU loop (pm32)", "151.0 MIPS", true],
      ["I/O exit round trip, recording", "0.600 µs", false],
      ["record overhead (10M events)", "4.0 %", true],
      ["replay speed / record speed (10M events)", "1.04×", true],
      ["bytes per event on disk (10M events)", "3.00", true],
      ["seek to a random event, median (10M events)", "50.0 ms", false]
    ])
  })

  it("aligns text columns and writes Markdown with escaped cells", () => {
    const table = { title: "T", rows: [["a", "bb"], ["ccc", "d|e"]] }
    expect(renderTable(table, "text")).toBe("T\na    bb\nccc  d|e")
    expect(renderTable(table, "markdown")).toBe("**T**\n\n| a | bb |\n| --- | --- |\n| ccc | d\\|e |")
  })

  it("prints the machine, every table, a skipped KVM's reason and both trace sizes", () => {
    const text = renderReport(results([trace(200_000), trace(2_000_000)]), "text")
    expect(text).toContain("machine: Test CPU, 2 cores, linux x64, node v20.0.0")
    for (const title of ["Targets", "Guest MIPS", "I/O exit round trip", "Record, replay, seek", "Trace codec"]) expect(text).toContain(title)
    expect(text).toContain("skipped: /dev/kvm is not usable: no")
    expect(text).toMatch(/trace +1M events +10M events/)
    expect(text).toMatch(/peak RSS \(live heap\), replaying +170 MiB \(25 MiB\) +170 MiB \(25 MiB\)/)
    expect(text).toMatch(/peak RSS \(live heap\), seeking +160 MiB \(no full GC\)/)
  })

  it("replaces only what lies between the README's markers", () => {
    const doc = "# A\n<!-- bench:start -->\nold\n<!-- bench:end -->\n# B\n"
    expect(replaceBetweenMarkers(doc, "new")).toBe("# A\n<!-- bench:start -->\nnew\n<!-- bench:end -->\n# B\n")
    expect(() => replaceBetweenMarkers("# A\n", "new")).toThrow(/bench:start/)
  })

  it("reads the most heap a full GC left live from V8's --trace-gc log", () => {
    const log = [
      "[1:0x1]  84 ms: Scavenge 4.6 (4.7) -> 4.1 (5.7) MB, 2.67 / 0.00 ms  allocation failure;",
      "[1:0x1]  1171 ms: Mark-Compact 12.6 (28.1) -> 9.2 (28.4) MB, 1.71 / 0.00 ms  (+ 3.8 ms in 63 steps) finalize incremental marking via task",
      "[1:0x1]  3228 ms: Mark-Compact (reduce) 36.9 (66.0) -> 27.1 (69.7) MB, 10.02 / 0.05 ms",
      "[1:0x1]  3300 ms: Scavenge 46.1 (70.2) -> 31.5 (70.2) MB, 8.42 / 0.00 ms"
    ].join("\n")
    expect(liveAfterFullGc(log)).toBe(27.1)
    expect(liveAfterFullGc(log.split("\n")[0]!)).toBeUndefined()
  })

  it("names sizes as people say them", () => {
    expect([10_000_000, 1_000_000, 50_000, 1234].map(count)).toEqual(["10M", "1M", "50k", "1234"])
  })
})
