import { spawn } from "node:child_process"
import { fileURLToPath } from "node:url"

export const repoRoot = fileURLToPath(new URL("../..", import.meta.url))

export interface CliResult {
  readonly status: number | null
  readonly stdout: string
  readonly stderr: string
}

/**
 * Runs `vmrr ARGS` the way a person does: through the bin script, from the repo root.
 * Asynchronous, so the test worker's event loop stays free while the CLI runs.
 */
export const vmrr = (...args: string[]): Promise<CliResult> => vmrrWithInput(undefined, ...args)

/** `vmrr ARGS` with `input` piped to its stdin (undefined: an empty pipe). */
export const vmrrWithInput = (input: string | undefined, ...args: string[]): Promise<CliResult> =>
  new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["bin/vmrr.js", ...args], { cwd: repoRoot, timeout: 60_000 })
    let stdout = ""
    let stderr = ""
    child.stdout.setEncoding("utf8").on("data", (s: string) => (stdout += s))
    child.stderr.setEncoding("utf8").on("data", (s: string) => (stderr += s))
    child.on("error", reject)
    child.on("close", (status) => resolve({ status, stdout, stderr }))
    child.stdin.end(input ?? "")
  })
