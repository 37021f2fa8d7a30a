/** `vmrr conform IMAGE [run options]`: the guest on real KVM and on the model, compared. */
import { Command } from "@effect/cli"
import { FileSystem } from "@effect/platform"
import * as Effect from "effect/Effect"
import { devKvmKernel } from "../devkvm/devKvm.ts"
import { conform } from "../replay/conform.ts"
import { requireDevKvm } from "./backend.ts"
import { entry, image, limit, load, machineConfigOf, mem, mode } from "./machineOptions.ts"
import { writeStdout } from "./output.ts"

export const conformCommand = Command.make("conform", { image, mode, load, entry, mem, limit }, (args) =>
  Effect.gen(function* () {
    yield* requireDevKvm
    const fs = yield* FileSystem.FileSystem
    const bytes = yield* fs.readFile(args.image)
    const report = yield* conform(machineConfigOf(args), bytes, devKvmKernel())
    yield* writeStdout(`vmrr: conforms: ${report.events} events (what userspace sees, final registers included), guest RAM sha256 ${report.memorySha256.slice(0, 16)}\n`)
    return 0
  })
).pipe(
  Command.withDescription(
    "run a guest on the real /dev/kvm and on the model and report the first difference in what userspace sees, registers or memory"
  )
)
