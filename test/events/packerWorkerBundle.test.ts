import { readFileSync } from "node:fs"
import { describe, expect, it } from "vitest"
import { bundlePackerWorker, bundlePath } from "../../src/events/trace/packerWorkerBundle.ts"

describe("the packer thread's bundle", () => {
  it("is what packerWorker.ts and its imports build to (else: npm run build:worker)", () => {
    const committed = readFileSync(bundlePath, "utf8")
    // One comparison, not a diff of 36 KB: the message says what to do.
    expect(bundlePackerWorker() === committed, "src/events/trace/packerWorker.bundle.mjs is stale: run `npm run build:worker`").toBe(true)
  })
})
