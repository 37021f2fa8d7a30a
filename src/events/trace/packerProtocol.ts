import type { KindLayout } from "../eventLayouts.ts"
import type { RawChunk } from "../rawEvents.ts"
import type { Checkpoint } from "./schema.ts"

/**
 * The messages between a writer (packerThread.ts) and the packer thread
 * (packerWorker.ts). The thread writes the frames itself, each at its offset in the
 * file (positional writes on the writer's descriptor), so the writer only keeps the index.
 */

export type PackRequest =
  /** From now on frames for `file` go to descriptor `fd`, the next one at `position`. */
  | { readonly _tag: "Open"; readonly file: number; readonly fd: number; readonly position: number }
  /** Pack, frame and write a raw chunk. */
  | { readonly _tag: "Chunk"; readonly id: number; readonly file: number } & RawChunk
  /** Write a frame the writer encoded (a checkpoint that could not be posted as it is). */
  | { readonly _tag: "Frame"; readonly id: number; readonly file: number; readonly frame: Uint8Array }
  /** Encode and write a checkpoint's frame (a copy: posting clones it, in native code, cheaper than encoding it). */
  | { readonly _tag: "Checkpoint"; readonly id: number; readonly file: number; readonly checkpoint: Checkpoint }
  /** The writer is done with `file`: no more requests for it. */
  | { readonly _tag: "Close"; readonly file: number }
  /** A replay's check (RawChunkVerifier): does the raw chunk pack to `expected`? Nothing is written. */
  | { readonly _tag: "Verify"; readonly id: number; readonly expected: Uint8Array } & RawChunk
  /** The same, the recorded bytes being the events frame at `offset` in the trace file `fd` of `size` bytes (read and checked there). */
  | { readonly _tag: "VerifyAt"; readonly id: number; readonly fd: number; readonly size: number; readonly offset: number } & RawChunk

export type PackReply =
  /** Written: `length` bytes at the file's next offset. For a chunk, what the index needs of it. */
  | {
    readonly _tag: "Written"
    readonly id: number
    readonly length: number
    readonly firstTime: number
    readonly inputSeqs: ReadonlyArray<number>
    /** A chunk's words when they were transferred (not shared): back to the writer's thread, which frees them. */
    readonly words?: Float64Array
  }
  /**
   * Not written: packing or the write failed (`error`; `tooLarge`: the payload's bytes),
   * or an earlier request for the file did (`error` undefined). Nothing more is written
   * for the file. A chunk's words come back.
   */
  | { readonly _tag: "Failed"; readonly id: number; readonly error?: string; readonly tooLarge?: number; readonly writeFailed?: boolean; readonly words?: Float64Array }
  /** A Verify request's answer: the chunk packs to exactly the expected bytes (false too when packing threw). */
  | { readonly _tag: "Verified"; readonly id: number; readonly same: boolean }

/** Int32 slots of the shared flags: the thread is ready for chunks (0 / 1). */
export const flagReady = 0
/** Replies posted so far: bumped (and notified) after each. */
export const flagResults = 1
export const flagSlots = 2

/** What the thread builds its packer from (it loads no schema): the kinds' layouts and which kinds are host inputs. */
export interface PackerTables {
  readonly layouts: ReadonlyArray<KindLayout>
  readonly hostInputTags: ReadonlyArray<string>
}
