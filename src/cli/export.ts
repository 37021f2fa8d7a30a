import { Args, Command, Options } from "@effect/cli"
import * as Effect from "effect/Effect"
import { machineDevices } from "../inspect/devices.ts"
import { loadTrace } from "../inspect/loadTrace.ts"
import { toChromeTrace } from "../inspect/perfetto.ts"
import { writeStdout } from "./output.ts"

const trace = Args.file({ name: "FILE", exists: "yes" }).pipe(Args.withDescription("a .vmrr trace"))
const format = Options.choice("format", ["perfetto"]).pipe(
  Options.withDescription("perfetto: Chrome trace-event JSON, for ui.perfetto.dev or chrome://tracing")
)

export const exportCommand = Command.make("export", { trace, format }, (args) =>
  Effect.gen(function* () {
    const { header, events } = yield* loadTrace(args.trace)
    const devices = yield* machineDevices(header.config, header.image)
    yield* writeStdout(`${JSON.stringify(toChromeTrace(events, devices, args.trace))}\n`)
    return 0
  })
).pipe(Command.withDescription("convert a trace for another tool: --format perfetto writes Chrome trace-event JSON to stdout"))
