import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import { describe, expect, it } from "vitest"
import type { VmEvent } from "../../src/events/VmEvent.ts"
import { annotateExits } from "../../src/inspect/annotate.ts"
import { machineDevices } from "../../src/inspect/devices.ts"
import { type ExplainContext, explainEvents, flowsBySeq } from "../../src/inspect/explain.ts"
import { guestRun } from "./guestRuns.ts"

const contextOf = (name: "hello" | "hello32"): { events: ReadonlyArray<VmEvent>; ctx: ExplainContext } => {
  const run = guestRun(name)
  return {
    events: run.events,
    ctx: {
      instructions: Effect.runSync(annotateExits(run.header, run.events)),
      devices: Either.getOrThrow(machineDevices(run.header.config, run.header.image)),
      flows: flowsBySeq(run.events)
    }
  }
}

describe("vmrr explain", () => {
  it("tells a port write from the guest instruction to the device and back", () => {
    const { events, ctx } = contextOf("hello32")
    const first = events.findIndex((e) => e._tag === "VmExit" && e.reason === 30)
    const text = explainEvents(events.slice(first, first + 5), ctx).join("\n")
    expect(text).toContain("The guest executed `rep outsb %ds:(%esi),(%dx)` at rip 0x1000f9, bytes f3 6e.")
    expect(text).toContain("exit reason IO_INSTRUCTION, basic exit reason 30 in the Intel SDM")
    expect(text).toContain("OUT of 1 byte to port 0xe9, a string instruction (OUTS), with a REP prefix, the port is in DX.")
    expect(text).toContain("KVM_RUN returns to QEMU with KVM_EXIT_IO (2)")
    expect(text).toContain("port 0xe9 is debugcon (isa-debugcon)")
    expect(text).toContain('The device debugcon sends "H" to the host')
    expect(text).toContain("the same instruction runs again, for the next iteration of the REP string instruction")
  })

  it("tells an EPT violation KVM handles in the kernel, and MMIO that goes to userspace", () => {
    const { events, ctx } = contextOf("hello32")
    const text = explainEvents(events, ctx).join("\n")
    expect(text).toContain("an instruction fetch at guest-physical 0x100000, which the EPT does not map yet")
    expect(text).toContain("maps its page in the EPT")
    expect(text).toContain("No memslot covers 0xfebf0000, so it is MMIO")
    expect(text).toContain("only userspace can supply the value")
    expect(text).toContain("KVM completes the read with the value QEMU left in kvm_run.mmio.data")
    expect(text).toContain("No device claims address 0xfebf0000")
  })

  it("names the UART register a port access hits", () => {
    const { events, ctx } = contextOf("hello")
    const text = explainEvents(events, ctx).join("\n")
    expect(text).toContain("port 0x3fd is serial0 (isa-serial), register LSR")
    expect(text).toMatch(/at rip 0x7c[0-9a-f]{2}: KVM first finishes the instruction with QEMU's answer, then the guest goes on after it\./)
    expect(text).toMatch(/at rip 0x7c[0-9a-f]{2}: QEMU has carried the access out, so KVM completes the instruction and the guest goes on after it\./)
  })

  it("defines each glossary term once, where it first appears", () => {
    const { events, ctx } = contextOf("hello32")
    const lines = explainEvents(events, ctx)
    const glossary = lines.filter((l) => l.startsWith("    ~ "))
    const terms = glossary.map((l) => l.slice(6, l.indexOf(":")))
    expect(new Set(terms).size).toBe(terms.length)
    expect(terms).toEqual(expect.arrayContaining(["VM exit", "EPT", "MMIO", "exit qualification", "KVM_RUN"]))
    const firstExit = lines.findIndex((l) => l.includes("kvm_exit"))
    expect(lines.findIndex((l) => l.startsWith("    ~ VM exit:"))).toBeGreaterThan(firstExit)
  })

  it("tells a repeat of the previous exit in one line", () => {
    const { events, ctx } = contextOf("hello32")
    const first = events.findIndex((e) => e._tag === "VmExit" && e.reason === 30)
    const text = explainEvents(events.slice(first, first + 13), ctx).join("\n")
    expect(text).toContain(`Again \`rep outsb %ds:(%esi),(%dx)\` at rip 0x1000f9: the same IO_INSTRUCTION exit as #${first}.`)
  })

  it("shows a kind it has no sentences for by its one-line description, and new kinds' sentences", () => {
    const { ctx } = contextOf("hello")
    const unknown = { _tag: "SomethingNew", seq: 5, vcpu: 0, time: 3 } as unknown as VmEvent
    const lines = explainEvents([unknown], ctx)
    expect(lines).toHaveLength(1)
    expect(lines[0]).toMatch(/^#5 t=3 vcpu0 /)
    const injection = { _tag: "InjVirq", seq: 6, vcpu: 0, time: 3, vector: 0x20, source: "pic" } as VmEvent
    expect(explainEvents([injection], ctx).join("\n")).toContain("KVM injects vector 0x20 (from pic)")
    const eoi = { _tag: "VmExit", seq: 7, vcpu: 0, time: 4, reason: 30, qualification: (0x20 << 16) | 0x40, rip: 0x7c00, instructionLength: 2, handledIn: "kernel" } as VmEvent
    expect(explainEvents([eoi], ctx).join("\n")).toContain("The 8259A PIC (master) is emulated in the kernel")
  })
})
