import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { vmrr } from "../support/cli.ts"
import { chromeTraceProblems } from "./chromeTraceRules.ts"

const dir = mkdtempSync(join(tmpdir(), "vmrr-inspect-"))
const trace = join(dir, "hello.vmrr")
afterAll(() => rmSync(dir, { recursive: true, force: true }))
beforeAll(async () => {
  const r = await vmrr("run", "guests/hello.bin", "--record", trace)
  expect(r.status).toBe(0)
}, 60_000)

describe("the inspection commands", () => {
  it("vmrr stats prints the perf kvm stat table, and --json the same numbers", async () => {
    const table = await vmrr("stats", trace)
    expect(table.status).toBe(0)
    expect(table.stdout).toMatch(/^ +VM-EXIT +Samples +Samples% +Time% +Min Time +Max Time +Avg time +Handled$/m)
    expect(table.stdout).toMatch(/^ +IO_INSTRUCTION +\d+ +\d+\.\d\d% .* userspace$/m)
    const json = await vmrr("stats", trace, "--by", "port", "--json")
    const report = JSON.parse(json.stdout) as { by: string; rows: Array<{ key: string; samples: number }> }
    expect(report.by).toBe("port")
    expect(report.rows.map((r) => r.key)).toEqual(expect.arrayContaining(["0x3f8:POUT", "0x3fd:PIN"]))
  })

  it("vmrr explain tells events from --from, --count of them, and refuses an event the trace lacks", async () => {
    const r = await vmrr("explain", trace, "--from", "4", "--count", "5")
    expect(r.status).toBe(0)
    const headings = r.stdout.split("\n").filter((l) => l.startsWith("#"))
    expect(headings.map((l) => l.split(" ")[0])).toEqual(["#4", "#5", "#6", "#7", "#8"])
    expect(r.stdout).toMatch(/The guest executed `out    %al,\(%dx\)` at rip 0x7c[0-9a-f]{2}, bytes ee\./)
    const bad = await vmrr("explain", trace, "--from", "100000")
    expect(bad.status).toBe(1)
    expect(bad.stderr).toMatch(/^vmrr: --from 100000: the trace has (\d+) events \(#0 to #\d+\)\n$/)
  })

  it("vmrr dump --disasm adds the instruction to each VM exit, in text and JSON", async () => {
    const text = await vmrr("dump", trace, "--disasm")
    expect(text.stdout).toMatch(/^#4 t=\d+ vcpu0 kvm_exit IO_INSTRUCTION \(30\) out port 0x03f9 size 1 rip 0x7c[0-9a-f]{2} len 1 -> userspace \| out    %al,\(%dx\)$/m)
    const json = await vmrr("dump", trace, "--disasm", "--json")
    const exit = JSON.parse(json.stdout.split("\n")[4]) as { _tag: string; instruction: { bytes: string; text: string } }
    expect(exit).toMatchObject({ _tag: "VmExit", instruction: { bytes: "ee", text: "out    %al,(%dx)" } })
  })

  it("vmrr export --format perfetto writes a valid Chrome trace", async () => {
    const r = await vmrr("export", trace, "--format", "perfetto")
    expect(r.status).toBe(0)
    expect(chromeTraceProblems(JSON.parse(r.stdout))).toEqual([])
  })

  it("a file that is not a trace is one line and status 1", async () => {
    const junk = join(dir, "junk.vmrr")
    writeFileSync(junk, "not a trace")
    for (const command of ["explain", "export"]) {
      const r = await vmrr(command, junk, ...(command === "export" ? ["--format", "perfetto"] : []))
      expect(r.status, command).toBe(1)
      expect(r.stderr.split("\n")).toHaveLength(2)
      expect(r.stderr).toMatch(/^vmrr: .*junk\.vmrr/)
    }
  })
})
