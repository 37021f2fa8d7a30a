import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import { describe, expect, it } from "vitest"
import { makeTraceHeader } from "../../src/events/trace/schema.ts"
import { annotateExits } from "../../src/inspect/annotate.ts"
import { machineDevices } from "../../src/inspect/devices.ts"
import { flowsBySeq } from "../../src/inspect/explain.ts"
import type { Inspection } from "../../src/inspect/inspection.ts"
import { viewModel } from "../../src/inspect/viewModel.ts"
import { guestRun } from "./guestRuns.ts"

const inspectionOf = (name: "hello" | "hello32"): Inspection => {
  const run = guestRun(name)
  return {
    trace: { header: makeTraceHeader(run.header), events: run.events },
    instructions: Effect.runSync(annotateExits(run.header, run.events)),
    devices: Either.getOrThrow(machineDevices(run.header.config, run.header.image)),
    flows: flowsBySeq(run.events)
  }
}

/** What `vmrr view` sends to its page; the browser test checks how it is drawn. */
describe("the view's model", () => {
  it("has a sequence diagram per trip out of the guest: guest, KVM, QEMU, device, host", () => {
    const model = viewModel(inspectionOf("hello32"), "hello32.vmrr")
    const io = model.flows.find((f) => f.title.includes("IO_INSTRUCTION"))!
    expect(io.participants).toEqual(["guest", "KVM", "QEMU", "debugcon", "host"])
    expect(io.messages.map((m) => `${m.from}->${m.to}`)).toEqual([
      "guest->KVM",
      "KVM->KVM",
      "KVM->QEMU",
      "QEMU->debugcon",
      "debugcon->host",
      "QEMU->KVM",
      "KVM->guest"
    ])
    const ept = model.flows.find((f) => f.title.includes("EPT_VIOLATION"))!
    expect(ept.participants).toEqual(["guest", "KVM"])
    const mmio = model.flows.find((f) => f.messages.some((m) => m.to === "unassigned"))!
    expect(mmio.participants).toContain("unassigned")
  })

  it("gives every event its line, its explanation and its trip", () => {
    const model = viewModel(inspectionOf("hello"), "hello.vmrr")
    expect(model.events).toHaveLength(guestRun("hello").events.length)
    const port = model.events.find((e) => e.kind === "VmExit" && e.line.includes("IO_INSTRUCTION"))!
    expect(port.explain.join("\n")).toContain("The guest executed `out    %al,(%dx)`")
    expect(model.flows.map((f) => f.seq)).toContain(port.flow)
    expect(model.kinds).toEqual(expect.arrayContaining(["VmEntry", "VmExit", "Pio", "UserspaceExit", "DeviceOutput", "RunEnd"]))
  })
})
