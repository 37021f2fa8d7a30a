import { Either } from "effect"
import { pack, unpack } from "msgpackr"
import { describe, expect, it } from "vitest"
import { Bus, BusOverlap, type BusSnapshot } from "../../src/qemu/bus.ts"
import { debugcon } from "../../src/qemu/devices/debugcon.ts"
import type { Device } from "../../src/qemu/devices/device.ts"
import { isaDebugExit } from "../../src/qemu/devices/isaDebugExit.ts"
import { uart16550, uartReceive, type Uart16550State } from "../../src/qemu/devices/uart16550.ts"

/** A byte register file: enough to watch offsets and state through the bus. */
const ram: Device<readonly number[]> = {
  kind: "test-ram",
  initial: [0, 0, 0, 0, 0, 0, 0, 0],
  read: (state, offset) => ({ state, value: state[offset] ?? 0 }),
  write: (state, offset, _size, value) => ({ state: state.map((v, i) => (i === offset ? value & 0xff : v)) })
}

const pcPorts = (): Bus => {
  const bus = new Bus({ unassignedRead: "ones", limit: 0x10000 })
  Either.getOrThrow(bus.insert(0x3f8, 8, "serial0", uart16550))
  Either.getOrThrow(bus.insert(0xe9, 1, "debugcon", debugcon))
  Either.getOrThrow(bus.insert(0xf4, 4, "debug-exit", isaDebugExit))
  return bus
}

const insertError = (bus: Bus, base: number, length: number, name: string) => {
  const r = bus.insert(base, length, name, ram)
  if (Either.isRight(r)) throw new Error(`expected ${name} to be refused`)
  return r.left
}

describe("Bus.insert", () => {
  it("accepts adjacent ranges on both sides", () => {
    const bus = new Bus()
    expect(Either.isRight(bus.insert(0x10, 0x10, "b", ram))).toBe(true)
    expect(Either.isRight(bus.insert(0x20, 0x10, "c", ram))).toBe(true)
    expect(Either.isRight(bus.insert(0x00, 0x10, "a", ram))).toBe(true)
    expect(bus.list().map((e) => [e.name, e.base, e.end])).toEqual([
      ["a", 0x00, 0x10],
      ["b", 0x10, 0x20],
      ["c", 0x20, 0x30]
    ])
  })

  it("refuses every kind of overlap, naming both ranges", () => {
    const bus = new Bus()
    Either.getOrThrow(bus.insert(0x100, 0x10, "dev", ram))
    const cases: Array<[number, number]> = [
      [0x0f8, 0x09], // ends on the first byte
      [0x10f, 0x01], // starts on the last byte
      [0x100, 0x10], // identical
      [0x104, 0x02], // inside
      [0x0f0, 0x40] // around
    ]
    for (const [base, length] of cases) {
      const e = insertError(bus, base, length, "new")
      expect(e).toBeInstanceOf(BusOverlap)
      expect(e._tag).toBe("BusOverlap")
      if (e._tag !== "BusOverlap") continue
      expect(e.range).toEqual({ base, length, name: "new" })
      expect(e.existing).toEqual({ base: 0x100, length: 0x10, name: "dev" })
      expect(e.message).toContain("dev [0x100, 0x110)")
    }
    expect(bus.list()).toHaveLength(1)
  })

  it("refuses empty, negative, fractional and out-of-space ranges and duplicate names", () => {
    const bus = new Bus({ limit: 0x10000 })
    expect(insertError(bus, 0x10, 0, "empty")._tag).toBe("BusInvalidRange")
    expect(insertError(bus, 0x10, -1, "negative")._tag).toBe("BusInvalidRange")
    expect(insertError(bus, -1, 2, "below")._tag).toBe("BusInvalidRange")
    expect(insertError(bus, 1.5, 2, "fraction")._tag).toBe("BusInvalidRange")
    expect(insertError(bus, 0xffff, 2, "past")._tag).toBe("BusInvalidRange")
    expect(Either.isRight(bus.insert(0xfffe, 2, "last", ram))).toBe(true)
    const dup = insertError(bus, 0x20, 1, "last")
    expect(dup._tag).toBe("BusDuplicateName")
    expect(insertError(bus, 0x10, 0, "empty").message).toContain("length must be a positive integer")
  })
})

describe("Bus.lookup", () => {
  it("finds the device and offset at both edges of each range, and nothing just outside", () => {
    const bus = pcPorts()
    const at = (addr: number) => {
      const l = bus.lookup(addr)
      return l && [l.entry.name, l.offset]
    }
    expect(at(0x3f8)).toEqual(["serial0", 0])
    expect(at(0x3ff)).toEqual(["serial0", 7])
    expect(at(0x3f7)).toBeUndefined()
    expect(at(0x400)).toBeUndefined()
    expect(at(0xe9)).toEqual(["debugcon", 0])
    expect(at(0xe8)).toBeUndefined()
    expect(at(0xea)).toBeUndefined()
    expect(at(0xf4)).toEqual(["debug-exit", 0])
    expect(at(0xf7)).toEqual(["debug-exit", 3])
    expect(at(0xf8)).toBeUndefined()
    expect(at(0)).toBeUndefined()
  })
})

describe("Bus.read / Bus.write", () => {
  it("applies the device, keeps its new state, and reports who handled it", () => {
    const bus = pcPorts()
    const w = bus.write(0x3f8, 1, 0x48)
    expect(w._tag).toBe("Claimed")
    if (w._tag !== "Claimed") return
    expect([w.name, w.kind, w.base, w.offset, w.value]).toEqual(["serial0", "isa-serial", 0x3f8, 0, 0x48])
    expect([...(w.effects?.output ?? [])]).toEqual([0x48])

    bus.write(0x3ff, 1, 0x77)
    const r = bus.read(0x3ff, 1)
    expect(r).toMatchObject({ _tag: "Claimed", name: "serial0", offset: 7, value: 0x77 })

    expect(bus.read(0xe9, 1)).toMatchObject({ _tag: "Claimed", name: "debugcon", value: 0xe9 })
    expect(bus.write(0xf6, 2, 0x10)).toMatchObject({ _tag: "Claimed", offset: 2, effects: { exitCode: 0x21 } })
  })

  it("masks values to the access size", () => {
    const bus = pcPorts()
    expect(bus.write(0xf4, 1, 0x1234)).toMatchObject({ value: 0x34, effects: { exitCode: 0x69 } })
    expect(bus.write(0xf4, 4, -1)).toMatchObject({ value: 0xffffffff, effects: { exitCode: 0x1_ffff_ffff } })
  })

  it("unassigned: reads give the bus's floating value, writes are dropped", () => {
    const ports = pcPorts()
    expect(ports.read(0x80, 1)).toEqual({ _tag: "Unassigned", value: 0xff })
    expect(ports.read(0x80, 2)).toEqual({ _tag: "Unassigned", value: 0xffff })
    expect(ports.read(0x80, 4)).toEqual({ _tag: "Unassigned", value: 0xffffffff })
    const before = ports.snapshot()
    expect(ports.write(0x80, 1, 0x1ff)).toEqual({ _tag: "Unassigned", value: 0xff })
    expect(ports.snapshot()).toEqual(before)

    const mmio = new Bus()
    Either.getOrThrow(mmio.insert(0xfee0_0000, 0x1000, "ram", ram))
    for (const size of [1, 2, 4] as const) expect(mmio.read(0xfed0_0000, size)).toEqual({ _tag: "Unassigned", value: 0 })
    expect(mmio.read(0xfee0_0000 + 3, 1)).toMatchObject({ _tag: "Claimed", offset: 3 })
  })

  it("update applies host-side changes, e.g. a received byte", () => {
    const bus = pcPorts()
    Either.getOrThrow(bus.update("serial0", (s: Uart16550State) => uartReceive(s, 0x61)))
    expect(bus.read(0x3fd, 1).value).toBe(0x61)
    expect(bus.read(0x3f8, 1).value).toBe(0x61)
    expect(Either.isLeft(bus.update("nope", (s) => s))).toBe(true)
    const missing = bus.stateOf("nope")
    expect(Either.isLeft(missing) && missing.left._tag).toBe("BusNoSuchDevice")
    expect((Either.getOrThrow(bus.stateOf("serial0")) as Uart16550State).rx).toEqual([])
  })
})

describe("Bus.snapshot / Bus.restore", () => {
  it("round-trips every device state, also through msgpack", () => {
    const bus = pcPorts()
    bus.write(0x3fb, 1, 0x83)
    bus.write(0x3f8, 1, 0x01)
    bus.write(0x3fb, 1, 0x03)
    bus.write(0x3ff, 1, 0x55)
    bus.update("serial0", (s: Uart16550State) => uartReceive(s, 0x42))
    const snap = bus.snapshot()
    const packed = pack(snap)

    bus.write(0x3ff, 1, 0xaa)
    bus.read(0x3f8, 1)
    bus.write(0x3fb, 1, 0x80)
    bus.write(0x3f8, 1, 0x99)
    bus.write(0x3fb, 1, 0x00)

    const replayed = pcPorts()
    Either.getOrThrow(replayed.restore(unpack(packed) as BusSnapshot))
    Either.getOrThrow(bus.restore(snap))
    for (const b of [bus, replayed]) {
      expect(b.snapshot()).toEqual(snap)
      expect(b.read(0x3ff, 1).value).toBe(0x55)
      expect(b.read(0x3fd, 1).value).toBe(0x61) // the byte is still there
      expect(b.read(0x3f8, 1).value).toBe(0x42)
      b.write(0x3fb, 1, 0x80)
      expect(b.read(0x3f8, 1).value).toBe(0x01)
    }
  })

  it("refuses a snapshot of another layout and leaves the bus alone", () => {
    const bus = pcPorts()
    bus.write(0x3ff, 1, 0x12)
    const other = new Bus()
    Either.getOrThrow(other.insert(0x3f8, 8, "serial0", uart16550))
    const r = bus.restore(other.snapshot())
    expect(Either.isLeft(r) && r.left._tag).toBe("BusSnapshotMismatch")
    const moved = pcPorts().snapshot().map((e) => (e.name === "debugcon" ? { ...e, base: 0x402 } : e))
    expect(Either.isLeft(bus.restore(moved))).toBe(true)
    expect(bus.read(0x3ff, 1).value).toBe(0x12)
  })
})
