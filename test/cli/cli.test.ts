import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { decodeTrace, encodeTrace } from "../../src/events/trace/codec.ts"
import { vmrr } from "../support/cli.ts"

const dir = mkdtempSync(join(tmpdir(), "vmrr-cli-"))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const hello = "Hello from a real-mode guest, via a polled 16550 UART!\r\n"
const hello32 = [
  "Hello from 32-bit protected mode, via debugcon!",
  "fib(20) = 6765",
  "checksum = 1403767",
  "mmio read: 0x00000000",
  "mmio read8: 0x00",
  ""
].join("\n")

const jsonLines = (stdout: string) => stdout.trim().split("\n").map((line) => JSON.parse(line))

describe("vmrr run", () => {
  it("runs the real-mode hello guest: greeting on stdout, summary on stderr, status 0", () => {
    const r = vmrr("run", "guests/hello.bin")
    expect(r.stdout).toBe(hello)
    expect(r.stderr).toMatch(/^vmrr: hlt/m)
    expect(r.stderr).toMatch(/IO_INSTRUCTION\s+\d+\s+userspace/)
    expect(r.stderr).toMatch(/EPT_VIOLATION\s+\d+\s+kernel/)
    expect(r.status).toBe(0)
  })

  it("runs hello32 in flat protected mode and exits with the isa-debug-exit status", () => {
    const r = vmrr("run", "guests/hello32.bin", "--mode", "pm32", "--load", "0x100000")
    expect(r.stdout).toBe(hello32)
    expect(r.stderr).toMatch(/^vmrr: debug-exit \(status 67\)/m)
    expect(r.stderr).toMatch(/EPT_MISCONFIG\s+\d+\s+userspace/)
    expect(r.status).toBe(67)
  })

  it("--json prints only events, _tag first, ending with RunEnd and the final registers", () => {
    const r = vmrr("run", "guests/hello32.bin", "--mode", "pm32", "--load", "0x100000", "--json")
    const lines = r.stdout.trim().split("\n")
    for (const line of lines) expect(line.startsWith('{"_tag":"')).toBe(true)
    const events = jsonLines(r.stdout)
    const end = events.at(-1)
    expect(end._tag).toBe("RunEnd")
    expect(end.reason).toBe("debug-exit")
    expect(Object.keys(end.registers)).toEqual(["eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi", "eip", "eflags", "cr0", "cr3"])
    expect(events.map((e: { seq: number }) => e.seq)).toEqual(events.map((_: unknown, i: number) => i))
    const tags = new Set(events.map((e: { _tag: string }) => e._tag))
    for (const tag of ["VmEntry", "VmExit", "Pio", "Mmio", "PageFault", "UserspaceExit", "DeviceOutput", "RunEnd"]) expect(tags).toContain(tag)
  })

  it("rejects bad arguments with one clear line: status 2 for usage, 1 for input that cannot run", () => {
    const usage: Array<[string[], RegExp]> = [
      [["run", "guests/hello.bin", "--load", "banana"], /^vmrr: --load: expected an address .* got "banana"$/],
      [["run", "guests/no-such-image.bin"], /^vmrr: Path 'guests\/no-such-image.bin' must exist$/],
      [["run", "guests/hello.bin", "--mem", "0"], /^vmrr: --mem: expected an integer from 1 to 3072, got 0$/],
      [["run", "guests/hello.bin", "--mode", "pm64"], /^vmrr: .*real, pm32$/],
      [["frobnicate"], /^vmrr: .*'run', 'replay', 'dump'$/]
    ]
    for (const [args, message] of usage) {
      const r = vmrr(...args)
      expect(r.status, args.join(" ")).toBe(2)
      expect(r.stdout).toBe("")
      expect(r.stderr.trimEnd()).toMatch(message)
    }
    const tooBig = vmrr("run", "guests/hello32.bin", "--mode", "pm32", "--load", "0xfffff0", "--mem", "16")
    expect(tooBig.status).toBe(1)
    expect(tooBig.stderr.trimEnd()).toMatch(/^vmrr: the image \(\d+ bytes at 0xfffff0\) does not fit in 16 MiB of RAM$/)
  })

  it("stops a runaway guest at --limit, deterministically", () => {
    const r = vmrr("run", "guests/hello.bin", "--limit", "5", "--json")
    const end = jsonLines(r.stdout).at(-1)
    expect(end).toMatchObject({ _tag: "RunEnd", reason: "instruction-limit", time: 5 })
    expect(r.status).toBe(0)
  })
})

describe("vmrr run --record, replay, dump", () => {
  const trace = join(dir, "hello32.vmrr")

  it("records a trace that replays and dumps", () => {
    const run = vmrr("run", "guests/hello32.bin", "--mode", "pm32", "--load", "0x100000", "--record", trace)
    expect(run.status).toBe(67)
    const recorded = Number(/recorded (\d+) events/.exec(run.stderr)?.[1])
    expect(recorded).toBeGreaterThan(10)

    const replay = vmrr("replay", trace)
    expect(replay.stdout).toBe(`vmrr: replay verified: all ${recorded} events matched\n`)
    expect(replay.status).toBe(0)

    const dump = vmrr("dump", trace)
    expect(dump.status).toBe(0)
    const lines = dump.stdout.trim().split("\n")
    expect(lines).toHaveLength(recorded)
    expect(lines[0]).toMatch(/^#0 t=0 vcpu0 kvm_entry rip 0x100000$/)
    expect(dump.stdout).toMatch(/kvm_exit IO_INSTRUCTION \(30\) out port 0x00e9 size 1 string rep/)
    expect(dump.stdout).toMatch(/kvm_exit EPT_VIOLATION \(48\) write gpa 0xfebf0000 .* -> userspace/)
    expect(dump.stdout).toMatch(/kvm_mmio unsatisfied-read gpa 0xfebf0000 len 4/)
    expect(lines.at(-1)).toMatch(/run end: debug-exit status 67/)

    const dumpJson = vmrr("dump", trace, "--json")
    expect(jsonLines(dumpJson.stdout)).toHaveLength(recorded)
  })

  it("replay fails with status 1 and names the frame when the trace is damaged", () => {
    const bytes = readFileSync(trace)
    const cut = join(dir, "cut.vmrr")
    writeFileSync(cut, bytes.subarray(0, bytes.length - 7))
    const r = vmrr("replay", cut)
    expect(r.status).toBe(1)
    expect(r.stderr.trim().split("\n")).toHaveLength(1)
    expect(r.stderr).toMatch(/frame \d+/)
    const dump = vmrr("dump", cut)
    expect(dump.status).toBe(1)
    expect(dump.stderr).toMatch(/^vmrr: .*frame \d+/)
  })

  it("replay stops at the first event that differs, with both events and the index", () => {
    const original = decodeTrace(readFileSync(trace))
    const events = original.chunks.flatMap((c) => c.events)
    const index = events.findIndex((e) => e._tag === "Pio")
    const tampered = events.map((e, i) => (i === index && e._tag === "Pio" ? { ...e, values: [0x58] } : e))
    const path = join(dir, "tampered.vmrr")
    writeFileSync(path, encodeTrace(original.header!, [tampered]))
    const r = vmrr("replay", path)
    expect(r.status).toBe(1)
    expect(r.stdout).toBe("")
    expect(r.stderr).toBe(
      `vmrr: replay diverged at event #${index}: recorded #${index} t=6 vcpu0 kvm_pio out port 0x00e9 size 1 count 1 val 0x58, ` +
        `replay produced #${index} t=6 vcpu0 kvm_pio out port 0x00e9 size 1 count 1 val 0x48\n`
    )
  })

  it("replay refuses a file that is not a trace", () => {
    const notATrace = join(dir, "garbage.vmrr")
    writeFileSync(notATrace, "hello")
    const r = vmrr("replay", notATrace)
    expect(r.status).toBe(1)
    expect(r.stderr).toMatch(/^vmrr: .*magic/)
  })
})
