/**
 * What recording costs the vCPU thread, packing in-thread or on the packer thread
 * (src/events/trace/packerThread.ts): the main thread's wall time spent inside
 * `writeRawChunk` (and the final `close`), per event, for the I/O-loop guest's events
 * (bench/codec.ts `ioLoopEvents`) in raw chunks of CHUNK_EVENTS. process.cpuUsage
 * cannot split threads (and /proc/thread-self/schedstat only moves at scheduler ticks),
 * so this times the calls themselves: the main thread's own CPU time in them
 * (clock_gettime(CLOCK_THREAD_CPUTIME_ID) through koffi, less what a reading costs),
 * which other processes on the machine inflate less (they still do: shared caches), and their wall time (which the
 * waits for the worker add to, and other processes inflate): the best of `--runs` runs.
 *
 * Between chunks the main thread spins for as long as the guest would take to make the
 * chunk's events (`--guest-ns`, default 80 ns/event, an unrecorded run's cost), so the
 * worker has the time it would have in a real run; `--guest-ns 0` floods it instead.
 *
 *   npx tsx bench/packerThread.ts [--chunks 250] [--runs 5] [--guest-ns 80] [--in-flight 8] [--chunk-events 4096]
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { performance } from "node:perf_hooks"
import * as Effect from "effect/Effect"
import koffi from "koffi"
import { type RawChunk, rawChunkOf } from "../src/events/rawEvents.ts"
import type { VmEvent } from "../src/events/VmEvent.ts"
import { packerThread, type PackerOptions } from "../src/events/trace/packerThread.ts"
import { kindLayouts } from "../src/events/eventLayouts.ts"
import { packedCodec } from "../src/events/trace/packedEvents.ts"
import { makeRawChunkFramer } from "../src/events/trace/rawPack.ts"
import { openTraceWriter } from "../src/events/trace/writer.ts"
import { CHUNK_EVENTS } from "../src/qemu/runMachine.ts"
import { ioLoopEvents } from "./codec.ts"

const frameRawChunk = makeRawChunkFramer(packedCodec, kindLayouts)

const arg = (name: string, fallback: number): number => {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 ? Number(process.argv[i + 1]) : fallback
}
const chunkCount = arg("chunks", 250)
const runs = arg("runs", 5)
const guestNs = arg("guest-ns", 80)
const maxInFlight = arg("in-flight", 8)
const chunkEvents = arg("chunk-events", CHUNK_EVENTS)


const all = ioLoopEvents(Math.ceil((chunkCount * chunkEvents) / 5))
const template: Array<RawChunk> = []
for (let c = 0; c < chunkCount; c++) template.push(rawChunkOf(all.slice(c * chunkEvents, (c + 1) * chunkEvents)))
const eventCount = template.reduce((n, c) => n + c.count, 0)
/** Fresh words for each run (a transferring run detaches them), in a SharedArrayBuffer or not. */
const freshChunks = (shared = false): Array<RawChunk> =>
  template.map((c) => {
    const words = shared ? new Float64Array(new SharedArrayBuffer(c.words.byteLength)) : new Float64Array(c.words.length)
    words.set(c.words)
    return { ...c, words }
  })

const config = { memoryMiB: 2, loadAddress: 0x7c00, entry: 0x7c00, mode: "real", instructionLimit: 1_000_000 } as const
const header = { config, image: new Uint8Array(16) }
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "vmrr-bench-packer-"))
const file = path.join(dir, "bench.vmrr")

/** This thread's CPU time in ns (CLOCK_THREAD_CPUTIME_ID), or undefined where libc cannot be loaded. */
const threadCpuNs: (() => number) | undefined = (() => {
  try {
    const clockGettime = koffi.load("libc.so.6").func("int clock_gettime(int clk, void *ts)")
    const ts = Buffer.alloc(16)
    return () => {
      clockGettime(3, ts)
      return Number(ts.readBigInt64LE(0)) * 1e9 + Number(ts.readBigInt64LE(8))
    }
  } catch {
    return undefined
  }
})()
const cpuNow = threadCpuNs ?? (() => 0)
/** What one reading adds to a difference of two: the least of many. */
const readingNs = (() => {
  let least = Number.POSITIVE_INFINITY
  for (let i = 0; i < 2000; i++) {
    const a = cpuNow()
    least = Math.min(least, cpuNow() - a)
  }
  return least
})()

const spin = (ns: number): void => {
  const until = performance.now() + ns / 1e6
  while (performance.now() < until) { /* the guest running */ }
}

interface Run {
  readonly mainNs: number
  /** The main thread's CPU time in writeRawChunk and close. */
  readonly cpuNs: number
  /** The median call's wall time per event: robust against the odd call that was preempted. */
  readonly medianCallNs: number
  readonly closeNs: number
  /** Of mainNs + closeNs: blocked waiting for the worker. */
  readonly waitNs: number
  readonly wallNs: number
  readonly bytes: number
}

const thread = packerThread()

const record = (packer: PackerOptions, shared: boolean): Run => {
  const chunks = freshChunks(shared)
  const waitedBefore = thread.waitedMs
  let mainNs = 0
  let cpuNs = 0
  const calls: Array<number> = []
  let closeNs = 0
  const start = performance.now()
  const summary = Effect.runSync(Effect.scoped(Effect.gen(function*() {
    const writer = yield* openTraceWriter(file, header, { packer })
    for (const chunk of chunks) {
      spin(chunk.count * guestNs)
      const c = cpuNow()
      const t = performance.now()
      yield* writer.writeRawChunk(chunk)
      const ns = (performance.now() - t) * 1e6
      cpuNs += cpuNow() - c - readingNs
      mainNs += ns
      calls.push(ns / chunk.count)
    }
    const c = cpuNow()
    const t = performance.now()
    const written = yield* writer.close
    closeNs = (performance.now() - t) * 1e6
    cpuNs += cpuNow() - c - readingNs
    return written
  })))
  calls.sort((a, b) => a - b)
  return { mainNs, cpuNs, medianCallNs: calls[Math.floor(calls.length / 2)]!, closeNs, waitNs: (thread.waitedMs - waitedBefore) * 1e6, wallNs: (performance.now() - start) * 1e6, bytes: summary.bytes }
}

const best = (results: Array<Run>): Run => results.reduce((a, b) => (b.mainNs + b.closeNs < a.mainNs + a.closeNs ? b : a))
const least = (xs: Array<number>): number => Math.min(...xs)

const measure = (name: string, packer: PackerOptions, shared = false): number => {
  record(packer, shared) // warm-up
  const results = Array.from({ length: runs }, () => record(packer, shared))
  const r = best(results)
  const main = r.mainNs / eventCount
  const close = r.closeNs / eventCount
  const wait = r.waitNs / eventCount
  const wall = least(results.map((x) => x.wallNs)) / eventCount
  const cpu = least(results.map((x) => x.cpuNs)) / eventCount
  const medianCall = least(results.map((x) => x.medianCallNs))
  console.log(
    `${name.padEnd(27)} main-thread CPU ${cpu.toFixed(2)} ns/event (${(100 * cpu / guestNs).toFixed(1)} %); ` +
      `wall: median call ${medianCall.toFixed(2)}, in writeRawChunk ${main.toFixed(2)} + close ${close.toFixed(2)} ns/event ` +
      `(${(100 * (main + close) / guestNs).toFixed(1)} %), ${wait.toFixed(2)} of it blocked; whole run ${wall.toFixed(1)} ns/event; ${results[0]!.bytes} bytes`
  )
  return cpu
}

// Packing alone (packRawEvents + msgpack + CRC), in-thread, for reference.
{
  const chunks = freshChunks()
  for (const c of chunks.slice(0, 20)) frameRawChunk(c)
  const best = Array.from({ length: runs }, () => {
    const t = performance.now()
    for (const c of chunks) frameRawChunk(c)
    return (performance.now() - t) * 1e6 / eventCount
  })
  console.log(`packing + framing alone: ${Math.min(...best).toFixed(2)} ns/event`)
}

console.log(threadCpuNs === undefined ? "no thread CPU clock: CPU columns are 0" : `a thread CPU clock reading costs ${readingNs} ns (subtracted)`)
console.log(`${chunkCount} raw chunks of ${chunkEvents} I/O-loop events (${eventCount} events), guest ${guestNs} ns/event, best of ${runs} runs`)
const startedAt = performance.now()
while (!thread.ready && !thread.dead) await new Promise((resolve) => setTimeout(resolve, 10))
if (thread.dead) throw new Error(`packer thread: ${thread.deathReason}`)
console.log(`packer thread ready after ${(performance.now() - startedAt).toFixed(0)} ms`)

// The same loop without a recording: what the run walls compare with.
const unrecorded = (): number => {
  const chunks = freshChunks(false)
  const start = performance.now()
  Effect.runSync(Effect.gen(function*() {
    for (const chunk of chunks) {
      spin(chunk.count * guestNs)
      yield* Effect.void
    }
  }))
  return (performance.now() - start) * 1e6 / eventCount
}
unrecorded()
const baseline = Math.min(...Array.from({ length: runs }, unrecorded))
// On a VM the spin loop's wall time drifts (this has come out above and below the recorded
// runs'), so the whole-run walls are context; the calls' times are the measurement.
console.log(`${"unrecorded".padEnd(27)} whole run ${baseline.toFixed(1)} ns/event`)

measure("in-thread", { enabled: false })
measure("worker (copied words)", { startAfterChunks: 1, maxInFlight })
measure("worker (transferred words)", { startAfterChunks: 1, maxInFlight, transfer: true })
measure("worker (shared words)", { startAfterChunks: 1, maxInFlight }, true)
fs.rmSync(dir, { recursive: true, force: true })
