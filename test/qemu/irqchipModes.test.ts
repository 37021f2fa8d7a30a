/**
 * The interrupt guests in the three irqchip modes: the guest sees the same thing in
 * each, the event streams differ the way KVM's do, and the injection invariants hold
 * on every stream.
 */
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import { describe, expect, it } from "vitest"
import { ExitReason, KvmExit } from "../../src/events/exitReasons.ts"
import type { IrqchipMode } from "../../src/events/MachineConfig.ts"
import type { VmEvent } from "../../src/events/VmEvent.ts"
import { recordedInputs } from "../../src/replay/hostInput.ts"
import { replayEvents } from "../../src/replay/replay.ts"
import { guestConfig, guestImage, irqchipModes, runGuest, type GuestRun, type InterruptGuest } from "../support/interruptGuests.ts"

const expectedOutput: Record<InterruptGuest, string> = {
  pit: [
    "PIT channel 0, mode 2, reload 11932",
    "tick 1",
    "tick 2",
    "tick 3",
    "tick 4",
    "tick 5",
    "ticks taken after the spin with IF=0: 1",
    "done: ticks 6, wakeups 5, count 0x002b",
    ""
  ].join("\r\n"),
  // No host input: the RTC starts from the fixed wall clock, 2000-01-01 00:00:00 UTC.
  rtc: ["RTC time 2000-01-01 00:00:00", "register C in the ISR 0x00c0, periodic interrupts 8", ""].join("\r\n"),
  lapic: "LAPIC timer ticks 5, PIT via IOAPIC pin 2 2, RTC via IOAPIC pin 8 (level) 5\n"
}

const runs = new Map<string, GuestRun>()
const run = (name: InterruptGuest, mode: IrqchipMode): GuestRun => {
  const key = `${name}/${mode}`
  const cached = runs.get(key) ?? runGuest(guestConfig(name, mode), guestImage(name))
  runs.set(key, cached)
  return cached
}

const userspaceExits = (events: ReadonlyArray<VmEvent>, reason: number): number =>
  events.filter((e) => e._tag === "UserspaceExit" && e.exitReason === reason).length
const exits = (events: ReadonlyArray<VmEvent>, reason: number, handledIn: "kernel" | "userspace"): number =>
  events.filter((e) => e._tag === "VmExit" && e.reason === reason && e.handledIn === handledIn).length
const injections = (events: ReadonlyArray<VmEvent>) => events.flatMap((e) => (e._tag === "InjVirq" ? [e] : []))
const hostedIn = (events: ReadonlyArray<VmEvent>, tag: VmEvent["_tag"]): Set<string> =>
  new Set(events.flatMap((e) => (e._tag === tag && "hostedIn" in e ? [e.hostedIn] : [])))

/** The vectors the guests program: master PIC at 0x08, slave at 0x70. */
const picVector = (irq: number): number => (irq < 8 ? 0x08 + irq : 0x70 + irq - 8)

/**
 * Every injected vector was requested since its last injection, unmasked: by the PIC
 * (a line raised with INTR out and its IMR bit clear) or by a LAPIC that accepted it.
 */
const unrequestedInjections = (events: ReadonlyArray<VmEvent>): string[] => {
  const requested = new Set<number>()
  const bad: string[] = []
  for (const e of events) {
    if (e._tag === "PicSetIrq" && e.level && e.intr && (e.imr & (1 << (e.irq & 7))) === 0) requested.add(picVector(e.irq))
    else if (e._tag === "ApicAcceptIrq") requested.add(e.vector)
    else if (e._tag === "InjVirq") {
      if (!requested.delete(e.vector)) bad.push(`#${e.seq} vector ${e.vector}`)
    }
  }
  return bad
}

/** After each INTERRUPT_WINDOW exit, the next injection comes before any other VM exit. */
const windowsWithoutInjection = (events: ReadonlyArray<VmEvent>): string[] => {
  const bad: string[] = []
  let open: VmEvent | undefined
  for (const e of events) {
    if (e._tag === "InjVirq") open = undefined
    else if (e._tag === "VmExit") {
      if (open !== undefined) bad.push(`#${open.seq}`)
      open = e.reason === ExitReason.INTERRUPT_WINDOW ? e : undefined
    }
  }
  return bad
}

describe.each(["pit", "rtc", "lapic"] as const)("guests/%s.bin", (name) => {
  it.each(irqchipModes)("prints the same in %s mode, exits with status 1, and every injection is sound", (mode) => {
    const r = run(name, mode)
    expect(r.output).toBe(expectedOutput[name])
    expect(r.end.reason).toBe("debug-exit")
    expect(r.end.exitCode).toBe(1)
    expect(r.badInjections).toEqual([])
    expect(unrequestedInjections(r.events)).toEqual([])
    expect(windowsWithoutInjection(r.events)).toEqual([])
    expect(injections(r.events).length).toBeGreaterThan(0)
  })

  it.each(irqchipModes)("replays its %s-mode recording event for event", (mode) => {
    const { events } = run(name, mode)
    const report = Effect.runSync(
      replayEvents({ config: guestConfig(name, mode), image: guestImage(name) }, Stream.fromIterable(events), recordedInputs(events))
    )
    expect(report.verified).toBe(events.length)
  })
})

describe("how the modes differ on the wire (guests/pit.bin)", () => {
  it("kernel: PIC and PIT in KVM; HLT blocks there and the window is KVM's own, so no HLT or window exit reaches QEMU", () => {
    const { events } = run("pit", "kernel")
    expect(userspaceExits(events, KvmExit.KVM_EXIT_HLT)).toBe(0)
    expect(userspaceExits(events, KvmExit.KVM_EXIT_IRQ_WINDOW_OPEN)).toBe(0)
    expect(exits(events, ExitReason.HLT, "kernel")).toBe(5)
    expect(exits(events, ExitReason.INTERRUPT_WINDOW, "kernel")).toBe(1)
    expect(new Set(injections(events).map((e) => e.source))).toEqual(new Set(["pic"]))
    expect(hostedIn(events, "PicSetIrq")).toEqual(new Set(["kernel"]))
    expect(hostedIn(events, "TimerExpiry")).toEqual(new Set(["kernel"]))
    // The PIC and PIT ports are answered in the kernel.
    expect(exits(events, ExitReason.IO_INSTRUCTION, "kernel")).toBeGreaterThan(0)
    expect(events.some((e) => e._tag === "VcpuWakeup")).toBe(true)
  })

  it("split: the LAPIC halts in KVM, but QEMU's PIC injects with KVM_INTERRUPT and asks for the window", () => {
    const { events } = run("pit", "split")
    expect(userspaceExits(events, KvmExit.KVM_EXIT_HLT)).toBe(0)
    expect(exits(events, ExitReason.HLT, "kernel")).toBe(5)
    expect(userspaceExits(events, KvmExit.KVM_EXIT_IRQ_WINDOW_OPEN)).toBe(1)
    expect(new Set(injections(events).map((e) => e.source))).toEqual(new Set(["KVM_INTERRUPT"]))
    expect(hostedIn(events, "PicSetIrq")).toEqual(new Set(["userspace"]))
    expect(exits(events, ExitReason.IO_INSTRUCTION, "kernel")).toBe(0)
  })

  it("userspace: every HLT and the interrupt window come out to QEMU", () => {
    const { events } = run("pit", "userspace")
    expect(userspaceExits(events, KvmExit.KVM_EXIT_HLT)).toBe(5)
    expect(exits(events, ExitReason.HLT, "userspace")).toBe(5)
    expect(userspaceExits(events, KvmExit.KVM_EXIT_IRQ_WINDOW_OPEN)).toBe(1)
    expect(events.some((e) => e._tag === "IrqWindowRequest" && e.requestedBy === "userspace" && e.blockedBy === "if")).toBe(true)
    expect(new Set(injections(events).map((e) => e.source))).toEqual(new Set(["KVM_INTERRUPT"]))
    expect(hostedIn(events, "SetIrq")).toEqual(new Set(["userspace"]))
  })
})

describe("how the modes differ on the wire (guests/lapic.bin)", () => {
  it("split: the EOI of the level-triggered RTC vector leaves KVM as KVM_EXIT_IOAPIC_EOI for QEMU's IOAPIC", () => {
    const { events } = run("lapic", "split")
    expect(userspaceExits(events, KvmExit.KVM_EXIT_IOAPIC_EOI)).toBe(5)
    expect(events.filter((e) => e._tag === "AckIrq" && e.irqchip === "ioapic" && e.hostedIn === "userspace")).toHaveLength(5)
    expect(hostedIn(events, "Eoi")).toEqual(new Set(["kernel"]))
  })

  it("kernel: the same EOIs stay in KVM; userspace: the LAPIC itself is QEMU's", () => {
    const kernel = run("lapic", "kernel").events
    expect(userspaceExits(kernel, KvmExit.KVM_EXIT_IOAPIC_EOI)).toBe(0)
    expect(kernel.filter((e) => e._tag === "AckIrq" && e.irqchip === "ioapic" && e.hostedIn === "kernel")).toHaveLength(5)
    const user = run("lapic", "userspace").events
    expect(hostedIn(user, "Eoi")).toEqual(new Set(["userspace"]))
    expect(hostedIn(user, "ApicAcceptIrq")).toEqual(new Set(["userspace"]))
    expect(new Set(injections(user).map((e) => e.source))).toEqual(new Set(["KVM_INTERRUPT"]))
    expect(new Set(injections(kernel).map((e) => e.source))).toEqual(new Set(["lapic"]))
  })
})

describe("guests/rtc.bin", () => {
  it("reads the wall clock once, as a HostClock host input, at its first RTC access", () => {
    for (const mode of irqchipModes) {
      const clocks = run("rtc", mode).events.filter((e) => e._tag === "HostClock")
      expect(clocks).toHaveLength(1)
      expect(clocks[0]).toMatchObject({ device: "rtc", epochSeconds: 946_684_800 })
    }
  })
})

describe("serial0 on IRQ4", () => {
  /**
   * Real mode at 0x7c00: IVT[0x0c] -> isr; the master PIC at 0x08 with only IRQ4 unmasked;
   * UART IER = THRI (the empty THR raises the interrupt at once); sti; hlt; then
   * debugcon prints '0' + the count and isa-debug-exit ends the run. The ISR reads IIR
   * (which clears the THR-empty condition), counts and sends a non-specific EOI.
   */
  const image = Uint8Array.from([
    0xfa, 0x31, 0xc0, 0x8e, 0xd8, 0xc7, 0x06, 0x30, 0x00, 0x38, 0x7c, 0xc7, 0x06, 0x32, 0x00, 0x00, 0x00, 0xb0, 0x11, 0xe6,
    0x20, 0xb0, 0x08, 0xe6, 0x21, 0xb0, 0x04, 0xe6, 0x21, 0xb0, 0x01, 0xe6, 0x21, 0xb0, 0xef, 0xe6, 0x21, 0xba, 0xf9, 0x03,
    0xb0, 0x02, 0xee, 0xfb, 0xf4, 0xa0, 0x45, 0x7c, 0x04, 0x30, 0xe6, 0xe9, 0x30, 0xc0, 0xe6, 0xf4, 0xba, 0xfa, 0x03, 0xec,
    0xfe, 0x06, 0x45, 0x7c, 0xb0, 0x20, 0xe6, 0x20, 0xcf, 0x00
  ])

  it.each(irqchipModes)("the UART's THR-empty interrupt raises and lowers IRQ4 and is taken once (%s)", (mode) => {
    const r = runGuest({ ...guestConfig("pit", mode), instructionLimit: 100_000 }, image)
    expect(r.output).toBe("1")
    expect(r.badInjections).toEqual([])
    const lines = r.events.flatMap((e) => (e._tag === "SetIrq" && e.gsi === 4 ? [e.level] : []))
    expect(lines).toEqual([true, false])
    expect(injections(r.events).map((e) => e.vector)).toEqual([0x0c])
    expect(windowsWithoutInjection(r.events)).toEqual([])
  })

  it("split: a HLT in STI's shadow with an interrupt waiting in QEMU ends in one KVM_EXIT_IRQ_WINDOW_OPEN, not a sleep", () => {
    const { events } = runGuest({ ...guestConfig("pit", "split"), instructionLimit: 100_000 }, image)
    expect(exits(events, ExitReason.HLT, "kernel")).toBe(1)
    expect(userspaceExits(events, KvmExit.KVM_EXIT_IRQ_WINDOW_OPEN)).toBe(1)
    expect(events.find((e) => e._tag === "VcpuWakeup")).toMatchObject({ waited: 0 })
  })
})
