import { type ChildProcess, spawn, spawnSync } from "node:child_process"
import { closeSync, openSync, readFileSync } from "node:fs"
import { repoRoot } from "../support/cli.ts"

/** The gdb on PATH, or why there is none usable. */
export const findGdb = (): { readonly path: string } | { readonly missing: string } => {
  const probe = spawnSync("gdb", ["--version"], { encoding: "utf8" })
  if (probe.error !== undefined || probe.status !== 0) return { missing: "gdb is not installed (no `gdb` on PATH)" }
  return { path: "gdb" }
}

export interface GdbSession {
  /** What gdb printed, stdout and stderr in order, each command echoed as `(gdb) command`. */
  readonly transcript: string
  readonly vmrrStatus: number | null
  readonly vmrrStdout: string
  readonly vmrrStderr: string
}

const waitForExit = (child: ChildProcess, ms: number): Promise<number | null> =>
  new Promise((resolve) => {
    if (child.exitCode !== null) return resolve(child.exitCode)
    const timer = setTimeout(() => {
      child.kill("SIGKILL")
      resolve(null)
    }, ms)
    child.on("exit", (code) => {
      clearTimeout(timer)
      resolve(code)
    })
  })

/**
 * Starts `vmrr ARGS --gdb 0`, waits for the line that names the port, runs
 * `gdb -batch` against it with `commands`, and returns gdb's transcript and how vmrr
 * ended. Both processes are bounded in time; vmrr is killed if it outlives gdb for long.
 */
export const debugWithGdb = async (vmrrArgs: ReadonlyArray<string>, commands: ReadonlyArray<string>, outputFile: string): Promise<GdbSession> => {
  const vmrr = spawn(process.execPath, ["bin/vmrr.js", ...vmrrArgs, "--gdb", "0"], { cwd: repoRoot, stdio: ["pipe", "pipe", "pipe"] })
  vmrr.stdin.end()
  let vmrrStdout = ""
  let vmrrStderr = ""
  vmrr.stdout.setEncoding("utf8").on("data", (s: string) => (vmrrStdout += s))
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`vmrr did not start listening: ${vmrrStderr}`)), 30_000)
    vmrr.stderr.setEncoding("utf8").on("data", (s: string) => {
      vmrrStderr += s
      const match = /waiting for gdb on [^\n]*:(\d+)\n/.exec(vmrrStderr)
      if (match !== null) {
        clearTimeout(timer)
        resolve(Number(match[1]))
      }
    })
    vmrr.on("exit", () => reject(new Error(`vmrr exited before listening: ${vmrrStderr}`)))
  })
  // One file for gdb's stdout and stderr keeps their order.
  const out = openSync(outputFile, "w")
  const args = ["-batch", "-nx", "-ex", "set architecture i386", "-ex", `target remote 127.0.0.1:${port}`]
  for (const c of commands) args.push("-ex", `echo (gdb) ${c.replaceAll("\\", "\\\\")}\\n`, "-ex", c)
  const gdb = spawn("gdb", args, { cwd: repoRoot, stdio: ["ignore", out, out] })
  await waitForExit(gdb, 60_000)
  closeSync(out)
  const vmrrStatus = await waitForExit(vmrr, 30_000)
  return { transcript: readFileSync(outputFile, "utf8"), vmrrStatus, vmrrStdout, vmrrStderr }
}
