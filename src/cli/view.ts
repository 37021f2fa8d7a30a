import { Args, Command, Options } from "@effect/cli"
import * as Effect from "effect/Effect"
import { divergenceNote, inspectTrace } from "../inspect/inspection.ts"
import { viewModel } from "../inspect/viewModel.ts"
import { serveView } from "../inspect/viewServer.ts"
import { integerOption } from "./options.ts"
import { writeStdout } from "./output.ts"

const trace = Args.file({ name: "FILE", exists: "yes" }).pipe(Args.withDescription("a .vmrr trace"))
const port = integerOption("port", 0, 65535).pipe(Options.withDefault(0), Options.withDescription("port on 127.0.0.1 (default: any free one)"))

export const viewCommand = Command.make("view", { trace, port }, (args) =>
  Effect.scoped(
    Effect.gen(function* () {
      const inspection = yield* inspectTrace(args.trace)
      const url = yield* serveView(viewModel(inspection, args.trace, divergenceNote(inspection)), args.port)
      yield* writeStdout(`vmrr: viewing ${args.trace} at ${url} (Ctrl-C stops)\n`)
      return yield* Effect.never
    })
  )
).pipe(Command.withDescription("serve an interactive timeline of a trace on 127.0.0.1: lanes, sequence diagrams, explanations"))
