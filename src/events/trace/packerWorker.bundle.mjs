// Built by `npm run build:worker` from packerWorker.ts (packerWorkerBundle.ts): do not edit.

// src/events/trace/packerWorker.ts
import * as fs2 from "node:fs";
import { receiveMessageOnPort, workerData } from "node:worker_threads";

// src/events/trace/packedCodec.ts
import { crc32 as crc322 } from "node:zlib";
import { Packr as Packr2 } from "msgpackr";

// src/events/trace/bytes.ts
var PackedDecodeError = class extends Error {
};
var initialBytes = 64 * 1024;
var maxKeptBytes = 4 * 1024 * 1024;
var utf8Encoder = new TextEncoder();
var utf8Decoder = new TextDecoder();
var writeVarint = (buf, pos, u) => {
  while (u >= 268435456) {
    buf[pos++] = u % 128 | 128;
    u = Math.floor(u / 128);
  }
  while (u >= 128) {
    buf[pos++] = u & 127 | 128;
    u >>>= 7;
  }
  buf[pos++] = u;
  return pos;
};
var writeSigned = (buf, pos, d) => {
  if (d >= -536870912 && d < 536870912) return writeVarint(buf, pos, d << 1 ^ d >> 31);
  const negative = d < 0;
  const m = negative ? -d - 1 : d;
  buf[pos++] = 128 | m % 64 << 1 | (negative ? 1 : 0);
  return writeVarint(buf, pos, Math.floor(m / 64));
};
var ByteWriter = class {
  buf = new Uint8Array(initialBytes);
  pos = 0;
  /** Room for `n` more bytes. */
  ensure(n) {
    if (this.pos + n <= this.buf.length) return;
    const grown = new Uint8Array(Math.max(this.buf.length * 2, this.pos + n));
    grown.set(this.buf.subarray(0, this.pos));
    this.buf = grown;
  }
  byte(b) {
    this.buf[this.pos++] = b;
  }
  varint(u) {
    this.pos = writeVarint(this.buf, this.pos, u);
  }
  signed(d) {
    this.pos = writeSigned(this.buf, this.pos, d);
  }
  bytes(b) {
    this.ensure(10 + b.length);
    this.varint(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
  }
  /**
   * A string through the chunk's string table: 0 and the UTF-8 bytes the first time,
   * then 1 + its number in the table.
   */
  string(s, table) {
    const known = table.get(s);
    if (known !== void 0) {
      this.varint(known + 1);
      return;
    }
    table.set(s, table.size);
    this.byte(0);
    this.bytes(utf8Encoder.encode(s));
  }
  /** Empties it; a buffer grown for one huge chunk is dropped rather than kept for good. */
  reset() {
    this.pos = 0;
    if (this.buf.length > maxKeptBytes) this.buf = new Uint8Array(initialBytes);
  }
};
var ByteReader = class {
  constructor(buf) {
    this.buf = buf;
  }
  buf;
  pos = 0;
  get atEnd() {
    return this.pos >= this.buf.length;
  }
  byte() {
    if (this.pos >= this.buf.length) throw new PackedDecodeError("the data ends inside it");
    return this.buf[this.pos++];
  }
  /** See `writeVarint`; refuses more than 8 bytes and values past 2^53. */
  varint() {
    let b = this.byte();
    if (b < 128) return b;
    let v = b & 127;
    for (let shift = 7; shift < 28; shift += 7) {
      b = this.byte();
      v |= (b & 127) << shift;
      if (b < 128) return v;
    }
    let scale = 268435456;
    for (let i = 4; i < 8; i++) {
      b = this.byte();
      v += (b & 127) * scale;
      if (b < 128) {
        if (v > Number.MAX_SAFE_INTEGER) throw new PackedDecodeError("a number past 2^53");
        return v;
      }
      scale *= 128;
    }
    throw new PackedDecodeError("a number longer than 8 bytes");
  }
  /** See `writeSigned`. */
  signed() {
    const b = this.byte();
    if (b < 128) return b & 1 ? -(b >> 1) - 1 : b >> 1;
    const m = (b >> 1 & 63) + this.varint() * 64;
    if (m > Number.MAX_SAFE_INTEGER) throw new PackedDecodeError("a number past 2^53");
    return b & 1 ? -m - 1 : m;
  }
  /** Length-prefixed bytes, as a fresh plain Uint8Array (not a view into the chunk). */
  bytes() {
    const n = this.varint();
    if (n > this.buf.length - this.pos) throw new PackedDecodeError(`${n} bytes announced, ${this.buf.length - this.pos} left`);
    const out = new Uint8Array(this.buf.subarray(this.pos, this.pos + n));
    this.pos += n;
    return out;
  }
  string(table) {
    const ref = this.varint();
    if (ref === 0) {
      const s = utf8Decoder.decode(this.bytes());
      table.push(s);
      return s;
    }
    if (ref > table.length) throw new PackedDecodeError(`string ${ref - 1} of a table of ${table.length}`);
    return table[ref - 1];
  }
};

// src/events/trace/equality.ts
var valuesEqual = (a, b) => {
  if (a === b) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  if (a instanceof Uint8Array) return b instanceof Uint8Array && bytesEqual(a, b);
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!valuesEqual(a[i], b[i])) return false;
    return true;
  }
  if (b instanceof Uint8Array || Array.isArray(b)) return false;
  return recordsEqual(a, b);
};
var recordsEqual = (x, y) => {
  let keys = 0;
  for (const key in x) {
    const u = x[key];
    const v = y[key];
    if (u !== v) {
      if (!valuesEqual(u, v)) return false;
    } else if (u === void 0 && !Object.hasOwn(y, key)) return false;
    keys++;
  }
  for (const _ in y) keys--;
  return keys === 0;
};
var bytesEqual = (a, b) => {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
};

// src/events/trace/frameBytes.ts
import * as fs from "node:fs";
import { crc32 } from "node:zlib";
import { Packr, RESET_BUFFER_MODE } from "msgpackr";
var magic = Uint8Array.of(137, 86, 77, 82, 82, 13, 10, 26);
var frameHeadBytes = 8;
var maxPayloadBytes = 64 * 1024 * 1024;
var packr = new Packr({ useRecords: false });
var frameOf = (value) => {
  const payload = packr.pack(value, RESET_BUFFER_MODE);
  if (payload.length > maxPayloadBytes) return payload.length;
  const frame = new Uint8Array(frameHeadBytes + payload.length);
  const view = new DataView(frame.buffer);
  view.setUint32(0, payload.length, true);
  view.setUint32(4, crc32(payload), true);
  frame.set(payload, frameHeadBytes);
  return frame;
};
var detachBinary = (value) => {
  if (typeof value !== "object" || value === null) return value;
  if (value instanceof Uint8Array) return new Uint8Array(value);
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) value[i] = detachBinary(value[i]);
    return value;
  }
  const record = value;
  for (const key in record) record[key] = detachBinary(record[key]);
  return value;
};
var shortText = (text, max = 160) => {
  const line = text.replace(/\s+/g, " ").trim();
  return line.length <= max ? line : `${line.slice(0, max - 1)}\u2026`;
};
var fileSource = (fd, size) => ({
  size,
  fd,
  read: (offset, length) => {
    const buffer = new Uint8Array(Math.max(0, Math.min(length, size - offset)));
    let filled = 0;
    while (filled < buffer.length) {
      const n = fs.readSync(fd, buffer, filled, buffer.length - filled, offset + filled);
      if (n === 0) break;
      filled += n;
    }
    return filled === buffer.length ? buffer : buffer.subarray(0, filled);
  }
});
var hex32 = (n) => `0x${n.toString(16).padStart(8, "0")}`;
var frameAt = (index, offset) => `frame ${index} at byte ${offset}`;
var readPayload = (source, offset, index) => {
  if (offset >= source.size) return { _tag: "Eof" };
  const where = frameAt(index, offset);
  const damage = (reason) => ({ _tag: "Damage", reason });
  const head = source.read(offset, frameHeadBytes);
  if (head.length < frameHeadBytes) {
    return damage(`file ends inside ${where}: ${head.length} of its 8 length and checksum bytes present`);
  }
  const view = new DataView(head.buffer, head.byteOffset, head.byteLength);
  const length = view.getUint32(0, true);
  const stored = view.getUint32(4, true);
  if (length === 0) {
    return damage(`${where}: length field is 0 (zero-filled bytes?)`);
  }
  if (length > maxPayloadBytes) {
    return damage(`${where}: length field says ${length} bytes, more than the ${maxPayloadBytes}-byte limit`);
  }
  const payloadStart = offset + frameHeadBytes;
  const present = Math.min(length, source.size - payloadStart);
  const payload = present < length ? void 0 : source.read(payloadStart, length);
  if (payload === void 0 || payload.length < length) {
    return damage(`file ends inside ${where}: ${payload?.length ?? present} of ${length} payload bytes present`);
  }
  const computed = crc32(payload);
  if (computed !== stored) {
    return damage(`${where}: checksum mismatch (stored ${hex32(stored)}, computed ${hex32(computed)})`);
  }
  return { _tag: "Payload", payload, end: payloadStart + length };
};

// src/events/trace/packedCodec.ts
var deltaCoded = (min, max) => max - min <= Number.MAX_SAFE_INTEGER;
var makePackedCodec = ({ layouts: kindLayouts, isHostInputTag, is }) => {
  const kindByName = new Map(kindLayouts.map((layout, k) => [layout.tag, k]));
  const codingName = (codec2) => {
    switch (codec2._tag) {
      case "int":
        return deltaCoded(codec2.min, codec2.max) ? "int" : codec2.min >= 0 ? "uint" : "sint";
      case "ints":
        return codec2.min >= 0 ? "uints" : "sints";
      case "literal":
        return JSON.stringify(codec2.values);
      default:
        return codec2._tag;
    }
  };
  const signature = (layout) => `${layout.tag}(${layout.fields.map((f) => `${f.name}${f.optional ? "?" : ""}:${codingName(f.codec)}`).join(",")})`;
  const kindKey = (name, signatureCrc) => `${name}#${signatureCrc.toString(16)}`;
  const kindNames = kindLayouts.map((layout) => new TextEncoder().encode(layout.tag));
  const signatureCrcs = kindLayouts.map((layout) => crc322(signature(layout)));
  const kindByKey = new Map(kindLayouts.map((layout, k) => [kindKey(layout.tag, signatureCrcs[k]), k]));
  const defaultValue = (codec2) => {
    switch (codec2._tag) {
      case "int":
        return Math.min(Math.max(0, codec2.min), codec2.max);
      case "bool":
        return false;
      case "literal":
        return codec2.values[0];
      case "string":
        return "";
      case "bytes":
        return new Uint8Array(0);
      case "ints":
        return [];
      case "msgpack":
        return void 0;
    }
  };
  const defaultEvent = (layout) => {
    const event = { _tag: layout.tag };
    for (const f of layout.fields) event[f.name] = f.optional ? void 0 : defaultValue(f.codec);
    return event;
  };
  const js = (value) => JSON.stringify(value);
  const put = {
    byte: (x) => `buf[pos++] = ${x}`,
    varint: (x) => `{ const u = ${x}; if (u < 0x80) buf[pos++] = u; else pos = writeVarint(buf, pos, u) }`,
    signed: (x) => `{ const d = ${x}; if (d >= -0x40 && d < 0x40) buf[pos++] = (d << 1) ^ (d >> 31); else pos = writeSigned(buf, pos, d) }`,
    /** A call that writes through the ByteWriter (and may grow its buffer). */
    through: (call) => `w.pos = pos; ${call}; buf = w.buf; pos = w.pos`
  };
  const get = {
    /** Past the end, `buf[pos]` is undefined and the ByteReader call reports it. */
    varint: (v) => `{ const b = buf[pos]; if (b < 0x80) { pos++; ${v} = b } else { r.pos = pos; ${v} = r.varint(); pos = r.pos } }`,
    signed: (v) => `{ const b = buf[pos]; if (b < 0x80) { pos++; ${v} = (b >>> 1) ^ -(b & 1) } else { r.pos = pos; ${v} = r.signed(); pos = r.pos } }`,
    /** A call that reads through the ByteReader. */
    through: (v, call) => `r.pos = pos; ${v} = ${call}; pos = r.pos`
  };
  const indexOf = (f, values, c) => values.map((value, i) => `${c} === ${js(value)} ? ${i} : `).join("") + `badValue(${js(f.name)}, ${c})`;
  const rangeCheck = (f, min, max, v) => `if (!(${v} >= ${min} && ${v} <= ${max})) fail(${js(`${f.name}: `)} + ${v} + ${js(` is outside ${min}..${max}`)})`;
  const fieldCode = (f, k, i, preamble, raw = false) => {
    const id = `${k}_${i}`;
    const codec2 = f.codec;
    const badRaw = (c) => `badRaw(${js(`${kindLayouts[k].tag}.${f.name}`)}, ${c})`;
    switch (codec2._tag) {
      case "int": {
        const { min, max } = codec2;
        const delta = deltaCoded(min, max);
        const write = (c, p) => delta ? put.signed(`${c} - ${p}`) : min >= 0 ? put.varint(c) : put.signed(c);
        const read = (v) => {
          const value = delta ? `{ let d = 0; ${get.signed("d")}; ${v} += d }` : min >= 0 ? get.varint(v) : get.signed(v);
          return `${value}; ${rangeCheck(f, min, max, v)}`;
        };
        return { changed: (c, p) => `${c} !== ${p}`, write, writeAny: write, read, readAny: read };
      }
      case "bool":
        return {
          changed: (c, p) => `${c} !== ${p}`,
          write: (c) => raw ? `if (${c} !== 0 && ${c} !== 1) ${badRaw(c)}` : `if (typeof ${c} !== "boolean") badValue(${js(f.name)}, ${c})`,
          writeAny: (c) => raw ? `if (${c} !== 0 && ${c} !== 1) ${badRaw(c)}; ${put.byte(c)}` : `if (typeof ${c} !== "boolean") badValue(${js(f.name)}, ${c}); ${put.byte(`${c} ? 1 : 0`)}`,
          read: (v) => `${v} = !${v}`,
          readAny: (v) => `{ let b = 0; ${get.varint("b")}; if (b > 1) fail(${js(`${f.name}: not a boolean`)}); ${v} = b === 1 }`
        };
      case "literal": {
        const lits = `literals${id}`;
        preamble.push(`const ${lits} = ${js(codec2.values)}`);
        const n = codec2.values.length;
        const index = (c) => raw ? `(${c} >= 0 && ${c} < ${n} && ${c} % 1 === 0 ? ${c} : ${badRaw(c)})` : indexOf(f, codec2.values, c);
        const writeAny = (c) => put.varint(index(c));
        const readAny = (v) => `{ let i = 0; ${get.varint("i")}; if (i >= ${n}) fail(${js(`${f.name}: member `)} + i + ${js(` of ${n}`)}); ${v} = ${lits}[i] }`;
        if (n > 2) return { changed: (c, p) => `${c} !== ${p}`, write: writeAny, writeAny, read: readAny, readAny };
        const [a, b] = codec2.values;
        return {
          changed: (c, p) => `${c} !== ${p}`,
          write: (c) => raw ? n === 1 ? badRaw(c) : `if (${c} !== 0 && ${c} !== 1) ${badRaw(c)}` : n === 1 ? `badValue(${js(f.name)}, ${c})` : `if (${c} !== ${js(a)} && ${c} !== ${js(b)}) badValue(${js(f.name)}, ${c})`,
          writeAny,
          read: (v) => n === 1 ? `fail(${js(`${f.name}: cannot change`)})` : `${v} = ${v} === ${js(a)} ? ${js(b)} : ${js(a)}`,
          readAny
        };
      }
      case "string": {
        const write = (c) => put.through(`w.string(${c}, strings)`);
        const read = (v) => get.through(v, "r.string(strings)");
        return { changed: (c, p) => `${c} !== ${p}`, write, writeAny: write, read, readAny: read };
      }
      case "bytes": {
        const write = (c) => put.through(`w.bytes(${c})`);
        const read = (v) => get.through(v, "r.bytes()");
        return { changed: (c, p) => `!bytesEqual(${c}, ${p})`, write, writeAny: write, read, readAny: read };
      }
      case "ints": {
        const element = codec2.min >= 0 ? put.varint : put.signed;
        const write = (c) => raw ? `{ const n = words[${c}]; if (pos + 10 + 10 * n > buf.length) { ${put.through("w.ensure(10 + 10 * n)")} }; ${put.varint("n")}; for (let j = ${c} + 1; j <= ${c} + n; j++) ${element("words[j]")} }` : put.through(`writeInts(w, ${c}, ${codec2.min >= 0})`);
        const read = (v) => get.through(v, `readInts(r, ${codec2.min}, ${codec2.max}, ${js(f.name)})`);
        const rawChanged = (c, p) => `!(${p} < 0 ? words[${c}] === 0 : words[${p}] === words[${c}] && (words[${c}] === 0 || words[${p} + 1] === words[${c} + 1] && (words[${c}] === 1 || rawIntsEqual(words, ${c}, ${p}))))`;
        const changed = (c, p) => raw ? rawChanged(c, p) : `!intsEqual(${c}, ${p})`;
        return { changed, write, writeAny: write, read, readAny: read };
      }
      case "msgpack": {
        const valid = `valid${id}`;
        preamble.push(`const ${valid} = h.is(h.layouts[${k}].fields[${i}].codec.schema)`);
        const write = (c) => put.through(`writeMsgpack(w, ${c})`);
        const read = (v) => `${get.through(v, "readMsgpack(r)")}; if (!${valid}(${v})) fail(${js(`${f.name}: not a valid value`)})`;
        return { changed: (c, p) => `!valuesEqual(${c}, ${p})`, write, writeAny: write, read, readAny: read };
      }
    }
  };
  const msgpack = new Packr2({ useRecords: false });
  const helpers = {
    writeVarint,
    writeSigned,
    bytesEqual: (a, b) => {
      if (a.length !== b.length) return false;
      for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
      return true;
    },
    intsEqual: (a, b) => {
      if (a.length !== b.length) return false;
      for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
      return true;
    },
    /** Raw form: the ints at `a` and `b` in `words` (count, then the numbers; −1: none) are equal. */
    rawIntsEqual: (words, a, b) => {
      const n = words[a];
      if (b < 0) return n === 0;
      if (words[b] !== n) return false;
      for (let i = 1; i <= n; i++) if (words[a + i] !== words[b + i]) return false;
      return true;
    },
    valuesEqual,
    writeInts: (w, values, unsigned) => {
      w.ensure(10 + 10 * values.length);
      w.varint(values.length);
      for (const v of values) unsigned ? w.varint(v) : w.signed(v);
    },
    readInts: (r, min, max, name) => {
      const n = r.varint();
      if (n > r.buf.length - r.pos) throw new PackedDecodeError(`${name}: ${n} elements announced, ${r.buf.length - r.pos} bytes left`);
      const out = [];
      for (let i = 0; i < n; i++) {
        const v = min >= 0 ? r.varint() : r.signed();
        if (!(v >= min && v <= max)) throw new PackedDecodeError(`${name}[${i}]: ${v} is outside ${min}..${max}`);
        out.push(v);
      }
      return out;
    },
    writeMsgpack: (w, value) => w.bytes(msgpack.pack(value)),
    readMsgpack: (r) => {
      const bytes = r.bytes();
      try {
        return detachBinary(msgpack.unpack(bytes));
      } catch (e) {
        throw new PackedDecodeError(`not msgpack (${e instanceof Error ? e.message : String(e)})`);
      }
    },
    fail: (message) => {
      throw new PackedDecodeError(message);
    },
    /** The encoder met a value its schema does not allow: a bug in whoever built the event. */
    badValue: (field, value) => {
      throw new Error(`packed events: ${field} = ${String(value)} is not a value of its schema`);
    },
    /** The same in a raw record: a bug in its writer. `field` is `Kind.field`. */
    badRaw: (field, value) => {
      throw new Error(`packed events: ${field} = ${String(value)} in a raw record is not a value of its schema`);
    },
    is,
    layouts: kindLayouts,
    defaults: kindLayouts.map((layout) => layout.fields.map((f) => defaultValue(f.codec))),
    defaultEvents: kindLayouts.map(defaultEvent)
  };
  const encoded = -1;
  const notConsecutive = -2;
  const encodeFields = (layout, codes, c, p, fallback, absent = (value) => `${value} === undefined`) => {
    const masks = ["let mask = 0"];
    const writes = [];
    let bit = 0;
    layout.fields.forEach((f, i) => {
      const code = codes[i];
      if (code === void 0) return;
      const mask = `${1 << bit++}`;
      const cv = c(f, i);
      const pv = p(f, i);
      if (f.optional) {
        const changed = `(${absent(cv)} ? !(${absent(pv)}) : ${absent(pv)} || ${code.changed(cv, pv)})`;
        masks.push(`if (${changed}) mask |= ${mask}`);
        writes.push(`if (mask & ${mask}) { if (${absent(cv)}) ${put.byte("0")}; else { ${put.byte("1")}; ${code.writeAny(cv, `(${absent(pv)} ? ${fallback(f, i)} : ${pv})`)} } }`);
      } else {
        masks.push(`if (${code.changed(cv, pv)}) mask |= ${mask}`);
        const write = code.write(cv, pv);
        if (write !== "") writes.push(`if (mask & ${mask}) { ${write} }`);
      }
    });
    return [...masks, put.varint("mask"), ...writes];
  };
  const isSeqOrTime = (f) => f.name === "seq" || f.name === "time";
  const writeKind = (k) => [k < 128 ? put.byte(`${k}`) : put.varint(`${k}`), `used[${k}] = 1`];
  const compileKind = (layout, k, preamble) => {
    const codes = layout.fields.map((f, i) => isSeqOrTime(f) ? void 0 : fieldCode(f, k, i, preamble));
    const encode2 = [
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
    ];
    const decode2 = [`const p = p${k}`, "let mask = 0", get.varint("mask")];
    const build = [`const e = { "_tag": ${js(layout.tag)}`];
    let literalOpen = true;
    let bit = 0;
    layout.fields.forEach((f, i) => {
      const key = `[${js(f.name)}]`;
      const v = `v${i}`;
      if (f.name === "seq" || f.name === "time") {
        const range = f.codec;
        decode2.push(rangeCheck(f, range.min, range.max, f.name));
      } else {
        const code = codes[i];
        const mask = `${1 << bit++}`;
        const fallback = `h.defaults[${k}][${i}]`;
        if (f.optional) {
          decode2.push(
            `let ${v} = p${key}`,
            `if (mask & ${mask}) { let present = 0; ${get.varint("present")}; if (present === 0) ${v} = undefined; else if (present === 1) { if (${v} === undefined) ${v} = ${fallback}; ${code.readAny(v)} } else fail(${js(`${f.name}: presence byte is not 0 or 1`)}) }`
          );
        } else {
          decode2.push(`let ${v} = p${key}`, `if (mask & ${mask}) { ${code.read(v)} }`);
        }
      }
      const value = f.name === "seq" || f.name === "time" ? f.name : v;
      if (f.optional) {
        if (literalOpen) build[0] += " }";
        literalOpen = false;
        build.push(`if (${value} !== undefined) e${key} = ${value}`);
      } else if (literalOpen) build[0] += `, ${key.slice(1, -1)}: ${value}`;
      else build.push(`e${key} = ${value}`);
    });
    if (literalOpen) build[0] += " }";
    decode2.splice(3, 0, `if (mask >= ${2 ** bit}) fail("mask " + mask + " for ${bit} fields")`);
    return { encode: encode2, decode: [...decode2, ...build, `p${k} = e`, "events.push(e)"] };
  };
  const rawDefault = (f, k, i) => {
    switch (f.codec._tag) {
      case "int":
        return js(defaultValue(f.codec));
      case "bool":
      case "literal":
        return "0";
      case "string":
        return `""`;
      case "ints":
        return "-1";
      case "bytes":
      case "msgpack":
        return `h.defaults[${k}][${i}]`;
    }
  };
  const rawAbsentValue = (f) => {
    switch (f.codec._tag) {
      case "string":
      case "bytes":
      case "msgpack":
        return "undefined";
      case "ints":
        return "-1";
      default:
        return "0";
    }
  };
  const rawPrediction = (k, i) => `q${k}_${i}`;
  const compileRawKind = (layout, k, preamble) => {
    const reads = [];
    const predictions = [];
    const updates = [];
    const codes = layout.fields.map((f, i) => {
      if (f.name === "seq") return void 0;
      const c = `c${i}`;
      const slot = (() => {
        switch (f.codec._tag) {
          case "string":
          case "bytes":
          case "msgpack":
            return `objects[words[o++]]`;
          default:
            return `words[o++]`;
        }
      })();
      const skipInts = "o = (o + 1 + words[o]) | 0";
      if (f.optional) {
        reads.push(f.codec._tag === "ints" ? `const ${c}_ = words[o++]; let ${c} = -1; if (${c}_ !== 0) { ${c} = o; ${skipInts} }` : `const ${c}_ = words[o++]; const ${c} = ${c}_ === 0 ? ${rawAbsentValue(f)} : ${slot}`);
      } else reads.push(f.codec._tag === "ints" ? `const ${c} = o; ${skipInts}` : `const ${c} = ${slot}`);
      if (f.name === "time") return void 0;
      const q = rawPrediction(k, i);
      if (f.optional) {
        predictions.push(`${q} = ${rawAbsentValue(f)}`, `${q}_ = 0`);
        updates.push(`${q} = ${c}`, `${q}_ = ${c}_`);
      } else {
        predictions.push(`${q} = ${rawDefault(f, k, i)}`);
        updates.push(`${q} = ${c}`);
      }
      return fieldCode(f, k, i, preamble, true);
    });
    const time = `c${layout.fields.findIndex((f) => f.name === "time")}`;
    const encode2 = [
      ...reads,
      ...writeKind(k),
      ...isHostInputTag(layout.tag) ? ["inputSeqs.push(firstSeq + i)"] : [],
      put.signed(`${time} - time`),
      `time = ${time}`,
      ...encodeFields(layout, codes, (_, i) => `c${i}`, (_, i) => rawPrediction(k, i), (f, i) => rawDefault(f, k, i), (value) => `${value}_ === 0`),
      ...updates
    ];
    return { encode: encode2, predictions };
  };
  const maxFixedBytes = 1 + 10 + 10 + 5 + 31 * 11;
  const indent = (lines, depth) => lines.map((line) => `${"  ".repeat(depth)}${line}`);
  const compileWith = (kinds, compileCase, body) => {
    const preamble = [];
    const cases = kinds.map((k) => ({ k, tag: kindLayouts[k].tag, ...compileCase(kindLayouts[k], k, preamble) }));
    const source = [
      "const { writeVarint, writeSigned, bytesEqual, intsEqual, rawIntsEqual, valuesEqual, writeInts, readInts, writeMsgpack, readMsgpack, fail, badValue, badRaw } = h",
      ...preamble,
      ...body(cases)
    ].join("\n");
    return new Function("h", source)(helpers);
  };
  const compile = (kinds, body) => compileWith(kinds, compileKind, (cases) => body(cases, cases.length === 0 ? "" : `let ${cases.map(({ k }) => `p${k} = h.defaultEvents[${k}]`).join(", ")}`));
  const compileEncoder = (kinds) => compile(kinds, (cases, predictions) => [
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
    ...cases.flatMap(({ tag, encode: encode2 }) => [`      case ${js(tag)}: {`, ...indent(encode2, 4), "        break", "      }"]),
    "      default: return i",
    "    }",
    "  }",
    "  w.pos = pos",
    `  return ${encoded}`,
    "}"
  ]);
  const compileDecoder = (kinds) => compile(kinds, (cases, predictions) => [
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
    ...cases.flatMap(({ k, decode: decode2 }) => [`      case ${k}: {`, ...indent(decode2, 4), "        break", "      }"]),
    `      default: fail("kind " + written + ", which the chunk does not list")`,
    "    }",
    "  }",
    "  r.pos = pos",
    "}"
  ]);
  const wrongLength = -3;
  const compileRawEncoder = (kinds) => compileWith(kinds, compileRawKind, (cases) => {
    const predictions = cases.flatMap((c) => c.predictions);
    return [
      "return function encodeRawEvents(words, objects, count, firstSeq, w, strings, used, inputSeqs) {",
      ...predictions.length === 0 ? [] : [`  let ${predictions.join(", ")}`],
      "  let time = 0",
      "  let buf = w.buf",
      "  let pos = w.pos",
      "  let o = 0",
      "  for (let i = 0; i < count; i++) {",
      `    if (pos + ${maxFixedBytes} > buf.length) { ${put.through(`w.ensure(${maxFixedBytes})`)} }`,
      "    const kind = words[o++]",
      "    switch (kind) {",
      ...cases.flatMap(({ k, encode: encode2 }) => [`      case ${k}: {`, ...indent(encode2, 4), "        break", "      }"]),
      "      default: return kind",
      "    }",
      "  }",
      "  w.pos = pos",
      `  return o === words.length ? ${encoded} : ${wrongLength}`,
      "}"
    ];
  });
  const encoderKinds = [];
  let encode = compileEncoder(encoderKinds);
  const decoderKinds = [];
  let decode = compileDecoder(decoderKinds);
  const rawEncoderKinds = [];
  let encodeRaw = compileRawEncoder(rawEncoderKinds);
  const writer = new ByteWriter();
  const head = new ByteWriter();
  const used = new Uint8Array(kindLayouts.length);
  const packEvents = (events) => {
    const strings = /* @__PURE__ */ new Map();
    let explicitSeqs = false;
    for (; ; ) {
      writer.reset();
      strings.clear();
      used.fill(0);
      const result = encode(events, writer, strings, explicitSeqs, used);
      if (result === encoded) break;
      if (result === notConsecutive) explicitSeqs = true;
      else {
        const tag = events[result]._tag;
        const k = kindByName.get(tag);
        if (k === void 0) throw new Error(`packed events: ${String(tag)} is not a VmEvent kind`);
        encoderKinds.push(k);
        encode = compileEncoder(encoderKinds);
      }
    }
    return finishChunk(events.length, explicitSeqs);
  };
  const finishChunk = (count, explicitSeqs) => {
    head.reset();
    head.ensure(16);
    head.varint(count);
    head.byte(explicitSeqs ? 1 : 0);
    head.varint(used.reduce((n, u) => n + u, 0));
    const kinds = [];
    used.forEach((u, k) => {
      if (u === 0) return;
      kinds.push(kindLayouts[k].tag);
      head.ensure(10);
      head.varint(k);
      head.bytes(kindNames[k]);
      head.ensure(10);
      head.varint(signatureCrcs[k]);
    });
    const out = new Uint8Array(head.pos + writer.pos);
    out.set(head.buf.subarray(0, head.pos));
    out.set(writer.buf.subarray(0, writer.pos), head.pos);
    return { bytes: out, kinds };
  };
  const packRawEvents = (chunk) => {
    const strings = /* @__PURE__ */ new Map();
    const inputSeqs = [];
    if (chunk.count === 0) throw new Error("packed events: an empty raw chunk");
    for (; ; ) {
      writer.reset();
      strings.clear();
      used.fill(0);
      inputSeqs.length = 0;
      const result = encodeRaw(chunk.words, chunk.objects, chunk.count, chunk.firstSeq, writer, strings, used, inputSeqs);
      if (result === encoded) break;
      if (result === wrongLength) throw new Error(`packed events: ${chunk.count} raw records do not take the chunk's ${chunk.words.length} words`);
      if (!(Number.isInteger(result) && result >= 0 && result < kindLayouts.length) || rawEncoderKinds.includes(result)) {
        throw new Error(`packed events: kind number ${String(result)} in a raw record is not a VmEvent kind`);
      }
      rawEncoderKinds.push(result);
      encodeRaw = compileRawEncoder(rawEncoderKinds);
    }
    return { ...finishChunk(chunk.count, false), inputSeqs };
  };
  const unpackEvents = (data, firstSeq) => {
    const r = new ByteReader(data);
    const count = r.varint();
    if (count === 0 || count > data.length) throw new PackedDecodeError(`count ${count} for ${data.length} bytes`);
    const flags2 = r.byte();
    if (flags2 > 1) throw new PackedDecodeError(`flags ${flags2}`);
    const kinds = readKinds(r);
    const missing = kinds.filter((k) => k >= 0 && !decoderKinds.includes(k));
    if (missing.length > 0) {
      decoderKinds.push(...new Set(missing));
      decode = compileDecoder(decoderKinds);
    }
    const events = [];
    try {
      decode(r, count, firstSeq, flags2 === 1, kinds, events);
    } catch (e) {
      if (!(e instanceof PackedDecodeError)) throw e;
      throw new PackedDecodeError(`event ${events.length}: ${e.message}`);
    }
    if (!r.atEnd) throw new PackedDecodeError(`${data.length - r.pos} bytes after the last event`);
    return events;
  };
  const readKinds = (r) => {
    const listed = r.varint();
    if (listed > kindLayouts.length) throw new PackedDecodeError(`${listed} kinds listed, this vmrr knows ${kindLayouts.length}`);
    const kinds = [];
    for (let i = 0; i < listed; i++) {
      const written = r.varint();
      if (written > 65535) throw new PackedDecodeError(`kind number ${written}`);
      const name = new TextDecoder().decode(r.bytes());
      const k = kindByKey.get(kindKey(name, r.varint()));
      if (k === void 0) {
        throw new PackedDecodeError(kindByName.has(name) ? `${name} events written with other fields than this vmrr's ${name}` : `a kind this vmrr does not know: ${shortText(JSON.stringify(name), 60)}`);
      }
      while (kinds.length <= written) kinds.push(-1);
      kinds[written] = k;
    }
    return kinds;
  };
  return { packEvents, packRawEvents, unpackEvents };
};

// src/events/trace/packerProtocol.ts
var flagReady = 0;
var flagResults = 1;

// src/events/trace/rawPack.ts
var packedChunkPayload = (firstSeq, packed) => ({ kind: "events", firstSeq, packed });
var makeRawChunkFramer = (codec2, layouts) => {
  const timeWord = layouts.map((layout) => {
    let at = 1;
    for (const f of layout.fields) {
      if (f.name === "seq") continue;
      if (f.name === "time") return at;
      if (f.optional || f.codec._tag === "ints") break;
      at++;
    }
    throw new Error(`raw chunks: ${layout.tag}'s time is not at a fixed word of its record`);
  });
  return (chunk) => {
    const packed = codec2.packRawEvents(chunk);
    return {
      frame: frameOf(packedChunkPayload(chunk.firstSeq, packed.bytes)),
      entry: { firstSeq: chunk.firstSeq, count: chunk.count, firstTime: chunk.words[timeWord[chunk.words[0]]], inputSeqs: packed.inputSeqs }
    };
  };
};

// src/events/trace/verifyPacked.ts
var packsTo = (codec2, chunk, expected) => {
  try {
    const bytes = codec2.packRawEvents(chunk).bytes;
    return bytes.length === expected.length && Buffer.compare(bytes, expected) === 0;
  } catch {
    return false;
  }
};
var packedChunkAt = (fd, size, offset, firstSeq) => {
  try {
    const read = readPayload(fileSource(fd, size), offset, 0);
    if (read._tag !== "Payload") return void 0;
    const value = packr.unpack(read.payload);
    return value.kind === "events" && value.firstSeq === firstSeq && value.packed instanceof Uint8Array ? value.packed : void 0;
  } catch {
    return void 0;
  }
};

// src/events/trace/packerWorker.ts
var { port, flags, tables } = workerData;
var hostInputs = new Set(tables.hostInputTags);
var codec = makePackedCodec({
  layouts: tables.layouts,
  isHostInputTag: (tag) => hostInputs.has(tag),
  // Only decoding validates msgpack-coded fields, and this thread never decodes.
  is: () => () => true
});
var frameRawChunk = makeRawChunkFramer(codec, tables.layouts);
var files = /* @__PURE__ */ new Map();
var reply = (message, transfer = []) => {
  port.postMessage(message, transfer);
  Atomics.add(flags, flagResults, 1);
  Atomics.notify(flags, flagResults);
};
var writeAt = (file, bytes) => {
  let done = 0;
  while (done < bytes.length) done += fs2.writeSync(file.fd, bytes, done, bytes.length - done, file.position + done);
  file.position += bytes.length;
};
var failed = (id, words, fields) => {
  if (words === void 0) reply({ _tag: "Failed", id, ...fields });
  else reply({ _tag: "Failed", id, ...fields, words }, words.buffer instanceof ArrayBuffer ? [words.buffer] : []);
};
var handle = (request) => {
  switch (request._tag) {
    case "Open":
      files.set(request.file, { fd: request.fd, position: request.position, failed: false });
      return;
    case "Close":
      files.delete(request.file);
      return;
    case "Verify":
      return reply({ _tag: "Verified", id: request.id, same: packsTo(codec, request, request.expected) });
    case "VerifyAt": {
      const expected = packedChunkAt(request.fd, request.size, request.offset, request.firstSeq);
      return reply({ _tag: "Verified", id: request.id, same: expected !== void 0 && packsTo(codec, request, expected) });
    }
  }
  const file = files.get(request.file);
  const words = request._tag === "Chunk" ? request.words : void 0;
  if (file === void 0 || file.failed) return failed(request.id, words, {});
  let frame;
  let firstTime = 0;
  let inputSeqs = [];
  try {
    if (request._tag === "Frame") frame = request.frame;
    else if (request._tag === "Checkpoint") {
      const framed = frameOf(request.checkpoint);
      if (typeof framed === "number") {
        file.failed = true;
        return failed(request.id, words, { tooLarge: framed });
      }
      frame = framed;
    } else {
      const framed = frameRawChunk(request);
      if (typeof framed.frame === "number") {
        file.failed = true;
        return failed(request.id, words, { tooLarge: framed.frame });
      }
      frame = framed.frame;
      firstTime = framed.entry.firstTime;
      inputSeqs = framed.entry.inputSeqs;
    }
  } catch (e) {
    file.failed = true;
    return failed(request.id, words, { error: e instanceof Error ? e.message : String(e) });
  }
  try {
    writeAt(file, frame);
  } catch (e) {
    file.failed = true;
    return failed(request.id, words, { error: e instanceof Error ? e.message : String(e), writeFailed: true });
  }
  if (words !== void 0 && words.buffer instanceof ArrayBuffer) {
    reply({ _tag: "Written", id: request.id, length: frame.length, firstTime, inputSeqs, words }, [words.buffer]);
  } else reply({ _tag: "Written", id: request.id, length: frame.length, firstTime, inputSeqs });
};
var IDLE_MS = 20;
var POLL_MS = 1;
var takeWhileBusy = () => {
  let last = performance.now();
  for (; ; ) {
    const received = receiveMessageOnPort(port);
    if (received !== void 0) {
      handle(received.message);
      last = performance.now();
    } else if (performance.now() - last > IDLE_MS) return;
    else Atomics.wait(flags, flagReady, 1, POLL_MS);
  }
};
port.on("message", (request) => {
  handle(request);
  takeWhileBusy();
});
Atomics.store(flags, flagReady, 1);
Atomics.notify(flags, flagReady);
