/**
 * The whole machine state of a replay session, for tests that compare a session that
 * seeks through checkpoints with one that replays straight from the start.
 */
import { createHash } from "node:crypto"
import { expect } from "vitest"
import { lapicAdvance } from "../../src/hw/intc/lapic.ts"
import { hasIrqchipVcpu } from "../../src/kernel/api.ts"
import type { ReplaySession } from "../../src/replay/session.ts"

/**
 * Position, registers, RAM (hashed), EPT, devices, interrupt chips on both sides, the
 * clock. The in-kernel LAPIC is taken as of now: KVM_GET_LAPIC gives it as of the last
 * timer check, which a stop for a seek or a checkpoint moves without changing anything
 * the guest can see.
 */
export const sessionState = (s: ReplaySession) => {
  const m = s.current
  const vcpu = m.vcpu
  const chips = m.interrupts
  const lapic = hasIrqchipVcpu(vcpu) ? vcpu.getLapic() : undefined
  return {
    position: s.position,
    regs: s.registers(),
    ram: createHash("sha256").update(m.ram).digest("hex"),
    ept: m.vm.getEptEntries(),
    pio: m.pio.snapshot(),
    emulation: vcpu.getEmulationState(),
    clock: chips?.clock?.now,
    qemu: { pic: chips?.pic, ioapic: chips?.ioapic, pit: chips?.pit, lapic: chips?.lapic, rtc: chips?.rtc },
    kernel: hasIrqchipVcpu(vcpu)
      ? { lapic: lapic && lapicAdvance(lapic, chips?.clock?.now ?? s.position.time), mp: vcpu.getMpState() }
      : undefined
  }
}

/**
 * Moves both sessions to each position in turn (an event number, or an instruction
 * count with `{ time: t }`), then to the end, and expects the same state every time.
 */
export const expectSameStates = (
  seeking: ReplaySession,
  straight: ReplaySession,
  positions: ReadonlyArray<number | { readonly time: number }>
): void => {
  for (const p of positions) {
    if (typeof p === "number") {
      seeking.seekEvent(p)
      straight.seekEvent(p)
    } else {
      seeking.seekTime(p.time)
      straight.seekTime(p.time)
    }
    expectSameState(seeking, straight)
  }
  seeking.replayToEvent(seeking.eventCount - 1)
  straight.replayToEvent(straight.eventCount - 1)
  expectSameState(seeking, straight)
  expect(seeking.ended).toEqual(straight.ended)
}

/** Part by part, so a failure names the part that differs. */
const expectSameState = (a: ReplaySession, b: ReplaySession): void => {
  const x = sessionState(a)
  const y = sessionState(b)
  for (const part of Object.keys(x) as Array<keyof typeof x>) expect(x[part], `${part} at ${JSON.stringify(a.position)}`).toEqual(y[part])
}
