import type { VmEvent } from "../VmEvent.ts"

/**
 * Structural equality of two events, for replay to compare every re-executed event
 * with the recorded one: no allocation, `_tag` and key-set checked, bytes by content.
 * An optional field present on one side only makes events differ.
 */
export const eventsEqual = (a: VmEvent, b: VmEvent): boolean => a === b || (a._tag === b._tag && valuesEqual(a, b))

const valuesEqual = (a: unknown, b: unknown): boolean => {
  if (a === b) return true
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false
  if (a instanceof Uint8Array) return b instanceof Uint8Array && bytesEqual(a, b)
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false
    for (let i = 0; i < a.length; i++) if (!valuesEqual(a[i], b[i])) return false
    return true
  }
  if (b instanceof Uint8Array || Array.isArray(b)) return false
  const x = a as Record<string, unknown>
  const y = b as Record<string, unknown>
  let keys = 0
  for (const key in x) {
    if (!Object.hasOwn(y, key) || !valuesEqual(x[key], y[key])) return false
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
