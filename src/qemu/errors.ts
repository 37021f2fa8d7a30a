import * as Data from "effect/Data"

/** The machine cannot be built from this config and image; `message` is the one line a person reads. */
export class MachineSetupError extends Data.TaggedError("MachineSetupError")<{ readonly reason: string }> {
  override get message(): string {
    return this.reason
  }
}
