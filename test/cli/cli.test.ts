import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { describeEvent } from "../../src/events/describe.ts"
import { decodeTrace, encodeTrace } from "../../src/events/trace/codec.ts"
import { vmrr, vmrrWithInput } from "../support/cli.ts"

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
  it("runs the real-mode hello guest: greeting on stdout, summary on stderr, status 0", async () => {
    const r = await vmrr("run", "guests/hello.bin")
    expect(r.stdout).toBe(hello)
    expect(r.stderr).toMatch(/^vmrr: hlt/m)
    expect(r.stderr).toMatch(/IO_INSTRUCTION\s+\d+\s+userspace/)
    expect(r.stderr).toMatch(/EPT_VIOLATION\s+\d+\s+kernel/)
    expect(r.status).toBe(0)
  })

  it("runs hello32 in flat protected mode and exits with the isa-debug-exit status", async () => {
    const r = await vmrr("run", "guests/hello32.bin", "--mode", "pm32", "--load", "0x100000")
    expect(r.stdout).toBe(hello32)
    expect(r.stderr).toMatch(/^vmrr: debug-exit \(status 67\)/m)
    expect(r.stderr).toMatch(/EPT_MISCONFIG\s+\d+\s+userspace/)
    expect(r.status).toBe(67)
  })

  it("--json prints only events, _tag first, ending with RunEnd and the final registers", async () => {
    const r = await vmrr("run", "guests/hello32.bin", "--mode", "pm32", "--load", "0x100000", "--json")
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

  it("rejects bad arguments with one clear line: status 2 for usage, 1 for input that cannot run", async () => {
    const usage: Array<[string[], RegExp]> = [
      [["run", "guests/hello.bin", "--load", "banana"], /^vmrr: --load: expected an address .* got "banana"$/],
      [["run", "guests/no-such-image.bin"], /^vmrr: Path 'guests\/no-such-image.bin' must exist$/],
      [["run", "guests/hello.bin", "--mem", "0"], /^vmrr: --mem: expected an integer from 1 to 3072, got 0$/],
      [["run", "guests/hello.bin", "--mode", "pm64"], /^vmrr: .*real, pm32$/],
      [["frobnicate"], /^vmrr: .*'run', 'replay', 'dump', 'diff', 'conform'/]
    ]
    for (const [args, message] of usage) {
      const r = await vmrr(...args)
      expect(r.status, args.join(" ")).toBe(2)
      expect(r.stdout).toBe("")
      expect(r.stderr.trimEnd()).toMatch(message)
    }
    const tooBig = await vmrr("run", "guests/hello32.bin", "--mode", "pm32", "--load", "0xfffff0", "--mem", "16")
    expect(tooBig.status).toBe(1)
    expect(tooBig.stderr.trimEnd()).toMatch(/^vmrr: the image \(\d+ bytes at 0xfffff0\) does not fit in 16 MiB of RAM$/)
  })

  it("stops a runaway guest at --limit, deterministically", async () => {
    const r = await vmrr("run", "guests/hello.bin", "--limit", "5", "--json")
    const end = jsonLines(r.stdout).at(-1)
    expect(end).toMatchObject({ _tag: "RunEnd", reason: "instruction-limit", time: 5 })
    expect(r.status).toBe(0)
  })
})

describe("vmrr run --record, replay, dump", () => {
  const trace = join(dir, "hello32.vmrr")

  it("records a trace that replays and dumps", async () => {
    const run = await vmrr("run", "guests/hello32.bin", "--mode", "pm32", "--load", "0x100000", "--record", trace)
    expect(run.status).toBe(67)
    const recorded = Number(/recorded (\d+) events/.exec(run.stderr)?.[1])
    expect(recorded).toBeGreaterThan(10)

    const replay = await vmrr("replay", trace)
    expect(replay.stdout).toBe(`vmrr: replay verified: all ${recorded} events matched\n`)
    expect(replay.status).toBe(0)

    const dump = await vmrr("dump", trace)
    expect(dump.status).toBe(0)
    const lines = dump.stdout.trim().split("\n")
    expect(lines).toHaveLength(recorded)
    expect(lines[0]).toMatch(/^#0 t=0 vcpu0 kvm_entry rip 0x100000$/)
    expect(dump.stdout).toMatch(/kvm_exit IO_INSTRUCTION \(30\) out port 0x00e9 size 1 string rep/)
    expect(dump.stdout).toMatch(/kvm_exit EPT_VIOLATION \(48\) write gpa 0xfebf0000 .* -> userspace/)
    expect(dump.stdout).toMatch(/kvm_mmio unsatisfied-read gpa 0xfebf0000 len 4/)
    expect(lines.at(-1)).toMatch(/run end: debug-exit status 67/)

    const dumpJson = await vmrr("dump", trace, "--json")
    expect(jsonLines(dumpJson.stdout)).toHaveLength(recorded)
  })

  it("replay fails with status 1 and names the frame when the trace is damaged", async () => {
    const bytes = readFileSync(trace)
    const cut = join(dir, "cut.vmrr")
    writeFileSync(cut, bytes.subarray(0, bytes.length - 7))
    const r = await vmrr("replay", cut)
    expect(r.status).toBe(1)
    expect(r.stderr.trim().split("\n")).toHaveLength(1)
    expect(r.stderr).toMatch(/frame \d+/)
    const dump = await vmrr("dump", cut)
    expect(dump.status).toBe(1)
    expect(dump.stderr).toMatch(/^vmrr: .*frame \d+/)
  })

  it("replay stops at the first event that differs, with both events and the index", async () => {
    const original = decodeTrace(readFileSync(trace))
    const events = original.chunks.flatMap((c) => c.events)
    const index = events.findIndex((e) => e._tag === "Pio")
    const tampered = events.map((e, i) => (i === index && e._tag === "Pio" ? { ...e, values: [0x58] } : e))
    const path = join(dir, "tampered.vmrr")
    writeFileSync(path, encodeTrace(original.header!, [tampered]))
    const r = await vmrr("replay", path)
    expect(r.status).toBe(1)
    expect(r.stdout).toBe("")
    const [first, at, registers, differences, heading, ...context] = r.stderr.trimEnd().split("\n")
    expect(first).toBe(
      `vmrr: replay diverged at event #${index}: recorded #${index} t=6 vcpu0 kvm_pio out port 0x00e9 size 1 count 1 val 0x58, ` +
        `replay produced #${index} t=6 vcpu0 kvm_pio out port 0x00e9 size 1 count 1 val 0x48`
    )
    // Where the replaying machine is: the instruction, its registers, what differs from the recording.
    expect(at).toMatch(/^ {2}at t=6 the replay is about to execute 0x[0-9a-f]+: rep outsb %ds:\(%esi\),\(%dx\)$/)
    expect(registers).toMatch(/^ {2}registers of the replay: eax=0x[0-9a-f]+ .* cr3=0x0$/)
    expect(differences).toMatch(/^ {2}no register differs between the recording and the replay/)
    // The last recorded events before the difference, as `vmrr dump` words them.
    expect(heading).toBe(`  the 5 events before it:`)
    expect(context).toEqual(events.slice(index - 5, index).map((e) => `    ${describeEvent(e)}`))
  })

  it("replay refuses a file that is not a trace", async () => {
    const notATrace = join(dir, "garbage.vmrr")
    writeFileSync(notATrace, "hello")
    const r = await vmrr("replay", notATrace)
    expect(r.status).toBe(1)
    expect(r.stderr).toMatch(/^vmrr: .*magic/)
  })
})

describe("host input on the serial console", () => {
  const echoTrace = join(dir, "echo.vmrr")

  it("records piped stdin as HostInput events, and the recording replays", async () => {
    const run = await vmrrWithInput("hello, world\n", "run", "guests/echo.bin", "--record", echoTrace)
    expect(run.status).toBe(0)
    expect(run.stdout).toBe("HELLO, WORLD\r\n")
    expect(run.stderr).toMatch(/^vmrr: hlt/m)

    const inputs = decodeTrace(readFileSync(echoTrace)).chunks.flatMap((c) => c.events).filter((e) => e._tag === "HostInput")
    expect(inputs.length).toBeGreaterThan(0)
    expect(Buffer.concat(inputs.map((e) => (e._tag === "HostInput" ? e.bytes : new Uint8Array()))).toString()).toBe("hello, world\n")
    // Live input is delivered on the quantum grid of virtual time.
    for (const e of inputs) expect(e.time % 1024).toBe(0)

    const replay = await vmrrWithInput("this is not read", "replay", echoTrace)
    expect(replay.stderr).toBe("")
    expect(replay.stdout).toMatch(/^vmrr: replay verified: all \d+ events matched\n$/)
    expect(replay.status).toBe(0)

    const dump = await vmrr("dump", echoTrace)
    expect(dump.stdout).toMatch(/^#\d+ t=\d+ vcpu0 host input serial0 "hello, world\\n"$/m)
  })

  it("an empty pipe is no input: the output is the same as before HostInput existed", async () => {
    const r = await vmrrWithInput("", "run", "guests/hello.bin", "--json")
    expect(jsonLines(r.stdout).some((e: { _tag: string }) => e._tag === "HostInput")).toBe(false)
  })

  it("replay reports a changed input as a divergence, with the events before it", async () => {
    const original = decodeTrace(readFileSync(echoTrace))
    const events = original.chunks.flatMap((c) => c.events)
    const index = events.findIndex((e) => e._tag === "HostInput")
    // Moved one quantum later: the replay no longer stops where the recording did.
    const tampered = events.map((e, i) => (i === index && e._tag === "HostInput" ? { ...e, time: e.time + 1024 } : e))
    const path = join(dir, "echo-tampered.vmrr")
    writeFileSync(path, encodeTrace(original.header!, [tampered]))
    const r = await vmrr("replay", path)
    expect(r.status).toBe(1)
    expect(r.stdout).toBe("")
    const lines = r.stderr.trimEnd().split("\n")
    const stop = index - 1
    expect(lines[0]).toMatch(new RegExp(`^vmrr: replay diverged at event #${stop}: recorded #${stop} t=\\d+ vcpu0 kvm_userspace_exit KVM_EXIT_INTR .*, replay produced #${stop} `))
    expect(lines.slice(lines.indexOf("  the 5 events before it:") + 1)).toEqual(events.slice(stop - 5, stop).map((e) => `    ${describeEvent(e)}`))
  })
})

describe("vmrr diff", () => {
  const a = join(dir, "diff-a.vmrr")
  const b = join(dir, "diff-b.vmrr")

  it("says two recordings of the same run are identical, exit 0", async () => {
    expect((await vmrr("run", "guests/hello.bin", "--record", a)).status).toBe(0)
    expect((await vmrr("run", "guests/hello.bin", "--record", b)).status).toBe(0)
    const r = await vmrr("diff", a, b)
    expect(r.stderr).toBe("")
    expect(r.stdout).toMatch(/^event kind +A +B$/m)
    expect(r.stdout).toMatch(/^VmExit +(\d+) +\1$/m)
    expect(r.stdout).toMatch(/^vmrr: traces are identical: all 539 events match$/m)
    expect(r.status).toBe(0)
  })

  it("reports the first difference like a replay divergence, with counts by kind on each side, exit 1", async () => {
    const x = join(dir, "diff-x.vmrr")
    const y = join(dir, "diff-y.vmrr")
    expect((await vmrrWithInput("abc\n", "run", "guests/echo.bin", "--record", x)).status).toBe(0)
    expect((await vmrrWithInput("abd\n", "run", "guests/echo.bin", "--record", y)).status).toBe(0)
    const events = decodeTrace(readFileSync(x)).chunks.flatMap((c) => c.events)
    const r = await vmrr("diff", x, y)
    expect(r.status).toBe(1)
    const lines = r.stderr.trimEnd().split("\n")
    expect(lines[0]).toMatch(/^vmrr: traces differ at event #(\d+): A has #\1 .* host input serial0 "abc\\n", B has #\1 .* host input serial0 "abd\\n"$/)
    const index = Number(/#(\d+)/.exec(lines[0])![1])
    expect(lines[1]).toMatch(/^ {2}at t=\d+ B is about to execute 0x[0-9a-f]+: /)
    expect(lines.slice(lines.indexOf("  the 5 events before it:") + 1)).toEqual(events.slice(index - 5, index).map((e) => `    ${describeEvent(e)}`))
    expect(r.stdout).toMatch(/^HostInput +1 +1$/m)
    expect(r.stdout).toMatch(/^total +\d+ +\d+$/m)

    const other = await vmrr("diff", x, a)
    expect(other.status).toBe(1)
    expect(other.stdout).toMatch(/^the guest images differ$/m)
    expect(other.stderr).toMatch(/^vmrr: traces differ at event #/)
  })

  it("fails with one line for a damaged trace", async () => {
    const bytes = readFileSync(a)
    const cut = join(dir, "diff-cut.vmrr")
    writeFileSync(cut, bytes.subarray(0, bytes.length - 7))
    const r = await vmrr("diff", a, cut)
    expect(r.status).toBe(1)
    expect(r.stderr).toMatch(/^vmrr: .*frame \d+/)
  })
})
