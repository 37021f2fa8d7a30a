import { createHash } from "node:crypto"
import * as Schema from "effect/Schema"
import { MachineConfig } from "../MachineConfig.ts"
import { VmEvent } from "../VmEvent.ts"
import packageJson from "../../../package.json" with { type: "json" }

/**
 * The payloads of a `.vmrr` file's frames. Each is one msgpack map carrying `kind`, so
 * any frame can be decoded alone.
 */

export const formatVersion = 1
export const producer = `vmrr ${packageJson.version}`

const Count = Schema.Int.pipe(Schema.between(0, Number.MAX_SAFE_INTEGER))

/**
 * Events go on the wire in their Type form (a `Uint8Array` stays msgpack binary rather
 * than the number array `VmEvent`'s encoded side uses), so the wire schema is the
 * Type side of `VmEvent`: decoding a chunk validates it.
 */
export const VmEventWire = Schema.typeSchema(VmEvent)

/** Frame 0: everything a replay needs, the guest image included. */
export const TraceHeader = Schema.Struct({
  kind: Schema.Literal("header"),
  formatVersion: Schema.Literal(formatVersion),
  config: MachineConfig,
  image: Schema.Uint8ArrayFromSelf,
  imageSha256: Schema.String.pipe(Schema.pattern(/^[0-9a-f]{64}$/)),
  producer: Schema.String
})
export type TraceHeader = typeof TraceHeader.Type

/** A run of consecutive events; `firstSeq` is the `seq` of the first, so a reader can seek. */
export const EventChunk = Schema.Struct({
  kind: Schema.Literal("events"),
  firstSeq: Count,
  events: Schema.Array(VmEventWire)
})
export type EventChunk = typeof EventChunk.Type

/** The last frame: the index. `chunkOffsets` are the byte offsets of the events frames. */
export const TraceEnd = Schema.Struct({
  kind: Schema.Literal("end"),
  eventCount: Count,
  chunkOffsets: Schema.Array(Count)
})
export type TraceEnd = typeof TraceEnd.Type

/** What a recorder knows when it starts a trace; the rest of the header is derived. */
export interface TraceHeaderInput {
  readonly config: MachineConfig
  readonly image: Uint8Array
  /** Defaults to this vmrr's name and version. */
  readonly producer?: string
}

export const sha256Hex = (bytes: Uint8Array): string => createHash("sha256").update(bytes).digest("hex")

export const makeTraceHeader = (input: TraceHeaderInput): TraceHeader => ({
  kind: "header",
  formatVersion,
  config: input.config,
  image: input.image,
  imageSha256: sha256Hex(input.image),
  producer: input.producer ?? producer
})
