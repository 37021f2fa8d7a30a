/**
 * The properties replay rests on: a device is a function of its state and the
 * accesses it sees, so the same sequence from the same state gives the same states
 * and effects; states are plain data, so a msgpack round trip changes nothing.
 */
import { Either } from "effect"
import fc from "fast-check"
import { pack, unpack } from "msgpackr"
import { describe, expect, it } from "vitest"
import type { IoSize } from "../../src/kernel/cpu/bus.ts"
import { Bus, type BusAccess } from "../../src/qemu/bus.ts"
import { debugcon } from "../../src/qemu/devices/debugcon.ts"
import { sizeMask, type Device, type DeviceEffects } from "../../src/qemu/devices/device.ts"
import { isaDebugExit } from "../../src/qemu/devices/isaDebugExit.ts"
import { uart16550, uartIrqLevel, uartReceive, type Uart16550State } from "../../src/qemu/devices/uart16550.ts"

type Op =
  | { readonly op: "read"; readonly offset: number; readonly size: IoSize }
  | { readonly op: "write"; readonly offset: number; readonly size: IoSize; readonly value: number }
  | { readonly op: "receive"; readonly byte: number }

const size = fc.constantFrom<IoSize>(1, 1, 1, 2, 4)
// Weighted towards the registers that change state in interesting ways (LCR, FCR, IER, THR).
const uartOp: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ op: fc.constant("read" as const), offset: fc.integer({ min: 0, max: 7 }), size }),
  fc.record({
    op: fc.constant("write" as const),
    offset: fc.integer({ min: 0, max: 7 }),
    size,
    value: fc.oneof(fc.integer({ min: 0, max: 0xff }), fc.constantFrom(0x80, 0x01, 0x07, 0xc1, 0x0f, 0x10, 0x03), fc.nat())
  }),
  fc.record({ op: fc.constant("receive" as const), byte: fc.integer({ min: 0, max: 0xff }) })
)

interface Step<S> {
  readonly state: S
  readonly value: number | undefined
  readonly effects: DeviceEffects | undefined
}

const deepFreeze = <T>(v: T): T => {
  if (v !== null && typeof v === "object" && !Object.isFrozen(v)) {
    Object.freeze(v)
    for (const x of Object.values(v)) deepFreeze(x)
  }
  return v
}

const run = (s0: Uart16550State, ops: readonly Op[]): Step<Uart16550State>[] => {
  let s = s0
  return ops.map((o) => {
    // Frozen inputs turn any mutation into a TypeError (ESM code is strict).
    deepFreeze(s)
    let step: Step<Uart16550State>
    if (o.op === "read") {
      const r = uart16550.read(s, o.offset, o.size)
      step = { state: r.state, value: r.value, effects: r.effects }
    } else if (o.op === "write") {
      // The bus hands devices values already masked to the access size.
      const r = uart16550.write(s, o.offset, o.size, (o.value & sizeMask(o.size)) >>> 0)
      step = { state: r.state, value: undefined, effects: r.effects }
    } else {
      step = { state: uartReceive(s, o.byte), value: undefined, effects: undefined }
    }
    s = step.state
    return step
  })
}

const roundTrip = <T>(v: T): T => unpack(pack(v)) as T

describe("UART determinism and serialisation", () => {
  it("the same accesses from the same state give identical states and effects", () => {
    fc.assert(
      fc.property(fc.array(uartOp, { maxLength: 80 }), (ops) => {
        expect(run(uart16550.initial, ops)).toEqual(run(uart16550.initial, ops))
      }),
      { numRuns: 300 }
    )
  })

  it("every reachable state survives msgpack unchanged, and behaves the same afterwards", () => {
    fc.assert(
      fc.property(fc.array(uartOp, { maxLength: 60 }), fc.array(uartOp, { maxLength: 30 }), (prefix, suffix) => {
        const steps = run(uart16550.initial, prefix)
        for (const st of steps) expect(roundTrip(st.state)).toEqual(st.state)
        const mid = steps.at(-1)?.state ?? uart16550.initial
        expect(run(roundTrip(mid), suffix)).toEqual(run(mid, suffix))
      }),
      { numRuns: 200 }
    )
  })

  it("register invariants hold in every reachable state", () => {
    fc.assert(
      fc.property(fc.array(uartOp, { maxLength: 80 }), (ops) => {
        for (const { state: s } of run(uart16550.initial, ops)) {
          expect(s.rx.length).toBeLessThanOrEqual((s.fcr & 1) !== 0 ? 16 : 1)
          expect(s.rx.every((b) => Number.isInteger(b) && b >= 0 && b <= 0xff)).toBe(true)
          const lsr = uart16550.read(s, 5, 1).value
          expect(lsr & 0x60).toBe(0x60)
          expect(lsr & 1).toBe(s.rx.length > 0 ? 1 : 0)
          if (s.ier === 0) expect(uartIrqLevel(s)).toBe(false)
          const iir = uart16550.read(s, 2, 1).value
          expect((iir & 1) === 0).toBe(uartIrqLevel(s))
          expect(iir & 0xc0).toBe((s.fcr & 1) !== 0 ? 0xc0 : 0)
        }
      }),
      { numRuns: 200 }
    )
  })
})

describe("debugcon and debug-exit are stateless functions of the access", () => {
  const stateless = (device: Device<null>) =>
    fc.property(fc.integer({ min: 0, max: 3 }), size, fc.nat(), (offset, sz, value) => {
      expect(roundTrip(device.initial)).toEqual(device.initial)
      const w1 = device.write(device.initial, offset, sz, value)
      const w2 = device.write(device.initial, offset, sz, value)
      expect(w1).toEqual(w2)
      expect(w1.state).toBe(null)
      expect(device.read(device.initial, offset, sz)).toEqual(device.read(device.initial, offset, sz))
    })
  it("isa-debugcon", () => fc.assert(stateless(debugcon)))
  it("isa-debug-exit", () => fc.assert(stateless(isaDebugExit)))
})

describe("bus determinism", () => {
  const machine = (): Bus => {
    const bus = new Bus({ unassignedRead: "ones", limit: 0x10000 })
    Either.getOrThrow(bus.insert(0x3f8, 8, "serial0", uart16550))
    Either.getOrThrow(bus.insert(0x2f8, 8, "serial1", uart16550))
    Either.getOrThrow(bus.insert(0xe9, 1, "debugcon", debugcon))
    Either.getOrThrow(bus.insert(0xf4, 4, "debug-exit", isaDebugExit))
    return bus
  }
  type BusOp =
    | { readonly op: "in"; readonly port: number; readonly size: IoSize }
    | { readonly op: "out"; readonly port: number; readonly size: IoSize; readonly value: number }
    | { readonly op: "host"; readonly uart: "serial0" | "serial1"; readonly byte: number }
  const port = fc.oneof(
    fc.integer({ min: 0x3f6, max: 0x401 }),
    fc.integer({ min: 0x2f8, max: 0x2ff }),
    fc.integer({ min: 0xe8, max: 0xf8 })
  )
  const busOp: fc.Arbitrary<BusOp> = fc.oneof(
    fc.record({ op: fc.constant("in" as const), port, size }),
    fc.record({ op: fc.constant("out" as const), port, size, value: fc.nat() }),
    fc.record({ op: fc.constant("host" as const), uart: fc.constantFrom("serial0" as const, "serial1" as const), byte: fc.integer({ min: 0, max: 255 }) })
  )
  const drive = (bus: Bus, ops: readonly BusOp[]): Array<BusAccess | undefined> =>
    ops.map((o) => {
      if (o.op === "in") return bus.read(o.port, o.size)
      if (o.op === "out") return bus.write(o.port, o.size, o.value)
      bus.update(o.uart, (s: Uart16550State) => uartReceive(s, o.byte))
      return undefined
    })

  it("replaying a sequence gives the same results; a restored snapshot replays the rest identically", () => {
    fc.assert(
      fc.property(fc.array(busOp, { maxLength: 60 }), fc.array(busOp, { maxLength: 40 }), (prefix, suffix) => {
        const a = machine()
        const b = machine()
        expect(drive(a, prefix)).toEqual(drive(b, prefix))
        const snap = roundTrip(a.snapshot())
        expect(snap).toEqual(a.snapshot())
        const tail = drive(a, suffix)
        const c = machine()
        Either.getOrThrow(c.restore(snap))
        expect(drive(c, suffix)).toEqual(tail)
        expect(c.snapshot()).toEqual(a.snapshot())
      }),
      { numRuns: 200 }
    )
  })

  it("lookup agrees with a linear scan over any set of non-overlapping ranges", () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.integer({ min: 0, max: 0xff }), fc.integer({ min: 1, max: 8 })), { maxLength: 30 }),
        fc.array(fc.integer({ min: 0, max: 0x110 }), { maxLength: 50 }),
        (ranges, probes) => {
          const bus = new Bus()
          const accepted: Array<[number, number, string]> = []
          ranges.forEach(([base, length], i) => {
            const overlaps = accepted.some(([b, l]) => base < b + l && b < base + length)
            const r = bus.insert(base, length, `d${i}`, debugcon)
            expect(Either.isRight(r)).toBe(!overlaps)
            if (!overlaps) accepted.push([base, length, `d${i}`])
          })
          for (const addr of probes) {
            const hit = accepted.find(([b, l]) => addr >= b && addr < b + l)
            const l = bus.lookup(addr)
            expect(l && [l.entry.name, l.offset]).toEqual(hit && [hit[2], addr - hit[0]])
          }
        }
      ),
      { numRuns: 300 }
    )
  })
})
