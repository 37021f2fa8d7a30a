import { Args, Command, Options } from "@effect/cli"
import { FileSystem } from "@effect/platform"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import { describeEvent } from "../events/describe.ts"
import { defaultInstructionLimit, type MachineConfig } from "../events/MachineConfig.ts"
import { eventToJson } from "../events/trace/json.ts"
import { readTraceEvents } from "../events/trace/reader.ts"
import { openTraceWriter } from "../events/trace/writer.ts"
import type { VmEvent } from "../events/VmEvent.ts"
import { HostInputStdin, runWithHostInput } from "../replay/hostInput.ts"
import { diffTraces, formatCounts, TracesDiffer } from "../replay/diff.ts"
import { replayTrace } from "../replay/replay.ts"
import { addressOption, integerOption } from "./options.ts"
import { writeStderr, writeStdout } from "./output.ts"
import { RunSummary } from "./runSummary.ts"

/** The status `vmrr run` exits with: the guest's for isa-debug-exit (as QEMU does), 0 for a clean stop, 3 when the model failed. */
const exitStatusOf = (end: VmEvent | undefined): number => {
  if (end === undefined || end._tag !== "RunEnd") return 3
  if (end.reason === "debug-exit") return (end.exitCode ?? 0) & 0xff
  return end.reason === "internal-error" ? 3 : 0
}

const image = Args.file({ name: "IMAGE", exists: "yes" }).pipe(Args.withDescription("flat guest image, loaded at --load and entered at --entry"))
const mode = Options.choice("mode", ["real", "pm32"]).pipe(
  Options.withDefault("real" as const),
  Options.withDescription("real mode (CS:IP = 0:entry) or flat 32-bit protected mode")
)
const load = addressOption("load").pipe(
  Options.withDefault(0x7c00),
  Options.withDescription("guest-physical load address (default 0x7c00)")
)
const entry = addressOption("entry").pipe(
  Options.optional,
  Options.withDescription("entry point (default: the load address)")
)
const mem = integerOption("mem", 1, 3072).pipe(Options.withDefault(16), Options.withDescription("guest RAM in MiB (default 16)"))
const limit = integerOption("limit", 1, Number.MAX_SAFE_INTEGER).pipe(
  Options.withDefault(defaultInstructionLimit),
  Options.withDescription(`stop after this many instructions (default ${defaultInstructionLimit})`)
)
const record = Options.file("record").pipe(Options.optional, Options.withDescription("write the run to this .vmrr trace"))
const json = Options.boolean("json").pipe(Options.withDescription("print one JSON object per event on stdout, nothing else"))

const runCommand = Command.make("run", { image, mode, load, entry, mem, limit, record, json }, (args) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const bytes = yield* fs.readFile(args.image)
    const config: MachineConfig = {
      memoryMiB: args.mem,
      loadAddress: args.load,
      entry: Option.getOrElse(args.entry, () => args.load),
      mode: args.mode,
      instructionLimit: args.limit
    }
    const summary = new RunSummary()
    let lastOutputByte = 0x0a
    const show = (events: Chunk.Chunk<VmEvent>) =>
      Effect.sync(() => {
        for (const e of events) {
          summary.add(e)
          if (args.json) process.stdout.write(`${eventToJson(e)}\n`)
          else if (e._tag === "DeviceOutput" && e.bytes.length > 0) {
            process.stdout.write(e.bytes)
            lastOutputByte = e.bytes[e.bytes.length - 1]
          }
        }
      })
    const events = runWithHostInput(config, bytes)
    yield* Option.match(args.record, {
      onNone: () => Stream.runForEachChunk(events, show),
      onSome: (path) =>
        Effect.scoped(
          Effect.gen(function* () {
            const writer = yield* openTraceWriter(path, { config, image: bytes })
            yield* Stream.runForEachChunk(events, (chunk) => Effect.zipRight(writer.writeChunk(Chunk.toReadonlyArray(chunk)), show(chunk)))
            const written = yield* writer.close
            if (!args.json) yield* writeStderr(`vmrr: recorded ${written.eventCount} events in ${written.bytes} bytes to ${path}\n`)
          })
        )
    })
    if (!args.json) {
      if (lastOutputByte !== 0x0a) yield* writeStdout("\n")
      yield* writeStderr(summary.format())
    }
    return exitStatusOf(summary.end)
  }).pipe(Effect.provide(HostInputStdin))
).pipe(Command.withDescription("run a guest image on the model, with the UART and debugcon on the terminal"))

const trace = Args.file({ name: "FILE", exists: "yes" }).pipe(Args.withDescription("a .vmrr trace"))

const replayCommand = Command.make("replay", { trace }, (args) =>
  Effect.gen(function* () {
    const report = yield* replayTrace(args.trace)
    yield* writeStdout(`vmrr: replay verified: all ${report.verified} events matched\n`)
    return 0
  })
).pipe(Command.withDescription("re-execute a trace and check every event against the recording"))

const dumpCommand = Command.make("dump", { trace, json }, (args) =>
  Stream.runForEachChunk(readTraceEvents(args.trace), (events) =>
    Effect.sync(() => {
      let text = ""
      for (const e of events) text += `${args.json ? eventToJson(e) : describeEvent(e)}\n`
      process.stdout.write(text)
    })
  ).pipe(Effect.as(0))
).pipe(Command.withDescription("print the events of a trace, one per line"))

const traceA = Args.file({ name: "A", exists: "yes" }).pipe(Args.withDescription("a .vmrr trace"))
const traceB = Args.file({ name: "B", exists: "yes" }).pipe(Args.withDescription("another .vmrr trace"))

const diffCommand = Command.make("diff", { a: traceA, b: traceB }, (args) =>
  Effect.gen(function* () {
    const report = yield* diffTraces(args.a, args.b)
    const notes = report.headerDifferences.map((d) => `${d}\n`).join("")
    yield* writeStdout(`${notes}${formatCounts(report)}`)
    if (report.first !== undefined) return yield* Effect.fail(new TracesDiffer(report.first))
    yield* writeStdout(`vmrr: traces are identical: all ${report.totalA} events match\n`)
    return 0
  })
).pipe(Command.withDescription("compare two traces: the first event that differs, and the events of each kind on each side"))

export const vmrr = Command.make("vmrr").pipe(
  Command.withDescription("an event-sourced model of the QEMU/KVM split, with deterministic record and replay"),
  Command.withSubcommands([runCommand, replayCommand, dumpCommand, diffCommand])
)
