import * as Either from "effect/Either"
import { describe, expect, it } from "vitest"
import { exitReasonName } from "../../src/events/exitReasons.ts"
import type { VmEvent } from "../../src/events/VmEvent.ts"
import { machineDevices } from "../../src/inspect/devices.ts"
import { toChromeTrace } from "../../src/inspect/perfetto.ts"
import { chromeTraceProblems } from "./chromeTraceRules.ts"
import { guestRun } from "./guestRuns.ts"

const exportOf = (name: "hello" | "hello32") => {
  const run = guestRun(name)
  const devices = Either.getOrThrow(machineDevices(run.header.config, run.header.image))
  return { run, trace: toChromeTrace(run.events, devices, `${name}.vmrr`) }
}

describe("Perfetto export", () => {
  for (const name of ["hello", "hello32"] as const) {
    it(`${name}: follows the trace-event format's rules`, () => {
      const { trace } = exportOf(name)
      // Through JSON and back, as a viewer reads it.
      expect(chromeTraceProblems(JSON.parse(JSON.stringify(trace)))).toEqual([])
    })
  }

  it("names the tracks: guest, KVM and QEMU per vCPU, one per device", () => {
    const { trace } = exportOf("hello32")
    const threads = trace.traceEvents.filter((e) => e.name === "thread_name").map((e) => `${e.pid}/${String(e.args?.name)}`)
    expect(threads).toEqual(expect.arrayContaining(["1/guest (VMX non-root)", "1/KVM (kernel)", "1/QEMU (userspace)", "1000/debugcon", "1000/isa-debug-exit", "1000/unassigned"]))
  })

  it("has a KVM slice per VM exit, named by reason, and an arrow to userspace for each userspace exit", () => {
    const { run, trace } = exportOf("hello32")
    const exits = run.events.filter((e): e is Extract<VmEvent, { _tag: "VmExit" }> => e._tag === "VmExit")
    const slices = trace.traceEvents.filter((e) => e.ph === "X" && e.cat === "kvm_exit")
    expect(slices.map((s) => s.name)).toEqual(exits.map((e) => exitReasonName(e.reason)))
    const toUserspace = trace.traceEvents.filter((e) => e.ph === "s" && e.name === "to userspace")
    expect(toUserspace).toHaveLength(exits.filter((e) => e.handledIn === "userspace").length)
  })

  it("puts EPT faults as instants and keeps virtual time in the integer part of every timestamp", () => {
    const { run, trace } = exportOf("hello32")
    const faults = trace.traceEvents.filter((e) => e.ph === "i" && e.name === "kvm_page_fault")
    expect(faults).toHaveLength(run.events.filter((e) => e._tag === "PageFault").length)
    for (const f of faults) {
      const seq = f.args?.seq as number
      expect(Math.floor(f.ts)).toBe(run.events[seq].time)
    }
  })

  it("shows what the device did: debugcon's slices carry the bytes it wrote", () => {
    const { trace } = exportOf("hello32")
    const debugconTid = trace.traceEvents.find((e) => e.name === "thread_name" && e.args?.name === "debugcon")?.tid
    const output = trace.traceEvents
      .filter((e) => e.ph === "X" && e.pid === 1000 && e.tid === debugconTid)
      .map((e) => String(e.args?.output ?? ""))
      .join("")
    expect(output).toContain("Hello from 32-bit protected mode")
  })

  it("marks an injection as an instant at the entry that delivers it, and times a halt in virtual time", () => {
    const { run } = exportOf("hello")
    const devices = Either.getOrThrow(machineDevices(run.header.config, run.header.image))
    const vcpu = 0
    const events = [
      { _tag: "VmEntry", seq: 0, vcpu, time: 0, rip: 0x7c00 },
      { _tag: "VmExit", seq: 1, vcpu, time: 10, reason: 12, qualification: 0, rip: 0x7c0a, instructionLength: 1, handledIn: "kernel" },
      { _tag: "VcpuWakeup", seq: 2, vcpu, time: 5000, waited: 4990 },
      { _tag: "InjVirq", seq: 3, vcpu, time: 5000, vector: 0x20, source: "pic" },
      { _tag: "VmEntry", seq: 4, vcpu, time: 5000, rip: 0x7e00 }
    ] as unknown as VmEvent[]
    const trace = toChromeTrace(events, devices, "synthetic")
    expect(chromeTraceProblems(trace)).toEqual([])
    const injection = trace.traceEvents.find((e) => e.name === "kvm_inj_virq")
    expect(injection).toMatchObject({ ph: "i", s: "t", tid: 2 })
    expect(Math.floor(injection!.ts)).toBe(5000)
    const halt = trace.traceEvents.find((e) => e.ph === "X" && e.name === "HLT")
    expect(Math.floor(halt!.ts)).toBe(10)
    expect(Math.floor(halt!.ts + halt!.dur!)).toBe(5000)
  })

  it("the checker catches broken traces", () => {
    expect(chromeTraceProblems({})).toHaveLength(1)
    const bad = {
      traceEvents: [
        { name: "a", ph: "X", ts: 0, dur: 10, pid: 1, tid: 1 },
        { name: "b", ph: "X", ts: 5, dur: 10, pid: 1, tid: 1 },
        { name: "c", ph: "X", ts: 1, pid: 1, tid: 1 },
        { name: "f", cat: "flow", ph: "s", id: 1, ts: 50, pid: 1, tid: 2 },
        { name: "e", ph: "E", ts: 60, pid: 1, tid: 3 }
      ]
    }
    const problems = chromeTraceProblems(bad)
    expect(problems.join("\n")).toMatch(/without nesting/)
    expect(problems.join("\n")).toMatch(/ts goes back in time/)
    expect(problems.join("\n")).toMatch(/X needs dur/)
    expect(problems.join("\n")).toMatch(/one start and one finish/)
    expect(problems.join("\n")).toMatch(/E without a B/)
  })
})
