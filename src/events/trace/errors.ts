import * as Data from "effect/Data"

/**
 * The file system refused: open, read, write or close failed. `detail` is the
 * system's own words (e.g. "ENOENT: no such file or directory").
 */
export class TraceIoError extends Data.TaggedError("TraceIoError")<{
  readonly path: string
  readonly operation: "open" | "read" | "write" | "close"
  readonly detail: string
}> {
  override get message(): string {
    return `cannot ${this.operation} trace ${this.path}: ${this.detail}`
  }
}

/**
 * The bytes are not a (complete) vmrr trace. `frame` is the index of the first frame
 * that is not intact (absent when the damage is in the magic, before any frame),
 * `offset` a byte offset inside the damage, `reason` one sentence a person can act on.
 */
export class TraceCorrupt extends Data.TaggedError("TraceCorrupt")<{
  readonly path?: string
  readonly frame?: number
  readonly offset: number
  readonly reason: string
}> {
  override get message(): string {
    return this.path === undefined ? this.reason : `${this.path}: ${this.reason}`
  }
}

/** The writer was asked for a frame the reader would refuse as corrupt (see `maxPayloadBytes`). */
export class TraceFrameTooLarge extends Data.TaggedError("TraceFrameTooLarge")<{
  readonly frame: number
  readonly bytes: number
  readonly limit: number
}> {
  override get message(): string {
    return `frame ${this.frame} would be ${this.bytes} bytes, more than the ${this.limit}-byte frame limit` +
      (this.frame === 0 ? " (the guest image is too large for a trace header)" : " (write smaller chunks)")
  }
}

/** What reading a trace can fail with. */
export type TraceError = TraceIoError | TraceCorrupt
/** What writing a trace can fail with. */
export type TraceWriteError = TraceIoError | TraceFrameTooLarge

/** A thrown file-system error as a `TraceIoError`. */
export const ioError = (path: string, operation: TraceIoError["operation"], cause: unknown): TraceIoError =>
  new TraceIoError({ path, operation, detail: describeCause(cause) })

const describeCause = (cause: unknown): string => {
  if (cause instanceof Error) {
    // Node's messages end with ", open '<path>'": the path is already in ours.
    return cause.message.replace(/, \w+ '.*'$/, "")
  }
  return String(cause)
}
