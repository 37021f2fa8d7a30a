/**
 * `--backend kvm`, `vmrr conform` and recording on the real /dev/kvm, end to end through
 * the CLI. Where /dev/kvm cannot be used, the same commands must say so in one line and
 * exit 1, which is what is checked instead.
 */
import { spawnSync } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as Effect from "effect/Effect"
import { afterAll, describe, expect, it } from "vitest"
import { devKvmAvailability } from "../../src/devkvm/devKvm.ts"
import { openTrace } from "../../src/events/trace/reader.ts"
import { repoRoot, vmrr } from "../support/cli.ts"

const kvm = devKvmAvailability()
if (!kvm.usable) console.log(`KVM backend end-to-end tests skipped: ${kvm.reason}`)

const dir = mkdtempSync(join(tmpdir(), "vmrr-kvm-"))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const hello = "Hello from a real-mode guest, via a polled 16550 UART!\r\n"
const pm32 = ["--mode", "pm32", "--load", "0x100000"]

describe.skipIf(!kvm.usable)("the real /dev/kvm as a backend", () => {
  it("runs hello with the same guest output as the model, timed in KVM_RUN calls", async () => {
    const r = await vmrr("run", "guests/hello.bin", "--backend", "kvm")
    expect(r.stdout).toBe(hello)
    expect(r.stderr).toMatch(/^vmrr: hlt\n {2}120 KVM_RUN calls, 296 events, eip 0x7c0d$/m)
    expect(r.stderr).toMatch(/KVM_EXIT_IO\s+119/)
    expect(r.status).toBe(0)
  })

  it("stops after --limit KVM_RUN calls", async () => {
    const r = await vmrr("run", "guests/hello.bin", "--backend", "kvm", "--limit", "10")
    expect(r.stderr).toMatch(/^vmrr: instruction-limit: stopped after 10 exits$/m)
    expect(r.status).toBe(0)
  })

  it("records a trace whose header names the backend, and the model replays it", async () => {
    const path = join(dir, "hello-kvm.vmrr")
    const r = await vmrr("run", "guests/hello.bin", "--backend", "kvm", "--record", path)
    expect(r.stdout).toBe(hello)
    expect(r.status).toBe(0)
    const header = await Effect.runPromise(Effect.scoped(Effect.map(openTrace(path), (t) => t.header)))
    expect(header.backend).toBe("kvm")
    const replay = await vmrr("replay", path)
    expect(replay.stdout).toBe("vmrr: replay verified: all 296 events matched\n")
    expect(replay.status).toBe(0)
  })

  it("conform: hello conforms, with its event count", async () => {
    const r = await vmrr("conform", "guests/hello.bin")
    expect(r.stdout).toMatch(/^vmrr: conforms: 296 events/)
    expect(r.status).toBe(0)
  })

  it("conform: a guest KVM cannot page diverges at the first check, in replay's form", async () => {
    const r = await vmrr("conform", "guests/paging.bin", ...pm32)
    expect(r.stderr).toMatch(/^vmrr: the model diverges from KVM at userspace event #\d+: KVM has #\d+ .*, the model has #\d+ /)
    expect(r.stderr).toMatch(/the 5 events before it:/)
    expect(r.status).toBe(1)
  })

  it("says in one line, exit 1, when /dev/kvm is not permitted", () => {
    const asNobody = (...args: string[]) =>
      spawnSync("setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", process.execPath, ...args], { cwd: repoRoot, encoding: "utf8" })
    if (process.getuid?.() !== 0) return console.log("not-permitted check skipped: needs root to run vmrr as nobody")
    // The checkout may sit where nobody cannot read it (a private temporary directory).
    const probe = asNobody("-e", "require('node:fs').accessSync('bin/vmrr.js', require('node:fs').constants.R_OK)")
    if (probe.error !== undefined || probe.status !== 0) return console.log("not-permitted check skipped: setpriv missing, or nobody cannot read this checkout")
    const nobody = asNobody("bin/vmrr.js", "run", "guests/hello.bin", "--backend", "kvm")
    expect(nobody.stderr).toBe('vmrr: /dev/kvm is not usable: open("/dev/kvm"): Permission denied\n')
    expect(nobody.stdout).toBe("")
    expect(nobody.status).toBe(1)
  })
})

describe.skipIf(kvm.usable)("without a usable /dev/kvm", () => {
  for (const args of [["run", "guests/hello.bin", "--backend", "kvm"], ["conform", "guests/hello.bin"]]) {
    it(`vmrr ${args.join(" ")} says why in one line and exits 1`, async () => {
      const r = await vmrr(...args)
      expect(r.stderr).toMatch(/^vmrr: \/dev\/kvm is not usable: .+\n$/)
      expect(r.stdout).toBe("")
      expect(r.status).toBe(1)
    })
  }
})
