import * as Schema from "effect/Schema"
import * as AST from "effect/SchemaAST"
import { VmEvent } from "./VmEvent.ts"

/**
 * The layout of each event kind, read from the VmEvent schema: its fields in declaration
 * order (without `_tag`), each with how its values are coded. The packed trace encoding
 * (trace/packedEvents.ts) and the event log's binary records (rawEvents.ts) are both
 * generated from these, so a new kind or field needs no change in either.
 */

export type FieldCodec =
  | { readonly _tag: "int"; readonly min: number; readonly max: number }
  | { readonly _tag: "bool" }
  | { readonly _tag: "literal"; readonly values: ReadonlyArray<string | number | boolean | null> }
  | { readonly _tag: "string" }
  | { readonly _tag: "bytes" }
  | { readonly _tag: "ints"; readonly min: number; readonly max: number }
  /** Any other value; its schema is left out of the layouts handed to another thread (`portableLayouts`). */
  | { readonly _tag: "msgpack"; readonly schema?: Schema.Schema<unknown> }

export interface Field {
  readonly name: string
  readonly optional: boolean
  readonly codec: FieldCodec
}

/** The integer range of `Schema.Int` narrowed by `between`, or undefined for any other number schema. */
const intRange = (ast: AST.AST): { min: number; max: number } | undefined => {
  let min = -Number.MAX_SAFE_INTEGER
  let max = Number.MAX_SAFE_INTEGER
  let isInt = false
  while (ast._tag === "Refinement") {
    const id = ast.annotations[AST.SchemaIdAnnotationId]
    if (id === Schema.IntSchemaId) isInt = true
    else if (id === Schema.BetweenSchemaId) {
      const bounds = ast.annotations[AST.JSONSchemaAnnotationId] as { minimum: number; maximum: number }
      min = Math.max(min, bounds.minimum)
      max = Math.min(max, bounds.maximum)
    } else return undefined
    ast = ast.from
  }
  return isInt && ast._tag === "NumberKeyword" ? { min, max } : undefined
}


const isPlainLiteral = (v: AST.LiteralValue): v is string | number | boolean | null =>
  typeof v === "string" || typeof v === "boolean" || v === null || (typeof v === "number" && Number.isFinite(v))

const fieldCodec = (ast: AST.AST): FieldCodec => {
  const range = intRange(ast)
  if (range !== undefined) return { _tag: "int", ...range }
  if (ast._tag === "BooleanKeyword") return { _tag: "bool" }
  if (ast._tag === "StringKeyword") return { _tag: "string" }
  if (ast === Schema.Uint8ArrayFromSelf.ast) return { _tag: "bytes" }
  const members = ast._tag === "Union" ? ast.types : [ast]
  if (members.every((m) => m._tag === "Literal" && isPlainLiteral(m.literal))) {
    return { _tag: "literal", values: members.map((m) => (m as AST.Literal).literal as string | number | boolean | null) }
  }
  if (ast._tag === "TupleType" && ast.elements.length === 0 && ast.rest.length === 1) {
    const element = intRange(ast.rest[0]!.type)
    if (element !== undefined) return { _tag: "ints", ...element }
  }
  return { _tag: "msgpack", schema: Schema.make(ast) }
}

export interface KindLayout {
  readonly tag: string
  /** Every property but `_tag`, in declaration order. */
  readonly fields: ReadonlyArray<Field>
}

export const kindLayouts: ReadonlyArray<KindLayout> = (Schema.typeSchema(VmEvent).ast as AST.Union).types.map((member) => {
  if (member._tag !== "TypeLiteral") throw new Error(`event layouts: a VmEvent member that is not a struct (${member._tag})`)
  const tagField = member.propertySignatures.find((p) => p.name === "_tag")
  if (tagField === undefined || tagField.type._tag !== "Literal" || typeof tagField.type.literal !== "string") {
    throw new Error("event layouts: a VmEvent member without a literal _tag")
  }
  const tag = tagField.type.literal
  const fields = member.propertySignatures.filter((p) => p.name !== "_tag").map((p): Field => {
    if (typeof p.name !== "string") throw new Error(`event layouts: ${tag} has a symbol key`)
    return { name: p.name, optional: p.isOptional, codec: fieldCodec(p.type) }
  })
  for (const name of ["seq", "time"]) {
    const field = fields.find((f) => f.name === name)
    if (field?.codec._tag !== "int" || field.optional) throw new Error(`event layouts: ${tag}.${name} is not a required integer`)
  }
  if (fields.length - 2 > 31) throw new Error(`event layouts: ${tag} has more fields than a 31-bit mask`)
  return { tag, fields }
})

/** A kind's number: its position in the VmEvent union. */
export const kindByName: ReadonlyMap<string, number> = new Map(kindLayouts.map((layout, k) => [layout.tag, k]))

/** The layouts as plain data that a worker thread can be given: without the schemas of msgpack-coded fields. */
export const portableLayouts = (): Array<KindLayout> =>
  kindLayouts.map((layout) => ({
    tag: layout.tag,
    fields: layout.fields.map((f) => f.codec._tag === "msgpack" ? { ...f, codec: { _tag: "msgpack" as const } } : f)
  }))
