/**
 * The packer thread's entry as one plain JavaScript module (packerWorker.bundle.mjs),
 * built from packerWorker.ts and what it imports. A worker started on the TypeScript
 * sources would first register tsx's loader, which takes a few hundred milliseconds of
 * both cores, while a recording packs in-thread; the bundle starts in a few tens.
 *
 *   npm run build:worker     writes the bundle; a test fails while it is not what this builds
 */
import { writeFileSync } from "node:fs"
import { fileURLToPath, pathToFileURL } from "node:url"
import { buildSync } from "esbuild"

export const bundlePath = fileURLToPath(new URL("./packerWorker.bundle.mjs", import.meta.url))

const banner = "// Built by `npm run build:worker` from packerWorker.ts (packerWorkerBundle.ts): do not edit."

/** The bundle's text: the same sources and esbuild version always give the same bytes. */
export const bundlePackerWorker = (): string => {
  const built = buildSync({
    entryPoints: [fileURLToPath(new URL("./packerWorker.ts", import.meta.url))],
    absWorkingDir: fileURLToPath(new URL("../../..", import.meta.url)),
    bundle: true,
    format: "esm",
    platform: "node",
    target: "node20",
    // Resolved from the repository's node_modules, as the sources' own import is.
    external: ["msgpackr"],
    banner: { js: banner },
    write: false,
    logLevel: "silent"
  })
  return built.outputFiles[0]!.text
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  writeFileSync(bundlePath, bundlePackerWorker())
  console.log(`wrote ${bundlePath}`)
}
