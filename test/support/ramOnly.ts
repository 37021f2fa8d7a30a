import type { EptExits } from "../../src/kernel/ept.ts"

/** EPT exits for a CPU on RAM alone: first touches need no handling, and any MMIO access is a test bug. */
export const ramOnlyExits: EptExits = {
  eptViolation: () => {},
  mmioRead: () => {
    throw new Error("no MMIO here")
  },
  mmioWrite: () => {
    throw new Error("no MMIO here")
  }
}
