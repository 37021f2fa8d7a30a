import { HelpDoc, Options, ValidationError } from "@effect/cli"
import * as Effect from "effect/Effect"
import { type GdbAddress, parseGdbAddress } from "../gdb/server.ts"

/** `--gdb [HOST:]PORT`: serve gdb's remote protocol there (127.0.0.1 unless a host is given) and wait for it. */
export const gdbOption: Options.Options<GdbAddress> = Options.text("gdb").pipe(
  Options.mapEffect((text) => {
    const address = parseGdbAddress(text)
    return address === undefined
      ? Effect.fail(ValidationError.invalidValue(HelpDoc.p(`--gdb: expected [HOST:]PORT with a port from 0 to 65535, got "${text}"`)))
      : Effect.succeed(address)
  }),
  Options.withDescription("wait for gdb on [HOST:]PORT (127.0.0.1 unless HOST is given; port 0: any free port, printed)")
)
