import { Args, Command, Options } from "@effect/cli"
import * as Effect from "effect/Effect"
import { loadTrace } from "../inspect/loadTrace.ts"
import { computeStats, formatStats, statsKeys } from "../inspect/stats.ts"
import { writeStdout } from "./output.ts"

const trace = Args.file({ name: "FILE", exists: "yes" }).pipe(Args.withDescription("a .vmrr trace"))
const by = Options.choice("by", statsKeys).pipe(
  Options.withDefault("reason" as const),
  Options.withDescription("group VM exits by exit reason, I/O port, MMIO address or interrupt vector")
)
const json = Options.boolean("json").pipe(Options.withDescription("print the report as one JSON object"))

export const statsCommand = Command.make("stats", { trace, by, json }, (args) =>
  Effect.gen(function* () {
    const { events } = yield* loadTrace(args.trace)
    const report = computeStats(events, args.by)
    yield* writeStdout(args.json ? `${JSON.stringify(report)}\n` : formatStats(report))
    return 0
  })
).pipe(Command.withDescription("the perf kvm stat report of a trace: VM exits by reason, port, MMIO address or vector"))
