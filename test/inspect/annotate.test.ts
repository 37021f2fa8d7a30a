import * as Effect from "effect/Effect"
import { describe, expect, it } from "vitest"
import type { VmEvent } from "../../src/events/VmEvent.ts"
import { annotateExits } from "../../src/inspect/annotate.ts"
import { debugTranslate, hexBytes } from "../../src/inspect/guestCode.ts"
import { guestRun } from "./guestRuns.ts"

const exits = (events: ReadonlyArray<VmEvent>) => events.filter((e): e is Extract<VmEvent, { _tag: "VmExit" }> => e._tag === "VmExit")

describe("the instruction at each VM exit", () => {
  it("real mode: hello's UART accesses are `out %al,(%dx)` and `in (%dx),%al`", () => {
    const run = guestRun("hello")
    const found = Effect.runSync(annotateExits(run.header, run.events))
    expect(found.divergedAt).toBeUndefined()
    const texts = new Set(exits(run.events).map((e) => found.bySeq.get(e.seq)?.text))
    expect(texts).toEqual(new Set(["cli", "out    %al,(%dx)", "in     (%dx),%al", "hlt"]))
  })

  it("32-bit code: hello32's debugcon string is `rep outsb`, two bytes", () => {
    const run = guestRun("hello32")
    const found = Effect.runSync(annotateExits(run.header, run.events))
    const io = exits(run.events).find((e) => e.reason === 30)!
    const instruction = found.bySeq.get(io.seq)!
    expect(instruction).toMatchObject({ rip: io.rip, linear: io.rip, text: "rep outsb %ds:(%esi),(%dx)" })
    expect(hexBytes(instruction.bytes)).toBe("f3 6e")
    expect(instruction.bytes.length).toBe(io.instructionLength)
  })

  it("with paging on: the paging guest's exits decode through its page tables, each as long as the exit says", () => {
    const run = guestRun("paging")
    const found = Effect.runSync(annotateExits(run.header, run.events))
    expect(found.divergedAt).toBeUndefined()
    for (const e of exits(run.events)) {
      const instruction = found.bySeq.get(e.seq)
      expect(instruction, `#${e.seq}`).toBeDefined()
      if (e.instructionLength > 0) expect(instruction!.bytes.length, `#${e.seq} ${instruction!.text}`).toBe(e.instructionLength)
      expect(instruction!.text).not.toBe("(bad)")
    }
  })

  it("stops at the first event the model does not reproduce", () => {
    const run = guestRun("hello")
    const tampered = run.events.map((e) => (e.seq === 40 && e._tag === "VmExit" ? { ...e, rip: e.rip + 1 } : e.seq === 40 ? { ...e, time: e.time + 1 } : e))
    const found = Effect.runSync(annotateExits(run.header, tampered))
    expect(found.divergedAt).toBe(40)
    expect([...found.bySeq.keys()].every((seq) => seq < 40)).toBe(true)
  })

  it("translates linear addresses as 32-bit paging does, without touching memory", () => {
    const ram = new Uint8Array(0x10000)
    const view = new DataView(ram.buffer)
    view.setUint32(0x1000 + 4 * 1, 0x2000 | 1, true) // PDE 1 -> page table at 0x2000
    view.setUint32(0x2000 + 4 * 3, 0x5000 | 1, true) // PTE 3 -> frame 0x5000
    view.setUint32(0x1000 + 4 * 2, 0x00800000 | 0x81, true) // PDE 2: a 4 MiB page
    const before = ram.slice()
    const sregs = { cr0: 0x80000001, cr3: 0x1000, cr4: 0x10 }
    expect(debugTranslate(ram, sregs, 0x00403123)).toBe(0x5123)
    expect(debugTranslate(ram, sregs, 0x00812345)).toBe(0x00812345)
    expect(debugTranslate(ram, sregs, 0x00c00000)).toBeUndefined()
    expect(debugTranslate(ram, { ...sregs, cr0: 1 }, 0x00403123)).toBe(0x00403123)
    expect(ram).toEqual(before)
  })
})
