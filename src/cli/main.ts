import { Command, HelpDoc, ValidationError } from "@effect/cli"
// Subpath imports: the package index loads the whole platform (HTTP, sockets …) and doubles start-up time.
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Cause from "effect/Cause"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import { createRequire } from "node:module"
import { vmrr } from "./commands.ts"

const { version } = createRequire(import.meta.url)("../../package.json") as { version: string }

const cli = Command.run(vmrr, { name: "vmrr", version })

/** A usage error's text (help docs, possibly a schema's tree) as one line. */
const oneLine = (text: string): string =>
  text
    .replace(/\x1b\[[0-9;]*m/g, "")
    .split("\n")
    .map((line) => line.replace(/^[\s└├─│]+/, "").trim())
    .filter((line) => line !== "")
    .join(": ")

/**
 * Every failure reaches the person as one line on stderr, never a stack trace: usage
 * errors exit 2, bad input 1. @effect/cli prints usage errors through Console.error;
 * that is silenced here and the error printed once, in the same shape as the others.
 */
const program = Console.consoleWith((console) =>
  Effect.suspend(() => cli(process.argv)).pipe(Console.withConsole({ ...console, error: () => Effect.void }))
).pipe(
  Effect.map((status) => (typeof status === "number" ? status : 0)),
  Effect.catchAll((error) => {
    const [message, status] = ValidationError.isValidationError(error)
      ? [oneLine(HelpDoc.toAnsiText(error.error)), 2]
      : [typeof error === "object" && error !== null && "message" in error ? String(error.message) : String(error), 1]
    // Some errors carry context (a divergence: the events before it), printed under the line.
    const details = typeof error === "object" && error !== null && "details" in error && Array.isArray(error.details) ? error.details : []
    return Effect.sync(() => {
      process.stderr.write(`vmrr: ${message}\n${details.map((line) => `${String(line)}\n`).join("")}`)
      return status
    })
  }),
  Effect.provide(NodeContext.layer)
)

/** Exits only once stdout and stderr are flushed: to a pipe or socket, writes are asynchronous. */
const exitAfterFlush = (code: number, onExit: (code: number) => void): void => {
  process.stdout.write("", () => process.stderr.write("", () => onExit(code)))
}

NodeRuntime.runMain(program, {
  disableErrorReporting: true,
  teardown: (exit, onExit) => {
    if (Exit.isSuccess(exit)) return exitAfterFlush(typeof exit.value === "number" ? exit.value : 0, onExit)
    const defect = Option.getOrUndefined(Cause.dieOption(exit.cause))
    if (!Cause.isInterruptedOnly(exit.cause)) process.stderr.write(`vmrr: internal error: ${defect instanceof Error ? defect.message : Cause.pretty(exit.cause)}\n`)
    exitAfterFlush(Cause.isInterruptedOnly(exit.cause) ? 130 : 70, onExit)
  }
})
