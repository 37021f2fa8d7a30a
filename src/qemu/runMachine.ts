import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import type { MachineConfig } from "../events/MachineConfig.ts"
import type { Checkpoint } from "../events/trace/schema.ts"
import type { VmEvent } from "../events/VmEvent.ts"
import { cpuExecOnce, logRunEnd } from "./cpuExec.ts"
import type { MachineSetupError } from "./errors.ts"
import type { HostInputPort } from "./hostInput.ts"
import { createMachine, type KernelFactory, type Machine } from "./machine.ts"
import { isStateful, saveVmState } from "./vmstate.ts"

/** Events per stream chunk: big enough to amortise the stream, small enough to show progress. */
export const CHUNK_EVENTS = 4096

/** Instructions between checkpoints when recording: a seek replays at most about this many. */
export const defaultCheckpointEvery = 20_000

/**
 * Checkpoints while recording, at every multiple of `every` instructions: the vCPU is
 * stopped there by KVM_SET_GUEST_DEBUG (a stop the event stream does not see, as a
 * debugger's), saved between two KVM_RUNs as QEMU saves it, and run on. A halted vCPU
 * retires nothing, so over a halt the checkpoint is taken where it wakes.
 */
class Checkpointer {
  private next: number

  constructor(private readonly every: number, machine: Machine) {
    this.next = every
    this.arm(machine)
  }

  due(machine: Machine): boolean {
    return machine.vcpu.instructionsRetired >= this.next
  }

  take(machine: Machine): Checkpoint | undefined {
    const time = machine.vcpu.instructionsRetired
    this.next = (Math.floor(time / this.every) + 1) * this.every
    this.arm(machine)
    if (!isStateful(machine)) return undefined
    return { kind: "checkpoint", seq: machine.log.nextSeq, time, sections: saveVmState(machine) }
  }

  /** A kernel without the state ioctls takes no checkpoints, so it needs no stops. */
  private arm(machine: Machine): void {
    if (isStateful(machine)) machine.vcpu.setGuestDebug({ stopAtInstructionsRetired: this.next })
  }
}

/** A stream element of a recording: a checkpoint taken before `events`, if one was due. */
export interface RecordedChunk {
  readonly checkpoint: Checkpoint | undefined
  readonly events: VmEvent[]
}

/**
 * Runs the vCPU loop until the log holds a chunk's worth of events, a checkpoint is
 * due, or the run ends. Plain synchronous code: the Effect stream only sees whole chunks.
 */
const runChunk = (machine: Machine, checkpointer: Checkpointer | undefined): RecordedChunk & { readonly done: boolean } => {
  // The log is empty here: a checkpoint sits between the chunk before and this one.
  const checkpoint = checkpointer?.due(machine) === true ? checkpointer.take(machine) : undefined
  while (machine.log.pending < CHUNK_EVENTS) {
    const outcome = cpuExecOnce(machine)
    if (outcome !== undefined) {
      logRunEnd(machine, outcome)
      return { checkpoint, events: machine.log.drain(), done: true }
    }
    if (checkpointer?.due(machine) === true) break
    // A halted vCPU waits for the host clock: the host gets its turn to wait (betweenChunks).
    if (machine.input.idleUntil !== undefined) break
  }
  return { checkpoint, events: machine.log.drain(), done: false }
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
  /** Take a checkpoint every this many instructions (recordMachine only). */
  readonly checkpointEvery?: number
}

/**
 * A whole run as a stream of event chunks, from machine creation to the RunEnd event:
 * the recording's stream without checkpoints. The chunking never changes the events:
 * the same guest gives the same stream.
 */
export const runMachine = (
  config: MachineConfig,
  image: Uint8Array,
  options: RunOptions = {}
): Stream.Stream<VmEvent, MachineSetupError> =>
  Stream.mapConcatChunk(recordMachine(config, image, { ...options, checkpointEvery: undefined }), ({ events }) => Chunk.unsafeFromArray(events))

/**
 * A run for recording: one element per chunk of events, each with the checkpoint taken
 * just before it when one was due (`options.checkpointEvery`). The events are exactly
 * those `runMachine` gives: taking a checkpoint reads state and changes nothing.
 */
export const recordMachine = (
  config: MachineConfig,
  image: Uint8Array,
  options: RunOptions = {}
): Stream.Stream<RecordedChunk, MachineSetupError> =>
  Stream.unwrap(
    Effect.map(
      Effect.suspend(() => createMachine(config, image, options.kernel, options.input)),
      (machine) => {
        const checkpointer = options.checkpointEvery === undefined ? undefined : new Checkpointer(options.checkpointEvery, machine)
        const chunk = () => {
          const { checkpoint, events, done } = runChunk(machine, checkpointer)
          return [{ checkpoint, events }, done ? Option.none() : Option.some(undefined)] as const
        }
        const pause = options.betweenChunks
        return pause === undefined
          ? Stream.paginate(undefined, chunk)
          : Stream.paginateEffect(undefined, () => Effect.zipRight(pause, Effect.sync(chunk)))
      }
    )
  )
