/**
 * A pruned unpack reads what msgpackr reads, or nothing: whatever it gives for a payload,
 * damaged or not, is what msgpackr unpacks there, and where it gives nothing the caller
 * unpacks the payload whole (the replay's checkpoint check relies on it: traceIndex.ts).
 */
import { describe, expect, it } from "vitest"
import fc from "fast-check"
import { packr } from "../../src/events/trace/frameBytes.ts"
import { type PruneShape, unpackPruned } from "../../src/events/trace/prunedUnpack.ts"
import { assertProperty } from "../support/soakRuns.ts"

const shape: PruneShape = { a: true, b: { c: true, d: { e: true } } }

/** What msgpackr's value holds of the parts `shape` names. */
const pruned = (value: unknown, part: PruneShape | true): unknown => {
  if (part === true || typeof value !== "object" || value === null || Array.isArray(value) || value instanceof Uint8Array) return value
  const kept: Record<string, unknown> = {}
  for (const key of Object.keys(part)) if (Object.hasOwn(value, key)) kept[key] = pruned((value as Record<string, unknown>)[key], part[key]!)
  return kept
}

/** The property: nothing, or what msgpackr unpacks (which then does not fail). */
const agrees = (payload: Uint8Array): boolean => {
  const part = unpackPruned(payload, shape)
  if (part !== undefined) expect(part.value).toStrictEqual(pruned(packr.unpack(payload), shape))
  return part !== undefined
}

const key = fc.oneof({ arbitrary: fc.constantFrom("a", "b", "c", "d", "e", "x", "constructor", "toString"), weight: 4 }, fc.string({ unit: "binary", maxLength: 4 }))
const { tree } = fc.letrec((tie) => ({
  leaf: fc.oneof(
    fc.integer(),
    fc.integer({ min: -(2 ** 31), max: 2 ** 32 }),
    fc.maxSafeInteger(),
    fc.double(),
    fc.string({ maxLength: 6 }),
    fc.string({ unit: "binary", maxLength: 6 }),
    fc.boolean(),
    fc.constant(null),
    fc.constant(undefined),
    fc.uint8Array({ maxLength: 6 })
  ),
  tree: fc.oneof({ depthSize: "small", withCrossShrink: true }, tie("leaf"), fc.array(tie("tree"), { maxLength: 4 }), fc.dictionary(key, tie("tree"), { maxKeys: 5 }))
}))
/** Mostly maps, as frames are. */
const payload = fc.oneof({ arbitrary: fc.dictionary(key, tree, { maxKeys: 6 }), weight: 4 }, tree)
const payloadOf = (value: unknown): Uint8Array => Uint8Array.from(packr.pack(value))

describe("a pruned unpack", () => {
  it("keeps the named parts of maps, as msgpackr unpacks them", () => {
    const payload = payloadOf({ a: 0xffffffff, x: [1, new Uint8Array(3), "é"], b: { c: -5.5, d: { e: "text", f: 1 }, g: undefined }, c: 1 })
    expect(unpackPruned(payload, shape)).toStrictEqual({ value: { a: 0xffffffff, b: { c: -5.5, d: { e: "text" } } } })
    // Kept parts it does not read as msgpackr would: nothing.
    expect(unpackPruned(payloadOf({ a: [1] }), shape)).toBeUndefined()
    expect(unpackPruned(payloadOf({ a: "é" }), shape)).toBeUndefined()
    expect(unpackPruned(payloadOf({ b: { c: { e: 1 } } }), shape)).toBeUndefined()
    expect(unpackPruned(Uint8Array.of(...payloadOf({ a: 1 }), 0xc0), shape)).toBeUndefined()
  })

  it("gives what msgpackr unpacks, for any value", async () => {
    await assertProperty(payload, (value) => {
      agrees(payloadOf(value))
    }, 300)
  })

  it("gives nothing, or what msgpackr unpacks, for a damaged payload", async () => {
    const edit = fc.record({ at: fc.nat(), byte: fc.nat(255), insert: fc.boolean() })
    await assertProperty(fc.tuple(payload, fc.array(edit, { minLength: 1, maxLength: 4 }), fc.option(fc.nat())), ([value, edits, cut]) => {
      const bytes = [...payloadOf(value)]
      for (const { at, byte, insert } of edits) bytes.splice(at % (bytes.length + 1), insert ? 0 : 1, byte)
      agrees(Uint8Array.from(cut === null ? bytes : bytes.slice(0, cut % (bytes.length + 1))))
    }, 1000)
  })
})
