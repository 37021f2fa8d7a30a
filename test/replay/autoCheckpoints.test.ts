import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import { ioLoopGuest } from "../../bench/ioLoop.ts"
import type { MachineConfig } from "../../src/events/MachineConfig.ts"
import { releaseRawChunk } from "../../src/events/rawEvents.ts"
import { recordMachine } from "../../src/qemu/runMachine.ts"
import { le32 } from "../support/programs.ts"

/** The checkpoints of a recording with `checkpointEvery: "auto"`, and the run's events and instructions. */
const autoCheckpoints = (config: MachineConfig, image: Uint8Array) => {
  const chunks = Chunk.toArray(Effect.runSync(Stream.runCollect(recordMachine(config, image, { checkpointEvery: "auto" }))))
  const checkpoints = chunks.flatMap(({ checkpoint }) => checkpoint === undefined ? [] : [{ seq: checkpoint.seq, time: checkpoint.time }])
  const last = chunks[chunks.length - 1]!.events
  const events = last.firstSeq + last.count
  for (const { events: raw } of chunks) releaseRawChunk(raw)
  return { checkpoints, events }
}

// The policy's estimate of replay work (runMachine.ts): 5 ns an instruction, 80 ns an event, 16 ms between checkpoints.
const work = (instructions: number, events: number) => instructions * 5 + events * 80
const BUDGET = 16_000_000

describe("automatic checkpoints", () => {
  it("on a guest that exits every other instruction: one at the first exit past the replay-work budget", () => {
    const { config, image } = ioLoopGuest(300_000)
    const { checkpoints, events } = autoCheckpoints(config, image)
    expect(checkpoints.length).toBe(Math.floor(work(600_000, events) / BUDGET))
    let before = { seq: 0, time: 0 }
    for (const c of checkpoints) {
      const since = work(c.time - before.time, c.seq - before.seq)
      // Past the budget by less than one round trip of the loop (two instructions, five events).
      expect(since).toBeGreaterThanOrEqual(BUDGET)
      expect(since).toBeLessThan(BUDGET + work(2, 5))
      before = c
    }
  })

  it("in a loop that never exits: by the debug stop, every budget's worth of instructions", () => {
    // mov ecx, n; l: add eax, 1; loop l; hlt
    const n = 4_000_000
    const image = Uint8Array.from([0xb9, ...le32(n), 0x83, 0xc0, 0x01, 0xe2, 0xfb, 0xf4])
    const config: MachineConfig = { memoryMiB: 16, loadAddress: 0x100000, entry: 0x100000, mode: "pm32", instructionLimit: 10_000_000 }
    const { checkpoints } = autoCheckpoints(config, image)
    expect(checkpoints.map((c) => c.time)).toEqual([3_200_000, 6_400_000])
  })
})
