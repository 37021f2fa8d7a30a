import { Chunk, Effect, Stream } from "effect"
import { TraceEncoder } from "../../src/events/trace/codec.ts"
import { memorySource } from "../../src/events/trace/framing.ts"
import { indexTrace, type SeekableTrace } from "../../src/events/trace/traceIndex.ts"
import { makeTraceHeader } from "../../src/events/trace/schema.ts"
import type { MachineConfig } from "../../src/events/MachineConfig.ts"
import type { HostInputPort } from "../../src/qemu/hostInput.ts"
import { recordMachine } from "../../src/qemu/runMachine.ts"
import { rawEvents } from "../../src/events/rawEvents.ts"

/** A recording as trace bytes, in memory, with a checkpoint every `every` instructions (none: undefined). */
export const recordTraceBytes = (config: MachineConfig, image: Uint8Array, every: number | undefined, input?: HostInputPort): Uint8Array => {
  const encoder = new TraceEncoder()
  const parts = [encoder.start(makeTraceHeader({ config, image }))]
  const recorded = Effect.runSync(Stream.runCollect(recordMachine(config, image, { checkpointEvery: every, ...(input === undefined ? {} : { input }) })))
  for (const { checkpoint, events } of Chunk.toArray(recorded)) {
    if (checkpoint !== undefined) parts.push(encoder.checkpoint(checkpoint))
    const frame = encoder.chunk(rawEvents(events))
    if (frame !== undefined) parts.push(frame)
  }
  parts.push(encoder.end())
  return Buffer.concat(parts)
}

/** Trace bytes opened for seeking, as from a file named `name`; a trace that does not open throws its error. */
export const openTraceBytes = (bytes: Uint8Array, name = "test.vmrr"): SeekableTrace => {
  const trace = indexTrace(memorySource(bytes), name)
  if (!("index" in trace)) throw trace
  return trace
}
