/**
 * Going backwards in a replay session, as rr does: nothing runs in reverse; the session
 * goes back to a checkpoint before the target and replays forward to it (every event
 * still checked). Each function moves `session` and returns where it went, or
 * undefined (and leaves the session where it was) when there is nothing earlier.
 */
import { ExitReason, exitReasonName } from "../events/exitReasons.ts"
import type { VmEvent } from "../events/VmEvent.ts"
import { lastAtOrBefore } from "../events/trace/traceIndex.ts"
import { type Position, type ReplaySession, SessionError } from "./session.ts"

/** To the instruction before the current one: time t → t - 1. */
export const stepBack = (session: ReplaySession): Position | undefined => {
  const { time } = session.position
  return time === 0 ? undefined : session.seekTime(time - 1)
}

/**
 * The latest recorded event before the current position that `matches`, and the
 * session at it (see `ReplaySession.seekEvent`). Reads the recording backwards, one chunk at a time.
 */
export const previousEvent = (
  session: ReplaySession,
  matches: (event: VmEvent) => boolean = () => true
): VmEvent | undefined => {
  for (let seq = session.position.seq - 1; seq >= 0; seq--) {
    const event = session.recorded(seq)!
    if (matches(event)) {
      session.seekEvent(seq)
      return event
    }
  }
  return undefined
}

/**
 * An event kind as a person names it: a `_tag` (`Pio`, `PageFault` …), a VM exit reason
 * (`EPT_VIOLATION`, `IO_INSTRUCTION` …) or a KVM tracepoint name (`kvm_exit`, `kvm_pio` …).
 */
export const eventKindMatcher = (kind: string): ((event: VmEvent) => boolean) | undefined => {
  const tracepoints: Record<string, VmEvent["_tag"]> = {
    kvm_entry: "VmEntry", kvm_exit: "VmExit", kvm_pio: "Pio", kvm_mmio: "Mmio", kvm_page_fault: "PageFault", kvm_userspace_exit: "UserspaceExit"
  }
  const tag = tracepoints[kind] ?? kind
  if (kind in ExitReason) return (e) => e._tag === "VmExit" && exitReasonName(e.reason) === kind
  if (/^[A-Z][a-z][A-Za-z]*$/.test(tag)) return (e) => e._tag === tag
  return undefined
}

/** The previous event of a kind (see eventKindMatcher); SessionError for a kind that names nothing. */
export const previousEventOfKind = (session: ReplaySession, kind: string): VmEvent | undefined => {
  const matches = eventKindMatcher(kind)
  if (matches === undefined) throw new SessionError({ reason: `"${kind}" is not an event kind (e.g. VmExit, Pio, EPT_VIOLATION, kvm_pio)` })
  return previousEvent(session, matches)
}

/** How finely the first pass of previousWrite looks at the dirty log. */
const SWEEP_INSTRUCTIONS = 1024

/**
 * The last instruction before the current position that changed guest-physical bytes
 * [address, address + length), as gdb's `watch` reports a change, and the session at
 * it: just before it runs, so a step forward makes the change. Returns its time.
 *
 * A first pass from the nearest checkpoint replays forward in steps, reading the dirty
 * log (KVM_GET_DIRTY_LOG) for the page(s) of the range: the steps in which they were
 * written are the candidates. A second pass steps through the last candidate one
 * instruction at a time comparing the bytes; if nothing there changed them (the write
 * was elsewhere in the page, or stored the same value), the candidate before it, then
 * the checkpoint before, and so on.
 */
export const previousWrite = (session: ReplaySession, address: number, length: number): number | undefined => {
  const start = session.position
  if (session.readPhysical(address, length) === undefined || length <= 0) {
    throw new SessionError({ reason: `[0x${address.toString(16)}, +${length}) is not in guest RAM` })
  }
  const firstFrame = Math.floor(address / 4096)
  const lastFrame = Math.floor((address + length - 1) / 4096)
  const written = (bitmap: Uint8Array): boolean => {
    for (let f = firstFrame; f <= lastFrame; f++) if ((bitmap[f >>> 3] & (1 << (f & 7))) !== 0) return true
    return false
  }
  const times = session.trace.index.checkpointTimes
  let end = start.time
  while (end > 0) {
    const checkpoint = lastAtOrBefore(times, end - 1)
    const from = checkpoint < 0 ? 0 : times[checkpoint]!
    // First pass: which steps of [from, end) wrote to the page(s).
    session.seekTime(from)
    session.current.vm.getDirtyLog(0)
    const candidates: Array<[number, number]> = []
    let stepStart = session.position.time
    session.sweepForward(end, SWEEP_INSTRUCTIONS, (s) => {
      const now = s.position.time
      if (written(s.current.vm.getDirtyLog(0))) candidates.push([stepStart, now])
      stepStart = now
    })
    // Second pass, latest candidate first: instruction by instruction.
    for (let c = candidates.length - 1; c >= 0; c--) {
      const [lo, hi] = candidates[c]!
      session.seekTime(lo)
      let before = session.readPhysical(address, length)!
      let last: number | undefined
      while (session.position.time < hi && session.ended === undefined) {
        const t = session.position.time
        session.stepInstruction()
        const after = session.readPhysical(address, length)!
        if (!sameBytes(before, after)) last = t
        before = after
      }
      if (last !== undefined) {
        session.seekTime(last)
        return last
      }
    }
    end = from
  }
  session.seekTime(start.time)
  return undefined
}

const sameBytes = (a: Uint8Array, b: Uint8Array): boolean => {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}
