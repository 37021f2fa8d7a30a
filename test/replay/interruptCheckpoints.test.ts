/**
 * Checkpoints of a machine with interrupt chips: seeking into a recording of an
 * interrupt guest restores the chips (in the kernel and in QEMU), the halted state
 * and a pending interrupt window, so the replay from there matches a straight one.
 */
import { describe, expect, it } from "vitest"
import { expectSameStates, sessionState } from "../support/sessionState.ts"
import { memorySource } from "../../src/events/trace/framing.ts"
import { indexTrace, type SeekableTrace } from "../../src/events/trace/traceIndex.ts"
import type { MachineConfig } from "../../src/events/MachineConfig.ts"
import { ReplaySession } from "../../src/replay/session.ts"
import { guestConfig, guestImage, irqchipModes } from "../support/interruptGuests.ts"
import { recordTraceBytes } from "../support/recordTrace.ts"

const recordTrace = (config: MachineConfig, image: Uint8Array, every: number | undefined): SeekableTrace => {
  const trace = indexTrace(memorySource(recordTraceBytes(config, image, every)), "pit.vmrr")
  if (!("index" in trace)) throw trace
  return trace
}

describe.each(irqchipModes)("checkpoints of guests/pit.bin in %s mode", (mode) => {
  it("seeking anywhere gives the state of a straight replay, and the replay goes on to the end", () => {
    const config = guestConfig("pit", mode)
    const image = guestImage("pit")
    const seeking = new ReplaySession(recordTrace(config, image, 2_000_000))
    const straight = new ReplaySession(recordTrace(config, image, undefined))
    expect(seeking.eventCount).toBe(straight.eventCount)
    expectSameStates(seeking, straight, [Math.floor(seeking.eventCount / 3), Math.floor(seeking.eventCount / 2), seeking.eventCount - 40])
  })
})
