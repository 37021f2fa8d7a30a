// The packer thread's entry (see packerThread.ts): a worker starts with no TypeScript
// loader, whoever started the process (the CLI, tsx, vitest), so it registers tsx's.
import { register } from "tsx/esm/api"

register()
await import("./packerWorker.ts")
