import { createHash } from "node:crypto"
import * as Schema from "effect/Schema"
import { MachineConfig } from "../MachineConfig.ts"
import { VmEvent } from "../VmEvent.ts"
import packageJson from "../../../package.json" with { type: "json" }

/**
 * The payloads of a `.vmrr` file's frames. Each is one msgpack map carrying `kind`, so
 * any frame can be decoded alone.
 */

/**
 * The version this vmrr writes. 2: checkpoint frames, and an end frame that indexes
 * chunks and checkpoints by event number and time. 3: events frames hold the events
 * packed (packedEvents.ts) instead of as msgpack maps.
 */
export const formatVersion = 3
/** The versions this vmrr reads: a version 2 trace differs only in its events frames, which a reader tells apart by their shape. */
const ReadableFormatVersion = Schema.Literal(2, formatVersion)
export const readableFormatVersions: ReadonlyArray<number> = ReadableFormatVersion.literals
export const producer = `vmrr ${packageJson.version}`

const Count = Schema.Int.pipe(Schema.between(0, Number.MAX_SAFE_INTEGER))

/**
 * Events go on the wire in their Type form (a `Uint8Array` stays msgpack binary rather
 * than the number array `VmEvent`'s encoded side uses), so the wire schema is the
 * Type side of `VmEvent`: decoding a chunk validates it.
 */
export const VmEventWire = Schema.typeSchema(VmEvent)

/** The kernel behind the KVM API: `src/kernel` (the model) or the real /dev/kvm. */
export const Backend = Schema.Literal("model", "kvm")
export type Backend = typeof Backend.Type

/** Frame 0: everything a replay needs, the guest image included. */
export const TraceHeader = Schema.Struct({
  kind: Schema.Literal("header"),
  formatVersion: ReadableFormatVersion,
  config: MachineConfig,
  image: Schema.Uint8ArrayFromSelf,
  imageSha256: Schema.String.pipe(Schema.pattern(/^[0-9a-f]{64}$/)),
  producer: Schema.String,
  /**
   * Which kernel recorded the run: vmrr's model, or the real /dev/kvm (whose events
   * are only what userspace and the host's tracepoints can see, timed in KVM_RUN
   * returns rather than instructions). Absent in traces from before it existed: the model.
   */
  backend: Schema.optionalWith(Backend, { exact: true })
})
export type TraceHeader = typeof TraceHeader.Type

/**
 * A run of events; `firstSeq` is the `seq` of the first, so a reader can seek. This is
 * how a reader hands chunks out, and the events frame of format 2 (each event a msgpack map).
 */
export const EventChunk = Schema.Struct({
  kind: Schema.Literal("events"),
  firstSeq: Count,
  events: Schema.Array(VmEventWire)
})
export type EventChunk = typeof EventChunk.Type

/** The events frame of format 3: the same run of events, packed (see packedEvents.ts). */
export const PackedEventChunk = Schema.Struct({
  kind: Schema.Literal("events"),
  firstSeq: Count,
  packed: Schema.Uint8ArrayFromSelf
})
export type PackedEventChunk = typeof PackedEventChunk.Type

/**
 * A snapshot of the machine between two exits, as QEMU's savevm: named state sections
 * (see src/replay/checkpoint.ts), taken after `seq` events and `time` instructions.
 * Memory sections hold only what changed since the previous checkpoint, so a restore
 * reads every checkpoint up to its own.
 */
export const Checkpoint = Schema.Struct({
  kind: Schema.Literal("checkpoint"),
  seq: Count,
  time: Count,
  sections: Schema.Record({ key: Schema.String, value: Schema.Unknown })
})
export type Checkpoint = typeof Checkpoint.Type

/**
 * The last frame: the index. `chunkOffsets` are the byte offsets of the events frames,
 * `chunkSeqs` and `chunkTimes` the seq and time of each one's first event; the
 * checkpoint lists are the same for the checkpoint frames. A reader finds this frame
 * from the end of the file (see traceIndex.ts); a trace without it is indexed by a scan.
 */
export const TraceEnd = Schema.Struct({
  kind: Schema.Literal("end"),
  eventCount: Count,
  chunkOffsets: Schema.Array(Count),
  chunkSeqs: Schema.optionalWith(Schema.Array(Count), { exact: true }),
  chunkTimes: Schema.optionalWith(Schema.Array(Count), { exact: true }),
  checkpointOffsets: Schema.optionalWith(Schema.Array(Count), { exact: true }),
  checkpointSeqs: Schema.optionalWith(Schema.Array(Count), { exact: true }),
  checkpointTimes: Schema.optionalWith(Schema.Array(Count), { exact: true }),
  /** The seq of every event a replay feeds back from the recording (HostInput, HostClock, HostTsc, HostMonotonicClock). */
  inputSeqs: Schema.optionalWith(Schema.Array(Count), { exact: true })
})
export type TraceEnd = typeof TraceEnd.Type

/** What a recorder knows when it starts a trace; the rest of the header is derived. */
export interface TraceHeaderInput {
  readonly config: MachineConfig
  readonly image: Uint8Array
  /** Defaults to this vmrr's name and version. */
  readonly producer?: string
  /** Recorded only when not the model, so model traces are byte-identical to older ones. */
  readonly backend?: Backend
}

export const sha256Hex = (bytes: Uint8Array): string => createHash("sha256").update(bytes).digest("hex")

export const makeTraceHeader = (input: TraceHeaderInput): TraceHeader => ({
  kind: "header",
  formatVersion,
  config: input.config,
  image: input.image,
  imageSha256: sha256Hex(input.image),
  producer: input.producer ?? producer,
  ...(input.backend === undefined || input.backend === "model" ? {} : { backend: input.backend })
})
