/**
 * The interpreter against the real /dev/kvm: random programs (programs.ts) run on the
 * model and on KVM through the same KVM-shaped API, in real mode and in flat 32-bit
 * protected mode, and must end with the same registers, EFLAGS (every bit), RAM and
 * stream of port I/O and MMIO accesses. `npm test` runs a modest number where /dev/kvm
 * is usable; `npm run conform` runs VMRR_CONFORM_RUNS of each.
 */
import fc from "fast-check"
import { afterAll, describe, expect, it } from "vitest"
import { devKvmAvailability } from "../../src/devkvm/devKvm.ts"
import { devKvmBackend, differences, exceptionOf, modelBackend, report, type Backend, type Outcome } from "./differential.ts"
import { programArb, type Mode } from "./programs.ts"

const kvmState = devKvmAvailability()
const runs = Number(process.env.VMRR_CONFORM_RUNS ?? 150)
const seed = process.env.VMRR_CONFORM_SEED === undefined ? undefined : Number(process.env.VMRR_CONFORM_SEED)
/** Programs per fast-check run; each run reports its own seed, so a failure reproduces with VMRR_CONFORM_SEED. */
const CHUNK = 500

if (!kvmState.usable) console.log(`differential conformance skipped: ${kvmState.reason}`)

interface Tally {
  cases: number
  exceptions: number
  accesses: number
  model: { runs: number; nanos: number }
  kvm: { runs: number; nanos: number }
}

describe.skipIf(!kvmState.usable)("the model against /dev/kvm", () => {
  const model = modelBackend()
  let kvm: (Backend & { close(): void }) | undefined
  const tallies: Record<Mode, Tally> = {
    real: { cases: 0, exceptions: 0, accesses: 0, model: { runs: 0, nanos: 0 }, kvm: { runs: 0, nanos: 0 } },
    pm32: { cases: 0, exceptions: 0, accesses: 0, model: { runs: 0, nanos: 0 }, kvm: { runs: 0, nanos: 0 } }
  }

  afterAll(() => {
    kvm?.close()
    for (const [mode, t] of Object.entries(tallies)) {
      if (t.cases === 0) continue
      const per = (s: { runs: number; nanos: number }) => `${(s.nanos / 1000 / Math.max(1, s.runs)).toFixed(2)} µs/KVM_RUN over ${s.runs}`
      console.log(
        `conformance ${mode}: ${t.cases} programs, ${t.exceptions} ended in an exception handler, ${t.accesses} I/O+MMIO accesses; ` +
          `model ${per(t.model)}, kvm ${per(t.kvm)}`
      )
    }
  })

  for (const mode of ["real", "pm32"] as const) {
    it(`${mode === "real" ? "real mode" : "flat 32-bit protected mode"}: same registers, flags, RAM and I/O`, async () => {
      kvm ??= devKvmBackend()
      const t = tallies[mode]
      const tally = (side: { runs: number; nanos: number }, o: Outcome) => {
        side.runs += o.runs
        side.nanos += o.runNanos
      }
      const property = fc.property(programArb(mode), (p) => {
        const m = model.run(p)
        const k = kvm!.run(p)
        t.cases++
        if (exceptionOf(k) !== undefined) t.exceptions++
        t.accesses += k.accesses.length
        tally(t.model, m)
        tally(t.kvm, k)
        const d = differences(m, k)
        if (d.length > 0) throw new Error(report(p, m, k, d))
      })
      // In chunks, yielding between them: one long synchronous loop would starve vitest's worker RPC.
      const base = seed ?? Math.floor(Math.random() * 0x7fffffff)
      for (let done = 0, chunk = 0; done < runs; done += CHUNK, chunk++) {
        fc.assert(property, { numRuns: Math.min(CHUNK, runs - done), seed: base + chunk })
        await new Promise((resolve) => setImmediate(resolve))
      }
      expect(t.cases).toBeGreaterThanOrEqual(runs)
    }, 30_000 + runs * 60)
  }
})
