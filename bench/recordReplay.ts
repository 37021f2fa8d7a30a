/**
 * Record and replay costs on a large trace, and seek time in it. A measurement, not a
 * test: `npm run bench:replay` (the trace goes to the system's temporary directory and
 * is removed afterwards; it is never committed).
 *
 * The guest is a 32-bit loop doing port I/O: `out 0x80, al` (the PC's POST port, which
 * nothing claims) then `loop`, so each iteration is five events (kvm_exit, kvm_pio,
 * kvm_userspace_exit, the unassigned access, kvm_entry) for two instructions.
 *
 *   npm run bench:replay                   10M events (2M iterations)
 *   npm run bench:replay -- --iterations N
 *   npm run bench:replay -- --seeks N      random seeks to events (default 20)
 *   npm run bench:replay -- --trace FILE   keep the trace in FILE; if FILE exists, only
 *                                          index it, replay it in a session and seek in it
 *
 * Times are wall-clock; seeks also give the process's CPU time, which is what a loaded
 * machine (other processes on the same cores) does not inflate.
 */
import { existsSync, mkdtempSync, rmSync, statSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import type { MachineConfig } from "../src/events/MachineConfig.ts"
import { openSeekableTrace } from "../src/events/trace/traceIndex.ts"
import { openTraceWriter } from "../src/events/trace/writer.ts"
import { defaultCheckpointEvery, recordMachine, runMachine } from "../src/qemu/runMachine.ts"
import { replayTrace } from "../src/replay/replay.ts"
import { ReplaySession } from "../src/replay/session.ts"

const arg = (name: string, fallback: number): number => {
  const i = process.argv.indexOf(`--${name}`)
  return i < 0 ? fallback : Number(process.argv[i + 1])
}
const iterations = arg("iterations", 2_000_000)
const seeks = arg("seeks", 20)
const le32 = (v: number) => [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, v >>> 24]
// mov ecx, n; l: out 0x80, al; loop l; hlt
const image = Uint8Array.from([0xb9, ...le32(iterations), 0xe6, 0x80, 0xe2, 0xfc, 0xf4])
const config: MachineConfig = { memoryMiB: 16, loadAddress: 0x100000, entry: 0x100000, mode: "pm32", instructionLimit: 100_000_000 }

const kept = process.argv.indexOf("--trace") < 0 ? undefined : process.argv[process.argv.indexOf("--trace") + 1]
const reuse = kept !== undefined && existsSync(kept)
const dir = kept === undefined ? mkdtempSync(join(tmpdir(), "vmrr-bench-")) : undefined
const path = kept ?? join(dir!, "io-loop.vmrr")
const cpuSeconds = (since: NodeJS.CpuUsage) => {
  const used = process.cpuUsage(since)
  return (used.user + used.system) / 1e6
}
const seconds = (start: number) => (performance.now() - start) / 1000

/** Deterministic positions: a linear congruential sequence, so runs are comparable. */
const positions = (n: number, max: number): number[] => {
  let x = 12345
  return Array.from({ length: n }, () => {
    x = (x * 1103515245 + 12345) % 2 ** 31
    return x % (max + 1)
  })
}

/** The part that needs only a trace: index it, replay it in a session, seek in it. */
const seekIn = Effect.scoped(
  Effect.gen(function* () {
    const start = performance.now()
    const trace = yield* openSeekableTrace(path)
    const openTime = seconds(start)
    const session = new ReplaySession(trace)
    const t0 = performance.now()
    session.replayToEvent(trace.index.eventCount - 1, true)
    const sessionReplayTime = seconds(t0)
    const each: number[] = []
    const cpu: number[] = []
    for (const seq of positions(seeks, trace.index.eventCount - 1)) {
      const t1 = performance.now()
      const c1 = process.cpuUsage()
      session.seekEvent(seq)
      each.push(seconds(t1))
      cpu.push(cpuSeconds(c1))
    }
    return { openTime, each, cpu, sessionReplayTime, checkpoints: trace.index.checkpointSeqs.length, eventCount: trace.index.eventCount }
  })
)

const ms = (s: number) => `${(s * 1000).toFixed(0)} ms`
const rate = (n: number, s: number) => `${(n / s / 1e6).toFixed(2)} M events/s`
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!

const reportSeeks = (times: Effect.Effect.Success<typeof seekIn>, recordTime?: number) => {
  console.log(`replay in a session:      ${times.sessionReplayTime.toFixed(2)} s (${rate(times.eventCount, times.sessionReplayTime)})${recordTime === undefined ? "" : `: ${(times.sessionReplayTime / recordTime).toFixed(2)}× the recording's time`} (the seek path: the same checks, chunks read without the schemas)`)
  console.log(`trace: ${statSync(path).size} bytes, ${(statSync(path).size / times.eventCount).toFixed(2)} bytes per event, ${times.checkpoints} checkpoints`)
  console.log(`open + index: ${ms(times.openTime)}; seek to ${seeks} events: median ${ms(median(times.each))}, max ${ms(Math.max(...times.each))} (CPU: median ${ms(median(times.cpu))}, max ${ms(Math.max(...times.cpu))})`)
}

const program = reuse ? Effect.map(seekIn, (times) => reportSeeks(times)) : Effect.gen(function* () {
  // Each of the two is timed twice, alternately, and the faster kept: the first run also warms the JIT.
  let events = 0
  const run = Effect.suspend(() => {
    events = 0
    return Stream.runForEachChunk(runMachine(config, image), (c) => Effect.sync(() => void (events += c.length)))
  })
  const record = Effect.scoped(
    Effect.gen(function* () {
      const writer = yield* openTraceWriter(path, { config, image })
      yield* Stream.runForEach(recordMachine(config, image, { checkpointEvery: defaultCheckpointEvery }), ({ checkpoint, events }) =>
        Effect.zipRight(checkpoint === undefined ? Effect.void : writer.writeCheckpoint(checkpoint), writer.writeChunk(events)))
      yield* writer.close
    })
  )
  const timed = <E>(e: Effect.Effect<unknown, E>) =>
    Effect.suspend(() => {
      const t0 = performance.now()
      return Effect.map(e, () => seconds(t0))
    })
  let runTime = Number.POSITIVE_INFINITY
  let recordTime = Number.POSITIVE_INFINITY
  for (let i = 0; i < 2; i++) {
    runTime = Math.min(runTime, yield* timed(run))
    recordTime = Math.min(recordTime, yield* timed(record))
  }
  let start = performance.now()

  // `vmrr replay`: every chunk decoded with the event schemas and compared through an Effect stream.
  start = performance.now()
  const report = yield* replayTrace(path)
  const replayTime = seconds(start)

  const times = yield* seekIn
  console.log(`guest: ${iterations} iterations of out 0x80, al; loop — ${events} events, ${iterations * 2 + 2} instructions`)
  console.log(`run, not recorded:       ${runTime.toFixed(2)} s (${rate(events, runTime)})`)
  console.log(`run, recorded:           ${recordTime.toFixed(2)} s (${rate(events, recordTime)}): overhead ${((recordTime / runTime - 1) * 100).toFixed(0)}%, checkpoint every ${defaultCheckpointEvery} instructions`)
  console.log(`replay, verified:        ${replayTime.toFixed(2)} s (${rate(report.verified, replayTime)}): ${(replayTime / recordTime).toFixed(2)}× the recording's time`)
  reportSeeks(times, recordTime)
})

const cleanUp = () => {
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true })
}

Effect.runPromise(program).then(cleanUp, (e) => {
  cleanUp()
  console.error(e)
  process.exitCode = 1
})
