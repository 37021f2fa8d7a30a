/**
 * `--backend model|kvm`: which kernel stands behind the KVM API, as QEMU's `-accel`
 * chooses between TCG and KVM. The machine, the devices and the guest are the same.
 */
import { Options } from "@effect/cli"
import * as Cause from "effect/Cause"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { devKvmKernel, devKvmUnavailable, KvmIoctlFailed, KvmNotOffered, KvmUnavailable } from "../devkvm/devKvm.ts"
import { hostKvmTracepoints } from "../devkvm/tracefs.ts"
import type { MachineConfig } from "../events/MachineConfig.ts"
import type { Backend } from "../events/trace/schema.ts"
import { createVm } from "../kernel/kvm.ts"
import type { KernelFactory } from "../qemu/machine.ts"
import { writeStderr } from "./output.ts"

export const backendOption = Options.choice("backend", ["model", "kvm"]).pipe(
  Options.withDefault("model" as const),
  Options.withDescription("the kernel: vmrr's model (default) or the real /dev/kvm")
)

/** /dev/kvm, or the one line that says why it cannot be used here. */
export const requireDevKvm: Effect.Effect<void, KvmUnavailable> = Effect.suspend(() => {
  const unavailable = devKvmUnavailable()
  return unavailable === undefined ? Effect.void : Effect.fail(unavailable)
})

/** A machine option the KVM backend does not offer. */
export class KvmBackendUnsupported extends Data.TaggedError("KvmBackendUnsupported")<{ readonly option: string; readonly why: string }> {
  override get message(): string {
    return `--backend kvm does not support ${this.option}: ${this.why}`
  }
}

/**
 * What the machine config asks that only the model can give: on KVM the irqchip is the
 * kernel's (KVM_CREATE_IRQCHIP, KVM_CREATE_PIT2); split needs KVM_CAP_SPLIT_IRQCHIP and
 * userspace KVM_INTERRUPT with the interrupt window, neither wired to /dev/kvm yet; and
 * `-icount` scales instructions, which KVM does not count; and its timers read the host
 * clock themselves, which a recording cannot see (`--clock realtime`).
 */
export const supportedOnBackend = (backend: Backend, config: MachineConfig): Effect.Effect<void, KvmBackendUnsupported> => {
  if (backend === "model") return Effect.void
  if (config.irqchip !== undefined && config.irqchip !== "kernel") {
    return Effect.fail(
      new KvmBackendUnsupported({ option: `--irqchip ${config.irqchip}`, why: "only the in-kernel irqchip (--irqchip kernel) is wired to /dev/kvm" })
    )
  }
  if (config.icountShift !== undefined) {
    return Effect.fail(new KvmBackendUnsupported({ option: "--icount-shift", why: "real KVM counts no instructions" }))
  }
  if (config.clock === "realtime") {
    return Effect.fail(new KvmBackendUnsupported({ option: "--clock realtime", why: "real KVM's timers follow the host clock unrecorded" }))
  }
  return Effect.void
}

/**
 * The kernel for a run, for the life of the scope. On KVM with `tracepoints`, the host's
 * KVM tracepoints are captured where the host allows it; where it does not, one line on
 * stderr says why and the run records what userspace sees.
 */
export const acquireKernel = (
  backend: Backend,
  options: { readonly tracepoints: boolean; readonly quiet: boolean }
): Effect.Effect<KernelFactory, KvmUnavailable, Scope.Scope> => {
  if (backend === "model") return Effect.succeed(createVm)
  return Effect.zipRight(
    requireDevKvm,
    options.tracepoints
      ? hostKvmTracepoints.pipe(
          Effect.map((tracepoints) => devKvmKernel({ tracepoints })),
          Effect.catchTag("TracepointsUnavailable", (e) =>
            Effect.as(options.quiet ? Effect.void : writeStderr(`vmrr: ${e.message}; recording what userspace sees\n`), devKvmKernel()))
        )
      : Effect.succeed(devKvmKernel())
  )
}

/**
 * The KVM backend reports a refused ioctl by throwing from inside the synchronous vCPU
 * loop; here that becomes the run's failure, one line like any other, not a defect.
 */
export const kvmFailuresAsErrors = <A, E, R>(
  events: Stream.Stream<A, E, R>
): Stream.Stream<A, E | KvmIoctlFailed | KvmUnavailable | KvmNotOffered, R> =>
  Stream.catchAllCause(events, (cause): Stream.Stream<A, E | KvmIoctlFailed | KvmUnavailable | KvmNotOffered> => {
    const defect = Option.getOrUndefined(Cause.dieOption(cause))
    return defect instanceof KvmIoctlFailed || defect instanceof KvmUnavailable || defect instanceof KvmNotOffered
      ? Stream.fail(defect)
      : Stream.failCause(cause)
  })
