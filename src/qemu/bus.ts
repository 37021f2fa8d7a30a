/**
 * An I/O bus: ordered, non-overlapping address ranges, each claimed by one device,
 * as Firecracker's `Bus` (and kvmtool's ioport/MMIO trees). A machine has two: the
 * port I/O space and the MMIO space. Every PIO/MMIO exit that reaches userspace is
 * one `read` or `write` here.
 *
 * Devices are pure (see `devices/device.ts`); the bus is where their current state
 * lives, so the bus is the one mutable thing and `snapshot`/`restore` of it captures
 * every device at once. Because device states are immutable, a snapshot is just the
 * current references: no copy is needed.
 *
 * Errors are returned as `Either` (never thrown): building a machine from a config
 * is where overlaps happen, and the caller turns them into one clear line.
 */
import * as Data from "effect/Data"
import * as Either from "effect/Either"
import type { IoSize } from "../kernel/cpu/bus.ts"
import { sizeMask, type Device, type DeviceEffects } from "./devices/device.ts"

export interface BusRange {
  readonly base: number
  readonly length: number
  readonly name: string
}

const showRange = (r: BusRange): string =>
  `${r.name} [0x${r.base.toString(16)}, 0x${(r.base + r.length).toString(16)})`

export class BusOverlap extends Data.TaggedError("BusOverlap")<{
  readonly range: BusRange
  readonly existing: BusRange
}> {
  override get message(): string {
    return `${showRange(this.range)} overlaps ${showRange(this.existing)}`
  }
}

export class BusInvalidRange extends Data.TaggedError("BusInvalidRange")<{
  readonly range: BusRange
  readonly reason: string
}> {
  override get message(): string {
    return `cannot map ${this.range.name} at base ${this.range.base} length ${this.range.length}: ${this.reason}`
  }
}

export class BusDuplicateName extends Data.TaggedError("BusDuplicateName")<{
  readonly range: BusRange
  readonly existing: BusRange
}> {
  override get message(): string {
    return `${showRange(this.range)}: the name is already used by ${showRange(this.existing)}`
  }
}

export class BusNoSuchDevice extends Data.TaggedError("BusNoSuchDevice")<{ readonly name: string }> {
  override get message(): string {
    return `no device named ${this.name} on the bus`
  }
}

export class BusSnapshotMismatch extends Data.TaggedError("BusSnapshotMismatch")<{ readonly reason: string }> {
  override get message(): string {
    return `snapshot does not fit this bus: ${this.reason}`
  }
}

export type BusInsertError = BusOverlap | BusInvalidRange | BusDuplicateName

/** One device mapped on the bus (its state is kept by the bus, see `stateOf`). */
export interface BusEntry extends BusRange {
  /** Exclusive end: base + length. */
  readonly end: number
  readonly device: Device<unknown>
}

interface MutableEntry extends BusEntry {
  state: unknown
}

/**
 * The outcome of one access. `value` is what was read, or for a write what was
 * written (masked to the access size), so a caller can log both alike.
 */
export type BusAccess =
  | {
      readonly _tag: "Claimed"
      readonly name: string
      readonly kind: string
      readonly base: number
      readonly offset: number
      readonly value: number
      readonly effects: DeviceEffects | undefined
    }
  | { readonly _tag: "Unassigned"; readonly value: number }

/** Every device's state, in address order: plain data (msgpack-able when the states are). */
export type BusSnapshot = ReadonlyArray<{
  readonly name: string
  readonly kind: string
  readonly base: number
  readonly length: number
  readonly state: unknown
}>

export interface BusOptions {
  /**
   * What a read of an unclaimed address returns. QEMU's MMIO space reads 0; its
   * port I/O space reads all ones (`unassigned_io_read`, the PC's floating bus).
   */
  readonly unassignedRead?: "zeros" | "ones"
  /** Exclusive end of the address space (0x10000 for port I/O). */
  readonly limit?: number
}

export class Bus {
  private readonly entries: MutableEntry[] = []
  private readonly byName = new Map<string, MutableEntry>()
  private readonly unassignedOnes: boolean
  private readonly limit: number

  constructor(options: BusOptions = {}) {
    this.unassignedOnes = options.unassignedRead === "ones"
    this.limit = options.limit ?? Number.MAX_SAFE_INTEGER
  }

  /** Maps `device` at [base, base + length). Adjacent ranges are fine; overlapping or empty ones are refused. */
  insert<S>(base: number, length: number, name: string, device: Device<S>): Either.Either<BusEntry, BusInsertError> {
    const range: BusRange = { base, length, name }
    if (!Number.isSafeInteger(base) || base < 0) {
      return Either.left(new BusInvalidRange({ range, reason: "base must be a non-negative integer" }))
    }
    if (!Number.isSafeInteger(length) || length <= 0) {
      return Either.left(new BusInvalidRange({ range, reason: "length must be a positive integer" }))
    }
    if (base + length > this.limit) {
      return Either.left(
        new BusInvalidRange({ range, reason: `the range ends past the address space (0x${this.limit.toString(16)})` })
      )
    }
    const named = this.byName.get(name)
    if (named !== undefined) return Either.left(new BusDuplicateName({ range, existing: rangeOf(named) }))

    // Position of the first entry starting after `base`; only its neighbours can overlap.
    const at = this.upperBound(base)
    const prev = this.entries[at - 1]
    if (prev !== undefined && prev.end > base) return Either.left(new BusOverlap({ range, existing: rangeOf(prev) }))
    const next = this.entries[at]
    if (next !== undefined && next.base < base + length) {
      return Either.left(new BusOverlap({ range, existing: rangeOf(next) }))
    }

    const entry: MutableEntry = {
      base,
      length,
      end: base + length,
      name,
      device: device as Device<unknown>,
      state: device.initial
    }
    this.entries.splice(at, 0, entry)
    this.byName.set(name, entry)
    return Either.right(entry)
  }

  /** The device claiming `addr` and the offset of `addr` within its range. */
  lookup(addr: number): { readonly entry: BusEntry; readonly offset: number } | undefined {
    const entry = this.find(addr)
    return entry === undefined ? undefined : { entry, offset: addr - entry.base }
  }

  /** The name of the device claiming `addr`, if any. */
  nameAt(addr: number): string | undefined {
    return this.find(addr)?.name
  }

  read(addr: number, size: IoSize): BusAccess {
    const entry = this.find(addr)
    if (entry === undefined) return { _tag: "Unassigned", value: this.unassignedOnes ? sizeMask(size) : 0 }
    const offset = addr - entry.base
    const r = entry.device.read(entry.state, offset, size)
    entry.state = r.state
    return {
      _tag: "Claimed",
      name: entry.name,
      kind: entry.device.kind,
      base: entry.base,
      offset,
      value: (r.value & sizeMask(size)) >>> 0,
      effects: r.effects
    }
  }

  /** Unclaimed writes are dropped, as in QEMU; the caller decides whether to log them. */
  write(addr: number, size: IoSize, value: number): BusAccess {
    const masked = (value & sizeMask(size)) >>> 0
    const entry = this.find(addr)
    if (entry === undefined) return { _tag: "Unassigned", value: masked }
    const offset = addr - entry.base
    const r = entry.device.write(entry.state, offset, size, masked)
    entry.state = r.state
    return {
      _tag: "Claimed",
      name: entry.name,
      kind: entry.device.kind,
      base: entry.base,
      offset,
      value: masked,
      effects: r.effects
    }
  }

  /** All mapped devices, in address order. */
  list(): ReadonlyArray<BusEntry> {
    return this.entries.slice()
  }

  /** The current state of the device named `name` (its type is the device's `S`). */
  stateOf(name: string): Either.Either<unknown, BusNoSuchDevice> {
    const entry = this.byName.get(name)
    return entry === undefined ? Either.left(new BusNoSuchDevice({ name })) : Either.right(entry.state)
  }

  /**
   * Applies a pure state change that does not come from a guest access, e.g. a host
   * byte reaching a UART: `bus.update(name, (s: Uart16550State) => uartReceive(s, b))`.
   */
  update<S>(name: string, f: (state: S) => S): Either.Either<S, BusNoSuchDevice> {
    const entry = this.byName.get(name)
    if (entry === undefined) return Either.left(new BusNoSuchDevice({ name }))
    const next = f(entry.state as S)
    entry.state = next
    return Either.right(next)
  }

  snapshot(): BusSnapshot {
    return this.entries.map((e) => ({ name: e.name, kind: e.device.kind, base: e.base, length: e.length, state: e.state }))
  }

  /** Puts back every device's state; all or nothing, and only onto the same device layout. */
  restore(snapshot: BusSnapshot): Either.Either<void, BusSnapshotMismatch> {
    if (snapshot.length !== this.entries.length) {
      return Either.left(
        new BusSnapshotMismatch({ reason: `${snapshot.length} devices in the snapshot, ${this.entries.length} on the bus` })
      )
    }
    for (let i = 0; i < snapshot.length; i++) {
      const s = snapshot[i]!
      const e = this.entries[i]!
      if (s.name !== e.name || s.kind !== e.device.kind || s.base !== e.base || s.length !== e.length) {
        return Either.left(
          new BusSnapshotMismatch({
            reason: `snapshot has ${s.kind} ${showRange(s)} where the bus has ${e.device.kind} ${showRange(e)}`
          })
        )
      }
    }
    for (let i = 0; i < snapshot.length; i++) this.entries[i]!.state = snapshot[i]!.state
    return Either.right(undefined)
  }

  /** Binary search: called on every I/O exit. */
  private find(addr: number): MutableEntry | undefined {
    const at = this.upperBound(addr) - 1
    // Never index with -1: V8 looks a negative index up as a named property, slowly.
    if (at < 0) return undefined
    const entry = this.entries[at]!
    return addr < entry.end ? entry : undefined
  }

  /** Index of the first entry whose base is greater than `addr`. */
  private upperBound(addr: number): number {
    let lo = 0
    let hi = this.entries.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (this.entries[mid]!.base <= addr) lo = mid + 1
      else hi = mid
    }
    return lo
  }
}

const rangeOf = (e: BusRange): BusRange => ({ base: e.base, length: e.length, name: e.name })
