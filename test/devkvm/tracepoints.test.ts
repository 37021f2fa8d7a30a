/**
 * The host's KVM tracepoints merged into a run on /dev/kvm, and tracefs left as it was
 * found. Needs /dev/kvm, root and tracefs; says why and checks nothing more otherwise.
 */
import { existsSync, readdirSync, readFileSync } from "node:fs"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import { join } from "node:path"
import { describe, expect, it } from "vitest"
import { devKvmAvailability, devKvmKernel } from "../../src/devkvm/devKvm.ts"
import { hostKvmTracepoints } from "../../src/devkvm/tracefs.ts"
import type { VmEvent } from "../../src/events/VmEvent.ts"
import { runMachine } from "../../src/qemu/runMachine.ts"
import { repoRoot } from "../support/cli.ts"

const kvm = devKvmAvailability()
if (!kvm.usable) console.log(`KVM tracepoint capture skipped: ${kvm.reason}`)

const TRACEFS = "/sys/kernel/tracing"
const config = { memoryMiB: 16, loadAddress: 0x7c00, entry: 0x7c00, mode: "real" as const, instructionLimit: 1_000_000 }

describe.skipIf(!kvm.usable)("KVM tracepoints on a run on /dev/kvm", () => {
  it("come before the userspace events of their KVM_RUN, one kvm_userspace_exit per return, and tracefs is left as found", async () => {
    const mountedByOthers = /^(?!vmrr )\S+ \/sys\/kernel\/tracing tracefs /m.test(readFileSync("/proc/self/mounts", "utf8"))
    const image = readFileSync(join(repoRoot, "guests/hello.bin"))
    const outcome = await Effect.runPromise(
      Effect.scoped(
        Effect.gen(function* () {
          const tracepoints = yield* hostKvmTracepoints
          return Chunk.toArray(yield* Stream.runCollect(runMachine(config, image, { kernel: devKvmKernel({ tracepoints }) })))
        })
      ).pipe(Effect.catchTag("TracepointsUnavailable", (e) => Effect.succeed(e.message)))
    )
    expect(existsSync(`${TRACEFS}/instances/vmrr-${process.pid}`)).toBe(false)
    // A mount vmrr made is gone once no vmrr traces (one may, in a parallel test file); any other mount stays.
    const othersTracing = existsSync(`${TRACEFS}/instances`) && readdirSync(`${TRACEFS}/instances`).some((n) => n.startsWith("vmrr-"))
    if (!othersTracing) expect(readFileSync("/proc/self/mounts", "utf8")).not.toMatch(/^vmrr \/sys\/kernel\/tracing tracefs /m)
    if (mountedByOthers) expect(existsSync(`${TRACEFS}/instances`)).toBe(true)
    if (typeof outcome === "string") return console.log(`tracepoint checks skipped: ${outcome}`)
    const events: VmEvent[] = outcome
    const named = (name: string) => events.filter((e) => e._tag === "Tracepoint" && e.name === name).length
    const exits = events.filter((e) => e._tag === "UserspaceExit")
    expect(exits).toHaveLength(120)
    expect(named("kvm_userspace_exit")).toBe(exits.length)
    expect(named("kvm_pio")).toBe(119)
    // Each return to userspace: the kernel's kvm_userspace_exit, then what kvm_run showed.
    events.forEach((e, i) => {
      if (e._tag !== "UserspaceExit") return
      const before = events.slice(0, i).reverse().find((x) => x._tag === "Tracepoint")
      expect(before?._tag === "Tracepoint" && before.name).toBe("kvm_userspace_exit")
      expect(before?.time).toBe(e.time)
    })
  })
})
