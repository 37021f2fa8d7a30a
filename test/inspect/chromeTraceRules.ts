/**
 * The rules of the Chrome trace-event JSON format (the "Trace Event Format" document
 * that chrome://tracing and Perfetto's JSON importer follow), as a checker: it returns
 * every broken rule as a sentence, so a test can show them all.
 */

interface Event {
  readonly [key: string]: unknown
}

const phases = new Set(["B", "E", "X", "i", "I", "s", "t", "f", "M", "C"])
const metadataNames = new Set(["process_name", "thread_name", "process_sort_index", "thread_sort_index", "process_labels"])

const isInt = (v: unknown): v is number => typeof v === "number" && Number.isInteger(v)
const isTime = (v: unknown): v is number => typeof v === "number" && Number.isFinite(v) && v >= 0

export const chromeTraceProblems = (trace: unknown): string[] => {
  const problems: string[] = []
  if (typeof trace !== "object" || trace === null || !Array.isArray((trace as { traceEvents?: unknown }).traceEvents)) {
    return ["the top level must be an object with a traceEvents array"]
  }
  const events = (trace as { traceEvents: Event[] }).traceEvents
  const tracks = new Map<string, { lastTs: number; open: string[]; slices: Array<[number, number]> }>()
  const flows = new Map<unknown, { s: Event[]; f: Event[] }>()
  events.forEach((e, i) => {
    const where = `event ${i} (${String(e.ph)} ${String(e.name)})`
    if (typeof e.name !== "string") problems.push(`${where}: name must be a string`)
    if (!phases.has(e.ph as string)) return void problems.push(`${where}: unknown phase`)
    if (!isInt(e.pid) || !isInt(e.tid)) problems.push(`${where}: pid and tid must be integers`)
    if (e.ph === "M") {
      if (!metadataNames.has(e.name as string)) problems.push(`${where}: unknown metadata name`)
      const args = e.args as Record<string, unknown> | undefined
      if (e.name?.toString().endsWith("_name") && typeof args?.name !== "string") problems.push(`${where}: args.name must be a string`)
      if (e.name?.toString().endsWith("_sort_index") && !isInt(args?.sort_index)) problems.push(`${where}: args.sort_index must be an integer`)
      return
    }
    if (!isTime(e.ts)) return void problems.push(`${where}: ts must be a finite number >= 0`)
    const key = `${String(e.pid)}/${String(e.tid)}`
    const track = tracks.get(key) ?? { lastTs: 0, open: [], slices: [] }
    tracks.set(key, track)
    if ((e.ts as number) < track.lastTs) problems.push(`${where}: ts goes back in time on track ${key}`)
    track.lastTs = e.ts as number
    switch (e.ph) {
      case "X":
        if (!isTime(e.dur)) problems.push(`${where}: X needs dur >= 0`)
        else track.slices.push([e.ts as number, (e.ts as number) + (e.dur as number)])
        break
      case "B":
        track.open.push(e.name as string)
        break
      case "E":
        if (track.open.pop() === undefined) problems.push(`${where}: E without a B on track ${key}`)
        break
      case "i":
      case "I":
        if (e.s !== undefined && !["g", "p", "t"].includes(e.s as string)) problems.push(`${where}: instant scope must be g, p or t`)
        break
      case "s":
      case "t":
      case "f": {
        if (e.id === undefined) problems.push(`${where}: flow events need an id`)
        if (typeof e.cat !== "string") problems.push(`${where}: flow events need a cat`)
        const flow = flows.get(e.id) ?? { s: [], f: [] }
        flows.set(e.id, flow)
        if (e.ph === "s") flow.s.push(e)
        if (e.ph === "f") flow.f.push(e)
        break
      }
    }
  })
  for (const [key, track] of tracks) {
    if (track.open.length > 0) problems.push(`track ${key}: ${track.open.length} B without E`)
    // Slices on one track nest or are disjoint: a viewer cannot draw a partial overlap.
    const stack: Array<[number, number]> = []
    for (const [start, end] of [...track.slices].sort((a, b) => a[0] - b[0] || b[1] - a[1])) {
      while (stack.length > 0 && stack[stack.length - 1][1] <= start) stack.pop()
      const parent = stack[stack.length - 1]
      if (parent !== undefined && end > parent[1]) problems.push(`track ${key}: slice [${start}, ${end}] overlaps [${parent[0]}, ${parent[1]}] without nesting`)
      stack.push([start, end])
    }
  }
  const enclosed = (e: Event): boolean =>
    (tracks.get(`${String(e.pid)}/${String(e.tid)}`)?.slices ?? []).some(([start, end]) => (e.ts as number) >= start && (e.ts as number) <= end)
  for (const [id, flow] of flows) {
    if (flow.s.length !== 1 || flow.f.length !== 1) {
      problems.push(`flow ${String(id)}: needs one start and one finish, has ${flow.s.length} and ${flow.f.length}`)
      continue
    }
    const [s] = flow.s
    const [f] = flow.f
    if ((f.ts as number) < (s.ts as number)) problems.push(`flow ${String(id)}: finishes before it starts`)
    if (s.name !== f.name || s.cat !== f.cat) problems.push(`flow ${String(id)}: start and finish differ in name or cat`)
    if (!enclosed(s)) problems.push(`flow ${String(id)}: its start is not inside a slice on its track`)
    if (f.bp === "e" && !enclosed(f)) problems.push(`flow ${String(id)}: its finish (bp e) is not inside a slice on its track`)
  }
  return problems
}
