/**
 * One phase of the suite's trace measurements in a process of its own, so that its peak
 * resident memory (maxRSS) is that phase's alone. Started by suite.ts with `fork`; sends
 * one message with the phase's result and the process's maxRSS, then exits.
 *
 *   phase.ts baseline                       nothing: the process with its modules loaded
 *   phase.ts record <trace> <iterations>    a run without recording, then one recorded to <trace>;
 *                                           three times, the fastest of each kept
 *   phase.ts replay <trace>                 `vmrr replay` of <trace>, twice, the faster kept
 *   phase.ts seek <trace> <seeks>           seeks to events in <trace>
 */
import * as Effect from "effect/Effect"
import { ioLoopGuest } from "./ioLoop.ts"
import { record, replayVerified, runUnrecorded, seekIn, type Timed } from "./traceBench.ts"

const [phase, path, count] = process.argv.slice(2)

/** The faster of timed runs: the first also warmed the JIT, and time lost to other processes on the machine rarely hits both. */
const faster = (a: Timed, b: Timed): Timed => (a.seconds <= b.seconds ? a : b)

const work: Effect.Effect<unknown, unknown> =
  phase === "baseline" ? Effect.succeed({})
  : phase === "record" ? Effect.gen(function* () {
      // Alternately, so that the two see the same machine; three of each, as the first
      // recording of a process also starts the packer thread.
      const guest = ioLoopGuest(Number(count))
      let run: Timed | undefined
      let recorded: Timed | undefined
      for (let i = 0; i < 3; i++) {
        const r = yield* runUnrecorded(guest)
        run = run === undefined ? r : faster(run, r)
        const w = yield* record(guest, path!)
        recorded = recorded === undefined ? w : faster(recorded, w)
      }
      return { run, record: recorded }
    })
  : phase === "replay" ? Effect.zipWith(replayVerified(path!), replayVerified(path!), (a, b) => ({ replay: faster(a, b) }))
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
