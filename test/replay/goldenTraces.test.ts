import { readdirSync } from "node:fs"
import { join } from "node:path"
import * as Effect from "effect/Effect"
import { describe, expect, it } from "vitest"
import { replayTrace } from "../../src/replay/replay.ts"
import { repoRoot } from "../support/cli.ts"

const dir = join(repoRoot, "traces")
const traces = readdirSync(dir).filter((name) => name.endsWith(".vmrr"))

describe("golden traces replay exactly on today's model", () => {
  it("there are golden traces", () => expect(traces.length).toBeGreaterThan(0))
  for (const name of traces) {
    it(name, async () => {
      const report = await Effect.runPromise(replayTrace(join(dir, name)))
      expect(report.verified).toBeGreaterThan(0)
    })
  }
})
