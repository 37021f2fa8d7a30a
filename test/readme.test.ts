import { spawnSync } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync, symlinkSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { repoRoot } from "./support/cli.ts"

/**
 * The README's console examples are real output: each `$ npx vmrr …` line is run (in a
 * scratch folder that sees `guests/`) and must print exactly what the README shows,
 * stdout then stderr, with a `| head -N` applied as the shell would.
 */
interface Example {
  readonly command: string
  readonly expected: string
}

const examples = (): Example[] => {
  const readme = readFileSync(join(repoRoot, "README.md"), "utf8")
  const blocks = [...readme.matchAll(/```console\n([\s\S]*?)```/g)].map((m) => m[1])
  return blocks.flatMap((block) => {
    const out: Example[] = []
    for (const line of block.split("\n")) {
      if (line.startsWith("$ ")) out.push({ command: line.slice(2), expected: "" })
      else if (out.length > 0 && line !== "") out[out.length - 1] = { ...out[out.length - 1], expected: `${out[out.length - 1].expected}${line}\n` }
    }
    return out
  })
}

const dir = mkdtempSync(join(tmpdir(), "vmrr-readme-"))
symlinkSync(join(repoRoot, "guests"), join(dir, "guests"))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

/** Runs one example; `| head -N` / `| tail -N` apply to stdout only, as in a shell, with stderr after it. */
const run = (command: string): string => {
  const [vmrrPart, pipePart] = command.split(" | ")
  const args = vmrrPart.split(" ")
  expect(args.slice(0, 2)).toEqual(["npx", "vmrr"])
  const r = spawnSync(process.execPath, [join(repoRoot, "bin/vmrr.js"), ...args.slice(2)], { cwd: dir, encoding: "utf8" })
  // A terminal shows the guest's CR LF as a plain line break, and so does the README.
  const stdout = r.stdout.replaceAll("\r\n", "\n")
  const stderr = r.stderr.replaceAll("\r\n", "\n")
  if (pipePart === undefined) return stdout + stderr
  const [, filter, count] = /^(head|tail) -(\d+)$/.exec(pipePart) ?? []
  expect(filter, `unsupported pipe in README: ${pipePart}`).toBeDefined()
  const lines = stdout.replace(/\n$/, "").split("\n")
  const kept = filter === "head" ? lines.slice(0, Number(count)) : lines.slice(-Number(count))
  return `${kept.join("\n")}\n${stderr}`
}

describe("README", () => {
  const all = examples()
  it("has console examples", () => expect(all.length).toBeGreaterThanOrEqual(4))
  for (const example of all) {
    it(`$ ${example.command}`, () => expect(run(example.command)).toBe(example.expected))
  }
})
