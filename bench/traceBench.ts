/**
 * The record / replay / seek measurements, on the I/O loop guest (ioLoop.ts). Used by
 * `npm run bench:replay` (recordReplay.ts) and by the suite's per-phase child processes
 * (phase.ts).
 */
import { rmSync } from "node:fs"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import { openSeekableTrace } from "../src/events/trace/traceIndex.ts"
import { openTraceWriter } from "../src/events/trace/writer.ts"
import { releaseRawChunk } from "../src/events/rawEvents.ts"
import { defaultCheckpointEvery, recordMachine } from "../src/qemu/runMachine.ts"
import { replayTrace } from "../src/replay/replay.ts"
import { ReplaySession } from "../src/replay/session.ts"
import type { Guest } from "./ioLoop.ts"
import { cpuSecondsSince, positions, secondsSince } from "./stats.ts"

export interface Timed {
  readonly events: number
  /** Wall-clock time. */
  readonly seconds: number
  /** The process's CPU time: what other processes on the same cores inflate far less. */
  readonly cpuSeconds: number
}

/** Times `e`, which gives the number of events it went through. */
const timed = <E>(e: Effect.Effect<number, E>): Effect.Effect<Timed, E> =>
  Effect.suspend(() => {
    const start = performance.now()
    const cpu = process.cpuUsage()
    return Effect.map(e, (events) => ({ events, seconds: secondsSince(start), cpuSeconds: cpuSecondsSince(cpu) }))
  })

/**
 * The whole run as a stream of event chunks as the event log holds them, nothing kept:
 * what recording adds to (`vmrr run` also makes objects of the events, to print them).
 */
export const runUnrecorded = (guest: Guest): Effect.Effect<Timed, unknown> =>
  timed(Effect.suspend(() => {
    let events = 0
    const run = recordMachine(guest.config, guest.image)
    return Effect.map(Stream.runForEach(run, (c) => Effect.sync(() => {
      events += c.events.count
      releaseRawChunk(c.events)
    })), () => events)
  }))

/**
 * `vmrr run --record path`: the run with checkpoints, every chunk written to the trace
 * file. To a new file, as a recording usually is: a trace already at `path` (the run
 * before's) is removed first, untimed; replacing it would add the file system's cost of
 * freeing its blocks (ext4 here: about 12 ms for 30 MB, in `open`).
 */
export const record = (guest: Guest, path: string): Effect.Effect<Timed, unknown> =>
  Effect.zipRight(Effect.sync(() => rmSync(path, { force: true })), timed(Effect.scoped(
    Effect.gen(function* () {
      const writer = yield* openTraceWriter(path, guest)
      yield* Stream.runForEach(recordMachine(guest.config, guest.image, { checkpointEvery: defaultCheckpointEvery }), ({ checkpoint, events }) =>
        Effect.zipRight(checkpoint === undefined ? Effect.void : writer.writeCheckpoint(checkpoint), writer.writeRawChunk(events)))
      const summary = yield* writer.close
      return summary.eventCount
    })
  )))

/** `vmrr replay path`: the run re-executed in a replay session, every recorded chunk checked against the events it produced. */
export const replayVerified = (path: string): Effect.Effect<Timed, unknown> =>
  timed(Effect.map(replayTrace(path), (report) => report.verified))

export interface SeekTimes {
  readonly eventCount: number
  readonly checkpoints: number
  /** Opening the trace and reading its index. */
  readonly openSeconds: number
  /** A replay of the whole trace in a session (the seek path), when asked for. */
  readonly sessionReplaySeconds: number | undefined
  /** Each seek's wall-clock and CPU time. */
  readonly wall: number[]
  readonly cpu: number[]
}

/**
 * Opens the trace in a replay session and seeks to `seeks` events spread over it
 * (deterministic positions). Without a whole replay first, a few untimed seeks warm the JIT.
 */
export const seekIn = (path: string, seeks: number, options: { readonly sessionReplay: boolean }): Effect.Effect<SeekTimes, unknown> =>
  Effect.scoped(
    Effect.gen(function* () {
      const start = performance.now()
      const trace = yield* openSeekableTrace(path)
      const openSeconds = secondsSince(start)
      const last = trace.index.eventCount - 1
      const session = new ReplaySession(trace)
      let sessionReplaySeconds: number | undefined
      if (options.sessionReplay) {
        const t0 = performance.now()
        session.replayToEvent(last, true)
        sessionReplaySeconds = secondsSince(t0)
      } else {
        for (const seq of positions(3, last).map((p) => last - p)) session.seekEvent(seq)
      }
      const wall: number[] = []
      const cpu: number[] = []
      for (const seq of positions(seeks, last)) {
        const t1 = performance.now()
        const c1 = process.cpuUsage()
        session.seekEvent(seq)
        wall.push(secondsSince(t1))
        cpu.push(cpuSecondsSince(c1))
      }
      return { eventCount: trace.index.eventCount, checkpoints: trace.index.checkpointSeqs.length, openSeconds, sessionReplaySeconds, wall, cpu }
    })
  )
