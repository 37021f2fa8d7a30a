import * as Either from "effect/Either"
import { describe, expect, it } from "vitest"
import { createMachine } from "../../src/qemu/machine.ts"
import { pm32Config } from "../support/programs.ts"

const reasonOf = (result: ReturnType<typeof createMachine>): string =>
  Either.match(result, { onLeft: (e) => e.message, onRight: () => "built" })

describe("createMachine", () => {
  it("starts pm32 guests flat, at the entry, with the stack below the image", () => {
    const machine = Either.getOrThrow(createMachine(pm32Config(), Uint8Array.of(0xf4)))
    const regs = machine.vcpu.getRegs()
    const sregs = machine.vcpu.getSregs()
    expect([regs.rip, regs.rsp, regs.rflags]).toEqual([0x100000, 0x100000, 2])
    expect(sregs.cr0 & 1).toBe(1)
    for (const s of [sregs.cs, sregs.ds, sregs.ss]) expect([s.base, s.limit, s.db, s.g]).toEqual([0, 0xffffffff, true, true])
    expect(machine.ram[0x100000]).toBe(0xf4)
    expect(machine.pio.list().map((e) => [e.name, e.base, e.length])).toEqual([
      ["debugcon", 0xe9, 1],
      ["isa-debug-exit", 0xf4, 4],
      ["serial0", 0x3f8, 8]
    ])
  })

  it("starts real-mode guests at CS = 0 with KVM's reset CR0", () => {
    const machine = Either.getOrThrow(createMachine(pm32Config({ mode: "real", loadAddress: 0x7c00, entry: 0x7c00 }), Uint8Array.of(0xf4)))
    const sregs = machine.vcpu.getSregs()
    expect([sregs.cs.selector, sregs.cs.base, sregs.cs.limit, sregs.cs.db]).toEqual([0, 0, 0xffff, false])
    expect(sregs.cr0).toBe(0x60000010)
    expect(machine.vcpu.getRegs().rsp).toBe(0x7c00)
  })

  it("refuses configs and images it cannot run, with one line that says why", () => {
    const image = new Uint8Array(16)
    expect(reasonOf(createMachine(pm32Config({ memoryMiB: 0 }), image))).toBe(
      "bad machine config: memoryMiB: Expected a number between 1 and 3072, actual 0"
    )
    expect(reasonOf(createMachine(pm32Config({ loadAddress: 0xfffff8 }), image))).toBe(
      "the image (16 bytes at 0xfffff8) does not fit in 16 MiB of RAM"
    )
    expect(reasonOf(createMachine(pm32Config({ mode: "real", loadAddress: 0x7c00, entry: 0x10000 }), image))).toMatch(
      /^real mode starts at CS = 0/
    )
    expect(reasonOf(createMachine(pm32Config(), new Uint8Array(0)))).toBe("the guest image is empty")
  })
})
