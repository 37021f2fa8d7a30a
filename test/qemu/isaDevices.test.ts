import { describe, expect, it } from "vitest"
import { debugcon, DEBUGCON_BASE } from "../../src/qemu/devices/debugcon.ts"
import { DEBUG_EXIT_BASE, DEBUG_EXIT_IO_SIZE, debugExitStatus, isaDebugExit } from "../../src/qemu/devices/isaDebugExit.ts"

describe("isa-debugcon", () => {
  it("sends the low byte of each write to the host", () => {
    expect(debugcon.kind).toBe("isa-debugcon")
    expect(DEBUGCON_BASE).toBe(0xe9)
    const text = "Hello, vmrr!\n"
    const out: number[] = []
    let s = debugcon.initial
    for (const c of text) {
      const r = debugcon.write(s, 0, 1, c.charCodeAt(0))
      s = r.state
      out.push(...(r.effects?.output ?? []))
    }
    expect(Buffer.from(out).toString()).toBe(text)
    expect([...(debugcon.write(s, 0, 2, 0x1234).effects?.output ?? [])]).toEqual([0x34])
    expect([...(debugcon.write(s, 0, 4, 0xdeadbeef).effects?.output ?? [])]).toEqual([0xef])
    expect(debugcon.write(s, 0, 1, 0).effects?.exitCode).toBeUndefined()
  })

  it("reads back 0xe9, QEMU's default readback", () => {
    for (const size of [1, 2, 4] as const) {
      const r = debugcon.read(debugcon.initial, 0, size)
      expect(r.value).toBe(0xe9)
      expect(r.effects).toBeUndefined()
      expect(r.state).toBe(debugcon.initial)
    }
  })
})

describe("isa-debug-exit", () => {
  it("sits at 0xf4, 4 ports wide", () => {
    expect(isaDebugExit.kind).toBe("isa-debug-exit")
    expect([DEBUG_EXIT_BASE, DEBUG_EXIT_IO_SIZE]).toEqual([0xf4, 4])
  })

  it("exits with (value << 1) | 1 for 8-, 16- and 32-bit writes", () => {
    const exit = (size: 1 | 2 | 4, v: number, offset = 0) =>
      isaDebugExit.write(isaDebugExit.initial, offset, size, v).effects?.exitCode
    expect(exit(1, 0x00)).toBe(1)
    expect(exit(1, 0x01)).toBe(3)
    expect(exit(1, 0x10)).toBe(0x21)
    expect(exit(1, 0xff)).toBe(0x1ff)
    expect(exit(2, 0x1234)).toBe(0x2469)
    expect(exit(2, 0xffff)).toBe(0x1ffff)
    expect(exit(4, 0x12345678)).toBe(0x2468acf1)
    expect(exit(4, 0xffffffff)).toBe(0x1_ffff_ffff)
    expect(exit(4, 0x80000000)).toBe(0x1_0000_0001)
    // the value as written for the access size
    expect(exit(1, 0x1234)).toBe(0x69)
    expect(exit(2, 0x12345678)).toBe(0xacf1)
    // any offset in the window
    expect(exit(1, 2, 3)).toBe(5)
    expect(debugExitStatus(0x20, 1)).toBe(0x41)
  })

  it("never outputs, reads 0", () => {
    expect(isaDebugExit.write(null, 0, 1, 1).effects?.output).toBeUndefined()
    for (const size of [1, 2, 4] as const) expect(isaDebugExit.read(null, 0, size).value).toBe(0)
  })
})
