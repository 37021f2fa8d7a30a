import { Command, ValidationError } from "@effect/cli"
// Subpath imports: the package index loads the whole platform (HTTP, sockets …) and doubles start-up time.
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import { createRequire } from "node:module"
import { vmrr } from "./commands.ts"

const { version } = createRequire(import.meta.url)("../../package.json") as { version: string }

const cli = Command.run(vmrr, { name: "vmrr", version })

/** Every failure reaches the person as one line on stderr, never a stack trace. */
const program = Effect.suspend(() => cli(process.argv)).pipe(
  Effect.map((status) => (typeof status === "number" ? status : 0)),
  Effect.catchAll((error) => {
    // @effect/cli has already printed usage errors with the help text.
    if (ValidationError.isValidationError(error)) return Effect.succeed(2)
    const message = typeof error === "object" && error !== null && "message" in error ? String(error.message) : String(error)
    return Effect.sync(() => {
      process.stderr.write(`vmrr: ${message}\n`)
      return 1
    })
  }),
  Effect.provide(NodeContext.layer)
)

NodeRuntime.runMain(program, {
  disableErrorReporting: true,
  teardown: (exit, onExit) => {
    if (Exit.isSuccess(exit)) return onExit(typeof exit.value === "number" ? exit.value : 0)
    const defect = Option.getOrUndefined(Cause.dieOption(exit.cause))
    if (!Cause.isInterruptedOnly(exit.cause)) process.stderr.write(`vmrr: internal error: ${defect instanceof Error ? defect.message : Cause.pretty(exit.cause)}\n`)
    onExit(Cause.isInterruptedOnly(exit.cause) ? 130 : 70)
  }
})
