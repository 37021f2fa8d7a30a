/**
 * `--backend kvm --irqchip kernel`: the PIC, IOAPIC, LAPIC and PIT in the real KVM
 * (KVM_CREATE_IRQCHIP, KVM_CREATE_PIT2). The PIT runs on the host's clock there, so only
 * what does not depend on the guest's speed is checked: the ticks and wake-ups of
 * guests/pit.bin, not how many ticks came during its spin with IF = 0 or the count it latches.
 */
import { describe, expect, it } from "vitest"
import { devKvmAvailability } from "../../src/devkvm/devKvm.ts"
import { vmrr } from "../support/cli.ts"

const kvm = devKvmAvailability()
if (!kvm.usable) console.log(`KVM in-kernel irqchip tests skipped: ${kvm.reason}`)

describe.skipIf(!kvm.usable)("the in-kernel irqchip and PIT on the real /dev/kvm", () => {
  it("guests/pit.bin takes its PIT ticks through KVM's PIC and ends through isa-debug-exit", async () => {
    const r = await vmrr("run", "guests/pit.bin", "--backend", "kvm", "--irqchip", "kernel")
    const lines = r.stdout.split("\r\n")
    expect(lines.slice(0, 6)).toEqual(["PIT channel 0, mode 2, reload 11932", "tick 1", "tick 2", "tick 3", "tick 4", "tick 5"])
    expect(r.stdout).toMatch(/^ticks taken after the spin with IF=0: \d+\r$/m)
    expect(r.stdout).toMatch(/^done: ticks \d+, wakeups 5, count 0x[0-9a-f]{4}\r$/m)
    expect(r.stderr).toMatch(/^vmrr: debug-exit \(status 1\)$/m)
    // HLT is handled in the kernel: the vCPU blocks there until the PIT's IRQ0.
    expect(r.stderr).not.toMatch(/KVM_EXIT_HLT/)
    expect(r.status).toBe(1)
  })

  it("a HLT with IF = 0 still ends the run, as on the model", async () => {
    const r = await vmrr("run", "guests/hello.bin", "--backend", "kvm", "--irqchip", "kernel")
    expect(r.stdout).toBe("Hello from a real-mode guest, via a polled 16550 UART!\r\n")
    expect(r.stderr).toMatch(/^vmrr: hlt$/m)
    expect(r.status).toBe(0)
  })

  for (const mode of ["split", "userspace"]) {
    it(`--irqchip ${mode} is refused in one line`, async () => {
      const r = await vmrr("run", "guests/pit.bin", "--backend", "kvm", "--irqchip", mode)
      expect(r.stderr).toBe(`vmrr: --backend kvm does not support --irqchip ${mode}: only the in-kernel irqchip (--irqchip kernel) is wired to /dev/kvm\n`)
      expect(r.status).toBe(1)
    })
  }

  it("--icount-shift stays refused: KVM counts no instructions", async () => {
    const r = await vmrr("run", "guests/pit.bin", "--backend", "kvm", "--icount-shift", "2")
    expect(r.stderr).toBe("vmrr: --backend kvm does not support --icount-shift: real KVM counts no instructions\n")
    expect(r.status).toBe(1)
  })
})
