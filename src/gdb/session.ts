/**
 * `vmrr run --gdb` and `vmrr replay --gdb`: a target, one gdb session over it, and what
 * happens after. When gdb detaches (or just goes away) the run goes on to its end
 * without it, as a QEMU guest does; a replay goes on verifying. When gdb kills the
 * target, vmrr stops there.
 */
import * as Chunk from "effect/Chunk"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import type { MachineConfig } from "../events/MachineConfig.ts"
import type { VmEvent } from "../events/VmEvent.ts"
import type { MachineSetupError } from "../qemu/errors.ts"
import { CHUNK_EVENTS, type RecordedChunk } from "../qemu/runMachine.ts"
import { rawChunkOf } from "../events/rawEvents.ts"
import { HostInput } from "../replay/hostInput.ts"
import { openReplaySession, type SessionFailure } from "../replay/session.ts"
import { LiveTarget } from "./liveTarget.ts"
import { ReplayTarget } from "./replayTarget.ts"
import { type GdbAddress, GdbServerError, serveGdb } from "./server.ts"
import type { Target } from "./target.ts"

/** The session ended in a way the command reports as a failure: gdb killed the target, or the replay diverged. */
export class GdbSessionFailed extends Data.TaggedError("GdbSessionFailed")<{ readonly message: string }> {}

/** What a live run under gdb can fail with. */
export type GdbRunError = MachineSetupError | GdbServerError | GdbSessionFailed

/** Instructions run between two turns of the host's event loop once gdb is gone. */
const SLICE = 100_000

/** A turn of the event loop (stdin, the stream's consumer) between slices. */
const hostTurn: Effect.Effect<void> = Effect.async<void>((resume) => {
  const handle = setImmediate(() => resume(Effect.void))
  return Effect.sync(() => clearImmediate(handle))
})

const announce = (where: GdbAddress): void => {
  process.stderr.write(`vmrr: waiting for gdb on ${where.host}:${where.port}\n`)
}

/** The session, then the rest of the run without gdb. */
const debugThenFinish = (target: Target, address: GdbAddress, what: string): Effect.Effect<void, GdbServerError | GdbSessionFailed> =>
  Effect.flatMap(serveGdb(target, address, announce), (end) => {
    if (end === "killed") return Effect.fail(new GdbSessionFailed({ message: `gdb killed the ${what} at instruction ${target.position}` }))
    const runOn: Effect.Effect<void> = Effect.suspend(() => {
      if (target.end !== undefined) return Effect.void
      target.runTo(target.position + SLICE)
      return Effect.zipRight(hostTurn, runOn)
    })
    return runOn
  })

/** A live run served to gdb: the run's events as a stream, like `runWithHostInput`'s, in chunks of up to CHUNK_EVENTS or 50 ms. */
export const liveRunUnderGdb = (
  config: MachineConfig,
  image: Uint8Array,
  address: GdbAddress,
  options: { readonly recorded: boolean } = { recorded: false }
): Stream.Stream<VmEvent, GdbRunError, HostInput> =>
  Stream.asyncScoped<VmEvent, GdbRunError, HostInput>(
    (emit) =>
      Effect.gen(function* () {
        const input = yield* HostInput
        const target = yield* LiveTarget.create(config, image, input.port, (events) => void emit.chunk(Chunk.fromIterable(events)), options)
        yield* Effect.forkScoped(
          Effect.matchEffect(debugThenFinish(target, address, "run"), {
            onFailure: (e) => Effect.promise(() => emit.fail(e)),
            onSuccess: () => Effect.promise(() => emit.end())
          })
        )
      }),
    "unbounded"
  ).pipe(Stream.groupedWithin(CHUNK_EVENTS, "50 millis"), Stream.flattenChunks)

/** The same run as chunks for a trace writer; gdb may not change the guest (the change would not replay). */
export const liveRecordingUnderGdb = (
  config: MachineConfig,
  image: Uint8Array,
  address: GdbAddress
): Stream.Stream<RecordedChunk, GdbRunError, HostInput> =>
  Stream.mapChunks(liveRunUnderGdb(config, image, address, { recorded: true }), (events) => Chunk.of({ checkpoint: undefined, events: rawChunkOf(Chunk.toArray(events)) }))

/** A recording replayed under gdb; succeeds with the number of events verified once the replay has reached its end. */
export const replayUnderGdb = (path: string, address: GdbAddress): Effect.Effect<number, SessionFailure | GdbServerError | GdbSessionFailed> =>
  Effect.scoped(
    Effect.gen(function* () {
      const replay = yield* openReplaySession(path)
      const target = new ReplayTarget(replay)
      yield* debugThenFinish(target, address, "replay")
      const end = target.end
      if (end?._tag === "ReplayFailed") return yield* Effect.fail(new GdbSessionFailed({ message: end.message }))
      return replay.eventCount
    })
  )
