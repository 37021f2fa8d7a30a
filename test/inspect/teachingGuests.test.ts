import { describe, expect, it } from "vitest"
import { exitReasonName } from "../../src/events/exitReasons.ts"
import type { VmEvent } from "../../src/events/VmEvent.ts"
import { guestRun } from "./guestRuns.ts"

/** The small guests guests/README.md walks through: each shows the exits its walkthrough tells. */
const exitsOf = (events: ReadonlyArray<VmEvent>): string[] =>
  events.flatMap((e) => (e._tag === "VmExit" ? [`${exitReasonName(e.reason)} ${e.handledIn}`] : []))

const output = (events: ReadonlyArray<VmEvent>): string =>
  events.flatMap((e) => (e._tag === "DeviceOutput" ? [Buffer.from(e.bytes).toString("latin1")] : [])).join("")

const endOf = (events: ReadonlyArray<VmEvent>) => events[events.length - 1]

describe("teaching guests", () => {
  it("cpuid: one CPUID exit, handled in the kernel, and the vendor on debugcon", () => {
    const { events } = guestRun("cpuid")
    expect(exitsOf(events).filter((e) => e.startsWith("CPUID"))).toEqual(["CPUID kernel"])
    expect(output(events)).toBe("CPUID vendor: GenuineIntel\n")
    expect(endOf(events)).toMatchObject({ _tag: "RunEnd", reason: "debug-exit" })
  })

  it("ept: one EPT violation per first touch (fetch, read, write, stack, fetch), none on the second touch", () => {
    const { events } = guestRun("ept")
    expect(exitsOf(events)).toEqual([...Array(5).fill("EPT_VIOLATION kernel"), "IO_INSTRUCTION userspace"])
    const faults = events.filter((e): e is Extract<VmEvent, { _tag: "PageFault" }> => e._tag === "PageFault")
    expect(faults.map((f) => [f.gpa >>> 12, f.errorCode & 7, f.outcome])).toEqual([
      [0x100, 4, "mapped"],
      [0x101, 1, "mapped"],
      [0x102, 2, "mapped"],
      [0xff, 2, "mapped"],
      [0x103, 4, "mapped"]
    ])
    expect(endOf(events)).toMatchObject({ _tag: "RunEnd", reason: "debug-exit" })
  })

  it("mmio: an EPT violation that becomes MMIO, then an EPT misconfiguration, both for QEMU", () => {
    const { events } = guestRun("mmio")
    expect(exitsOf(events)).toEqual(["EPT_VIOLATION kernel", "EPT_VIOLATION userspace", "EPT_MISCONFIG userspace", "IO_INSTRUCTION userspace"])
    const mmio = events.filter((e): e is Extract<VmEvent, { _tag: "Mmio" }> => e._tag === "Mmio")
    expect(mmio.map((m) => [m.op, m.gpa, m.value])).toEqual([
      ["write", 0xfebf0000, 0x12345678],
      ["unsatisfied-read", 0xfebf0000, 0],
      ["read", 0xfebf0000, 0]
    ])
    expect(endOf(events)).toMatchObject({ _tag: "RunEnd", reason: "debug-exit" })
  })
})
