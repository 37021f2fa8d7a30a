/**
 * Host inputs as the vCPU loop sees them: plain synchronous objects, no Effect and no
 * host access. Whoever feeds them (stdin at the CLI, a trace at replay) lives at the
 * edge; here is only the question "when is the next delivery, and what is it?".
 *
 * The loop asks `nextDelivery` before every KVM_RUN. A time at or before the current
 * virtual time means "deliver now"; a later one is armed with `kickAt`, so KVM_RUN
 * returns KVM_EXIT_INTR at exactly that time and the input is delivered there. Every
 * stop made for input is followed by a delivery, so the stops a recording made are
 * exactly those a replay of its HostInput events makes.
 *
 * The host's clocks come through the same port, each reading recorded: the RTC's wall
 * clock, the TSC in real-time mode, and the monotonic clock the timers follow in
 * real-time clock mode (HostTimerClock).
 */
import type { EventLog } from "../events/EventLog.ts"
import type { HostClock, HostInput, HostMonotonicClock, HostTsc } from "../events/VmEvent.ts"
import type { KvmTimerClock } from "../kernel/api.ts"

export type HostInputSource = HostInput["source"]

export interface HostInputDelivery {
  readonly source: HostInputSource
  readonly bytes: Uint8Array
}

export interface HostInputPort {
  /**
   * Virtual time of the next delivery, or undefined when none is due. `room` is how
   * many bytes serial0 can take now (QEMU's `can_receive`). `idle`: the vCPU is halted
   * in real-time clock mode, where its virtual time stands still, so live input is due now.
   */
  nextDelivery(now: number, room: number, idle?: boolean): number | undefined
  /** Called when `now` has reached the time `nextDelivery` named: what to deliver. */
  deliver(now: number, room: number): HostInputDelivery
  /** Deliveries wait for room in serial0 (live input); false or absent: `room` is not read, and 0 is passed. */
  readonly paced?: boolean
  /** The host's wall clock in seconds since the epoch, when the RTC powers on (logged as HostClock). */
  wallClock(): number
  /** The host's time-stamp counter, for RDTSC in real-time mode (logged as HostTsc); absent: no host counter. */
  hostTsc?(): number
  /**
   * The host's monotonic clock in ns since power-on, for the real-time clock mode (see
   * HostTimerClock), read at event position `seq` and virtual time `time`, where it is
   * delivered only if it reached `due` (`halted`: a halted vCPU waits for that). A
   * replay gives the reading recorded at exactly that position, or undefined if none was.
   */
  monotonicClock?(seq: number, time: number, due: number, halted: boolean): number | undefined
  /** A live port's host clock time a halted vCPU waits for: the run gives the host a turn (`betweenChunks` waits). */
  readonly idleUntil?: number | undefined
}


/**
 * The wall clock of a host that gives none (tests, a machine with nothing connected):
 * 2000-01-01 00:00:00 UTC, so that runs without a host are reproducible.
 */
export const FIXED_WALL_CLOCK = 946_684_800

/** A machine with nothing connected to its console, and a fixed wall clock. */
export const noHostInput: HostInputPort = {
  nextDelivery: () => undefined,
  deliver: () => {
    throw new Error("noHostInput has nothing to deliver")
  },
  wallClock: () => FIXED_WALL_CLOCK
}

/** Replay: the recorded deliveries, each at its recorded time, whatever the device state. */
export class ScheduledHostInput implements HostInputPort {
  private next = 0
  private readonly inputs: ReadonlyArray<Pick<HostInput, "time" | "source" | "bytes">>
  private readonly clocks: ReadonlyArray<number>
  private nextClock = 0

  private readonly tscs: ReadonlyArray<number>
  private nextTsc = 0

  private readonly readings: ReadonlyArray<Pick<HostMonotonicClock, "seq" | "time" | "ns">>
  private nextReading = 0

  constructor(
    recorded: ReadonlyArray<
      Pick<HostInput, "time" | "source" | "bytes"> | Pick<HostClock, "epochSeconds"> | Pick<HostTsc, "_tag" | "value"> | Pick<HostMonotonicClock, "seq" | "time" | "ns">
    >
  ) {
    this.inputs = recorded.filter((e): e is Pick<HostInput, "time" | "source" | "bytes"> => "source" in e)
    this.clocks = recorded.flatMap((e) => ("epochSeconds" in e ? [e.epochSeconds] : []))
    this.tscs = recorded.flatMap((e) => ("value" in e ? [e.value] : []))
    this.readings = recorded.filter((e): e is Pick<HostMonotonicClock, "seq" | "time" | "ns"> => "ns" in e)
  }

  /** The reading recorded at this position; anywhere else none was delivered, so none is now. */
  monotonicClock(seq: number, time: number): number | undefined {
    const r = this.readings[this.nextReading]
    if (r === undefined || r.seq !== seq || r.time !== time) return undefined
    this.nextReading++
    return r.ns
  }

  /** The recorded readings in order; past them, 0 (and replay shows the difference). */
  hostTsc(): number {
    return this.tscs[this.nextTsc++] ?? 0
  }

  /** The recorded reading; a run that reads more than were recorded gets the fixed clock (and replay shows the difference). */
  wallClock(): number {
    return this.clocks[this.nextClock++] ?? FIXED_WALL_CLOCK
  }

  nextDelivery(): number | undefined {
    return this.inputs[this.next]?.time
  }

  deliver(): HostInputDelivery {
    const input = this.inputs[this.next++]
    if (input === undefined) throw new Error("ScheduledHostInput: no delivery is due")
    return { source: input.source, bytes: input.bytes }
  }
}

/**
 * Delivery points of live input: multiples of this many instructions. A byte the host
 * hands over while the guest is at virtual time t is delivered at the first multiple
 * after t, so delivery times do not depend on where exactly the loop noticed the byte.
 * A vCPU halted in real-time clock mode, whose virtual time stands still, takes it at t.
 */
export const HOST_INPUT_QUANTUM = 1024

/**
 * Live input: the edge pushes bytes as the host produces them (between stream chunks);
 * they go to serial0 at the next quantum boundary, as many as the UART has room for
 * (the rest wait, as QEMU's chardev waits on `can_receive`). Deterministic given the
 * order of pushes and the virtual times at which they happened; both end up recorded.
 */
export class QueuedHostInput implements HostInputPort {
  /**
   * `wallClock`, `hostTsc` and `hostMonotonic` (ns since power-on) are the host's
   * clocks, given by the edge (nothing here reads the host); absent: the host has none.
   */
  constructor(
    readonly wallClock: () => number = () => FIXED_WALL_CLOCK,
    readonly hostTsc?: () => number,
    hostMonotonic?: () => number
  ) {
    if (hostMonotonic !== undefined) {
      this.monotonicClock = (_seq, _time, due, halted) => {
        const ns = hostMonotonic()
        this.idleUntil = halted && ns < due ? due : undefined
        return ns
      }
    }
  }

  readonly monotonicClock?: (seq: number, time: number, due: number, halted: boolean) => number
  idleUntil: number | undefined
  readonly paced = true

  private queue: number[] = []
  private head = 0
  /** The boundary chosen for the queued bytes; kept until they are delivered. */
  private target: number | undefined

  push(bytes: Uint8Array): void {
    for (const b of bytes) this.queue.push(b)
  }

  get queued(): number {
    return this.queue.length - this.head
  }

  nextDelivery(now: number, room: number, idle = false): number | undefined {
    if (this.target !== undefined) return idle ? now : this.target
    // A full receiver delays the choice until the guest has read: no stop is wasted on it.
    if (this.queued === 0 || room <= 0) return undefined
    this.target = idle ? now : (Math.floor(now / HOST_INPUT_QUANTUM) + 1) * HOST_INPUT_QUANTUM
    return this.target
  }

  deliver(_now: number, room: number): HostInputDelivery {
    // A stop always delivers something (at least one byte, an overrun if the guest
    // disabled its FIFO meanwhile): a replay stops only where a HostInput was recorded.
    const n = Math.min(this.queued, Math.max(1, room))
    const bytes = Uint8Array.from(this.queue.slice(this.head, this.head + n))
    this.head += n
    if (this.head === this.queue.length) {
      this.queue = []
      this.head = 0
    }
    this.target = undefined
    return { source: "serial0", bytes }
  }
}

/**
 * The real-time clock mode's timer clock (KvmTimerClock), one per VM, shared by KVM's
 * timers and QEMU's. It reads the host only through the host-input port, and records
 * each reading it delivers as HostMonotonicClock with the event position and virtual
 * time it was taken at, where a replay's port gives it back; a reading that would
 * change nothing (short of `due`) is neither delivered nor recorded.
 */
export class HostTimerClock implements KvmTimerClock {
  now = 0
  userspaceDeadline = Number.POSITIVE_INFINITY

  constructor(
    private readonly port: HostInputPort,
    private readonly log: EventLog,
    /** The vCPU whose virtual time stamps the readings, and that time. */
    private readonly position: () => { readonly vcpu: number; readonly time: number }
  ) {}

  read(due: number, halted: boolean): boolean {
    const { vcpu, time } = this.position()
    const seq = this.log.nextSeq
    const ns = this.port.monotonicClock?.(seq, time, due, halted)
    if (ns === undefined || ns < due) return false
    this.now = ns
    this.log.push({ _tag: "HostMonotonicClock", seq, vcpu, time, ns })
    return true
  }
}
