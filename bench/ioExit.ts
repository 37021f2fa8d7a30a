/**
 * The I/O exit round trip: guest `out` → VM exit → kvm_pio → return to userspace →
 * QEMU's dispatch on the port bus → KVM_RUN → VM entry, in µs. A measurement, not a
 * test: `npx tsx bench/ioExit.ts [--iterations N]`; the suite imports `ioExitRoundTrip`.
 *
 * The guest is bench/ioLoop.ts's: `mov ecx, n; l: out 0x80, al; loop l; hlt`,
 * one round trip and five events per iteration. Not recorded: the vCPU loop
 * (createMachine + cpuExecOnce) with the log drained per chunk, as runMachine does.
 * Recorded: recordMachine with checkpoints, into a trace file in the system's temporary
 * directory (removed afterwards), as `vmrr record` does.
 */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { pathToFileURL } from "node:url"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Stream from "effect/Stream"
import { releaseRawChunk } from "../src/events/rawEvents.ts"
import { openTraceWriter } from "../src/events/trace/writer.ts"
import { cpuExecOnce } from "../src/qemu/cpuExec.ts"
import { createMachine } from "../src/qemu/machine.ts"
import { CHUNK_EVENTS, defaultCheckpointEvery, recordMachine } from "../src/qemu/runMachine.ts"
import { type Guest, ioLoopGuest } from "./ioLoop.ts"

const runOnce = ({ config, image }: Guest): void => {
  const machine = Either.getOrThrow(createMachine(config, image))
  for (;;) {
    if (cpuExecOnce(machine) !== undefined) return
    if (machine.log.pending >= CHUNK_EVENTS) releaseRawChunk(machine.log.drain())
  }
}

const recordOnce = async ({ config, image }: Guest, path: string): Promise<void> =>
  Effect.runPromise(
    Effect.scoped(
      Effect.gen(function* () {
        const writer = yield* openTraceWriter(path, { config, image })
        yield* Stream.runForEach(recordMachine(config, image, { checkpointEvery: defaultCheckpointEvery }), ({ checkpoint, events }) =>
          Effect.zipRight(checkpoint === undefined ? Effect.void : writer.writeCheckpoint(checkpoint), writer.writeRawChunk(events)))
        yield* writer.close
      })
    )
  )

export interface IoExitOptions {
  readonly iterations?: number
  /** Record to a trace file (the full `vmrr record` path) instead of only running. */
  readonly record?: boolean
  /** Runs timed; the fastest counts (the first also warms the JIT). */
  readonly runs?: number
}

/** µs per I/O exit round trip: the fastest of `runs` runs of the guest. */
export const ioExitRoundTrip = async (options: IoExitOptions = {}): Promise<number> => {
  const iterations = options.iterations ?? 200_000
  const guest = ioLoopGuest(iterations)
  const dir = options.record === true ? mkdtempSync(join(tmpdir(), "vmrr-io-exit-")) : undefined
  try {
    let best = Number.POSITIVE_INFINITY
    for (let i = 0; i < (options.runs ?? 3); i++) {
      // Each recording to a new file (as traceBench.ts `record`): replacing one adds the cost of freeing it.
      if (dir !== undefined) rmSync(join(dir, "io-exit.vmrr"), { force: true })
      const t0 = performance.now()
      if (dir === undefined) runOnce(guest)
      else await recordOnce(guest, join(dir, "io-exit.vmrr"))
      best = Math.min(best, performance.now() - t0)
    }
    return (best * 1000) / iterations
  } finally {
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true })
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const i = process.argv.indexOf("--iterations")
  const iterations = i < 0 ? 200_000 : Number(process.argv[i + 1])
  const plain = await ioExitRoundTrip({ iterations })
  const recorded = await ioExitRoundTrip({ iterations, record: true })
  console.log(`I/O exit round trip (${iterations} iterations of out 0x80, al; loop):`)
  console.log(`  not recorded: ${plain.toFixed(3)} µs`)
  console.log(`  recorded:     ${recorded.toFixed(3)} µs`)
}
