import type { VmEvent } from "../VmEvent.ts"

/**
 * Structural equality of two events, for replay to compare every re-executed event
 * with the recorded one: no allocation, `_tag` and key-set checked, bytes by content.
 * An optional field present on one side only makes events differ.
 */
export const eventsEqual = (a: VmEvent, b: VmEvent): boolean =>
  a === b || (a._tag === b._tag && recordsEqual(a as unknown as Record<string, unknown>, b as unknown as Record<string, unknown>))

/** `eventsEqual` for any two values built of plain objects, arrays, bytes and primitives. */
export const valuesEqual = (a: unknown, b: unknown): boolean => {
  if (a === b) return true
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false
  if (a instanceof Uint8Array) return b instanceof Uint8Array && bytesEqual(a, b)
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false
    for (let i = 0; i < a.length; i++) if (!valuesEqual(a[i], b[i])) return false
    return true
  }
  if (b instanceof Uint8Array || Array.isArray(b)) return false
  return recordsEqual(a as Record<string, unknown>, b as Record<string, unknown>)
}

/** Same keys, equal values. Replay calls this for every event: equal primitives (most fields) cost no call. */
const recordsEqual = (x: Record<string, unknown>, y: Record<string, unknown>): boolean => {
  let keys = 0
  for (const key in x) {
    const u = x[key]
    const v = y[key]
    if (u !== v) {
      if (!valuesEqual(u, v)) return false
    } else if (u === undefined && !Object.hasOwn(y, key)) return false
    keys++
  }
  for (const _ in y) keys--
  return keys === 0
}

const bytesEqual = (a: Uint8Array, b: Uint8Array): boolean => {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}
