/**
 * The one shape every device model has, in the spirit of rust-vmm's vm-superio:
 * a device knows nothing of KVM or of the bus it sits on. State in, access in,
 * state and effects out. Because states are immutable plain data, snapshotting a
 * device is keeping a reference, and replaying it is calling it again.
 */
import type { IoSize } from "../../kernel/cpu/bus.ts"

export type { IoSize }

/** What an access asks of the world outside the device; the machine acts on it. */
export interface DeviceEffects {
  /** Bytes the device sends to the host (terminal). */
  readonly output?: Uint8Array
  /** The device asks the machine to stop with this status. */
  readonly exitCode?: number
}

export interface ReadResult<S> {
  readonly state: S
  readonly value: number
  readonly effects?: DeviceEffects
}

export interface WriteResult<S> {
  readonly state: S
  readonly effects?: DeviceEffects
}

export interface Device<S> {
  /** QEMU's device type name: "isa-serial", "isa-debugcon", "isa-debug-exit". */
  readonly kind: string
  /** Power-on state; plain data (numbers, strings, booleans, arrays) so it serialises with msgpack. */
  readonly initial: S
  /** `offset` is relative to the device's base; `value` is masked to `size` bytes. */
  read(state: S, offset: number, size: IoSize): ReadResult<S>
  /** `value` holds `size` bytes, little-endian, as the guest wrote them. Must not mutate `state`. */
  write(state: S, offset: number, size: IoSize, value: number): WriteResult<S>
}

/** Mask for an access of `size` bytes; 32-bit results stay unsigned. */
export const sizeMask = (size: IoSize): number => (size === 4 ? 0xffff_ffff : size === 2 ? 0xffff : 0xff)
