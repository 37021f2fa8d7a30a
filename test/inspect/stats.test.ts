import { describe, expect, it } from "vitest"
import { exitReasonName } from "../../src/events/exitReasons.ts"
import type { VmEvent } from "../../src/events/VmEvent.ts"
import { computeStats, formatStats } from "../../src/inspect/stats.ts"
import { guestRun } from "./guestRuns.ts"

const common = { vcpu: 0 }
/** A halt that lasts 40 instructions of virtual time (a timer wakes it), and two port writes. */
const synthetic: VmEvent[] = [
  { _tag: "VmEntry", seq: 0, time: 0, rip: 0x7c00, ...common },
  { _tag: "VmExit", seq: 1, time: 10, reason: 12, qualification: 0, rip: 0x7c0a, instructionLength: 1, handledIn: "kernel", ...common },
  { _tag: "VmEntry", seq: 2, time: 50, rip: 0x7c0b, ...common },
  { _tag: "VmExit", seq: 3, time: 60, reason: 30, qualification: (0x3f8 << 16) | 0, rip: 0x7c10, instructionLength: 1, handledIn: "userspace", ...common },
  { _tag: "VmEntry", seq: 4, time: 60, rip: 0x7c11, ...common },
  { _tag: "VmExit", seq: 5, time: 70, reason: 30, qualification: (0x3f8 << 16) | 0, rip: 0x7c10, instructionLength: 1, handledIn: "userspace", ...common },
  { _tag: "VmEntry", seq: 6, time: 70, rip: 0x7c11, ...common }
]

describe("vmrr stats", () => {
  it("counts exits by reason and where they were handled, as the run summary does", () => {
    const events = guestRun("hello").events
    const report = computeStats(events, "reason")
    const expected = new Map<string, number>()
    for (const e of events) if (e._tag === "VmExit") expected.set(`${exitReasonName(e.reason)} ${e.handledIn}`, (expected.get(`${exitReasonName(e.reason)} ${e.handledIn}`) ?? 0) + 1)
    expect(new Map(report.rows.map((r) => [`${r.key} ${r.handledIn}`, r.samples]))).toEqual(expected)
    expect(report.rows[0]).toMatchObject({ key: "IO_INSTRUCTION", handledIn: "userspace" })
    expect(report.rows.map((r) => r.samples)).toEqual(report.rows.map((r) => r.samples).sort((a, b) => b - a))
    expect(report.totalSamples).toBe([...expected.values()].reduce((a, b) => a + b, 0))
    expect(report.rows.reduce((sum, r) => sum + r.samplesPercent, 0)).toBeCloseTo(100)
  })

  it("times each exit in virtual time from the exit to the next entry", () => {
    const report = computeStats(synthetic, "reason")
    const hlt = report.rows.find((r) => r.key === "HLT")
    expect(hlt).toMatchObject({ samples: 1, minTime: 40, maxTime: 40, avgTime: 40, timePercent: 100 })
    expect(report.rows.find((r) => r.key === "IO_INSTRUCTION")).toMatchObject({ samples: 2, minTime: 0, maxTime: 0, timePercent: 0 })
    expect(report.totalTime).toBe(40)
  })

  it("groups by port as perf's ioport events do, and by MMIO address", () => {
    expect(computeStats(synthetic, "port").rows.map((r) => [r.key, r.samples])).toEqual([["0x3f8:POUT", 2]])
    const mmio = computeStats(guestRun("hello32").events, "mmio")
    expect(mmio.rows.map((r) => [r.key, r.samples])).toEqual([
      ["0xfebf0000:R", 2],
      ["0xfebf0000:W", 1]
    ])
  })

  it("groups by the vector injected at the end of the trip, and leaves out trips without one", () => {
    const withInjection: VmEvent[] = [
      ...synthetic.slice(0, 2),
      { _tag: "InjVirq", seq: 2, time: 50, vector: 0x20, source: "pic", ...common } as VmEvent,
      { ...synthetic[2], seq: 3 } as VmEvent
    ]
    expect(computeStats(withInjection, "vector").rows.map((r) => [r.key, r.samples, r.avgTime])).toEqual([["0x20", 1, 40]])
    expect(computeStats(synthetic, "vector").totalSamples).toBe(0)
  })

  it("prints perf kvm stat report's columns", () => {
    const text = formatStats(computeStats(synthetic, "reason"))
    const lines = text.split("\n")
    expect(lines[1]).toMatch(/^ +VM-EXIT +Samples +Samples% +Time% +Min Time +Max Time +Avg time +Handled$/)
    expect(lines).toContain("                 HLT          1    33.33%   100.00%     40.00t      40.00t      40.00t  ( +-   0.00% ) kernel")
    expect(text).toContain("Total Samples:3, Total events handled time:40.00t.")
  })
})
