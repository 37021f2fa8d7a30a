import { readFileSync } from "node:fs"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Stream from "effect/Stream"
import { describe, expect, it } from "vitest"
import type { MachineConfig } from "../../src/events/MachineConfig.ts"
import type { VmEvent } from "../../src/events/VmEvent.ts"
import { DebuggedMachine } from "../../src/gdb/debuggedMachine.ts"
import { noHostInput } from "../../src/qemu/hostInput.ts"
import { runMachine } from "../../src/qemu/runMachine.ts"

const hello32: MachineConfig = { memoryMiB: 16, loadAddress: 0x100000, entry: 0x100000, mode: "pm32", instructionLimit: 100_000_000 }
const image = readFileSync("guests/hello32.bin")

const stepped = (stride: (position: number) => number): VmEvent[] => {
  const events: VmEvent[] = []
  const m = Either.getOrThrow(DebuggedMachine.create(hello32, image, noHostInput, (batch) => void events.push(...batch)))
  while (m.outcome === undefined) m.runTo(m.position + stride(m.position))
  return events
}

describe("DebuggedMachine", () => {
  const unstopped = Chunk.toArray(Effect.runSync(Stream.runCollect(runMachine(hello32, image))))

  it("stopped at every instruction, logs exactly the events of the run without stops", () => {
    expect(stepped(() => 1)).toEqual(unstopped)
  })

  it("stopped at irregular points, logs the same events", () => {
    expect(stepped((p) => 1 + ((p * 7919) % 37))).toEqual(unstopped)
  })

  it("stops exactly at the instruction count asked for", () => {
    const m = Either.getOrThrow(DebuggedMachine.create(hello32, image, noHostInput, () => {}))
    m.runTo(123)
    expect(m.position).toBe(123)
    m.runTo(500)
    expect(m.position).toBe(500)
  })
})
