// vmrr view: draws /model.json (built by src/inspect/viewModel.ts). Plain browser JS, no build step.
"use strict"

const SVG = "http://www.w3.org/2000/svg"
const LANE = 28
const AXIS = 18

const el = (name, attrs = {}, parent) => {
  const node = document.createElementNS(SVG, name)
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v))
  if (parent) parent.appendChild(node)
  return node
}

const state = { model: null, byseq: new Map(), flows: new Map(), hidden: new Set(), scale: 24, selected: null }

/** Lanes from the trace's metadata, in the export's order: per vCPU guest/KVM/QEMU, then devices. */
const lanesOf = (timeline) => {
  const processes = new Map()
  const lanes = []
  for (const e of timeline.traceEvents) {
    if (e.ph !== "M") continue
    if (e.name === "process_name") processes.set(e.pid, e.args.name)
    if (e.name === "thread_name") lanes.push({ pid: e.pid, tid: e.tid, name: e.args.name })
  }
  lanes.sort((a, b) => a.pid - b.pid || a.tid - b.tid)
  const rows = []
  let lastPid
  for (const lane of lanes) {
    if (lane.pid !== lastPid) rows.push({ group: processes.get(lane.pid) ?? `process ${lane.pid}` })
    lastPid = lane.pid
    rows.push(lane)
  }
  return rows
}

/**
 * Virtual time to pixels, with long stretches squeezed: a halted vCPU can wait millions
 * of instructions between two events, so a gap longer than GAP instructions is drawn
 * GAP wide plus a little per power of ten, and marked on the axis with its length.
 */
const GAP = 50
const gapWidth = (d) => (d <= GAP ? d : GAP + GAP * Math.log10(d / GAP))

const buildAxis = (timeline) => {
  const points = new Set([0])
  for (const e of timeline.traceEvents) {
    if (e.ph === "M") continue
    points.add(e.ts)
    if (e.dur !== undefined) points.add(e.ts + e.dur)
  }
  const ts = [...points].sort((a, b) => a - b)
  const pos = [0]
  for (let i = 1; i < ts.length; i++) pos.push(pos[i - 1] + gapWidth(ts[i] - ts[i - 1]))
  const at = (t) => {
    let lo = 0
    let hi = ts.length - 1
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1
      if (ts[mid] <= t) lo = mid
      else hi = mid - 1
    }
    if (lo === ts.length - 1) return pos[lo] + (t - ts[lo])
    return pos[lo] + ((t - ts[lo]) / (ts[lo + 1] - ts[lo])) * (pos[lo + 1] - pos[lo])
  }
  const gaps = []
  for (let i = 1; i < ts.length; i++) if (ts[i] - ts[i - 1] > GAP) gaps.push({ from: ts[i - 1], to: ts[i] })
  return { at, ts, end: pos[pos.length - 1], gaps }
}

const laneClass = (lane) => (lane.pid >= 1000 ? "device" : ["", "guest", "kvm", "qemu"][lane.tid] ?? "device")

const drawTimeline = () => {
  const { model, scale } = state
  const svg = document.getElementById("timeline-svg")
  svg.replaceChildren()
  const rows = lanesOf(model.timeline)
  const names = document.getElementById("lane-names")
  names.replaceChildren()
  const y = new Map()
  rows.forEach((row, i) => {
    const div = document.createElement("div")
    div.textContent = row.group ?? row.name
    if (row.group) div.className = "group"
    names.appendChild(div)
    if (!row.group) y.set(`${row.pid}/${row.tid}`, i * LANE)
  })
  const axisMap = state.axis
  const x = (t) => axisMap.at(t) * scale
  const width = Math.ceil(axisMap.end * scale) + 40
  svg.setAttribute("width", width)
  svg.setAttribute("height", rows.length * LANE + AXIS)
  const axis = el("g", { class: "axis" }, svg)
  // Ticks at event times, at least 80 px apart; a squeezed gap is labelled with its length.
  let lastLabel = -Infinity
  const gapAt = new Map(axisMap.gaps.map((g) => [g.from, g.to - g.from]))
  for (const t of axisMap.ts) {
    if (x(t) < lastLabel) continue
    const gap = gapAt.get(t)
    el("line", { x1: x(t), x2: x(t), y1: 0, y2: rows.length * LANE }, axis)
    el("text", { x: x(t) + 2, y: rows.length * LANE + 12 }, axis).textContent = `t=${Math.floor(t)}${gap === undefined ? "" : `  ≈ ${Math.round(gap)} t`}`
    lastLabel = x(t) + (gap === undefined ? 80 : 160)
  }
  const points = new Map()
  for (const e of model.timeline.traceEvents) {
    const top = y.get(`${e.pid}/${e.tid}`)
    if (top === undefined) continue
    const seq = e.args?.seq
    const kind = seq === undefined ? "" : state.byseq.get(seq)?.kind ?? ""
    if (e.ph === "X") {
      const lane = rows.find((r) => r.pid === e.pid && r.tid === e.tid)
      const r = el("rect", {
        class: `slice ${laneClass(lane)}`, x: x(e.ts), y: top + 9, width: Math.max(1.5, x(e.ts + e.dur) - x(e.ts)), height: LANE - 12, rx: 2,
        "data-seq": seq ?? "", "data-kind": kind, "data-name": e.name
      }, svg)
      el("title", {}, r).textContent = `${e.name}${e.args?.event ? `\n${e.args.event}` : ""}`
    } else if (e.ph === "i") {
      const at = x(e.ts)
      // Instants sit above the slices of their lane, so both stay clickable.
      const d = el("path", { class: "instant", d: `M${at - 4} ${top + 1} h8 l-4 7 z`, "data-seq": seq ?? "", "data-kind": kind, "data-name": e.name }, svg)
      el("title", {}, d).textContent = e.args?.event ?? e.name
    } else if (e.ph === "s" || e.ph === "f") {
      const p = points.get(e.id) ?? {}
      p[e.ph] = { x: x(e.ts), y: top + LANE / 2 }
      points.set(e.id, p)
    }
  }
  for (const { s, f } of points.values()) {
    if (s && f) el("path", { class: "arrow", d: `M${s.x} ${s.y} C${s.x + 8} ${s.y}, ${f.x - 8} ${f.y}, ${f.x} ${f.y}` }, svg)
  }
  document.getElementById("scale").textContent = `${scale} px per instruction; gaps over ${GAP} instructions squeezed (≈)`
  applyFilter()
  if (state.selected !== null) highlight(state.selected)
}

const applyFilter = () => {
  for (const node of document.querySelectorAll("[data-kind]")) {
    if (node.tagName === "INPUT") continue
    node.classList.toggle("hidden", state.hidden.has(node.getAttribute("data-kind")))
  }
}

const highlight = (seq) => {
  for (const node of document.querySelectorAll(".selected")) node.classList.remove("selected")
  for (const node of document.querySelectorAll(`[data-seq="${seq}"]`)) node.classList.add("selected")
}

/** The sequence diagram of one trip: a column per participant, an arrow per message. */
const drawSequence = (flow) => {
  const svg = document.getElementById("sequence")
  svg.replaceChildren()
  document.getElementById("sequence-title").textContent = flow ? `Sequence: ${flow.title}` : "Sequence"
  if (!flow) return
  const colWidth = 150
  const rowHeight = 34
  const x = new Map(flow.participants.map((p, i) => [p, 70 + i * colWidth]))
  const height = 50 + flow.messages.length * rowHeight + 20
  // Room on the right for the labels of messages to the last participant and of self-messages.
  svg.setAttribute("width", 70 + flow.participants.length * colWidth + 380)
  svg.setAttribute("height", height)
  for (const p of flow.participants) {
    el("line", { class: "lifeline", x1: x.get(p), x2: x.get(p), y1: 30, y2: height - 5 }, svg)
    const g = el("g", { class: "participant", "data-participant": p }, svg)
    el("rect", { x: x.get(p) - 55, y: 4, width: 110, height: 24, rx: 4 }, g)
    el("text", { x: x.get(p), y: 21 }, g).textContent = p
  }
  const defs = el("defs", {}, svg)
  const marker = el("marker", { id: "head", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" }, defs)
  el("path", { d: "M0 0 L10 5 L0 10 z", fill: "#1f2328" }, marker)
  flow.messages.forEach((m, i) => {
    const yy = 56 + i * rowHeight
    const g = el("g", { class: "message", "data-seq": m.seq }, svg)
    const x1 = x.get(m.from)
    const x2 = x.get(m.to)
    // The whole row is the click target, not just the thin arrow.
    el("rect", { class: "hit", x: 0, y: yy - 14, width: 70 + flow.participants.length * colWidth, height: rowHeight }, g)
    if (m.from === m.to) {
      el("path", { d: `M${x1} ${yy} h30 v12 h-30`, "marker-end": "url(#head)" }, g)
      el("text", { x: x1 + 36, y: yy + 10 }, g).textContent = m.label
    } else {
      el("line", { x1, x2, y1: yy + 6, y2: yy + 6, "marker-end": "url(#head)" }, g)
      el("text", { x: Math.min(x1, x2) + 6, y: yy }, g).textContent = m.label
    }
    g.addEventListener("click", () => select(m.seq, false))
  })
}

const showEvent = (event) => {
  document.getElementById("explain").textContent = [event.line, ...event.explain].join("\n")
}

const select = (seq, redraw = true) => {
  const event = state.byseq.get(seq)
  if (!event) return
  state.selected = seq
  const flow = event.flow === undefined ? undefined : state.flows.get(event.flow)
  if (redraw) {
    drawSequence(flow)
    const list = document.getElementById("flow-events")
    list.replaceChildren()
    const members = flow ? state.model.events.filter((e) => e.flow === flow.seq) : [event]
    for (const e of members) {
      const li = document.createElement("li")
      li.textContent = e.line
      li.setAttribute("data-seq", e.seq)
      li.addEventListener("click", () => select(e.seq, false))
      list.appendChild(li)
    }
  }
  showEvent(event)
  highlight(seq)
}

const buildFilters = () => {
  const box = document.getElementById("filters")
  const counts = new Map()
  for (const e of state.model.events) counts.set(e.kind, (counts.get(e.kind) ?? 0) + 1)
  for (const kind of state.model.kinds) {
    const label = document.createElement("label")
    const input = document.createElement("input")
    input.type = "checkbox"
    input.checked = true
    input.setAttribute("data-kind", kind)
    input.addEventListener("change", () => {
      if (input.checked) state.hidden.delete(kind)
      else state.hidden.add(kind)
      applyFilter()
    })
    label.append(input, ` ${kind} (${counts.get(kind)})`)
    box.appendChild(label)
  }
}

const start = async () => {
  const model = await (await fetch("model.json")).json()
  state.model = model
  state.axis = buildAxis(model.timeline)
  for (const e of model.events) state.byseq.set(e.seq, e)
  for (const f of model.flows) state.flows.set(f.seq, f)
  document.getElementById("source").textContent = model.source
  if (model.note) {
    const note = document.getElementById("note")
    note.textContent = model.note
    note.hidden = false
  }
  buildFilters()
  drawTimeline()
  document.getElementById("timeline-svg").addEventListener("click", (event) => {
    const seq = event.target.getAttribute?.("data-seq")
    if (seq) select(Number(seq))
  })
  document.getElementById("zoom-in").addEventListener("click", () => { state.scale = Math.min(400, state.scale * 2); drawTimeline() })
  document.getElementById("zoom-out").addEventListener("click", () => { state.scale = Math.max(0.05, state.scale / 2); drawTimeline() })
  document.body.setAttribute("data-ready", "true")
}

start()
