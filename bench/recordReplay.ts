/**
 * Record and replay costs on a large trace, and seek time in it. A measurement, not a
 * test: `npm run bench:replay` (the trace goes to the system's temporary directory and
 * is removed afterwards; it is never committed). The guest and the measurements are in
 * traceBench.ts; `npm run bench` gives the same numbers in its table, with peak memory.
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
import { defaultCheckpointEvery } from "../src/qemu/runMachine.ts"
import { ioLoopGuest } from "./ioLoop.ts"
import { median } from "./stats.ts"
import { record, replayVerified, runUnrecorded, seekIn, type SeekTimes } from "./traceBench.ts"

const arg = (name: string, fallback: number): number => {
  const i = process.argv.indexOf(`--${name}`)
  return i < 0 ? fallback : Number(process.argv[i + 1])
}
const iterations = arg("iterations", 2_000_000)
const seeks = arg("seeks", 20)
const guest = ioLoopGuest(iterations)

const kept = process.argv.indexOf("--trace") < 0 ? undefined : process.argv[process.argv.indexOf("--trace") + 1]
const reuse = kept !== undefined && existsSync(kept)
const dir = kept === undefined ? mkdtempSync(join(tmpdir(), "vmrr-bench-")) : undefined
const path = kept ?? join(dir!, "io-loop.vmrr")

const ms = (s: number) => `${(s * 1000).toFixed(0)} ms`
const rate = (n: number, s: number) => `${(n / s / 1e6).toFixed(2)} M events/s`

const reportSeeks = (times: SeekTimes, recordTime?: number) => {
  const replay = times.sessionReplaySeconds!
  console.log(`replay in a session:      ${replay.toFixed(2)} s (${rate(times.eventCount, replay)})${recordTime === undefined ? "" : `: ${(replay / recordTime).toFixed(2)}× the recording's time`} (replayToEvent: the seek path, event by event)`)
  console.log(`trace: ${statSync(path).size} bytes, ${(statSync(path).size / times.eventCount).toFixed(2)} bytes per event, ${times.checkpoints} checkpoints`)
  console.log(`open + index: ${ms(times.openSeconds)}; seek to ${seeks} events: median ${ms(median(times.wall))}, max ${ms(Math.max(...times.wall))} (CPU: median ${ms(median(times.cpu))}, max ${ms(Math.max(...times.cpu))})`)
}

const seekPhase = seekIn(path, seeks, { sessionReplay: true })

const program = reuse ? Effect.map(seekPhase, (times) => reportSeeks(times)) : Effect.gen(function* () {
  // Each of the two is timed twice, alternately, and the faster kept: the first run also warms the JIT.
  let run = { events: 0, seconds: Number.POSITIVE_INFINITY }
  let recorded = { events: 0, seconds: Number.POSITIVE_INFINITY }
  for (let i = 0; i < 2; i++) {
    const r = yield* runUnrecorded(guest)
    if (r.seconds < run.seconds) run = r
    const w = yield* record(guest, path)
    if (w.seconds < recorded.seconds) recorded = w
  }
  const replay = yield* replayVerified(path)
  const times = yield* seekPhase
  console.log(`guest: ${iterations} iterations of out 0x80, al; loop — ${run.events} events, ${iterations * 2 + 2} instructions`)
  console.log(`run, not recorded:       ${run.seconds.toFixed(2)} s (${rate(run.events, run.seconds)})`)
  console.log(`run, recorded:           ${recorded.seconds.toFixed(2)} s (${rate(recorded.events, recorded.seconds)}): overhead ${((recorded.seconds / run.seconds - 1) * 100).toFixed(0)}%, checkpoints: ${defaultCheckpointEvery}`)
  console.log(`replay, verified:        ${replay.seconds.toFixed(2)} s (${rate(replay.events, replay.seconds)}): ${(replay.seconds / recorded.seconds).toFixed(2)}× the recording's time`)
  reportSeeks(times, recorded.seconds)
})

const cleanUp = () => {
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true })
}

Effect.runPromise(program).then(cleanUp, (e) => {
  cleanUp()
  console.error(e)
  process.exitCode = 1
})
