import * as Effect from "effect/Effect"

/** Raw bytes or text to stdout/stderr: the CLI is the edge where the terminal lives. */
export const writeStdout = (data: string | Uint8Array): Effect.Effect<void> => Effect.sync(() => void process.stdout.write(data))
export const writeStderr = (data: string): Effect.Effect<void> => Effect.sync(() => void process.stderr.write(data))
