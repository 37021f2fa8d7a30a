import { spawnSync } from "node:child_process"
import { fileURLToPath } from "node:url"

export const repoRoot = fileURLToPath(new URL("../..", import.meta.url))

export interface CliResult {
  readonly status: number | null
  readonly stdout: string
  readonly stderr: string
}

/** Runs `vmrr ARGS` the way a person does: through the bin script, from the repo root. */
export const vmrr = (...args: string[]): CliResult => {
  const r = spawnSync(process.execPath, ["bin/vmrr.js", ...args], { cwd: repoRoot, encoding: "utf8", timeout: 60_000 })
  return { status: r.status, stdout: r.stdout, stderr: r.stderr }
}
