import { type Field, kindLayouts } from "./eventLayouts.ts"
import type { VmEvent } from "./VmEvent.ts"

/**
 * Events as the event log holds them: binary records in a Float64Array, as a kernel's
 * trace ring buffer holds binary records that a reader formats later, not an object per
 * event. Recording packs these straight into the trace (trace/packedEvents.ts); objects
 * are made only for whoever reads the events (`rawEvents`).
 *
 * A record is the kind's number (its position in the VmEvent union, eventLayouts.ts),
 * then every field of its layout except `seq` (implicit: the chunk's events are
 * consecutive), in declaration order:
 *
 *   int          the number
 *   bool         0 or 1
 *   literal      the member's index in the field's literal list
 *   string, bytes, msgpack (any other value)
 *                the value's index in the chunk's `objects`
 *   ints         the count n, then the n numbers
 *   optional     0 when absent; 1 then the field's slots when present
 */
export interface RawChunk {
  readonly firstSeq: number
  readonly count: number
  /** The records back to back; `words.length` is exactly what they take. */
  readonly words: Float64Array
  /** Strings, byte arrays and other values the records refer to by index. */
  readonly objects: ReadonlyArray<unknown>
}

/**
 * Spare record buffers: a fresh typed array costs several times more than the records of
 * a chunk take to copy (its memory is zeroed and counted by the GC), so the buffers of
 * chunks that have been read go back here for the event log's next chunk. They are
 * shared memory, so that the packer thread (trace/packerThread.ts) reads a chunk where
 * it is, without a copy or a transfer.
 */
const spareWords: Array<Float64Array> = []
const MAX_SPARE = 16
/** The words of an event log's buffer: chunks of up to CHUNK_EVENTS events and the exit that ends one fit. */
export const LOG_WORDS = 1 << 19

/** A record buffer of at least `n` words, reused when one is spare. */
export const takeWords = (n: number): Float64Array => {
  const spare = spareWords.pop()
  return spare !== undefined && spare.length >= n ? spare : new Float64Array(new SharedArrayBuffer(n * Float64Array.BYTES_PER_ELEMENT))
}

/**
 * Gives the chunk's buffer back for reuse, once nothing will read the chunk again (its
 * events made into objects, or packed into a trace). A chunk never released is simply
 * collected.
 */
export const releaseRawChunk = (chunk: RawChunk): void => {
  // Only whole log buffers: a small chunk's words are a copy (EventLog.drain), a transferred buffer is gone.
  const buffer = chunk.words.buffer
  if (spareWords.length < MAX_SPARE && buffer instanceof SharedArrayBuffer && buffer.byteLength >= LOG_WORDS * Float64Array.BYTES_PER_ELEMENT) {
    spareWords.push(new Float64Array(buffer))
  }
}

/** Where records are appended: the event log (EventLog.ts) or a test's buffer. */
export interface RawWriter {
  words: Float64Array
  pos: number
  readonly objects: Array<unknown>
  /** Makes room for `n` more words (`words` may be replaced). */
  ensure(n: number): void
}

/** The words a record takes at most, besides an ints field's numbers. */
export const maxRecordWords = 1 + 2 * 32

const js = (value: unknown): string => JSON.stringify(value)

/** Statements appending field `f` of event `e` (an expression) to `w`. */
const writeField = (f: Field, tag: string, value: string): string => {
  const bad = `badValue(${js(`${tag}.${f.name}`)}, ${value})`
  switch (f.codec._tag) {
    case "int":
      return `words[pos++] = ${value}`
    case "bool":
      return `words[pos++] = ${value} ? 1 : 0`
    case "literal":
      return `words[pos++] = ${f.codec.values.map((v, i) => `${value} === ${js(v)} ? ${i} : `).join("")}${bad}`
    case "ints":
      return `{ const a = ${value}; w.pos = pos; w.ensure(a.length + ${maxRecordWords}); words = w.words; words[pos++] = a.length; for (let j = 0; j < a.length; j++) words[pos++] = a[j] }`
    default:
      return `words[pos++] = w.objects.push(${value}) - 1`
  }
}

/** Statements setting `v` to field `f` read at `pos` (advancing it). */
const readField = (f: Field, v: string): string => {
  switch (f.codec._tag) {
    case "int":
      return `${v} = words[pos++]`
    case "bool":
      return `${v} = words[pos++] === 1`
    case "literal":
      return `${v} = ${js(f.codec.values)}[words[pos++]]`
    case "ints":
      return `{ const n = words[pos++]; ${v} = new Array(n); for (let j = 0; j < n; j++) ${v}[j] = words[pos++] }`
    default:
      return `${v} = objects[words[pos++]]`
  }
}

/**
 * Object → record and record → object, generated from the layouts: a `switch` whose
 * cases are straight-line code with the field names as constants, so property accesses
 * see one kind each.
 */
const compile = () => {
  const writeCases: Array<string> = []
  const readCases: Array<string> = []
  kindLayouts.forEach((layout, k) => {
    const write = [`case ${js(layout.tag)}: {`, `words[pos++] = ${k}`]
    const read = [`case ${k}: {`]
    const build: Array<string> = []
    let literal = `const e = { "_tag": ${js(layout.tag)}`
    let literalOpen = true
    layout.fields.forEach((f, i) => {
      if (f.name === "seq") {
        if (literalOpen) literal += ", \"seq\": seq"
        else build.push("e.seq = seq")
        return
      }
      const value = `e[${js(f.name)}]`
      const v = `v${i}`
      if (f.optional) {
        write.push(`if (${value} === undefined) words[pos++] = 0; else { words[pos++] = 1; ${writeField(f, layout.tag, value)} }`)
        read.push(`let ${v} = undefined`, `if (words[pos++] === 1) ${readField(f, v)}`)
        literalOpen = false
        build.push(`if (${v} !== undefined) e[${js(f.name)}] = ${v}`)
      } else {
        write.push(writeField(f, layout.tag, value))
        read.push(`let ${v}`, readField(f, v))
        if (literalOpen) literal += `, ${js(f.name)}: ${v}`
        else build.push(`e[${js(f.name)}] = ${v}`)
      }
    })
    write.push("break", "}")
    read.push(`${literal} }`, ...build, "events[i] = e", "break", "}")
    writeCases.push(...write)
    readCases.push(...read)
  })
  const helpers = {
    badValue: (field: string, value: unknown): never => {
      throw new Error(`event log: ${field} = ${String(value)} is not a value of its schema`)
    }
  }
  const write = new Function("h", [
    "const { badValue } = h",
    "return function writeRawEvent(w, e) {",
    `  if (w.pos + ${maxRecordWords} > w.words.length) w.ensure(${maxRecordWords})`,
    "  let words = w.words",
    "  let pos = w.pos",
    "  switch (e._tag) {",
    ...writeCases,
    "    default: badValue(\"_tag\", e._tag)",
    "  }",
    "  w.pos = pos",
    "}"
  ].join("\n"))(helpers) as (w: RawWriter, event: VmEvent) => void
  const read = new Function("h", [
    "const { badValue } = h",
    "return function rawEvents(chunk) {",
    "  const words = chunk.words",
    "  const objects = chunk.objects",
    "  const events = new Array(chunk.count)",
    "  let pos = 0",
    "  for (let i = 0; i < chunk.count; i++) {",
    "    const seq = chunk.firstSeq + i",
    "    switch (words[pos++]) {",
    ...readCases,
    "      default: badValue(\"kind\", words[pos - 1])",
    "    }",
    "  }",
    "  if (pos !== words.length) badValue(\"words\", words.length)",
    "  return events",
    "}"
  ].join("\n"))(helpers) as (chunk: RawChunk) => Array<VmEvent>
  return { write, read }
}

const compiled = compile()

/** Appends `event` to `w` as a record. Throws for a value its schema does not allow (a bug in whoever built it). */
export const writeRawEvent: (w: RawWriter, event: VmEvent) => void = compiled.write

/** The chunk's events as objects, for whoever reads them. */
export const rawEvents: (chunk: RawChunk) => Array<VmEvent> = compiled.read

/** Events given as objects (a debugger's live run) as a raw chunk; they must be consecutive. */
export const rawChunkOf = (events: ReadonlyArray<VmEvent>): RawChunk => {
  const w: RawWriter = {
    words: new Float64Array(maxRecordWords * Math.max(1, events.length)),
    pos: 0,
    objects: [],
    ensure(n) {
      if (this.pos + n <= this.words.length) return
      const grown = new Float64Array(Math.max(this.words.length * 2, this.pos + n))
      grown.set(this.words)
      this.words = grown
    }
  }
  events.forEach((e, i) => {
    if (e.seq !== events[0]!.seq + i) throw new Error(`raw events: seq ${e.seq} after ${events[0]!.seq + i - 1}`)
    writeRawEvent(w, e)
  })
  return { firstSeq: events[0]?.seq ?? 0, count: events.length, words: w.words.slice(0, w.pos), objects: w.objects }
}
