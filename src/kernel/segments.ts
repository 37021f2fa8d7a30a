import type { KvmSegment } from "./api.ts"

/**
 * `struct kvm_segment` ↔ the VMX guest-segment access-rights field the interpreter
 * keeps (SDM Vol. 3C 25.4.1): type 3:0, S 4, DPL 6:5, P 7, AVL 12, L 13, D/B 14,
 * G 15, unusable 16. KVM converts the same way (vmx_segment_access_rights).
 */
export const accessRightsOf = (s: KvmSegment): number =>
  (s.type & 0xf) |
  (s.s ? 1 << 4 : 0) |
  ((s.dpl & 3) << 5) |
  (s.present ? 1 << 7 : 0) |
  (s.avl ? 1 << 12 : 0) |
  (s.l ? 1 << 13 : 0) |
  (s.db ? 1 << 14 : 0) |
  (s.g ? 1 << 15 : 0) |
  (s.unusable ? 1 << 16 : 0)

export const segmentOf = (selector: number, base: number, limit: number, ar: number): KvmSegment => ({
  base: base >>> 0,
  limit: limit >>> 0,
  selector,
  type: ar & 0xf,
  present: (ar & (1 << 7)) !== 0,
  dpl: (ar >>> 5) & 3,
  db: (ar & (1 << 14)) !== 0,
  s: (ar & (1 << 4)) !== 0,
  l: (ar & (1 << 13)) !== 0,
  g: (ar & (1 << 15)) !== 0,
  avl: (ar & (1 << 12)) !== 0,
  unusable: (ar & (1 << 16)) !== 0
})
