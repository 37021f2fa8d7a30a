/**
 * Segment descriptors (SDM Vol. 3A, 3.4.5) and the segment-cache access-rights
 * format the VMCS uses for guest segments (SDM Vol. 3C, Table 25-2):
 * type 3:0, S 4, DPL 6:5, P 7, AVL 12, L 13, D/B 14, G 15, unusable 16.
 */

export const ATTR_ACCESSED = 1 << 0
/** Data: writable. Code: readable. */
export const ATTR_WRITABLE_READABLE = 1 << 1
/** Data: expand-down. Code: conforming. */
export const ATTR_EXPAND_DOWN_CONFORMING = 1 << 2
export const ATTR_CODE = 1 << 3
/** Code or data (as opposed to a system descriptor). */
export const ATTR_S = 1 << 4
export const ATTR_P = 1 << 7
export const ATTR_DB = 1 << 14
export const ATTR_G = 1 << 15
export const ATTR_UNUSABLE = 1 << 16

/** Real-mode caches as KVM's reset leaves them: present, accessed, read/write data or read/execute code. */
export const REAL_MODE_DATA_ATTR = 0x93
export const REAL_MODE_CODE_ATTR = 0x9b

export const attrDpl = (attr: number): number => (attr >>> 5) & 3

/** Base from the two dwords of a descriptor. */
export const descriptorBase = (lo: number, hi: number): number =>
  ((lo >>> 16) | ((hi & 0xff) << 16) | (hi & 0xff000000)) >>> 0

/** Limit in bytes, with 4 KiB granularity applied. */
export const descriptorLimit = (lo: number, hi: number): number => {
  const raw = (lo & 0xffff) | (hi & 0xf0000)
  return (hi & (1 << 23)) !== 0 ? ((raw << 12) | 0xfff) >>> 0 : raw
}

/** Access byte and the AVL/L/D/G nibble, placed as in the VMCS access-rights field. */
export const descriptorAttr = (hi: number): number => (hi >>> 8) & 0xf0ff
