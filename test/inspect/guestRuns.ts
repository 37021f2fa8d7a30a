import { readFileSync } from "node:fs"
import { join } from "node:path"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import type { MachineConfig } from "../../src/events/MachineConfig.ts"
import type { VmEvent } from "../../src/events/VmEvent.ts"
import { runMachine } from "../../src/qemu/runMachine.ts"
import { repoRoot } from "../support/cli.ts"

/** A guest run in memory, as a trace holds it: the header's config and image, and the events. */
export interface GuestRun {
  readonly header: { readonly config: MachineConfig; readonly image: Uint8Array }
  readonly events: ReadonlyArray<VmEvent>
}

const configs: Record<string, MachineConfig> = {
  hello: { memoryMiB: 16, loadAddress: 0x7c00, entry: 0x7c00, mode: "real", instructionLimit: 100_000_000 },
  hello32: { memoryMiB: 16, loadAddress: 0x100000, entry: 0x100000, mode: "pm32", instructionLimit: 100_000_000 },
  paging: { memoryMiB: 16, loadAddress: 0x100000, entry: 0x100000, mode: "pm32", instructionLimit: 100_000_000 },
  cpuid: { memoryMiB: 16, loadAddress: 0x100000, entry: 0x100000, mode: "pm32", instructionLimit: 100_000_000 },
  ept: { memoryMiB: 16, loadAddress: 0x100000, entry: 0x100000, mode: "pm32", instructionLimit: 100_000_000 },
  mmio: { memoryMiB: 16, loadAddress: 0x100000, entry: 0x100000, mode: "pm32", instructionLimit: 100_000_000 }
}

const runs = new Map<string, GuestRun>()

/** Runs `guests/NAME.bin` on the model with the config its README command uses (cached per test file). */
export const guestRun = (name: keyof typeof configs & string): GuestRun => {
  const cached = runs.get(name)
  if (cached !== undefined) return cached
  const image = new Uint8Array(readFileSync(join(repoRoot, "guests", `${name}.bin`)))
  const config = configs[name]
  const events = Effect.runSync(Stream.runCollect(runMachine(config, image)).pipe(Effect.map(Chunk.toReadonlyArray)))
  const run = { header: { config, image }, events }
  runs.set(name, run)
  return run
}
