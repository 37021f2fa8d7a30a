import { exitReasonName } from "../events/exitReasons.ts"
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

  add(event: VmEvent): void {
    this.events++
    if (event._tag === "VmExit") {
      const key = `${event.reason}/${event.handledIn}`
      const entry = this.exits.get(key)
      if (entry === undefined) this.exits.set(key, { reason: event.reason, handledIn: event.handledIn, count: 1 })
      else entry.count++
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
      lines.push(`  ${end.time} instructions, ${this.events} events, eip 0x${end.registers.eip.toString(16)}`)
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
