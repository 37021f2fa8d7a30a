import { Args, Command, HelpDoc, Options, ValidationError } from "@effect/cli"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { describeEvent } from "../events/describe.ts"
import { previousEvent, previousEventOfKind, previousWrite, stepBack } from "../replay/reverse.ts"
import { openReplaySession, type ReplaySession, sessionEffect, SessionError } from "../replay/session.ts"
import { integerOption, parseAddress } from "./options.ts"
import { writeStdout } from "./output.ts"
import { formatMemory, formatState } from "./stateReport.ts"

const trace = Args.file({ name: "FILE", exists: "yes" }).pipe(Args.withDescription("a .vmrr trace"))
const count = (name: string) => integerOption(name, 0, Number.MAX_SAFE_INTEGER)
const icount = Options.boolean("icount").pipe(Options.withDescription("N is an instruction count, not an event number"))

/** `ADDR:LEN`, e.g. `0x7c00:32`. */
const memoryOption = Options.text("memory").pipe(
  Options.mapEffect((text) => {
    const [a, l] = text.split(":")
    const address = a === undefined ? undefined : parseAddress(a)
    const length = l === undefined ? 16 : parseAddress(l)
    return address === undefined || length === undefined || length === 0 || length > 0x10000
      ? Effect.fail(ValidationError.invalidValue(HelpDoc.p(`--memory: expected ADDR:LEN (a linear address and 1 to 65536 bytes), got "${text}"`)))
      : Effect.succeed({ address, length })
  }),
  Options.optional,
  Options.withDescription("also print LEN bytes of guest memory at linear address ADDR (ADDR:LEN)")
)

const show = (session: ReplaySession, memory: Option.Option<{ address: number; length: number }>) =>
  writeStdout(
    [...formatState(session), ...Option.match(memory, { onNone: () => [], onSome: (m) => formatMemory(session, m.address, m.length) })]
      .map((l) => `${l}\n`).join("")
  )

/** `vmrr replay FILE --to EVENT | --at ICOUNT`: from the nearest checkpoint, forward, verifying. */
export const replayTo = (path: string, to: Option.Option<number>, at: Option.Option<number>) =>
  Effect.scoped(
    Effect.gen(function* () {
      const session = yield* openReplaySession(path)
      const end = yield* sessionEffect(() => {
        if (Option.isSome(to)) return session.replayToEvent(to.value)
        return session.seekTime(at.pipe(Option.getOrElse(() => 0)))
      })
      const { checkpointSeqs, checkpointTimes } = session.trace.index
      const from = checkpointSeqs.filter((s, i) => s <= end.seq && checkpointTimes[i]! <= end.time).length - 1
      const start = from < 0 ? "the start" : `checkpoint ${from} (event #${checkpointSeqs[from]}, t=${checkpointTimes[from]})`
      yield* writeStdout(`vmrr: replayed from ${start} to t=${end.time}, before event #${end.seq}: all ${end.seq - (from < 0 ? 0 : checkpointSeqs[from]!)} events matched\n`)
      return 0
    })
  )

export const stateCommand = Command.make(
  "state",
  { trace, at: count("at").pipe(Options.withDescription("event number (or instruction count with --icount)")), icount, memory: memoryOption },
  (args) =>
    Effect.scoped(
      Effect.gen(function* () {
        const session = yield* openReplaySession(args.trace)
        yield* sessionEffect(() => (args.icount ? session.seekTime(args.at) : session.seekEvent(args.at)))
        yield* show(session, args.memory)
        return 0
      })
    )
).pipe(Command.withDescription("the registers, the next instruction and memory at an event or instruction count of a trace"))

const from = count("from").pipe(Options.optional, Options.withDescription("start at this event (or instruction count with --icount); default: the end"))
const event = Options.boolean("event").pipe(Options.withDescription("back to the previous event"))
const kind = Options.text("kind").pipe(Options.optional, Options.withDescription("back to the previous event of a kind: VmExit, Pio, EPT_VIOLATION, kvm_pio …"))
const write = Options.text("write").pipe(Options.optional, Options.withDescription("back to the last instruction that changed guest-physical ADDR[:LEN]"))

export const reverseCommand = Command.make("reverse", { trace, from, icount, event, kind, write }, (args) =>
  Effect.scoped(
    Effect.gen(function* () {
      const session = yield* openReplaySession(args.trace)
      const found = yield* sessionEffect(() => {
        Option.match(args.from, {
          onNone: () => session.seekTime(session.endTime),
          onSome: (n) => (args.icount ? session.seekTime(n) : session.seekEvent(n))
        })
        if (Option.isSome(args.write)) {
          const [a, l] = args.write.value.split(":")
          const address = a === undefined ? undefined : parseAddress(a)
          const length = l === undefined ? 1 : parseAddress(l)
          if (address === undefined || length === undefined || length === 0) {
            throw new SessionError({ reason: `--write: expected ADDR[:LEN], got "${args.write.value}"` })
          }
          const t = previousWrite(session, address, length)
          return t === undefined ? undefined : `the last change to [0x${address.toString(16)}, +${length}) is made by the instruction at t=${t}`
        }
        if (Option.isSome(args.kind)) {
          const e = previousEventOfKind(session, args.kind.value)
          return e === undefined ? undefined : `previous ${args.kind.value}: ${describeEvent(e)}`
        }
        if (args.event) {
          const e = previousEvent(session)
          return e === undefined ? undefined : `previous event: ${describeEvent(e)}`
        }
        return stepBack(session) === undefined ? undefined : "one instruction back"
      })
      if (found === undefined) {
        return yield* new SessionError({ reason: "nothing earlier in the recording: the session stays where it was" })
      }
      yield* writeStdout(`${found}\n`)
      yield* show(session, Option.none())
      return 0
    })
  )
).pipe(Command.withDescription("step back from a point of a trace: one instruction (default), --event, --kind KIND or --write ADDR[:LEN]"))
