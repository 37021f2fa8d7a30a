/**
 * What replay and checkpoints rest on, for every chip: the same inputs from the same
 * state give the same outputs, and a state that went through msgpack (a checkpoint)
 * is equal to the original and behaves the same from then on.
 */
import fc from "fast-check"
import { pack, unpack } from "msgpackr"
import { describe, expect, it } from "vitest"
import { ioapicEoi, ioapicInitial, ioapicRead, ioapicSetIrq, ioapicWrite } from "../../src/hw/intc/ioapic.ts"
import { picInitial, picInterruptAcknowledge, picIoRead, picIoWrite, picSetIrq } from "../../src/hw/intc/i8259.ts"
import {
  lapicAcceptIrq,
  lapicAcknowledge,
  lapicAdvance,
  lapicCreate,
  lapicNextDeadline,
  lapicPendingVector,
  lapicRead,
  lapicWrite
} from "../../src/hw/intc/lapic.ts"
import { rtcAdvance, rtcCreate, rtcIoRead, rtcIoWrite, rtcIrqLevel, rtcNextDeadline } from "../../src/hw/rtc/mc146818.ts"
import { pitAdvance, pitCreate, pitIoRead, pitIoWrite, pitNextDeadline } from "../../src/hw/timer/i8254.ts"

interface Op {
  readonly kind: number
  readonly a: number
  readonly b: number
  /** Virtual time passing before the op. */
  readonly dt: number
}

/** A chip as the harness sees it: one step takes the time and an op and gives an observable output. */
interface Chip<S> {
  readonly name: string
  readonly initial: S
  readonly op: fc.Arbitrary<Op>
  step(s: S, now: number, op: Op): { state: S; out: unknown }
}

const op = (kinds: number, a: fc.Arbitrary<number>, b: fc.Arbitrary<number>, maxDt: number): fc.Arbitrary<Op> =>
  fc.record({ kind: fc.integer({ min: 0, max: kinds - 1 }), a, b, dt: fc.integer({ min: 0, max: maxDt }) })

const pic: Chip<typeof picInitial> = {
  name: "8259A pair",
  initial: picInitial,
  op: op(4, fc.constantFrom(0x20, 0x21, 0xa0, 0xa1, 0x4d0, 0x4d1), fc.oneof(fc.integer({ min: 0, max: 255 }), fc.constantFrom(0x11, 0x20, 0x0a, 0x0b, 0x0c, 0x04, 0x01)), 0),
  step: (s, _now, o) => {
    switch (o.kind) {
      case 0:
        return { state: picIoWrite(s, o.a, o.b), out: null }
      case 1: {
        const r = picIoRead(s, o.a)
        return { state: r.state, out: r.value }
      }
      case 2:
        return { state: picSetIrq(s, o.b & 15, (o.b & 16) !== 0), out: null }
      default: {
        const r = picInterruptAcknowledge(s)
        return { state: r.state, out: r.vector }
      }
    }
  }
}

const pit: Chip<ReturnType<typeof pitCreate>> = {
  name: "8254 PIT",
  initial: pitCreate(1),
  op: op(3, fc.constantFrom(0x40, 0x41, 0x42, 0x43, 0x61), fc.oneof(fc.integer({ min: 0, max: 255 }), fc.constantFrom(0x34, 0x36, 0x30, 0x38, 0xb0, 0xc2, 0xe2, 0x00)), 200_000),
  step: (s, now, o) => {
    if (o.kind === 0) {
      const r = pitIoWrite(s, o.a, o.b, now)
      return { state: r.state, out: [r.irq0Edges, pitNextDeadline(r.state)] }
    }
    if (o.kind === 1) {
      const r = pitIoRead(s, o.a, now)
      return { state: r.state, out: [r.value, r.irq0Edges] }
    }
    const r = pitAdvance(s, now)
    return { state: r.state, out: r.irq0Edges }
  }
}

const rtc: Chip<ReturnType<typeof rtcCreate>> = {
  name: "MC146818 RTC",
  initial: rtcCreate({ shift: 3, epochSeconds: 1_700_000_000 }),
  op: op(3, fc.constantFrom(0x70, 0x71), fc.oneof(fc.integer({ min: 0, max: 255 }), fc.constantFrom(0x0a, 0x0b, 0x0c, 0x00, 0x42, 0x12, 0x82, 0x06)), 100_000_000),
  step: (s, now, o) => {
    if (o.kind === 0) {
      const st = rtcIoWrite(s, o.a, o.b, now)
      return { state: st, out: [rtcIrqLevel(st), rtcNextDeadline(st)] }
    }
    if (o.kind === 1) {
      const r = rtcIoRead(s, o.a, now)
      return { state: r.state, out: r.value }
    }
    const st = rtcAdvance(s, now)
    return { state: st, out: rtcIrqLevel(st) }
  }
}

const ioapic: Chip<typeof ioapicInitial> = {
  name: "IOAPIC",
  initial: ioapicInitial,
  op: op(4, fc.constantFrom(0x00, 0x10, 0x04), fc.oneof(fc.integer({ min: 0, max: 0x3f }), fc.nat(), fc.constantFrom(0x8030, 0x10030, 0x30)), 0),
  step: (s, _now, o) => {
    switch (o.kind) {
      case 0: {
        const r = ioapicWrite(s, o.a, 4, o.b)
        return { state: r.state, out: r.messages }
      }
      case 1: {
        const r = ioapicRead(s, o.a, 4)
        return { state: r.state, out: r.value }
      }
      case 2: {
        const r = ioapicSetIrq(s, o.b % 24, (o.b & 32) !== 0)
        return { state: r.state, out: r.messages }
      }
      default: {
        const r = ioapicEoi(s, o.b & 0xff)
        return { state: r.state, out: r.messages }
      }
    }
  }
}

const LAPIC_REGS = [0x20, 0x80, 0xb0, 0xd0, 0xe0, 0xf0, 0x300, 0x310, 0x320, 0x350, 0x380, 0x390, 0x3e0, 0x100, 0x200]
const lapic: Chip<ReturnType<typeof lapicCreate>> = {
  name: "local APIC",
  initial: lapicCreate({ shift: 0 }),
  op: op(5, fc.constantFrom(...LAPIC_REGS), fc.oneof(fc.nat(), fc.integer({ min: 0, max: 0x3ff }), fc.constantFrom(0x1ff, 0x200ec, 0xb, 0x40045)), 50_000),
  step: (s, now, o) => {
    switch (o.kind) {
      case 0: {
        const r = lapicWrite(s, o.a, 4, o.b, now)
        return { state: r.state, out: [r.eoi, r.ipi, lapicNextDeadline(r.state)] }
      }
      case 1: {
        const r = lapicRead(s, o.a, 4, now)
        return { state: r.state, out: r.value }
      }
      case 2:
        return { state: lapicAcceptIrq(s, { vector: o.b & 0xff, deliveryMode: 0, logical: false, dest: 0, level: (o.b & 0x100) !== 0, pin: -1 }), out: null }
      case 3: {
        const r = lapicAcknowledge(s)
        return { state: r.state, out: r.vector }
      }
      default: {
        const st = lapicAdvance(s, now)
        return { state: st, out: lapicPendingVector(st) }
      }
    }
  }
}

const run = <S>(chip: Chip<S>, from: S, start: number, ops: readonly Op[]): { state: S; outs: unknown[]; now: number } => {
  let s = from
  let now = start
  const outs: unknown[] = []
  for (const o of ops) {
    now += o.dt
    const r = chip.step(s, now, o)
    s = r.state
    outs.push(r.out)
  }
  return { state: s, outs, now }
}

const deepFreeze = <T>(v: T): T => {
  if (typeof v === "object" && v !== null && !Object.isFrozen(v)) {
    Object.freeze(v)
    for (const x of Object.values(v)) deepFreeze(x)
  }
  return v
}

const checkChip = <S>(chip: Chip<S>): void => {
  describe(chip.name, () => {
    it("is deterministic: the same ops from the same state give the same outputs and states", () => {
      fc.assert(
        fc.property(fc.array(chip.op, { maxLength: 60 }), (ops) => {
          const a = run(chip, chip.initial, 0, ops)
          const b = run(chip, chip.initial, 0, ops)
          expect(b.outs).toEqual(a.outs)
          expect(b.state).toEqual(a.state)
        })
      )
    })

    it("survives a msgpack round trip at any point and carries on identically", () => {
      fc.assert(
        fc.property(fc.array(chip.op, { maxLength: 40 }), fc.array(chip.op, { maxLength: 40 }), (before, after) => {
          const first = run(chip, chip.initial, 0, before)
          const restored = unpack(pack(first.state)) as S
          expect(restored).toEqual(first.state)
          expect(run(chip, restored, first.now, after).outs).toEqual(run(chip, first.state, first.now, after).outs)
        })
      )
    })

    it("never mutates a state it is given (every state deep-frozen; a write would throw)", () => {
      const frozenChip: Chip<S> = { ...chip, step: (s, now, o) => chip.step(deepFreeze(s), now, o) }
      fc.assert(
        fc.property(fc.array(chip.op, { maxLength: 40 }), (ops) => {
          run(frozenChip, unpack(pack(chip.initial)) as S, 0, ops)
        })
      )
    })
  })
}

checkChip(pic)
checkChip(pit)
checkChip(rtc)
checkChip(ioapic)
checkChip(lapic)
