/**
 * QEMU's "isa-debug-exit" (iobase 0xf4, iosize 4 by default): any write, at any
 * offset and of any size, stops the machine with status `(value << 1) | 1`, where
 * `value` is what the guest wrote for that access size. The status is therefore
 * always odd, so a test harness can tell a guest-requested exit from a normal one.
 * A host process exit status keeps only the low 8 bits; that truncation is the
 * machine's business, so the full status is reported here. Reads return 0.
 */
import { sizeMask, type Device, type IoSize } from "./device.ts"

export type IsaDebugExitState = null

export const DEBUG_EXIT_BASE = 0xf4
export const DEBUG_EXIT_IO_SIZE = 4

/** Arithmetic rather than `<<` so a 32-bit value does not wrap into int32. */
export const debugExitStatus = (value: number, size: IoSize): number => ((value & sizeMask(size)) >>> 0) * 2 + 1

export const isaDebugExit: Device<IsaDebugExitState> = Object.freeze({
  kind: "isa-debug-exit",
  initial: null,
  read: (state: IsaDebugExitState) => ({ state, value: 0 }),
  write: (state: IsaDebugExitState, _offset: number, size: IoSize, value: number) => ({
    state,
    effects: { exitCode: debugExitStatus(value, size) }
  })
})
