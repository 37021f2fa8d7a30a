/**
 * The one way host input enters a run: the `HostInput` service. A run takes its input
 * port from it; the live layer connects stdin and the host's clocks (the RTC's wall
 * clock, the TSC and the timers' monotonic clock in real-time modes), the replay layer
 * plays back recorded HostInput, HostClock, HostTsc and HostMonotonicClock events and
 * never touches the host, the empty layer connects nothing and gives a fixed wall clock.
 */
import * as fs from "node:fs"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Stream from "effect/Stream"
import type { MachineConfig } from "../events/MachineConfig.ts"
import { isHostInput, type RecordedHostInput, type VmEvent } from "../events/VmEvent.ts"
import { type HostInputPort, noHostInput, QueuedHostInput, ScheduledHostInput } from "../qemu/hostInput.ts"
import type { MachineSetupError } from "../qemu/errors.ts"
import type { KernelFactory } from "../qemu/machine.ts"
import { type CheckpointEvery, type RecordedChunk, recordMachine, runMachine } from "../qemu/runMachine.ts"

export interface HostInputService {
  /** What the vCPU loop asks, synchronously, before each KVM_RUN. One run per layer build. */
  readonly port: HostInputPort
  /** Runs between event chunks: a live source lets the host hand it what has arrived. */
  readonly betweenChunks: Effect.Effect<void>
}

export class HostInput extends Context.Tag("vmrr/HostInput")<HostInput, HostInputService>() {}

/** The host's wall clock, whole seconds since the epoch: read here, at the edge, and recorded as HostClock. */
const hostWallClock = (): number => Math.floor(Date.now() / 1000)

/**
 * The host's counter for RDTSC in real-time mode: its monotonic clock in nanoseconds
 * (Node has no TSC), read here, at the edge, and recorded as HostTsc.
 */
const hostCounter = (): number => Number(process.hrtime.bigint() % 2n ** 52n)

/**
 * The host's monotonic clock for the timers in real-time mode, in ns from `origin` (the
 * machine's power-on, near enough: the layer is built with the run), read here, at the
 * edge, and recorded as HostMonotonicClock.
 */
const hostMonotonic = (origin: bigint) => (): number => Number(process.hrtime.bigint() - origin)

/**
 * Between chunks, when a halted vCPU waits for the host clock (`idleUntil`): the host
 * waits until then, or until `wake` is called (input arrived), without blocking.
 */
const waitWhileIdle = (port: QueuedHostInput, origin: bigint, onWake: (wake: (() => void) | undefined) => void): Effect.Effect<void> =>
  Effect.async<void>((resume) => {
    const until = port.idleUntil
    if (until === undefined) return resume(Effect.void)
    const wake = () => resume(Effect.void)
    const handle = setTimeout(wake, Math.max(0, Math.ceil((until - Number(process.hrtime.bigint() - origin)) / 1e6)))
    onWake(wake)
    return Effect.sync(() => {
      clearTimeout(handle)
      onWake(undefined)
    })
  })

/** Nothing is connected: the guest reads an idle line (and the RTC a fixed time). */
export const HostInputNone: Layer.Layer<HostInput> = Layer.succeed(HostInput, { port: noHostInput, betweenChunks: Effect.void })

/** Replay: each recorded input at its recorded virtual time, and the recorded wall clock. */
export const hostInputReplay = (inputs: ReadonlyArray<RecordedHostInput>): Layer.Layer<HostInput> =>
  Layer.sync(HostInput, () => ({ port: new ScheduledHostInput(inputs), betweenChunks: Effect.void }))

/** The part of a Node readable stream (process.stdin) the live layer uses. */
export interface InputStream {
  readonly isTTY?: boolean
  setRawMode?(mode: boolean): unknown
  on(event: "data", f: (data: Buffer | string) => void): unknown
  on(event: "end", f: () => void): unknown
  off(event: "data" | "end", f: (...args: any[]) => void): unknown
  pause(): unknown
  resume(): unknown
}

/** ETX, what Ctrl-C sends once the terminal is raw. */
const CTRL_C = 0x03

/** setImmediate runs after the event loop's I/O phase: stdin's data events happen before it. */
const hostTurn: Effect.Effect<void> = Effect.async<void>((resume) => {
  const handle = setImmediate(() => resume(Effect.void))
  return Effect.sync(() => clearImmediate(handle))
})

/**
 * Live input from `stream`: each chunk the host delivers is queued and goes to serial0
 * at the next `HOST_INPUT_QUANTUM` boundary of virtual time (see QueuedHostInput). A
 * terminal is put in raw mode for the run so keys arrive as typed; Ctrl-C is not
 * passed to the guest but raises SIGINT, which stops the run as it would without raw
 * mode. Everything is undone when the layer's scope closes.
 */
export const hostInputLive = (stream: InputStream, onInterrupt: () => void): Layer.Layer<HostInput> =>
  Layer.scoped(
    HostInput,
    Effect.gen(function* () {
      const origin = process.hrtime.bigint()
      const port = new QueuedHostInput(hostWallClock, hostCounter, hostMonotonic(origin))
      let open = true
      let wake: (() => void) | undefined
      const onData = (data: Buffer | string) => {
        let bytes = typeof data === "string" ? Buffer.from(data) : data
        if (stream.isTTY === true) {
          const stop = bytes.indexOf(CTRL_C)
          if (stop >= 0) {
            bytes = bytes.subarray(0, stop)
            onInterrupt()
          }
        }
        if (bytes.length > 0) port.push(Uint8Array.from(bytes))
        wake?.()
      }
      const onEnd = () => {
        open = false
      }
      yield* Effect.acquireRelease(
        Effect.sync(() => {
          if (stream.isTTY === true) stream.setRawMode?.(true)
          stream.on("data", onData)
          stream.on("end", onEnd)
          stream.resume()
        }),
        () =>
          Effect.sync(() => {
            stream.off("data", onData)
            stream.off("end", onEnd)
            stream.pause()
            if (stream.isTTY === true) stream.setRawMode?.(false)
          })
      )
      // Once the input has ended and everything is queued, the host has nothing more to give.
      const idle = waitWhileIdle(port, origin, (w) => (wake = w))
      return { port, betweenChunks: Effect.suspend(() => (port.idleUntil !== undefined ? idle : open ? hostTurn : Effect.void)) }
    })
  )

/** Whether stdin is something a person or a program feeds (a terminal or a pipe), not a file or nothing. */
export const stdinIsInteractive = (): boolean => {
  if (process.stdin.isTTY === true) return true
  try {
    const stat = fs.fstatSync(0)
    return stat.isFIFO() || stat.isSocket()
  } catch {
    return false
  }
}

/** `vmrr run`'s input: stdin when it is a terminal or a pipe, otherwise nothing. */
export const HostInputStdin: Layer.Layer<HostInput> = Layer.unwrapEffect(
  Effect.sync(() =>
    stdinIsInteractive()
      ? hostInputLive(process.stdin, () => process.kill(process.pid, "SIGINT"))
      : Layer.sync(HostInput, () => {
          const origin = process.hrtime.bigint()
          const port = new QueuedHostInput(hostWallClock, hostCounter, hostMonotonic(origin))
          return { port, betweenChunks: waitWhileIdle(port, origin, () => {}) }
        })
  )
)

/** A run whose host input comes from the HostInput service, on the model or another kernel. */
export const runWithHostInput = (
  config: MachineConfig,
  image: Uint8Array,
  kernel?: KernelFactory
): Stream.Stream<VmEvent, MachineSetupError, HostInput> =>
  Stream.unwrap(Effect.map(HostInput, (input) => runMachine(config, image, { kernel, input: input.port, betweenChunks: input.betweenChunks })))

/** The same run for recording: chunks of events with checkpoints (`checkpointEvery`: see runMachine.ts). */
export const recordWithHostInput = (
  config: MachineConfig,
  image: Uint8Array,
  checkpointEvery: CheckpointEvery | undefined,
  kernel?: KernelFactory
): Stream.Stream<RecordedChunk, MachineSetupError, HostInput> =>
  Stream.unwrap(Effect.map(HostInput, (input) =>
    recordMachine(config, image, { kernel, input: input.port, betweenChunks: input.betweenChunks, checkpointEvery })))

/** The HostInput events of a recording, in order: what a replay feeds back. */
export const recordedInputs = (events: Iterable<VmEvent>): RecordedHostInput[] => {
  const out: RecordedHostInput[] = []
  for (const e of events) if (isHostInput(e)) out.push(e)
  return out
}
