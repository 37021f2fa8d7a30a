/**
 * The stub against the real gdb: `vmrr replay --gdb` and `vmrr run --gdb` driven by
 * `gdb -batch`, checking what gdb prints. The first test's transcript is the README's
 * reverse-debugging session; it is written to the OS temp dir and its path printed.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { vmrr } from "../support/cli.ts"
import { debugWithGdb, findGdb } from "./gdbHarness.ts"

const gdb = findGdb()
if ("missing" in gdb) console.log(`skipping the tests with the real gdb: ${gdb.missing}`)

const dir = mkdtempSync(join(tmpdir(), "vmrr-gdb-"))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const hello32 = join(dir, "hello32.vmrr")
const hello = join(dir, "hello.vmrr")

/** The README's session: hello32's print_dec is entered with fib(20) in EAX; who wrote the stack slot above it? */
const readmeSession = [
  "break *0x100104",
  "continue",
  "info registers eax",
  "x/4xb $esp",
  "stepi",
  "info registers eip esp",
  "reverse-stepi",
  "watch *(int *)0xffffc",
  "reverse-continue",
  "reverse-continue",
  "info registers eip",
  "delete",
  "continue"
]

describe.skipIf("missing" in gdb)("vmrr with the real gdb", { timeout: 120_000 }, () => {
  beforeAll(async () => {
    const [a, b] = await Promise.all([
      vmrr("run", "guests/hello32.bin", "--mode", "pm32", "--load", "0x100000", "--record", hello32),
      vmrr("run", "guests/hello.bin", "--record", hello)
    ])
    expect([a.status, b.status]).toEqual([67, 0])
  }, 60_000)

  it("debugs a replay backwards: breakpoint, registers, memory, stepi, reverse-stepi, a watchpoint hit backwards", async () => {
    const session = await debugWithGdb(["replay", hello32], readmeSession, join(dir, "gdb-out.txt"))
    const transcript = session.transcript
    const saved = join(tmpdir(), "vmrr-gdb-session.txt")
    writeFileSync(saved, transcript)
    console.log(`the gdb transcript of the README session: ${saved}`)

    expect(transcript).toMatch(/^Breakpoint 1, 0x00100104 in \?\? \(\)$/m)
    expect(transcript).toMatch(/^eax\s+0x1a6d\s+6765$/m)
    expect(transcript).toMatch(/^0xffffc:\t0x3b\t0x00\t0x10\t0x00$/m)
    expect(transcript).toMatch(/^\(gdb\) stepi\n0x00100105 in \?\? \(\)$/m)
    expect(transcript).toMatch(/^esp\s+0xffff8\s+0xffff8$/m)
    expect(transcript).toMatch(/^\(gdb\) reverse-stepi\n\nBreakpoint 1, 0x00100104 in \?\? \(\)$/m)
    expect(transcript).toMatch(/^Hardware watchpoint 2: \*\(int \*\)0xffffc$/m)
    // Backwards, the stop is on the instruction that wrote: first `call print_dec`, then `push %eax`.
    expect(transcript).toMatch(/Old value = 1048635\nNew value = 6765\n0x00100036 in \?\? \(\)/)
    expect(transcript).toMatch(/Old value = 6765\nNew value = 1048592\n0x00100025 in \?\? \(\)/)
    expect(transcript).toMatch(/^eip\s+0x100025\s+0x100025$/m)
    expect(transcript).toMatch(/vmrr: debug-exit \(status 67\)\nvmrr: end of the recording\n\nNo more reverse-execution history\./)
    expect(session.vmrrStatus).toBe(0)
    expect(session.vmrrStdout).toMatch(/^vmrr: replay verified: all \d+ events matched$/m)
  })

  it("stops at reads of a location with rwatch, forwards and backwards", async () => {
    // print_dec's return address sits at 0xffffc on entry; its `ret` reads it.
    const session = await debugWithGdb(
      ["replay", hello32],
      ["break *0x100104", "continue", "delete", "rwatch *(int *)0xffffc", "continue", "info registers eip", "reverse-continue", "stepi", "info registers eip"],
      join(dir, "gdb-rwatch.txt")
    )
    const transcript = session.transcript
    expect(transcript).toMatch(/^Hardware read watchpoint 2: \*\(int \*\)0xffffc$/m)
    expect(transcript).toMatch(/Hardware read watchpoint 2: \*\(int \*\)0xffffc\n\nValue = 1048635\n0x0010003b in \?\? \(\)/)
    // Backwards the stop is on the `ret` itself; one step forward is back after it.
    expect(transcript).toMatch(/\(gdb\) reverse-continue\n\nHardware read watchpoint 2: \*\(int \*\)0xffffc\n\nValue = 1048635\n0x001001[0-9a-f]{2} in \?\? \(\)/)
    expect(transcript.match(/^eip\s+0x10003b\s+0x10003b$/gm)?.length).toBe(2)
    expect(session.vmrrStatus).toBe(0)
  })

  it("shows a real-mode guest's registers and memory at linear addresses, and answers monitor commands", async () => {
    const session = await debugWithGdb(
      ["replay", hello],
      [
        "info registers eip cs",
        "x/3xb 0x7c00",
        "monitor event",
        "monitor seek 300",
        "maintenance flush register-cache",
        "info registers eip",
        "reverse-continue",
        "info registers eip",
        "x/4xb 0xfffff000",
        "monitor nonsense",
        "hbreak *0x7c4f",
        "continue"
      ],
      join(dir, "gdb-out2.txt")
    )
    const t = session.transcript
    expect(t).toMatch(/^eip\s+0x7c00\s+0x7c00\ncs\s+0x0\s+0$/m)
    expect(t).toMatch(/^0x7c00:\t0xfa\t0xfc\t0xe8$/m)
    expect(t).toMatch(/^instruction 0, 0 of \d+ events verified\nlast: \(none yet\)\nnext: #0 t=0 vcpu0 kvm_entry rip 0x7c00$/m)
    expect(t).toMatch(/^event #300 happens at instruction \d+$/m)
    expect(t).toMatch(/\(gdb\) reverse-continue\n\nNo more reverse-execution history\.\n0x00007c00 in \?\? \(\)\n\(gdb\) info registers eip\neip\s+0x7c00/)
    expect(t).toMatch(/Cannot access memory at address 0xfffff000/)
    expect(t).toMatch(/unknown monitor command "nonsense"/)
    expect(t).toMatch(/^Hardware assisted breakpoint 1 at 0x7c4f\n\(gdb\) continue\n\nBreakpoint 1, 0x00007c4f in \?\? \(\)$/m)
    expect(session.vmrrStatus).toBe(0)
  })

  it("debugs a live run forward: a breakpoint, a changed register, the guest's exit", async () => {
    const session = await debugWithGdb(
      ["run", "guests/hello32.bin", "--mode", "pm32", "--load", "0x100000"],
      ["break *0x100104", "continue", "set var $eax = 42", "reverse-stepi", "delete", "continue"],
      join(dir, "gdb-out3.txt")
    )
    expect(session.transcript).toMatch(/^Breakpoint 1, 0x00100104 in \?\? \(\)$/m)
    expect(session.transcript).toMatch(/Target remote does not support this command\./)
    expect(session.transcript).toMatch(/\[Inferior 1 \(Remote target\) exited with code 0103\]/)
    expect(session.vmrrStdout).toMatch(/^fib\(20\) = 42$/m)
    expect(session.vmrrStatus).toBe(67)
  })

  it("records a run that gdb stops and steps, but does not let it change the guest: the trace replays", async () => {
    const trace = join(dir, "under-gdb.vmrr")
    const session = await debugWithGdb(
      ["run", "guests/hello32.bin", "--mode", "pm32", "--load", "0x100000", "--record", trace],
      ["break *0x100104", "continue", "set var $eax = 42", "stepi", "stepi", "continue"],
      join(dir, "gdb-out5.txt")
    )
    expect(session.transcript).toMatch(/^Could not write register "eax"; remote failure reply 'E01'$/m)
    expect(session.vmrrStdout).toMatch(/^fib\(20\) = 6765$/m)
    expect(session.vmrrStatus).toBe(67)
    const replay = await vmrr("replay", trace)
    expect(replay.stdout).toMatch(/^vmrr: replay verified: all \d+ events matched$/m)
  })

  it("stops vmrr when gdb kills the target", async () => {
    const session = await debugWithGdb(["replay", hello], ["stepi", "kill"], join(dir, "gdb-out4.txt"))
    expect(session.transcript).toMatch(/\[Inferior 1 \(Remote target\) killed\]/)
    expect(session.vmrrStderr).toMatch(/^vmrr: gdb killed the replay at instruction 1$/m)
    expect(session.vmrrStatus).toBe(1)
  })
})
