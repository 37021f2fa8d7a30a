import * as Effect from "effect/Effect"
import { describeEvent } from "../events/describe.ts"
import { eventToJson } from "../events/trace/json.ts"
import { hexBytes } from "../inspect/guestCode.ts"
import { divergenceNote, inspectTrace } from "../inspect/inspection.ts"
import { writeStderr, writeStdout } from "./output.ts"

/**
 * `vmrr dump --disasm`: each VM exit followed by the instruction that caused it, found
 * by re-executing the trace (`src/inspect/annotate.ts`). In JSON, the exit's object
 * gains `instruction: { bytes, text }`.
 */
export const dumpWithInstructions = (path: string, json: boolean) =>
  Effect.gen(function* () {
    const inspection = yield* inspectTrace(path)
    const note = divergenceNote(inspection)
    if (note !== undefined) yield* writeStderr(`vmrr: ${note}\n`)
    let text = ""
    for (const e of inspection.trace.events) {
      const instruction = e._tag === "VmExit" ? inspection.instructions.bySeq.get(e.seq) : undefined
      if (json) {
        const line = eventToJson(e)
        text +=
          instruction === undefined
            ? `${line}\n`
            : `${line.slice(0, -1)},"instruction":${JSON.stringify({ bytes: hexBytes(instruction.bytes), text: instruction.text })}}\n`
      } else {
        text += `${describeEvent(e)}${instruction === undefined ? "" : ` | ${instruction.text}`}\n`
      }
    }
    yield* writeStdout(text)
    return 0
  })
