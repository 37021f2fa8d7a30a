import { Args, Command, Options } from "@effect/cli"
import { FileSystem } from "@effect/platform"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import { describeEvent } from "../events/describe.ts"
import { defaultIrqchip, type MachineConfig } from "../events/MachineConfig.ts"
import { eventToJson } from "../events/trace/json.ts"
import { readTraceEvents } from "../events/trace/reader.ts"
import { openTraceWriter } from "../events/trace/writer.ts"
import type { VmEvent } from "../events/VmEvent.ts"
import { type HostInput, HostInputStdin, recordWithHostInput, runWithHostInput } from "../replay/hostInput.ts"
import { defaultCheckpointEvery, type RecordedChunk } from "../qemu/runMachine.ts"
import { rawEvents } from "../events/rawEvents.ts"
import { diffTraces, formatCounts, TracesDiffer } from "../replay/diff.ts"
import { replayTrace } from "../replay/replay.ts"
import { dumpWithInstructions } from "./dumpDisasm.ts"
import { explainCommand } from "./explain.ts"
import { exportCommand } from "./export.ts"
import { acquireKernel, backendOption, kvmFailuresAsErrors, supportedOnBackend } from "./backend.ts"
import { conformCommand } from "./conform.ts"
import { entry, icountShift, image, irqchip, limit, load, mem, mode } from "./machineOptions.ts"
import { integerOption } from "./options.ts"
import { gdbOption } from "./gdbOption.ts"
import { type GdbRunError, GdbSessionFailed, liveRecordingUnderGdb, liveRunUnderGdb, replayUnderGdb } from "../gdb/session.ts"
import { writeStderr, writeStdout } from "./output.ts"
import { RunSummary } from "./runSummary.ts"
import { replayTo, reverseCommand, stateCommand } from "./seek.ts"
import { statsCommand } from "./stats.ts"
import { viewCommand } from "./view.ts"

/** The status `vmrr run` exits with: the guest's for isa-debug-exit (as QEMU does), 0 for a clean stop, 3 when the model failed. */
const exitStatusOf = (end: VmEvent | undefined): number => {
  if (end === undefined || end._tag !== "RunEnd") return 3
  if (end.reason === "debug-exit") return (end.exitCode ?? 0) & 0xff
  return end.reason === "internal-error" ? 3 : 0
}

const record = Options.file("record").pipe(Options.optional, Options.withDescription("write the run to this .vmrr trace"))
const json = Options.boolean("json").pipe(Options.withDescription("print one JSON object per event on stdout, nothing else"))
const checkpointEvery = integerOption("checkpoint-every", 1, Number.MAX_SAFE_INTEGER).pipe(
  Options.optional,
  Options.withDescription("with --record, a checkpoint every this many instructions (default: about every 16 ms of replay work)")
)

const tsc = Options.choice("tsc", ["virtual", "realtime"]).pipe(
  Options.withDefault("virtual" as const),
  Options.withDescription("what the TSC (RDTSC, RDMSR) reads: virtual time (default) or the host's counter, recorded as a host input")
)

const clock = Options.choice("clock", ["virtual", "realtime"]).pipe(
  Options.withDefault("virtual" as const),
  Options.withDescription(
    "what the timers (PIT, LAPIC timer, RTC) count: virtual time, instructions at 2^--icount-shift ns each (default), or the host's monotonic clock, as QEMU without -icount, its readings recorded as host inputs"
  )
)

const runCommand = Command.make("run", { image, mode, load, entry, mem, limit, irqchip, icountShift, record, json, checkpointEvery, tsc, clock, backend: backendOption, gdb: Options.optional(gdbOption) }, (args) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const bytes = yield* fs.readFile(args.image)
    const kernel = yield* acquireKernel(args.backend, { tracepoints: Option.isSome(args.record), quiet: args.json })
    const config: MachineConfig = {
      memoryMiB: args.mem,
      loadAddress: args.load,
      entry: Option.getOrElse(args.entry, () => args.load),
      mode: args.mode,
      instructionLimit: args.limit,
      // Only what differs from the defaults, so that traces of default machines stay byte-identical to older ones.
      ...(args.irqchip === defaultIrqchip ? {} : { irqchip: args.irqchip }),
      ...(args.icountShift === 0 ? {} : { icountShift: args.icountShift }),
      ...(args.tsc === "virtual" ? {} : { tsc: args.tsc }),
      ...(args.clock === "virtual" ? {} : { clock: args.clock })
    }
    yield* supportedOnBackend(args.backend, config)
    const summary = new RunSummary(args.backend === "kvm" ? "KVM_RUN calls" : "instructions")
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
    if (Option.isSome(args.gdb) && args.backend === "kvm") return yield* Effect.fail(new GdbSessionFailed({ message: "--gdb needs the model's vCPU (not --backend kvm)" }))
    const unobserved = kvmFailuresAsErrors(runWithHostInput(config, bytes, kernel))
    const events: Stream.Stream<VmEvent, Stream.Stream.Error<typeof unobserved> | GdbRunError, HostInput> = Option.isSome(args.gdb)
      ? liveRunUnderGdb(config, bytes, args.gdb.value)
      : unobserved
    yield* Option.match(args.record, {
      onNone: () => Stream.runForEachChunk(events, show),
      onSome: (path) =>
        Effect.scoped(
          Effect.gen(function* () {
            const writer = yield* openTraceWriter(path, { config, image: bytes, backend: args.backend })
            const unobserved = kvmFailuresAsErrors(recordWithHostInput(config, bytes, Option.getOrElse(args.checkpointEvery, () => defaultCheckpointEvery), kernel))
            const recorded: Stream.Stream<RecordedChunk, Stream.Stream.Error<typeof unobserved> | GdbRunError, HostInput> = Option.isSome(args.gdb)
              ? liveRecordingUnderGdb(config, bytes, args.gdb.value)
              : unobserved
            yield* Stream.runForEach(recorded, ({ checkpoint, events }) =>
              // Shown first: the writer takes the chunk.
              Effect.zipRight(
                show(Chunk.unsafeFromArray(rawEvents(events))),
                checkpoint === undefined ? writer.writeRawChunk(events) : Effect.zipRight(writer.writeCheckpoint(checkpoint), writer.writeRawChunk(events))
              ))
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
  }).pipe(Effect.scoped, Effect.provide(HostInputStdin))
).pipe(Command.withDescription("run a guest image on the model or the real /dev/kvm, with the UART and debugcon on the terminal"))

const trace = Args.file({ name: "FILE", exists: "yes" }).pipe(Args.withDescription("a .vmrr trace"))

const replayTarget = {
  to: integerOption("to", 0, Number.MAX_SAFE_INTEGER).pipe(Options.optional, Options.withDescription("replay up to this event, from the nearest checkpoint before it")),
  at: integerOption("at", 0, Number.MAX_SAFE_INTEGER).pipe(Options.optional, Options.withDescription("replay up to this instruction count, from the nearest checkpoint before it"))
}

const replayCommand = Command.make("replay", { trace, gdb: Options.optional(gdbOption), ...replayTarget }, (args) =>
  Effect.gen(function* () {
    if (Option.isSome(args.to) || Option.isSome(args.at)) return yield* replayTo(args.trace, args.to, args.at)
    const report = Option.isSome(args.gdb) ? { verified: yield* replayUnderGdb(args.trace, args.gdb.value) } : yield* replayTrace(args.trace)
    yield* writeStdout(`vmrr: replay verified: all ${report.verified} events matched\n`)
    return 0
  })
).pipe(Command.withDescription("re-execute a trace and check every event against the recording"))

const disasm = Options.boolean("disasm").pipe(Options.withDescription("show the instruction at each VM exit (re-executes the trace)"))

const dumpCommand = Command.make("dump", { trace, json, disasm }, (args) =>
  args.disasm
    ? dumpWithInstructions(args.trace, args.json)
    : Stream.runForEachChunk(readTraceEvents(args.trace), (events) =>
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
  Command.withSubcommands([runCommand, replayCommand, dumpCommand, diffCommand, conformCommand, statsCommand, explainCommand, exportCommand, viewCommand, stateCommand, reverseCommand])
)
