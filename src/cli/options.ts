import { HelpDoc, Options, ValidationError } from "@effect/cli"
import * as Effect from "effect/Effect"

/** A guest address as people write it: `0x7c00`, `31744`, `0x10_0000`; undefined if it is not one. */
export const parseAddress = (text: string): number | undefined => {
  const clean = text.trim().replaceAll("_", "")
  const value = /^0x[0-9a-f]+$/i.test(clean) ? Number.parseInt(clean.slice(2), 16) : /^[0-9]+$/.test(clean) ? Number(clean) : Number.NaN
  return Number.isSafeInteger(value) && value >= 0 && value <= 0xffffffff ? value : undefined
}

/** An `--name N` integer option within [min, max]. */
export const integerOption = (name: string, min: number, max: number): Options.Options<number> =>
  Options.integer(name).pipe(
    Options.mapEffect((value) =>
      Number.isSafeInteger(value) && value >= min && value <= max
        ? Effect.succeed(value)
        : Effect.fail(ValidationError.invalidValue(HelpDoc.p(`--${name}: expected an integer from ${min} to ${max}, got ${value}`)))
    )
  )

/** An `--name ADDR` option, refusing anything but a 32-bit address with one clear message. */
export const addressOption = (name: string): Options.Options<number> =>
  Options.text(name).pipe(
    Options.mapEffect((text) => {
      const value = parseAddress(text)
      return value === undefined
        ? Effect.fail(ValidationError.invalidValue(HelpDoc.p(`--${name}: expected an address from 0 to 0xffffffff (decimal or 0x hex), got "${text}"`)))
        : Effect.succeed(value)
    })
  )
