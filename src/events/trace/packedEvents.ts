import * as Schema from "effect/Schema"
import { kindLayouts } from "../eventLayouts.ts"
import { isHostInputTag } from "../VmEvent.ts"
import { makePackedCodec } from "./packedCodec.ts"

/**
 * The packed encoding of events (trace format 3, see packedCodec.ts), generated from the
 * VmEvent schemas' layouts.
 */
export type { PackedChunk, PackedRawChunk } from "./packedCodec.ts"

export const packedCodec = makePackedCodec({ layouts: kindLayouts, isHostInputTag, is: Schema.is })
export const { packEvents, packRawEvents, unpackEvents } = packedCodec
