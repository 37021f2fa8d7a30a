import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { vmrr } from "../support/cli.ts"

const dir = mkdtempSync(join(tmpdir(), "vmrr-irqchip-"))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

describe("vmrr run --irqchip / --icount-shift", () => {
  it("records the mode and the shift in the trace, and the replay rebuilds that machine", async () => {
    const trace = join(dir, "pit.vmrr")
    const run = await vmrr("run", "guests/pit.bin", "--irqchip", "userspace", "--icount-shift", "2", "--record", trace)
    expect(run.status).toBe(1)
    expect(run.stdout).toContain("done: ticks 6, wakeups 5")
    expect(run.stderr).toMatch(/HLT +5 {2}userspace/)
    const replay = await vmrr("replay", trace)
    expect(replay.stdout).toMatch(/^vmrr: replay verified: all \d+ events matched\n$/)
    const dump = await vmrr("dump", trace)
    expect(dump.stdout).toContain("kvm_userspace_exit KVM_EXIT_IRQ_WINDOW_OPEN (7)")
    expect(dump.stdout).toMatch(/kvm_inj_virq vec 0x08 from KVM_INTERRUPT/)
  })

  it("refuses a mode or a shift it does not know with one line and status 2", async () => {
    const mode = await vmrr("run", "guests/pit.bin", "--irqchip", "off")
    expect(mode.status).toBe(2)
    expect(mode.stderr.trim().split("\n")).toHaveLength(1)
    const shift = await vmrr("run", "guests/pit.bin", "--icount-shift", "11")
    expect(shift.status).toBe(2)
    expect(shift.stderr).toMatch(/--icount-shift: expected an integer from 0 to 10, got 11/)
  })
})

describe("vmrr run --clock realtime", () => {
  it("runs the timers on the host clock, records its readings, and replays them", async () => {
    const trace = join(dir, "pit-realtime.vmrr")
    const run = await vmrr("run", "guests/pit.bin", "--irqchip", "split", "--clock", "realtime", "--checkpoint-every", "5000", "--record", trace)
    expect(run.status).toBe(1)
    expect(run.stdout).toContain("tick 5")
    const replay = await vmrr("replay", trace)
    expect(replay.stdout).toMatch(/^vmrr: replay verified: all \d+ events matched\n$/)
    const dump = await vmrr("dump", trace)
    expect(dump.stdout).toMatch(/host monotonic clock \d+ ns/)
    const both = await vmrr("run", "guests/pit.bin", "--clock", "realtime", "--icount-shift", "2")
    expect(both.stderr).toMatch(/--icount-shift sets the rate of virtual time/)
  })
})
