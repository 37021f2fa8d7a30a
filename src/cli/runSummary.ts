import { exitReasonName, kvmExitName } from "../events/exitReasons.ts"
import type { RunEnd, VmEvent } from "../events/VmEvent.ts"

interface ExitCount {
  readonly reason: number
  readonly handledIn: "kernel" | "userspace"
  count: number
}

/** What `vmrr run` says at the end: exits by reason and where they were handled, instructions, why it stopped. */
export class RunSummary {
  events = 0
  end: RunEnd | undefined
  private readonly exits = new Map<string, ExitCount>()
  /** KVM_RUN returns by `KVM_EXIT_*`: all a run on real KVM shows without tracepoints. */
  private readonly userspaceExits = new Map<number, number>()
  /** Host KVM tracepoints by name (runs recorded on real KVM). */
  private readonly tracepoints = new Map<string, number>()

  /** What the run's virtual time counts: instructions on the model, KVM_RUN calls on real KVM. */
  constructor(private readonly timeUnit = "instructions") {}

  add(event: VmEvent): void {
    this.events++
    if (event._tag === "VmExit") {
      const key = `${event.reason}/${event.handledIn}`
      const entry = this.exits.get(key)
      if (entry === undefined) this.exits.set(key, { reason: event.reason, handledIn: event.handledIn, count: 1 })
      else entry.count++
    } else if (event._tag === "UserspaceExit") {
      this.userspaceExits.set(event.exitReason, (this.userspaceExits.get(event.exitReason) ?? 0) + 1)
    } else if (event._tag === "Tracepoint") {
      this.tracepoints.set(event.name, (this.tracepoints.get(event.name) ?? 0) + 1)
    } else if (event._tag === "RunEnd") {
      this.end = event
    }
  }

  format(): string {
    const end = this.end
    const lines: string[] = []
    if (end !== undefined) {
      const status = end.exitCode === undefined ? "" : ` (status ${end.exitCode})`
      const why = end.message === undefined ? "" : `: ${end.message}`
      lines.push(`vmrr: ${end.reason}${status}${why}`)
      lines.push(`  ${end.time} ${this.timeUnit}, ${this.events} events, eip 0x${end.registers.eip.toString(16)}`)
    }
    // Real KVM shows no VM exits to userspace: its returns from KVM_RUN, and the host's tracepoints if captured.
    if (this.exits.size === 0 && this.userspaceExits.size > 0) {
      table(lines, "KVM_RUN returned", [...this.userspaceExits].map(([reason, n]) => [kvmExitName(reason), n]))
      if (this.tracepoints.size > 0) table(lines, "host tracepoint", [...this.tracepoints])
      return `${lines.join("\n")}\n`
    }
    const rows = [...this.exits.values()].sort((a, b) => b.count - a.count || a.reason - b.reason)
    const total = rows.reduce((n, r) => n + r.count, 0)
    lines.push(`  ${"VM exit".padEnd(18)}${"count".padStart(8)}  handled in`)
    for (const r of rows) {
      lines.push(`  ${exitReasonName(r.reason).padEnd(18)}${String(r.count).padStart(8)}  ${r.handledIn}`)
    }
    lines.push(`  ${"total".padEnd(18)}${String(total).padStart(8)}`)
    return `${lines.join("\n")}\n`
  }
}

/** A name/count table, largest first, with its total. */
const table = (lines: string[], heading: string, rows: ReadonlyArray<readonly [string, number]>): void => {
  lines.push(`  ${heading.padEnd(24)}${"count".padStart(8)}`)
  for (const [name, n] of [...rows].sort((a, b) => b[1] - a[1])) lines.push(`  ${name.padEnd(24)}${String(n).padStart(8)}`)
  lines.push(`  ${"total".padEnd(24)}${String(rows.reduce((t, [, n]) => t + n, 0)).padStart(8)}`)
}
