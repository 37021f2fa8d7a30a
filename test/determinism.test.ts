import { readdirSync, readFileSync, statSync } from "node:fs"
import { join, relative } from "node:path"
import { fileURLToPath } from "node:url"
import { describe, expect, it } from "vitest"

const root = fileURLToPath(new URL("..", import.meta.url))

const sources = (dir: string): string[] =>
  readdirSync(dir).flatMap((name) => {
    const path = join(dir, name)
    return statSync(path).isDirectory() ? sources(path) : path.endsWith(".ts") ? [path] : []
  })

/**
 * The kernel and the device side must be a pure function of the guest, the machine
 * config and the logged host inputs. Anything that reads the host directly would
 * make a replay differ from its recording.
 */
const forbidden: ReadonlyArray<[RegExp, string]> = [
  [/\bDate\b/, "the wall clock (Date)"],
  [/\bMath\.random\b/, "randomness (Math.random)"],
  [/\bperformance\b/, "a host timer (performance)"],
  [/\bprocess\./, "the host process (process.*)"],
  [/\bhrtime\b/, "a host timer (hrtime)"],
  [/\bset(Timeout|Interval|Immediate)\b/, "host timers"],
  [/from "node:/, "a Node module (file system, OS, crypto …)"],
  [/\brequire\(/, "a dynamic module load"],
  [/\bcrypto\b/, "randomness or host crypto"]
]

describe("determinism by construction", () => {
  for (const folder of ["src/kernel", "src/qemu", "src/hw"]) {
    it(`${folder} reads nothing from the host`, () => {
      const offences: string[] = []
      for (const file of sources(join(root, folder))) {
        readFileSync(file, "utf8")
          .split("\n")
          .forEach((line, i) => {
            const code = line.replace(/\/\/.*$/, "").replace(/^\s*\*.*$/, "")
            for (const [pattern, what] of forbidden) {
              if (pattern.test(code)) offences.push(`${relative(root, file)}:${i + 1} uses ${what}: ${line.trim()}`)
            }
          })
      }
      expect(offences).toEqual([])
    })
  }
})
