import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import type { MachineConfig } from "../events/MachineConfig.ts"
import type { VmEvent } from "../events/VmEvent.ts"
import { cpuExecOnce, logRunEnd } from "./cpuExec.ts"
import type { MachineSetupError } from "./errors.ts"
import type { HostInputPort } from "./hostInput.ts"
import { createMachine, type KernelFactory, type Machine } from "./machine.ts"

/** Events per stream chunk: big enough to amortise the stream, small enough to show progress. */
export const CHUNK_EVENTS = 4096

/**
 * Runs the vCPU loop until the log holds a chunk's worth of events or the run ends.
 * Plain synchronous code: the Effect stream only sees whole chunks.
 */
const runChunk = (machine: Machine): { readonly events: VmEvent[]; readonly done: boolean } => {
  while (machine.log.pending < CHUNK_EVENTS) {
    const outcome = cpuExecOnce(machine)
    if (outcome !== undefined) {
      logRunEnd(machine, outcome)
      return { events: machine.log.drain(), done: true }
    }
  }
  return { events: machine.log.drain(), done: false }
}

export interface RunOptions {
  readonly kernel?: KernelFactory
  /** Host input for serial0 (default: none). */
  readonly input?: HostInputPort
  /**
   * Runs before each chunk is computed: where a live input source lets the host event
   * loop hand it what arrived (the vCPU loop itself never waits for the host).
   */
  readonly betweenChunks?: Effect.Effect<void>
}

/**
 * A whole run as a stream of event chunks, from machine creation to the RunEnd event.
 * The chunking never changes the events: the same guest gives the same stream.
 */
export const runMachine = (
  config: MachineConfig,
  image: Uint8Array,
  options: RunOptions = {}
): Stream.Stream<VmEvent, MachineSetupError> =>
  Stream.unwrap(
    Effect.map(
      Effect.suspend(() => createMachine(config, image, options.kernel, options.input)),
      (machine) => {
        const chunk = () => {
          const { events, done } = runChunk(machine)
          return [Chunk.unsafeFromArray(events), done ? Option.none() : Option.some(undefined)] as const
        }
        const pause = options.betweenChunks
        return pause === undefined
          ? Stream.paginateChunk(undefined, chunk)
          : Stream.paginateChunkEffect(undefined, () => Effect.zipRight(pause, Effect.sync(chunk)))
      }
    )
  )
