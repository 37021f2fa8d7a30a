/**
 * The model on KVM's clock (kvmClock.ts), which replays traces recorded on /dev/kvm:
 * time counts KVM_RUN calls, `--limit` cuts the run at the same KVM_RUN, and a
 * recording made on that clock replays with the userspace view only. No /dev/kvm needed.
 */
import { readFileSync } from "node:fs"
import { join } from "node:path"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import { describe, expect, it } from "vitest"
import type { MachineConfig } from "../../src/events/MachineConfig.ts"
import { runMachine } from "../../src/qemu/runMachine.ts"
import { modelOnKvmClock } from "../../src/replay/kvmClock.ts"
import { replayEvents } from "../../src/replay/replay.ts"
import { isUserspaceVisible } from "../../src/replay/userspaceView.ts"
import { repoRoot } from "../support/cli.ts"

const hello = readFileSync(join(repoRoot, "guests/hello.bin"))
const config = (limit: number): MachineConfig => ({ memoryMiB: 16, loadAddress: 0x7c00, entry: 0x7c00, mode: "real", instructionLimit: limit })
const run = (limit: number) => Chunk.toArray(Effect.runSync(Stream.runCollect(runMachine(config(limit), hello, { kernel: modelOnKvmClock }))))

describe("the model on KVM's clock", () => {
  it("counts KVM_RUN calls: hello ends at its 120th, as on /dev/kvm", () => {
    const end = run(1_000_000).at(-1)
    expect(end?._tag === "RunEnd" && [end.reason, end.time]).toEqual(["hlt", 120])
  })

  it("stops a run after --limit KVM_RUN calls, with an immediate exit that does not count", () => {
    const events = run(50)
    const end = events.at(-1)
    expect(end?._tag === "RunEnd" && [end.reason, end.time, end.message]).toEqual(["instruction-limit", 50, "stopped after 50 exits"])
    expect(events.filter((e) => e._tag === "UserspaceExit")).toHaveLength(51)
  })

  it("replays a recording marked as KVM's on what userspace saw, cut short or not", async () => {
    for (const limit of [50, 1_000_000]) {
      const recorded = run(limit)
      const report = await Effect.runPromise(replayEvents({ config: config(limit), image: hello, backend: "kvm" }, Stream.fromIterable(recorded)))
      expect(report.verified).toBe(recorded.filter(isUserspaceVisible).length)
    }
  })
})
