import type { VmEvent } from "./VmEvent.ts"

/**
 * Room reserved for the next batch: as many events as the last drain took, at most this
 * (`new Array(n)` stays a fast array only for moderate n).
 */
const MAX_RESERVED = 1 << 14

/**
 * Where the hot loop puts events: a plain growable buffer, no Effect, no promise.
 * The kernel and userspace share one per VM, as KVM tracepoints and QEMU trace
 * events land in one trace buffer. The edge drains it into stream chunks.
 */
export class EventLog {
  /** Sequence number of the next event. */
  nextSeq = 0
  // Filled by index into reserved room: cheaper than growing an array by push, event by event.
  private buffer: VmEvent[] = []
  private count = 0

  /** Appends an event that the caller built with `seq: log.nextSeq`. */
  push(event: VmEvent): void {
    this.buffer[this.count++] = event
    this.nextSeq++
  }

  get pending(): number {
    return this.count
  }

  /** Takes everything buffered so far, in order. */
  drain(): VmEvent[] {
    const out = this.buffer
    out.length = this.count
    this.buffer = new Array<VmEvent>(Math.min(this.count, MAX_RESERVED))
    this.count = 0
    return out
  }
}
