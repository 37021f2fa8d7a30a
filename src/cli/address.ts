import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"

/** A guest address or size as people write it: `0x7c00`, `31744`, `0x10_0000`. */
export const Address = Schema.transformOrFail(Schema.String, Schema.Number, {
  strict: true,
  decode: (text, _, ast) => {
    const clean = text.trim().replaceAll("_", "")
    const value = /^0x[0-9a-f]+$/i.test(clean) ? Number.parseInt(clean.slice(2), 16) : /^[0-9]+$/.test(clean) ? Number(clean) : Number.NaN
    return Number.isSafeInteger(value) && value >= 0 && value <= 0xffffffff
      ? ParseResult.succeed(value)
      : ParseResult.fail(new ParseResult.Type(ast, text, `expected an address from 0 to 0xffffffff (decimal or 0x-hex), got "${text}"`))
  },
  encode: (value) => ParseResult.succeed(`0x${value.toString(16)}`)
})
