/**
 * Execution as gdb asks for it: step, continue, and on replays reverse step and reverse
 * continue, stopping at breakpoints (the linear address of the next instruction) and
 * watchpoints. Each is a job the server advances a slice at a time, so that gdb's
 * interrupt (and the host) get a turn during a long continue.
 *
 * A write watchpoint (Z2) triggers when an instruction changes the watched bytes (gdb
 * itself ignores writes of the same value to a `watch`ed location). Read and access
 * watchpoints (Z3, Z4) trigger when an instruction reads (or reads or writes) them, as
 * the CPU reports through KVM_SET_GUEST_DEBUG's watchpoints. Going forward the stop is
 * after that instruction; going backwards it is before it, as gdb's own record target
 * and rr stop, so gdb shows the value the write replaced.
 */
import type { History, Target, TargetEnd } from "./target.ts"

export type StopReason =
  | { readonly _tag: "Stepped" }
  | { readonly _tag: "Breakpoint"; readonly kind: "sw" | "hw" }
  | { readonly _tag: "Watchpoint"; readonly address: number; readonly kind: WatchKind }
  | { readonly _tag: "Interrupted" }
  /** Going back reached instruction 0. */
  | { readonly _tag: "ReplayBegin" }
  | { readonly _tag: "Ended"; readonly end: TargetEnd }
  /** The model threw: a bug, reported to gdb rather than taking vmrr down. */
  | { readonly _tag: "Failed"; readonly message: string }

/** gdb's watch, rwatch and awatch. */
export type WatchKind = "write" | "read" | "access"

export interface Watchpoint {
  readonly address: number
  readonly length: number
  readonly kind: WatchKind
}

/** gdb's breakpoints (Z0 software, Z1 hardware: the same here) and watchpoints (Z2 write, Z3 read, Z4 access). */
export class StopPoints {
  readonly breakpoints = new Map<number, "sw" | "hw">()
  private watched: ReadonlyArray<Watchpoint> = []

  get watchpoints(): ReadonlyArray<Watchpoint> {
    return this.watched
  }

  get none(): boolean {
    return this.breakpoints.size === 0 && this.watchpoints.length === 0
  }

  addWatchpoint(w: Watchpoint): void {
    this.watched = [...this.watched, w]
  }

  removeWatchpoint(w: Watchpoint): void {
    const i = this.watched.findIndex((x) => x.address === w.address && x.length === w.length && x.kind === w.kind)
    if (i >= 0) this.watched = this.watched.filter((_, j) => j !== i)
  }

  /** Read/access watchpoints are armed in the CPU (so one removal disarms it). */
  private armed = false

  private get written(): ReadonlyArray<Watchpoint> {
    return this.watched.filter((w) => w.kind === "write")
  }

  private get accessed(): ReadonlyArray<Watchpoint> {
    return this.watched.filter((w) => w.kind !== "write")
  }

  /** Before one instruction: the watched bytes now, and the read/access watchpoints armed in the CPU. */
  snapshot(target: Target): ReadonlyArray<Uint8Array | undefined> {
    const accessed = this.accessed
    if (accessed.length > 0 || this.armed) {
      target.watchAccesses(accessed.map((w) => ({ linear: w.address, length: w.length, access: w.kind === "read" ? "read" : "read-write" })))
      this.armed = accessed.length > 0
    }
    return this.written.map((w) => target.readMemory(w.address, w.length))
  }

  /** After it: the first read/access watchpoint it touched, or write watchpoint whose bytes differ from `before`. */
  changed(target: Target, before: ReadonlyArray<Uint8Array | undefined>): Watchpoint | undefined {
    const accessed = this.accessed
    if (accessed.length > 0) {
      const hits = target.accessHits()
      const hit = accessed.find((_, i) => (hits & (1 << i)) !== 0)
      if (hit !== undefined) return hit
    }
    return this.written.find((w, i) => !sameBytes(before[i], target.readMemory(w.address, w.length)))
  }

  breakpointAt(target: Target): "sw" | "hw" | undefined {
    return this.breakpoints.size === 0 ? undefined : this.breakpoints.get(target.pc())
  }
}

const sameBytes = (a: Uint8Array | undefined, b: Uint8Array | undefined): boolean =>
  a === undefined || b === undefined ? a === b : a.length === b.length && a.every((x, i) => x === b[i])

/** A resumption in progress: `advance` runs at most about `budget` instructions, then returns the stop or undefined. */
export interface Resumption {
  advance(budget: number): StopReason | undefined
}

const ended = (target: Target): StopReason | undefined => (target.end === undefined ? undefined : { _tag: "Ended", end: target.end })

/** One instruction forward; what it did decides the stop. */
const stepOnce = (target: Target, points: StopPoints): StopReason | undefined => {
  const before = points.watchpoints.length === 0 ? [] : points.snapshot(target)
  target.runTo(target.position + 1)
  const hit = points.watchpoints.length === 0 ? undefined : points.changed(target, before)
  if (hit !== undefined) return { _tag: "Watchpoint", address: hit.address, kind: hit.kind }
  return ended(target)
}

export const stepForward = (target: Target, points: StopPoints): Resumption => ({
  advance: () => ended(target) ?? stepOnce(target, points) ?? { _tag: "Stepped" }
})

export const continueForward = (target: Target, points: StopPoints): Resumption => ({
  advance: (budget) => {
    const atEnd = ended(target)
    if (atEnd !== undefined) return atEnd
    if (points.none) {
      target.runTo(target.position + budget)
      return ended(target)
    }
    for (let i = 0; i < budget; i++) {
      const stop = stepOnce(target, points)
      if (stop !== undefined) return stop
      const kind = points.breakpointAt(target)
      if (kind !== undefined) return { _tag: "Breakpoint", kind }
    }
    return undefined
  }
})

export const stepBackward = (target: Target, history: History): Resumption => ({
  advance: () => {
    if (target.position === 0) return { _tag: "ReplayBegin" }
    history.seek(target.position - 1)
    return { _tag: "Stepped" }
  }
})

/**
 * Back to the last breakpoint or watchpoint hit before the current position. Nothing
 * runs backwards: from the restart point (checkpoint) before here, the replay runs
 * forward to here remembering the last hit, then seeks to it; with none, the same from
 * the restart point before that, and so on down to instruction 0.
 */
export const continueBackward = (target: Target, history: History, points: StopPoints): Resumption => {
  /** The stretch [from, end) being searched; `from` undefined: not started yet. */
  let end = target.position
  let from: number | undefined
  let last: { readonly position: number; readonly stop: StopReason } | undefined
  return {
    advance: (budget) => {
      if (points.none) end = 0
      for (let i = 0; i < budget; i++) {
        if (from === undefined) {
          if (end === 0) {
            history.seek(0)
            return { _tag: "ReplayBegin" }
          }
          from = history.restartBefore(end)
          history.seek(from)
        }
        const p = target.position
        if (p >= end || target.end !== undefined) {
          if (last !== undefined) {
            history.seek(last.position)
            return last.stop
          }
          end = from
          from = undefined
          continue
        }
        const kind = points.breakpointAt(target)
        if (kind !== undefined) last = { position: p, stop: { _tag: "Breakpoint", kind } }
        const before = points.snapshot(target)
        target.runTo(p + 1)
        const hit = points.changed(target, before)
        if (hit !== undefined) last = { position: p, stop: { _tag: "Watchpoint", address: hit.address, kind: hit.kind } }
      }
      return undefined
    }
  }
}
