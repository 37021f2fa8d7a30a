/** The `.vmrr` trace file format: see DESIGN.md, "Trace files". */
export { decodeEventChunk, decodeTrace, type DecodedTrace, encodeTrace, TraceDecoder, TraceEncoder, type TraceStep, type TraceSummary } from "./codec.ts"
export { eventsEqual } from "./equality.ts"
export { TraceCorrupt, type TraceError, TraceFrameTooLarge, TraceIoError, type TraceWriteError } from "./errors.ts"
export { magic, maxPayloadBytes } from "./framing.ts"
export { eventToJson } from "./json.ts"
export { openTrace, type OpenTrace, readTraceEvents, readTraceHeader } from "./reader.ts"
export {
  Checkpoint,
  EventChunk,
  formatVersion,
  makeTraceHeader,
  PackedEventChunk,
  producer,
  readableFormatVersions,
  TraceEnd,
  TraceHeader,
  type TraceHeaderInput,
  VmEventWire
} from "./schema.ts"
export { indexTrace, openSeekableTrace, SeekableTrace, type TraceIndex } from "./traceIndex.ts"
export { openTraceWriter, traceSink, type TraceWriter, writeTrace } from "./writer.ts"
