import { Arbitrary, FastCheck as fc, Schema, SchemaAST } from "effect"
import { VmEvent } from "../../src/events/VmEvent.ts"

export const anyEvent = Arbitrary.make(VmEvent)

/** Each kind's fields in declaration order, for building events the way the schema orders them. */
export const fieldOrder = new Map((Schema.typeSchema(VmEvent).ast as SchemaAST.Union).types.map((m) => {
  const fields = (m as SchemaAST.TypeLiteral).propertySignatures
  return [(fields[0]!.type as SchemaAST.Literal).literal as string, fields.map((f) => String(f.name))]
}))

/**
 * Chunks that exercise the packed encoding's predictions: events drawn from a small pool,
 * each a pool event again or a field-by-field blend of two of the same kind (so some
 * fields change and others do not, and optional fields come and go), kinds mixed.
 */
export const anyChunk = fc.tuple(
  fc.array(anyEvent, { minLength: 1, maxLength: 8 }),
  fc.array(fc.tuple(fc.nat(), fc.nat(), fc.nat()), { minLength: 1, maxLength: 40 })
).map(([pool, picks]) =>
  picks.map(([a, b, mask]): VmEvent => {
    const base = pool[a % pool.length]!
    const sameKind = pool.filter((e) => e._tag === base._tag)
    const other = sameKind[b % sameKind.length]!
    const blended: Record<string, unknown> = {}
    fieldOrder.get(base._tag)!.forEach((key, i) => {
      const from = (mask >> (i % 30)) & 1 ? other : base
      if (Object.hasOwn(from, key)) blended[key] = (from as unknown as Record<string, unknown>)[key]
    })
    return blended as unknown as VmEvent
  })
)

/** The events with consecutive seqs from `first`, as a chunk has them. */
export const consecutive = (events: ReadonlyArray<VmEvent>, first: number): Array<VmEvent> =>
  events.map((e, i) => ({ ...e, seq: first + i }))
