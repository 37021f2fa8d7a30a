import { crc32 } from "node:zlib"
import { Packr } from "msgpackr"
import type * as Schema from "effect/Schema"
import type { Field, FieldCodec, KindLayout } from "../eventLayouts.ts"
import type { RawChunk } from "../rawEvents.ts"
import type { VmEvent } from "../VmEvent.ts"
import { ByteReader, ByteWriter, PackedDecodeError, writeSigned, writeVarint } from "./bytes.ts"
import { valuesEqual } from "./equality.ts"
import { detachBinary, shortText } from "./frameBytes.ts"

/**
 * The packed encoding of a chunk of events (trace format 3): a few bytes per event, no
 * per-event allocation when writing. Layout, all numbers LEB128 varints ("signed": zigzag):
 *
 *   chunk  = count, flags (1: every event carries its seq),
 *            kinds, (kind number, name, CRC-32 of its signature) × kinds, event × count
 *   event  = kind number, [signed seq − (previous seq + 1), only with flag 1],
 *            signed time − previous event's time,
 *            changed-field mask, the changed fields in declaration order
 *
 * A kind's signature names it, its fields and their codings, e.g.
 * `VmEntry(seq:int,vcpu:int,time:int,rip:int)`; the chunk lists the kinds it holds with
 * the numbers its events use for them. A reader finds its own kind by name and checksum,
 * so kinds added to VmEvent (anywhere in the union) never change how an older trace
 * reads, and a kind whose fields changed is refused by name, not misread.
 *
 * Every field but `_tag`, `seq` and `time` is predicted from the previous event of the
 * same kind in the chunk (before the first one, from a default: 0, false, the first
 * literal, "", empty, absent); bit i of the mask says field i differs, and only those are
 * written: an integer as the signed difference (or its value, when the range is too wide
 * for an exact difference), a boolean or a two-member literal not at all (it flipped),
 * a larger literal union as the member's index, a string through the chunk's string table
 * (see `ByteWriter.string`), bytes and integer arrays with their length, an optional field
 * as 0 (now absent) or 1 and the value. Any other field (RunEnd's registers) is
 * length-prefixed msgpack. Predictions restart at every chunk, so a chunk decodes alone.
 *
 * The layouts come from the VmEvent schema's property signatures, in declaration order,
 * so a new kind or field needs no change here. The encoder and decoder are generated
 * from them: straight-line code with the fields as constants, which is what makes this
 * cheap enough to record with. Decoding checks each value against its schema (ranges,
 * literals), so a packed chunk needs no schema pass afterwards. Recording packs the event
 * log's binary records (rawEvents.ts) with `packRawEvents`, generated from the same field
 * codings, into the same bytes, with no object per event.
 */

/** An exact difference needs a range no wider than the safe integers. */
const deltaCoded = (min: number, max: number): boolean => max - min <= Number.MAX_SAFE_INTEGER

export interface PackedChunk {
  readonly bytes: Uint8Array
  /** The kinds of the events in it (`_tag`s), each once. */
  readonly kinds: ReadonlyArray<string>
}

export interface PackedRawChunk extends PackedChunk {
  /** The seqs of its host inputs (`isHostInputTag`), in order. */
  readonly inputSeqs: ReadonlyArray<number>
}

/** What the codec is generated from: plain data, so that the packer thread gets it without the schemas (and Effect). */
export interface PackedCodecTables {
  /** The kinds' layouts (eventLayouts.ts), by kind number. */
  readonly layouts: ReadonlyArray<KindLayout>
  readonly isHostInputTag: (tag: string) => boolean
  /** A validator for a msgpack-coded field's schema (decoding only: the packer thread never decodes). */
  readonly is: (schema: Schema.Schema<unknown>) => (value: unknown) => boolean
}

export interface PackedCodec {
  /** The packed form of one chunk of events (at least one). Throws only for a value its schema does not allow. */
  readonly packEvents: (events: ReadonlyArray<VmEvent>) => PackedChunk
  /** The packed form of a raw chunk: the bytes `packEvents(rawEvents(chunk))` gives, without an object per event. */
  readonly packRawEvents: (chunk: RawChunk) => PackedRawChunk
  /** The events of a packed chunk whose first event is `firstSeq`. Throws `PackedDecodeError` naming the event on bytes that do not decode. */
  readonly unpackEvents: (data: Uint8Array, firstSeq: number) => Array<VmEvent>
}

export const makePackedCodec = ({ layouts: kindLayouts, isHostInputTag, is }: PackedCodecTables): PackedCodec => {
  const kindByName = new Map(kindLayouts.map((layout, k) => [layout.tag, k]))
  /** How a field is written, as its kind's signature says it. */
  const codingName = (codec: FieldCodec): string => {
    switch (codec._tag) {
      case "int":
        return deltaCoded(codec.min, codec.max) ? "int" : codec.min >= 0 ? "uint" : "sint"
      case "ints":
        return codec.min >= 0 ? "uints" : "sints"
      case "literal":
        return JSON.stringify(codec.values)
      default:
        return codec._tag
    }
  }

  const signature = (layout: KindLayout): string =>
    `${layout.tag}(${layout.fields.map((f) => `${f.name}${f.optional ? "?" : ""}:${codingName(f.codec)}`).join(",")})`

  /** A kind as a chunk lists it: its name, and a CRC-32 of its signature (the full text would cost more than the events of a small chunk). */
  const kindKey = (name: string, signatureCrc: number): string => `${name}#${signatureCrc.toString(16)}`
  const kindNames = kindLayouts.map((layout) => new TextEncoder().encode(layout.tag))
  const signatureCrcs = kindLayouts.map((layout) => crc32(signature(layout)))
  const kindByKey = new Map(kindLayouts.map((layout, k) => [kindKey(layout.tag, signatureCrcs[k]!), k]))

  /** What a kind's first event in a chunk is predicted from. */
  const defaultValue = (codec: FieldCodec): unknown => {
    switch (codec._tag) {
      case "int":
        return Math.min(Math.max(0, codec.min), codec.max)
      case "bool":
        return false
      case "literal":
        return codec.values[0]
      case "string":
        return ""
      case "bytes":
        return new Uint8Array(0)
      case "ints":
        return []
      case "msgpack":
        return undefined
    }
  }

  const defaultEvent = (layout: KindLayout): VmEvent => {
    const event: Record<string, unknown> = { _tag: layout.tag }
    for (const f of layout.fields) event[f.name] = f.optional ? undefined : defaultValue(f.codec)
    return event as unknown as VmEvent
  }

  // ---------------------------------------------------------------------------------------
  // Code generation. The encoder writes into `buf` at `pos` (room for an event's fixed part
  // is made before each event), the decoder reads `buf` at `pos`; one-byte numbers, which
  // are nearly all of them, are handled inline and the rest by the functions in bytes.ts.
  // `c` and `p` are expressions for a field's current and predicted value; `v` is the
  // decoder's variable that holds the prediction and receives the value.
  //
  // The encoder comes in two forms sharing the field codings below: the object encoder
  // (`c`, `p` are properties of VmEvent objects) and the raw encoder, which reads a
  // RawChunk's records (rawEvents.ts) into locals and keeps its predictions in locals. In
  // raw form a literal's value is its index, a bool's 0 or 1, a string's, bytes' or
  // msgpack value's the object itself (`objects[slot]`), and an ints array's the position
  // of its count in `words` (−1 for the empty default): the bytes written are the same.

  const js = (value: unknown): string => JSON.stringify(value)

  const put = {
    byte: (x: string) => `buf[pos++] = ${x}`,
    varint: (x: string) => `{ const u = ${x}; if (u < 0x80) buf[pos++] = u; else pos = writeVarint(buf, pos, u) }`,
    signed: (x: string) => `{ const d = ${x}; if (d >= -0x40 && d < 0x40) buf[pos++] = (d << 1) ^ (d >> 31); else pos = writeSigned(buf, pos, d) }`,
    /** A call that writes through the ByteWriter (and may grow its buffer). */
    through: (call: string) => `w.pos = pos; ${call}; buf = w.buf; pos = w.pos`
  }

  const get = {
    /** Past the end, `buf[pos]` is undefined and the ByteReader call reports it. */
    varint: (v: string) => `{ const b = buf[pos]; if (b < 0x80) { pos++; ${v} = b } else { r.pos = pos; ${v} = r.varint(); pos = r.pos } }`,
    signed: (v: string) => `{ const b = buf[pos]; if (b < 0x80) { pos++; ${v} = (b >>> 1) ^ -(b & 1) } else { r.pos = pos; ${v} = r.signed(); pos = r.pos } }`,
    /** A call that reads through the ByteReader. */
    through: (v: string, call: string) => `r.pos = pos; ${v} = ${call}; pos = r.pos`
  }

  const indexOf = (f: Field, values: ReadonlyArray<unknown>, c: string): string =>
    values.map((value, i) => `${c} === ${js(value)} ? ${i} : `).join("") + `badValue(${js(f.name)}, ${c})`

  const rangeCheck = (f: Field, min: number, max: number, v: string): string =>
    `if (!(${v} >= ${min} && ${v} <= ${max})) fail(${js(`${f.name}: `)} + ${v} + ${js(` is outside ${min}..${max}`)})`

  interface FieldCode {
    /** Expression: the value differs from the prediction (both present). */
    changed(c: string, p: string): string
    /** Statements writing a value that differs from the prediction. */
    write(c: string, p: string): string
    /** Statements writing a value that may equal the prediction (an optional field coming back). */
    writeAny(c: string, p: string): string
    /** Statements replacing the prediction in `v` with the value `write` wrote. */
    read(v: string): string
    /** The same for `writeAny`. */
    readAny(v: string): string
  }

  /** A field's coding; `raw`: `changed`, `write` and `writeAny` take values in raw form (see above). */
  const fieldCode = (f: Field, k: number, i: number, preamble: Array<string>, raw = false): FieldCode => {
    const id = `${k}_${i}`
    const codec = f.codec
    /** The writer of a raw record put a value there that its schema does not allow. */
    const badRaw = (c: string) => `badRaw(${js(`${kindLayouts[k]!.tag}.${f.name}`)}, ${c})`
    switch (codec._tag) {
      case "int": {
        const { min, max } = codec
        const delta = deltaCoded(min, max)
        const write = (c: string, p: string) => delta ? put.signed(`${c} - ${p}`) : min >= 0 ? put.varint(c) : put.signed(c)
        const read = (v: string) => {
          const value = delta ? `{ let d = 0; ${get.signed("d")}; ${v} += d }` : min >= 0 ? get.varint(v) : get.signed(v)
          return `${value}; ${rangeCheck(f, min, max, v)}`
        }
        return { changed: (c, p) => `${c} !== ${p}`, write, writeAny: write, read, readAny: read }
      }
      case "bool":
        return {
          changed: (c, p) => `${c} !== ${p}`,
          write: (c) => raw ? `if (${c} !== 0 && ${c} !== 1) ${badRaw(c)}` : `if (typeof ${c} !== "boolean") badValue(${js(f.name)}, ${c})`,
          writeAny: (c) => raw
            ? `if (${c} !== 0 && ${c} !== 1) ${badRaw(c)}; ${put.byte(c)}`
            : `if (typeof ${c} !== "boolean") badValue(${js(f.name)}, ${c}); ${put.byte(`${c} ? 1 : 0`)}`,
          read: (v) => `${v} = !${v}`,
          readAny: (v) => `{ let b = 0; ${get.varint("b")}; if (b > 1) fail(${js(`${f.name}: not a boolean`)}); ${v} = b === 1 }`
        }
      case "literal": {
        const lits = `literals${id}`
        preamble.push(`const ${lits} = ${js(codec.values)}`)
        const n = codec.values.length
        /** The member's index, checked (raw form: the value is the index). */
        const index = (c: string) => raw ? `(${c} >= 0 && ${c} < ${n} && ${c} % 1 === 0 ? ${c} : ${badRaw(c)})` : indexOf(f, codec.values, c)
        const writeAny = (c: string) => put.varint(index(c))
        const readAny = (v: string) =>
          `{ let i = 0; ${get.varint("i")}; if (i >= ${n}) fail(${js(`${f.name}: member `)} + i + ${js(` of ${n}`)}); ${v} = ${lits}[i] }`
        if (n > 2) return { changed: (c, p) => `${c} !== ${p}`, write: writeAny, writeAny, read: readAny, readAny }
        // One or two members: that it changed says what it is.
        const [a, b] = codec.values
        return {
          changed: (c, p) => `${c} !== ${p}`,
          write: (c) => raw
            ? n === 1 ? badRaw(c) : `if (${c} !== 0 && ${c} !== 1) ${badRaw(c)}`
            : n === 1 ? `badValue(${js(f.name)}, ${c})` : `if (${c} !== ${js(a)} && ${c} !== ${js(b)}) badValue(${js(f.name)}, ${c})`,
          writeAny,
          read: (v) => n === 1 ? `fail(${js(`${f.name}: cannot change`)})` : `${v} = ${v} === ${js(a)} ? ${js(b)} : ${js(a)}`,
          readAny
        }
      }
      case "string": {
        const write = (c: string) => put.through(`w.string(${c}, strings)`)
        const read = (v: string) => get.through(v, "r.string(strings)")
        return { changed: (c, p) => `${c} !== ${p}`, write, writeAny: write, read, readAny: read }
      }
      case "bytes": {
        const write = (c: string) => put.through(`w.bytes(${c})`)
        const read = (v: string) => get.through(v, "r.bytes()")
        return { changed: (c, p) => `!bytesEqual(${c}, ${p})`, write, writeAny: write, read, readAny: read }
      }
      case "ints": {
        const element = codec.min >= 0 ? put.varint : put.signed
        // Raw form: inline, the count then the numbers that follow it in `words`.
        const write = (c: string) => raw
          ? `{ const n = words[${c}]; if (pos + 10 + 10 * n > buf.length) { ${put.through("w.ensure(10 + 10 * n)")} }; ${put.varint("n")}; for (let j = ${c} + 1; j <= ${c} + n; j++) ${element("words[j]")} }`
          : put.through(`writeInts(w, ${c}, ${codec.min >= 0})`)
        const read = (v: string) => get.through(v, `readInts(r, ${codec.min}, ${codec.max}, ${js(f.name)})`)
        // Raw form: the count and the first number compared inline, the rest (rarely any) by a call.
        const rawChanged = (c: string, p: string) =>
          `!(${p} < 0 ? words[${c}] === 0 : words[${p}] === words[${c}] && (words[${c}] === 0 || words[${p} + 1] === words[${c} + 1] && (words[${c}] === 1 || rawIntsEqual(words, ${c}, ${p}))))`
        const changed = (c: string, p: string) => raw ? rawChanged(c, p) : `!intsEqual(${c}, ${p})`
        return { changed, write, writeAny: write, read, readAny: read }
      }
      case "msgpack": {
        const valid = `valid${id}`
        preamble.push(`const ${valid} = h.is(h.layouts[${k}].fields[${i}].codec.schema)`)
        const write = (c: string) => put.through(`writeMsgpack(w, ${c})`)
        const read = (v: string) => `${get.through(v, "readMsgpack(r)")}; if (!${valid}(${v})) fail(${js(`${f.name}: not a valid value`)})`
        return { changed: (c, p) => `!valuesEqual(${c}, ${p})`, write, writeAny: write, read, readAny: read }
      }
    }
  }

  const msgpack = new Packr({ useRecords: false }) // plain msgpack, like the frames (framing.ts)

  const helpers = {
    writeVarint,
    writeSigned,
    bytesEqual: (a: Uint8Array, b: Uint8Array): boolean => {
      if (a.length !== b.length) return false
      for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
      return true
    },
    intsEqual: (a: ReadonlyArray<number>, b: ReadonlyArray<number>): boolean => {
      if (a.length !== b.length) return false
      for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
      return true
    },
    /** Raw form: the ints at `a` and `b` in `words` (count, then the numbers; −1: none) are equal. */
    rawIntsEqual: (words: Float64Array, a: number, b: number): boolean => {
      const n = words[a]!
      if (b < 0) return n === 0
      if (words[b] !== n) return false
      for (let i = 1; i <= n; i++) if (words[a + i] !== words[b + i]) return false
      return true
    },
    valuesEqual,
    writeInts: (w: ByteWriter, values: ReadonlyArray<number>, unsigned: boolean): void => {
      w.ensure(10 + 10 * values.length)
      w.varint(values.length)
      for (const v of values) unsigned ? w.varint(v) : w.signed(v)
    },
    readInts: (r: ByteReader, min: number, max: number, name: string): Array<number> => {
      const n = r.varint()
      if (n > r.buf.length - r.pos) throw new PackedDecodeError(`${name}: ${n} elements announced, ${r.buf.length - r.pos} bytes left`)
      const out: Array<number> = []
      for (let i = 0; i < n; i++) {
        const v = min >= 0 ? r.varint() : r.signed()
        if (!(v >= min && v <= max)) throw new PackedDecodeError(`${name}[${i}]: ${v} is outside ${min}..${max}`)
        out.push(v)
      }
      return out
    },
    writeMsgpack: (w: ByteWriter, value: unknown): void => w.bytes(msgpack.pack(value)),
    readMsgpack: (r: ByteReader): unknown => {
      const bytes = r.bytes()
      try {
        return detachBinary(msgpack.unpack(bytes))
      } catch (e) {
        throw new PackedDecodeError(`not msgpack (${e instanceof Error ? e.message : String(e)})`)
      }
    },
    fail: (message: string): never => {
      throw new PackedDecodeError(message)
    },
    /** The encoder met a value its schema does not allow: a bug in whoever built the event. */
    badValue: (field: string, value: unknown): never => {
      throw new Error(`packed events: ${field} = ${String(value)} is not a value of its schema`)
    },
    /** The same in a raw record: a bug in its writer. `field` is `Kind.field`. */
    badRaw: (field: string, value: unknown): never => {
      throw new Error(`packed events: ${field} = ${String(value)} in a raw record is not a value of its schema`)
    },
    is,
    layouts: kindLayouts,
    defaults: kindLayouts.map((layout) => layout.fields.map((f) => defaultValue(f.codec))),
    defaultEvents: kindLayouts.map(defaultEvent)
  }

  /** What the encoder returns: done, or the events' seqs are not consecutive, or the index of an event of a kind it has no case for. */
  const encoded = -1
  const notConsecutive = -2

  /**
   * A kind's fields but seq and time as either encoder writes them: the changed-field mask,
   * then the changed fields. `codes` are the fields' codings (in the encoder's form), `c`
   * and `p` give expressions for a field's value and its prediction, `fallback` for its
   * default (an optional field's prediction when it was absent), `absent` says whether the
   * value or prediction of an optional field is absent.
   */
  const encodeFields = (
    layout: KindLayout,
    codes: ReadonlyArray<FieldCode | undefined>,
    c: (f: Field, i: number) => string,
    p: (f: Field, i: number) => string,
    fallback: (f: Field, i: number) => string,
    absent: (value: string) => string = (value) => `${value} === undefined`
  ): Array<string> => {
    const masks: Array<string> = ["let mask = 0"]
    const writes: Array<string> = []
    let bit = 0
    layout.fields.forEach((f, i) => {
      const code = codes[i]
      if (code === undefined) return
      const mask = `${1 << bit++}`
      const cv = c(f, i)
      const pv = p(f, i)
      if (f.optional) {
        const changed = `(${absent(cv)} ? !(${absent(pv)}) : ${absent(pv)} || ${code.changed(cv, pv)})`
        masks.push(`if (${changed}) mask |= ${mask}`)
        writes.push(`if (mask & ${mask}) { if (${absent(cv)}) ${put.byte("0")}; else { ${put.byte("1")}; ${code.writeAny(cv, `(${absent(pv)} ? ${fallback(f, i)} : ${pv})`)} } }`)
      } else {
        masks.push(`if (${code.changed(cv, pv)}) mask |= ${mask}`)
        const write = code.write(cv, pv)
        if (write !== "") writes.push(`if (mask & ${mask}) { ${write} }`)
      }
    })
    return [...masks, put.varint("mask"), ...writes]
  }

  const isSeqOrTime = (f: Field): boolean => f.name === "seq" || f.name === "time"

  /** Either encoder's start of an event of kind `k`: its number, and that the chunk holds the kind. */
  const writeKind = (k: number): Array<string> => [k < 0x80 ? put.byte(`${k}`) : put.varint(`${k}`), `used[${k}] = 1`]

  /** One kind's `case` in the encoder and in the decoder. */
  const compileKind = (layout: KindLayout, k: number, preamble: Array<string>): { encode: Array<string>; decode: Array<string> } => {
    const codes = layout.fields.map((f, i) => isSeqOrTime(f) ? undefined : fieldCode(f, k, i, preamble))
    const encode: Array<string> = [
      ...writeKind(k),
      `const s = e["seq"]`,
      `if (explicitSeqs) ${put.signed("s - seq - 1")}`,
      `else if (s !== seq + 1) return ${notConsecutive}`,
      "seq = s",
      `const t = e["time"]`,
      put.signed("t - time"),
      "time = t",
      `const p = p${k}`,
      ...encodeFields(layout, codes, (f) => `e[${js(f.name)}]`, (f) => `p[${js(f.name)}]`, (_, i) => `h.defaults[${k}][${i}]`),
      `p${k} = e`
    ]
    const decode: Array<string> = [`const p = p${k}`, "let mask = 0", get.varint("mask")]
    const build: Array<string> = [`const e = { "_tag": ${js(layout.tag)}`]
    let literalOpen = true
    let bit = 0
    layout.fields.forEach((f, i) => {
      const key = `[${js(f.name)}]`
      const v = `v${i}`
      if (f.name === "seq" || f.name === "time") {
        const range = f.codec as { min: number; max: number }
        decode.push(rangeCheck(f, range.min, range.max, f.name))
      } else {
        const code = codes[i]!
        const mask = `${1 << bit++}`
        const fallback = `h.defaults[${k}][${i}]`
        if (f.optional) {
          decode.push(
            `let ${v} = p${key}`,
            `if (mask & ${mask}) { let present = 0; ${get.varint("present")}; if (present === 0) ${v} = undefined; else if (present === 1) { if (${v} === undefined) ${v} = ${fallback}; ${code.readAny(v)} } else fail(${js(`${f.name}: presence byte is not 0 or 1`)}) }`
          )
        } else {
          decode.push(`let ${v} = p${key}`, `if (mask & ${mask}) { ${code.read(v)} }`)
        }
      }
      const value = f.name === "seq" || f.name === "time" ? f.name : v
      if (f.optional) {
        if (literalOpen) build[0] += " }"
        literalOpen = false
        build.push(`if (${value} !== undefined) e${key} = ${value}`)
      } else if (literalOpen) build[0] += `, ${key.slice(1, -1)}: ${value}`
      else build.push(`e${key} = ${value}`)
    })
    if (literalOpen) build[0] += " }"
    decode.splice(3, 0, `if (mask >= ${2 ** bit}) fail("mask " + mask + " for ${bit} fields")`)
    return { encode, decode: [...decode, ...build, `p${k} = e`, "events.push(e)"] }
  }

  /** A field's default in raw form, as an expression (what its first event in a chunk is predicted from). */
  const rawDefault = (f: Field, k: number, i: number): string => {
    switch (f.codec._tag) {
      case "int":
        return js(defaultValue(f.codec))
      case "bool":
      case "literal":
        return "0"
      case "string":
        return `""`
      case "ints":
        return "-1"
      case "bytes":
      case "msgpack":
        return `h.defaults[${k}][${i}]`
    }
  }

  /**
   * An optional field's value in raw form while it is absent: of the same type as when
   * present, so the compiler keeps numbers unboxed; a companion local (name + `_`) says
   * whether it is present (1) or not (0).
   */
  const rawAbsentValue = (f: Field): string => {
    switch (f.codec._tag) {
      case "string":
      case "bytes":
      case "msgpack":
        return "undefined"
      case "ints":
        return "-1"
      default:
        return "0"
    }
  }

  /** The predictions of the raw encoder: a local per kind and field (and its presence, for an optional one). */
  const rawPrediction = (k: number, i: number): string => `q${k}_${i}`

  /**
   * One kind's `case` in the raw encoder: read the record's fields (at `o` in `words`) into
   * locals, then write them as the object encoder writes the same event, with the same
   * field codings (`encodeFields`), and keep them as the kind's predictions.
   */
  const compileRawKind = (layout: KindLayout, k: number, preamble: Array<string>): { encode: Array<string>; predictions: Array<string> } => {
    const reads: Array<string> = []
    const predictions: Array<string> = []
    const updates: Array<string> = []
    const codes = layout.fields.map((f, i) => {
      if (f.name === "seq") return undefined
      const c = `c${i}`
      const slot = (() => {
        switch (f.codec._tag) {
          case "string":
          case "bytes":
          case "msgpack":
            return `objects[words[o++]]`
          default:
            return `words[o++]`
        }
      })()
      // `| 0` keeps `o` a small integer for the compiler (a count is one).
      const skipInts = "o = (o + 1 + words[o]) | 0"
      if (f.optional) {
        reads.push(f.codec._tag === "ints"
          ? `const ${c}_ = words[o++]; let ${c} = -1; if (${c}_ !== 0) { ${c} = o; ${skipInts} }`
          : `const ${c}_ = words[o++]; const ${c} = ${c}_ === 0 ? ${rawAbsentValue(f)} : ${slot}`)
      } else reads.push(f.codec._tag === "ints" ? `const ${c} = o; ${skipInts}` : `const ${c} = ${slot}`)
      if (f.name === "time") return undefined
      const q = rawPrediction(k, i)
      if (f.optional) {
        predictions.push(`${q} = ${rawAbsentValue(f)}`, `${q}_ = 0`)
        updates.push(`${q} = ${c}`, `${q}_ = ${c}_`)
      } else {
        predictions.push(`${q} = ${rawDefault(f, k, i)}`)
        updates.push(`${q} = ${c}`)
      }
      return fieldCode(f, k, i, preamble, true)
    })
    const time = `c${layout.fields.findIndex((f) => f.name === "time")}`
    const encode = [
      ...reads,
      ...writeKind(k),
      ...(isHostInputTag(layout.tag) ? ["inputSeqs.push(firstSeq + i)"] : []),
      put.signed(`${time} - time`),
      `time = ${time}`,
      ...encodeFields(layout, codes, (_, i) => `c${i}`, (_, i) => rawPrediction(k, i), (f, i) => rawDefault(f, k, i), (value) => `${value}_ === 0`),
      ...updates
    ]
    return { encode, predictions }
  }

  type EncodeRaw = (
    words: Float64Array, objects: ReadonlyArray<unknown>, count: number, firstSeq: number,
    w: ByteWriter, strings: Map<string, number>, used: Uint8Array, inputSeqs: Array<number>
  ) => number
  type Encode = (events: ReadonlyArray<VmEvent>, w: ByteWriter, strings: Map<string, number>, explicitSeqs: boolean, used: Uint8Array) => number
  /** `kinds[n]`: this vmrr's kind number for the chunk's kind number n. */
  type Decode = (r: ByteReader, count: number, firstSeq: number, explicitSeqs: boolean, kinds: ReadonlyArray<number>, events: Array<VmEvent>) => void

  /** Upper bound of an event's bytes besides strings, bytes, arrays and msgpack (which make room themselves). */
  const maxFixedBytes = 1 + 10 + 10 + 5 + 31 * 11

  const indent = (lines: Array<string>, depth: number) => lines.map((line) => `${"  ".repeat(depth)}${line}`)

  /**
   * The encoder or the decoder for the kinds `kinds`, as one function: a `switch` on the
   * kind whose cases are straight-line code with the fields' names, checks and codings as
   * constants, and the predictions in local variables (`p0`, `p1` …: the previous event
   * of each kind). Each case's property accesses see one kind, so they stay monomorphic;
   * one function was faster than a function per kind called through a table.
   */
  const compileWith = <F, C>(
    kinds: ReadonlyArray<number>,
    compileCase: (layout: KindLayout, k: number, preamble: Array<string>) => C,
    body: (cases: ReadonlyArray<{ k: number; tag: string } & C>) => Array<string>
  ): F => {
    const preamble: Array<string> = []
    const cases = kinds.map((k) => ({ k, tag: kindLayouts[k]!.tag, ...compileCase(kindLayouts[k]!, k, preamble) }))
    const source = [
      "const { writeVarint, writeSigned, bytesEqual, intsEqual, rawIntsEqual, valuesEqual, writeInts, readInts, writeMsgpack, readMsgpack, fail, badValue, badRaw } = h",
      ...preamble,
      ...body(cases)
    ].join("\n")
    return new Function("h", source)(helpers) as F
  }

  const compile = <F>(kinds: ReadonlyArray<number>, body: (cases: ReadonlyArray<{ k: number; tag: string; encode: Array<string>; decode: Array<string> }>, predictions: string) => Array<string>): F =>
    compileWith(kinds, compileKind, (cases) =>
      body(cases, cases.length === 0 ? "" : `let ${cases.map(({ k }) => `p${k} = h.defaultEvents[${k}]`).join(", ")}`))

  const compileEncoder = (kinds: ReadonlyArray<number>): Encode =>
    compile(kinds, (cases, predictions) => [
      "return function encodeEvents(events, w, strings, explicitSeqs, used) {",
      `  ${predictions}`,
      "  let seq = events[0].seq - 1",
      "  let time = 0",
      "  let buf = w.buf",
      "  let pos = w.pos",
      "  for (let i = 0; i < events.length; i++) {",
      "    const e = events[i]",
      `    if (pos + ${maxFixedBytes} > buf.length) { ${put.through(`w.ensure(${maxFixedBytes})`)} }`,
      "    switch (e._tag) {",
      ...cases.flatMap(({ tag, encode }) => [`      case ${js(tag)}: {`, ...indent(encode, 4), "        break", "      }"]),
      "      default: return i",
      "    }",
      "  }",
      "  w.pos = pos",
      `  return ${encoded}`,
      "}"
    ])

  const compileDecoder = (kinds: ReadonlyArray<number>): Decode =>
    compile(kinds, (cases, predictions) => [
      "return function decodeEvents(r, count, firstSeq, explicitSeqs, kinds, events) {",
      `  ${predictions}`,
      "  const strings = []",
      "  let seq = firstSeq - 1",
      "  let time = 0",
      "  const buf = r.buf",
      "  let pos = r.pos",
      "  for (let i = 0; i < count; i++) {",
      "    let written = 0",
      `    ${get.varint("written")}`,
      "    const kind = kinds[written]",
      "    if (explicitSeqs) {",
      "      let d = 0",
      `      ${get.signed("d")}`,
      "      seq += 1 + d",
      "    } else seq++",
      "    let dt = 0",
      `    ${get.signed("dt")}`,
      "    time += dt",
      "    switch (kind) {",
      ...cases.flatMap(({ k, decode }) => [`      case ${k}: {`, ...indent(decode, 4), "        break", "      }"]),
      `      default: fail("kind " + written + ", which the chunk does not list")`,
      "    }",
      "  }",
      "  r.pos = pos",
      "}"
    ])

  /** What the raw encoder returns: done, or the records do not take exactly `words`, or a kind number it has no case for. */
  const wrongLength = -3
  const compileRawEncoder = (kinds: ReadonlyArray<number>): EncodeRaw =>
    compileWith(kinds, compileRawKind, (cases) => {
      const predictions = cases.flatMap((c) => c.predictions)
      return [
        "return function encodeRawEvents(words, objects, count, firstSeq, w, strings, used, inputSeqs) {",
        ...(predictions.length === 0 ? [] : [`  let ${predictions.join(", ")}`]),
        "  let time = 0",
        "  let buf = w.buf",
        "  let pos = w.pos",
        "  let o = 0",
        "  for (let i = 0; i < count; i++) {",
        `    if (pos + ${maxFixedBytes} > buf.length) { ${put.through(`w.ensure(${maxFixedBytes})`)} }`,
        "    const kind = words[o++]",
        "    switch (kind) {",
        ...cases.flatMap(({ k, encode }) => [`      case ${k}: {`, ...indent(encode, 4), "        break", "      }"]),
        "      default: return kind",
        "    }",
        "  }",
        "  w.pos = pos",
        `  return o === words.length ? ${encoded} : ${wrongLength}`,
        "}"
      ]
    })

  /**
   * The encoder and decoder have cases only for the kinds met so far, and are compiled
   * again when another comes: V8 optimises a function after a number of runs that grows
   * with its size, and a recording meets a few kinds, not all of them.
   */
  const encoderKinds: Array<number> = []
  let encode = compileEncoder(encoderKinds)
  const decoderKinds: Array<number> = []
  let decode = compileDecoder(decoderKinds)
  const rawEncoderKinds: Array<number> = []
  let encodeRaw = compileRawEncoder(rawEncoderKinds)

  const writer = new ByteWriter()
  const head = new ByteWriter()
  const used = new Uint8Array(kindLayouts.length)


  /** The packed form of one chunk of events (at least one). Throws only for a value its schema does not allow. */
  const packEvents = (events: ReadonlyArray<VmEvent>): PackedChunk => {
    const strings = new Map<string, number>()
    let explicitSeqs = false
    for (;;) {
      writer.reset()
      strings.clear()
      used.fill(0)
      const result = encode(events, writer, strings, explicitSeqs, used)
      if (result === encoded) break
      if (result === notConsecutive) explicitSeqs = true
      else {
        const tag = events[result]!._tag
        const k = kindByName.get(tag)
        if (k === undefined) throw new Error(`packed events: ${String(tag)} is not a VmEvent kind`)
        encoderKinds.push(k)
        encode = compileEncoder(encoderKinds)
      }
    }
    return finishChunk(events.length, explicitSeqs)
  }

  /** The chunk of `count` events the encoder wrote into `writer`: its head (count, flags, kinds), then them. */
  const finishChunk = (count: number, explicitSeqs: boolean): PackedChunk => {
    head.reset()
    head.ensure(16)
    head.varint(count)
    head.byte(explicitSeqs ? 1 : 0)
    head.varint(used.reduce((n, u) => n + u, 0))
    const kinds: Array<string> = []
    used.forEach((u, k) => {
      if (u === 0) return
      kinds.push(kindLayouts[k]!.tag)
      head.ensure(10)
      head.varint(k)
      head.bytes(kindNames[k]!)
      head.ensure(10)
      head.varint(signatureCrcs[k]!)
    })
    const out = new Uint8Array(head.pos + writer.pos)
    out.set(head.buf.subarray(0, head.pos))
    out.set(writer.buf.subarray(0, writer.pos), head.pos)
    return { bytes: out, kinds }
  }


  /**
   * The packed form of a chunk of raw records (rawEvents.ts), without an object per event:
   * the same bytes as `packEvents(rawEvents(chunk))`. Throws on a record its writer got
   * wrong (a kind or a value its schema does not allow).
   */
  const packRawEvents = (chunk: RawChunk): PackedRawChunk => {
    const strings = new Map<string, number>()
    const inputSeqs: Array<number> = []
    if (chunk.count === 0) throw new Error("packed events: an empty raw chunk")
    for (;;) {
      writer.reset()
      strings.clear()
      used.fill(0)
      inputSeqs.length = 0
      const result = encodeRaw(chunk.words, chunk.objects, chunk.count, chunk.firstSeq, writer, strings, used, inputSeqs)
      if (result === encoded) break
      if (result === wrongLength) throw new Error(`packed events: ${chunk.count} raw records do not take the chunk's ${chunk.words.length} words`)
      if (!(Number.isInteger(result) && result >= 0 && result < kindLayouts.length) || rawEncoderKinds.includes(result)) {
        throw new Error(`packed events: kind number ${String(result)} in a raw record is not a VmEvent kind`)
      }
      rawEncoderKinds.push(result)
      encodeRaw = compileRawEncoder(rawEncoderKinds)
    }
    return { ...finishChunk(chunk.count, false), inputSeqs }
  }

  /**
   * The events of a packed chunk whose first event is `firstSeq`. Unchanged arrays and
   * bytes are shared with the event before (events are immutable). Throws
   * `PackedDecodeError` naming the event on bytes that do not decode.
   */
  const unpackEvents = (data: Uint8Array, firstSeq: number): Array<VmEvent> => {
    const r = new ByteReader(data)
    const count = r.varint()
    // Every event takes at least 3 bytes: a count past that is damage, not an allocation.
    if (count === 0 || count > data.length) throw new PackedDecodeError(`count ${count} for ${data.length} bytes`)
    const flags = r.byte()
    if (flags > 1) throw new PackedDecodeError(`flags ${flags}`)
    const kinds = readKinds(r)
    const missing = kinds.filter((k) => k >= 0 && !decoderKinds.includes(k))
    if (missing.length > 0) {
      decoderKinds.push(...new Set(missing))
      decode = compileDecoder(decoderKinds)
    }
    const events: Array<VmEvent> = []
    try {
      decode(r, count, firstSeq, flags === 1, kinds, events)
    } catch (e) {
      if (!(e instanceof PackedDecodeError)) throw e
      throw new PackedDecodeError(`event ${events.length}: ${e.message}`)
    }
    if (!r.atEnd) throw new PackedDecodeError(`${data.length - r.pos} bytes after the last event`)
    return events
  }

  /** The chunk's kind list, as this vmrr's kind numbers by the chunk's. */
  const readKinds = (r: ByteReader): Array<number> => {
    const listed = r.varint()
    if (listed > kindLayouts.length) throw new PackedDecodeError(`${listed} kinds listed, this vmrr knows ${kindLayouts.length}`)
    const kinds: Array<number> = []
    for (let i = 0; i < listed; i++) {
      const written = r.varint()
      if (written > 0xffff) throw new PackedDecodeError(`kind number ${written}`)
      const name = new TextDecoder().decode(r.bytes())
      const k = kindByKey.get(kindKey(name, r.varint()))
      if (k === undefined) {
        throw new PackedDecodeError(kindByName.has(name)
          ? `${name} events written with other fields than this vmrr's ${name}`
          : `a kind this vmrr does not know: ${shortText(JSON.stringify(name), 60)}`)
      }
      while (kinds.length <= written) kinds.push(-1)
      kinds[written] = k
    }
    return kinds
  }

  return { packEvents, packRawEvents, unpackEvents }
}
