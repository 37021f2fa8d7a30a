/**
 * A recording as a gdb target, over the replay session (src/replay/session.ts): going
 * forward re-executes the guest and checks every event against the recording as it is
 * produced; going back restores the nearest checkpoint and replays forward from it.
 */
import { describeEvent } from "../events/describe.ts"
import { lastAtOrBefore } from "../events/trace/traceIndex.ts"
import type { KvmDebugWatchpoint } from "../kernel/api.ts"
import type { ReplaySession } from "../replay/session.ts"
import { type GeneralRegisters, readGeneralRegisters } from "./i386.ts"
import type { History, Target, TargetEnd } from "./target.ts"

/** The errors a session throws for a replay that cannot go on (anything else is a bug, and escapes). */
const REPLAY_FAILURES = new Set(["ReplayDivergence", "SessionError", "TraceCorrupt", "TraceIoError", "VmStateError"])

export class ReplayTarget implements Target, History {
  readonly history: History = this
  /** What a replay executes must stay what was recorded. */
  readonly writable = false
  private failure: string | undefined

  constructor(private readonly session: ReplaySession) {}

  /** Runs a session call; a divergence or a damaged trace ends the target (until a seek back). */
  private attempt(f: () => void): boolean {
    try {
      f()
      return true
    } catch (e) {
      const tag = typeof e === "object" && e !== null && "_tag" in e ? String(e._tag) : ""
      if (!REPLAY_FAILURES.has(tag)) throw e
      this.failure = (e as Error).message
      return false
    }
  }

  get position(): number {
    return this.session.position.time
  }

  get end(): TargetEnd | undefined {
    if (this.failure !== undefined) return { _tag: "ReplayFailed", message: this.failure }
    const outcome = this.session.ended
    return outcome === undefined ? undefined : { _tag: "Exited", outcome }
  }

  registers(): GeneralRegisters {
    const { regs, sregs } = this.session.registers()
    return readGeneralRegisters(regs, sregs)
  }

  /** On the session's current machine: a seek may have replaced it, so the stub arms them before every step. */
  watchAccesses(watchpoints: ReadonlyArray<KvmDebugWatchpoint>): void {
    this.session.current.vcpu.setGuestDebug({ watchpoints })
  }

  accessHits(): number {
    return this.session.current.vcpu.getDebugStatus?.() ?? 0
  }

  pc(): number {
    const { regs, sregs } = this.session.registers()
    return (sregs.cs.base + regs.rip) >>> 0
  }

  readMemory(linear: number, length: number): Uint8Array | undefined {
    return this.session.readLinear(linear, length)
  }

  writeRegisters(): void {
    throw new Error("a replay is not writable")
  }

  writeMemory(): boolean {
    throw new Error("a replay is not writable")
  }

  /**
   * Past the time of the last event, to that time first (so a long continue still goes
   * in slices), and from there through the end of the run (RunEnd).
   */
  runTo(position: number): void {
    const s = this.session
    this.attempt(() => {
      if (position <= s.endTime || s.position.time < s.endTime) s.seekTime(Math.min(position, s.endTime))
      else if (s.ended === undefined) s.replayToEvent(s.eventCount - 1)
    })
  }

  seek(position: number): void {
    this.failure = undefined
    this.attempt(() => this.session.seekTime(Math.min(position, this.session.endTime)))
  }

  restartBefore(position: number): number {
    const times = this.session.trace.index.checkpointTimes
    const i = lastAtOrBefore(times, position - 1)
    return i < 0 ? 0 : times[i]!
  }

  monitor(command: string): string | undefined {
    const [verb, arg] = command.trim().split(/\s+/)
    const s = this.session
    switch (verb) {
      case "event":
        return this.where()
      case "seek": {
        const n = arg === undefined ? Number.NaN : Number(arg)
        if (!Number.isSafeInteger(n) || n < 0 || n >= s.eventCount) return `seek: expected an event number from 0 to ${s.eventCount - 1}\n`
        this.failure = undefined
        this.attempt(() => s.seekEvent(n))
        const reread = "(gdb does not know the registers changed: `maintenance flush register-cache` makes it read them again)"
        return `event #${n} happens at instruction ${s.recorded(n)!.time}\n${this.where()}${reread}\n`
      }
      case "help":
        return [
          "monitor event     where the replay stands: instructions retired, the last event verified, the next one",
          "monitor seek N    go to the instruction at which recorded event #N happens",
          ""
        ].join("\n")
      default:
        return undefined
    }
  }

  private where(): string {
    const s = this.session
    const { time, seq } = s.position
    const last = seq === 0 ? undefined : s.recorded(seq - 1)
    const next = s.recorded(seq)
    return [
      `instruction ${time}, ${seq} of ${s.eventCount} events verified`,
      `last: ${last === undefined ? "(none yet)" : describeEvent(last)}`,
      `next: ${next === undefined ? "(end of recording)" : describeEvent(next)}`,
      ...(this.failure === undefined ? [] : [`the replay cannot go on: ${this.failure}`]),
      ""
    ].join("\n")
  }
}
