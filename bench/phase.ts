/**
 * One phase of the suite's trace measurements in a process of its own, so that its peak
 * resident memory (maxRSS) is that phase's alone. Started by suite.ts with `fork`; sends
 * one message with the phase's result and the process's maxRSS, then exits.
 *
 *   phase.ts baseline                       nothing: the process with its modules loaded
 *   phase.ts record <trace> <iterations>    a run without recording, then one recorded to <trace>;
 *                                           once untimed, then five times, the fastest of each kept
 *   phase.ts replay <trace>                 `vmrr replay` of <trace>, five times, the fastest kept
 *   phase.ts seek <trace> <seeks>           seeks to events in <trace>
 */
import * as Effect from "effect/Effect"
import { ioLoopGuest } from "./ioLoop.ts"
import { record, replayVerified, runUnrecorded, seekIn, type Timed } from "./traceBench.ts"

const [phase, path, count] = process.argv.slice(2)

/** The fastest of timed runs: the first ones also warm the JIT, and time lost to other processes on the machine rarely hits them all. */
const fastest = (runs: ReadonlyArray<Timed>): Timed => runs.reduce((a, b) => (a.seconds <= b.seconds ? a : b))

/** Runs of each timed phase. */
const RUNS = 5

const work: Effect.Effect<unknown, unknown> =
  phase === "baseline" ? Effect.succeed({})
  : phase === "record" ? Effect.gen(function* () {
      // Alternately, so that the two see the same machine, after an untimed pair: the
      // first recording of a process also starts the packer thread, and a run before any
      // recording has the JIT's code to itself (one after shares it, as recordings do).
      const guest = ioLoopGuest(Number(count))
      yield* runUnrecorded(guest)
      yield* record(guest, path!)
      const runs: Array<Timed> = []
      const recordings: Array<Timed> = []
      for (let i = 0; i < RUNS; i++) {
        runs.push(yield* runUnrecorded(guest))
        recordings.push(yield* record(guest, path!))
      }
      return { run: fastest(runs), record: fastest(recordings) }
    })
  : phase === "replay" ? Effect.map(Effect.all(Array.from({ length: RUNS }, () => replayVerified(path!))), (runs) => ({ replay: fastest(runs) }))
  : phase === "seek" ? Effect.map(seekIn(path!, Number(count), { sessionReplay: false }), (seek) => ({ seek }))
  : Effect.die(new Error(`unknown phase ${phase}`))

Effect.runPromise(work).then(
  // maxRSS is in KiB; the channel to the parent is closed after the message so the process can end.
  (result) => process.send!({ ...(result as object), maxRssBytes: process.resourceUsage().maxRSS * 1024 }, () => process.disconnect()),
  (e) => {
    console.error(e)
    process.exitCode = 1
  }
)
