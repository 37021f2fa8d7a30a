import type { VmEvent } from "./VmEvent.ts"

/**
 * Where the hot loop puts events: a plain growable buffer, no Effect, no promise.
 * The kernel and userspace share one per VM, as KVM tracepoints and QEMU trace
 * events land in one trace buffer. The edge drains it into stream chunks.
 */
export class EventLog {
  /** Sequence number of the next event. */
  nextSeq = 0
  private buffer: VmEvent[] = []

  /** Appends an event that the caller built with `seq: log.nextSeq`. */
  push(event: VmEvent): void {
    this.buffer.push(event)
    this.nextSeq++
  }

  get pending(): number {
    return this.buffer.length
  }

  /** Takes everything buffered so far, in order. */
  drain(): VmEvent[] {
    const out = this.buffer
    this.buffer = []
    return out
  }
}
