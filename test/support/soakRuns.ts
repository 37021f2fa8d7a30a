import * as fc from "fast-check"

/** A property's run count: modest for `npm test`; `npm run soak` sets VMRR_SOAK_RUNS for thousands. */
export const runs = (modest: number): number => Number(process.env["VMRR_SOAK_RUNS"] ?? "") || modest

/**
 * Checks `check` on `runs(modest)` values of `arbitrary`, letting the event loop turn
 * between runs: vitest's worker answers its runner over an RPC with a fixed 60 s
 * timeout, which a soak of thousands of synchronous runs would outlast.
 */
export const assertProperty = <T>(arbitrary: fc.Arbitrary<T>, check: (value: T) => void, modest: number): Promise<void> =>
  fc.assert(
    fc.asyncProperty(arbitrary, async (value) => {
      await new Promise((resolve) => setImmediate(resolve))
      check(value)
    }),
    { numRuns: runs(modest) }
  )
