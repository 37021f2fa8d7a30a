import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import type { MachineConfig } from "../events/MachineConfig.ts"
import type { Checkpoint } from "../events/trace/schema.ts"
import { type RawChunk, rawEvents, releaseRawChunk } from "../events/rawEvents.ts"
import type { VmEvent } from "../events/VmEvent.ts"
import { cpuExecOnce, logRunEnd } from "./cpuExec.ts"
import type { MachineSetupError } from "./errors.ts"
import type { HostInputPort } from "./hostInput.ts"
import { createMachine, type KernelFactory, type Machine } from "./machine.ts"
import { isStateful, saveVmState } from "./vmstate.ts"

/** Events per stream chunk: big enough to amortise the stream, small enough to show progress. */
export const CHUNK_EVENTS = 32768

/**
 * How often a recording takes checkpoints: every N instructions exactly, or "auto": about
 * every `AUTO_REPLAY_NS` of replay work, so that a seek replays about that much at most
 * whatever the guest does, and checkpoints cost the same small share of a recording on a
 * guest that computes (hundreds of millions of instructions a second) as on one that
 * exits every other instruction (a few million).
 */
export type CheckpointEvery = number | "auto"

export const defaultCheckpointEvery: CheckpointEvery = "auto"

/** Replay work between two automatic checkpoints, and its estimate: per instruction and per event (this model, on a 2020s core). */
const AUTO_REPLAY_NS = 16_000_000
const REPLAY_NS_PER_INSTRUCTION = 5
const REPLAY_NS_PER_EVENT = 80

/**
 * Checkpoints while recording. At a fixed interval, at every multiple of `every`
 * instructions: the vCPU is stopped there by KVM_SET_GUEST_DEBUG (a stop the event stream
 * does not see, as a debugger's), saved between two KVM_RUNs as QEMU saves it, and run
 * on. Automatically, at the first exit where the replay work since the last checkpoint
 * reaches its budget, or by the same stop inside a stretch of computing that long. A
 * halted vCPU retires nothing, so over a halt the checkpoint is taken where it wakes.
 */
class Checkpointer {
  private next: number
  private lastTime = 0
  private lastSeq = 0

  constructor(private readonly every: CheckpointEvery, machine: Machine) {
    this.next = every === "auto" ? AUTO_REPLAY_NS / REPLAY_NS_PER_INSTRUCTION : every
    this.arm(machine)
  }

  due(machine: Machine): boolean {
    const time = machine.vcpu.instructionsRetired
    if (time >= this.next) return true
    if (this.every !== "auto") return false
    const work = (time - this.lastTime) * REPLAY_NS_PER_INSTRUCTION + (machine.log.nextSeq - this.lastSeq) * REPLAY_NS_PER_EVENT
    return work >= AUTO_REPLAY_NS
  }

  take(machine: Machine): Checkpoint | undefined {
    const time = machine.vcpu.instructionsRetired
    this.next = this.every === "auto" ? time + AUTO_REPLAY_NS / REPLAY_NS_PER_INSTRUCTION : (Math.floor(time / this.every) + 1) * this.every
    this.lastTime = time
    this.lastSeq = machine.log.nextSeq
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
  /** As the event log holds them: `rawEvents` makes objects of them for whoever reads them. */
  readonly events: RawChunk
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
  /** Take checkpoints (recordMachine only): every this many instructions, or "auto". */
  readonly checkpointEvery?: CheckpointEvery
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
  Stream.mapConcatChunk(recordMachine(config, image, { ...options, checkpointEvery: undefined }), ({ events }) => {
    const objects = rawEvents(events)
    releaseRawChunk(events)
    return Chunk.unsafeFromArray(objects)
  })

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
