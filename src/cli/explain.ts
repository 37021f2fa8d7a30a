import { Args, Command, Options } from "@effect/cli"
import * as Effect from "effect/Effect"
import { explainEvents } from "../inspect/explain.ts"
import { divergenceNote, EventOutOfRange, inspectTrace } from "../inspect/inspection.ts"
import { integerOption } from "./options.ts"
import { writeStdout } from "./output.ts"

const trace = Args.file({ name: "FILE", exists: "yes" }).pipe(Args.withDescription("a .vmrr trace"))
const from = integerOption("from", 0, Number.MAX_SAFE_INTEGER).pipe(Options.withDefault(0), Options.withDescription("first event to explain (default 0)"))
const count = integerOption("count", 1, Number.MAX_SAFE_INTEGER).pipe(Options.withDefault(30), Options.withDescription("how many events (default 30)"))

export const explainCommand = Command.make("explain", { trace, from, count }, (args) =>
  Effect.gen(function* () {
    const inspection = yield* inspectTrace(args.trace, args.from + args.count)
    const events = inspection.trace.events
    if (args.from >= events.length) return yield* Effect.fail(new EventOutOfRange({ from: args.from, eventCount: events.length }))
    const note = divergenceNote(inspection)
    const lines = explainEvents(events.slice(args.from, args.from + args.count), inspection)
    yield* writeStdout(`${note === undefined ? "" : `${note}\n`}${lines.join("\n")}\n`)
    return 0
  })
).pipe(Command.withDescription("tell the VM-exit flow of a trace event by event: guest, KVM, QEMU, device"))
