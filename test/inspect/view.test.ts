import { type ChildProcess, spawn } from "node:child_process"
import { existsSync, mkdtempSync, rmSync, statSync } from "node:fs"
import { tmpdir } from "node:os"
import { delimiter, join } from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { repoRoot, vmrr } from "../support/cli.ts"

/**
 * `vmrr view` in a real headless Chromium: the page loads its model, a click on a VM
 * exit shows its sequence diagram and its explanation, and the kind filter hides it.
 * Needs Debian's `chromium` on PATH and playwright-core; skips with the reason otherwise.
 */

const chromium = (process.env.PATH ?? "").split(delimiter).map((dir) => join(dir, "chromium")).find((path) => existsSync(path))
const playwright = await import("playwright-core").catch(() => undefined)
const skipReason = chromium === undefined ? "no chromium on PATH (apt-get install chromium)" : playwright === undefined ? "playwright-core is not installed" : undefined
if (skipReason !== undefined) console.log(`vmrr view browser test skipped: ${skipReason}`)

const dir = mkdtempSync(join(tmpdir(), "vmrr-view-"))
const children: ChildProcess[] = []
afterAll(() => {
  for (const child of children) child.kill()
  rmSync(dir, { recursive: true, force: true })
})

/** Starts `vmrr view FILE` and resolves with the URL it prints. */
const startView = (trace: string): Promise<string> =>
  new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["bin/vmrr.js", "view", trace], { cwd: repoRoot })
    children.push(child)
    let out = ""
    child.stdout.setEncoding("utf8").on("data", (s: string) => {
      out += s
      const url = /http:\/\/127\.0\.0\.1:\d+\//.exec(out)?.[0]
      if (url !== undefined) resolve(url)
    })
    child.on("exit", (status) => reject(new Error(`vmrr view exited with ${status}: ${out}`)))
  })

describe.skipIf(skipReason !== undefined)("vmrr view in Chromium", () => {
  it("shows the round trip and the explanation of a clicked exit, filters by kind, and takes a screenshot", async () => {
    const trace = join(dir, "hello32.vmrr")
    const recorded = await vmrr("run", "guests/hello32.bin", "--mode", "pm32", "--load", "0x100000", "--record", trace)
    expect(recorded.stderr).toContain("recorded")
    const url = await startView(trace)
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:/)
    const browser = await playwright!.chromium.launch({ executablePath: chromium, args: ["--no-sandbox"] })
    try {
      const page = await browser.newPage({ viewport: { width: 1400, height: 900 } })
      const errors: string[] = []
      page.on("pageerror", (e) => errors.push(e.message))
      await page.goto(url)
      await page.waitForSelector("body[data-ready=true]")
      const lanes = await page.locator("#lane-names").innerText()
      for (const lane of ["guest (VMX non-root)", "KVM (kernel)", "QEMU (userspace)", "debugcon"]) expect(lanes).toContain(lane)

      const exit = page.locator('rect.slice[data-name="IO_INSTRUCTION"]').first()
      await exit.click()
      await expect.poll(() => page.locator("#explain").innerText()).toContain("The guest executed `rep outsb %ds:(%esi),(%dx)`")
      expect(await page.locator("#sequence-title").innerText()).toMatch(/^Sequence: #\d+ IO_INSTRUCTION at 0x1000f9$/)
      const participants = await page.locator("#sequence .participant text").allTextContents()
      expect(participants).toEqual(["guest", "KVM", "QEMU", "debugcon", "host"])
      const messages = await page.locator("#sequence .message text").allTextContents()
      expect(messages).toEqual([
        "VM exit IO_INSTRUCTION (30): rep outsb %ds:(%esi),(%dx)",
        "kvm_pio out 0xe9 = 0x48",
        "KVM_RUN returns KVM_EXIT_IO",
        "write 0xe9",
        'output "H"',
        "KVM_RUN",
        "VM entry at 0x1000f9"
      ])
      expect(await exit.getAttribute("class")).toContain("selected")

      // A message of the diagram selects its own event.
      await page.locator("#sequence .message", { hasText: 'output "H"' }).click()
      await expect.poll(() => page.locator("#explain").innerText()).toContain('The device debugcon sends "H" to the host')

      await page.locator('#filters input[data-kind="VmExit"]').uncheck()
      expect(await page.locator('rect.slice[data-name="IO_INSTRUCTION"]:visible').count()).toBe(0)
      expect(await page.locator('rect.slice[data-kind="UserspaceExit"]:visible').count()).toBeGreaterThan(0)

      const screenshot = join(dir, "view.png")
      await page.screenshot({ path: screenshot })
      expect(statSync(screenshot).size).toBeGreaterThan(10_000)
      expect(errors).toEqual([])
    } finally {
      await browser.close()
    }
  }, 120_000)
})
