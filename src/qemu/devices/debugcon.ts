/**
 * QEMU's "isa-debugcon" (Bochs' port 0xe9 hack): every byte written goes to the
 * host at once; a read returns the "readback" value, 0xe9 by default, which lets a
 * guest detect the port. The device has no state.
 */
import type { Device, IoSize } from "./device.ts"

export type DebugconState = null

export const DEBUGCON_BASE = 0xe9
export const DEBUGCON_IO_SIZE = 1
export const DEBUGCON_READBACK = 0xe9

export const debugcon: Device<DebugconState> = Object.freeze({
  kind: "isa-debugcon",
  initial: null,
  read: (state: DebugconState) => ({ state, value: DEBUGCON_READBACK }),
  // QEMU's device takes bytes only, so a wider write emits its low byte.
  write: (state: DebugconState, _offset: number, _size: IoSize, value: number) => ({
    state,
    effects: { output: Uint8Array.of(value & 0xff) }
  })
})
