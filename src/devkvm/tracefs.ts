/**
 * The host kernel's KVM tracepoints (`kvm_entry`, `kvm_exit`, `kvm_pio`, ...) for the VM
 * this process runs, read through tracefs: the kernel's side of each KVM_RUN, which
 * `kvm_run` does not show. Everything happens in a private tracefs instance (its own
 * ring buffer and event switches, filtered to this process), so the host's global
 * tracing is never touched; tracefs is mounted only if it was not (as source "vmrr", so
 * that whichever vmrr finishes last can tell the mount is vmrr's and unmount it), and
 * everything set up is undone when the scope closes.
 */
import * as fs from "node:fs"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import type { HostTracepoint, TracepointSource } from "./devKvm.ts"
import { loadLibc } from "./libc.ts"

const TRACEFS = "/sys/kernel/tracing"

/**
 * The tracepoints that make up the kernel's view of a KVM_RUN on this machine: entries
 * and exits, what KVM emulated or handled itself, and where it returned to userspace.
 */
const KVM_TRACEPOINTS = [
  "kvm_entry", "kvm_exit", "kvm_page_fault", "kvm_emulate_insn", "kvm_pio", "kvm_mmio", "kvm_fast_mmio",
  "kvm_cpuid", "kvm_msr", "kvm_cr", "kvm_inj_virq", "kvm_inj_exception", "kvm_userspace_exit"
] as const

/** Enough for a few hundred thousand events between two reads (one read per KVM_RUN in practice). */
const BUFFER_KB = 4096

/** Why the kernel's view is not captured here, in one phrase. */
export class TracepointsUnavailable extends Data.TaggedError("TracepointsUnavailable")<{ readonly reason: string }> {
  override get message(): string {
    return `KVM tracepoints are not captured: ${this.reason}`
  }
}

const errorText = (e: unknown): string => (e instanceof Error ? e.message : String(e))

/** A page (what one trace_pipe read can return) less room for the longest line. */
const PIPE_READ_FULL = 4096 - 512

/** `comm-pid [cpu] flags timestamp: name: fields`, as trace_pipe prints a line. */
const LINE = /\s\d+\.\d+: (\w+): ?(.*)$/

/** A private tracefs instance with the KVM tracepoints on, filtered to this process. */
class KvmTraceInstance implements TracepointSource {
  private readonly fd: number
  private readonly buffer = Buffer.alloc(1 << 16)
  private partial = ""
  private closed = false

  constructor(private readonly dir: string) {
    fs.writeFileSync(`${dir}/buffer_size_kb`, String(BUFFER_KB))
    // The vCPU ioctls run on the main thread, whose tid is the pid.
    fs.writeFileSync(`${dir}/set_event_pid`, String(process.pid))
    for (const name of KVM_TRACEPOINTS) {
      const enable = `${dir}/events/kvm/${name}/enable`
      if (fs.existsSync(enable)) fs.writeFileSync(enable, "1")
    }
    this.fd = fs.openSync(`${dir}/trace_pipe`, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK)
  }

  /** Everything traced since the last call, in the order the kernel logged it. */
  drain(): ReadonlyArray<HostTracepoint> {
    let text = this.partial
    for (;;) {
      let n: number
      try {
        n = fs.readSync(this.fd, this.buffer, 0, this.buffer.length, null)
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === "EAGAIN") break
        throw e
      }
      if (n <= 0) break
      text += this.buffer.toString("utf8", 0, n)
      // trace_pipe hands out at most a page per read, and whole lines only: a read well
      // short of a page found the buffer empty, which saves the EAGAIN read (and its exception).
      if (n < PIPE_READ_FULL) break
    }
    const lines = text.split("\n")
    this.partial = lines.pop() ?? ""
    const out: HostTracepoint[] = []
    for (const line of lines) {
      if (line.trim() === "") continue
      const m = LINE.exec(line)
      // Anything else is tracefs speaking for itself, e.g. "CPU:1 [LOST 12 EVENTS]": kept, not hidden.
      out.push(m === null ? { name: "tracefs", fields: line.trim() } : { name: m[1], fields: m[2].trimEnd() })
    }
    return out
  }

  close(): void {
    if (this.closed) return
    this.closed = true
    fs.closeSync(this.fd)
    // An instance can only be removed once nothing in it is enabled.
    try {
      fs.writeFileSync(`${this.dir}/events/enable`, "0")
    } finally {
      fs.rmdirSync(this.dir)
      unmountIfLastVmrr()
    }
  }
}

const MOUNT_SOURCE = "vmrr"

/** Mounts tracefs where it belongs if it is not there. */
const ensureTracefs = (): void => {
  if (fs.existsSync(`${TRACEFS}/instances`)) return
  if (!fs.existsSync(TRACEFS)) throw new TracepointsUnavailable({ reason: `${TRACEFS} does not exist` })
  const libc = loadLibc()
  if (libc.mount(MOUNT_SOURCE, TRACEFS, "tracefs", 0) !== 0) {
    throw new TracepointsUnavailable({ reason: `tracefs is not mounted and mounting it failed: ${libc.strerror(libc.errno())}` })
  }
}

/** Unmounts tracefs if a vmrr mounted it and no vmrr is tracing any more (busy: someone else still is). */
const unmountIfLastVmrr = (): void => {
  const ours = fs.readFileSync("/proc/self/mounts", "utf8").split("\n").some((line) => line.startsWith(`${MOUNT_SOURCE} ${TRACEFS} tracefs `))
  if (!ours || fs.readdirSync(`${TRACEFS}/instances`).some((name) => name.startsWith("vmrr-"))) return
  loadLibc().umount(TRACEFS, 0)
}

const isAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM"
  }
}

/** Instances left by a vmrr that was killed mid-run (so its finalizer never ran): switched off and removed. */
const removeStaleInstances = (): void => {
  for (const name of fs.readdirSync(`${TRACEFS}/instances`)) {
    const pid = /^vmrr-(\d+)$/.exec(name)?.[1]
    if (pid === undefined || (Number(pid) !== process.pid && isAlive(Number(pid)))) continue
    fs.writeFileSync(`${TRACEFS}/instances/${name}/events/enable`, "0")
    fs.rmdirSync(`${TRACEFS}/instances/${name}`)
  }
}

const open = (): KvmTraceInstance => {
  ensureTracefs()
  const dir = `${TRACEFS}/instances/vmrr-${process.pid}`
  try {
    if (!fs.existsSync(`${TRACEFS}/events/kvm/kvm_exit`)) throw new TracepointsUnavailable({ reason: "the host kernel has no KVM tracepoints (events/kvm)" })
    removeStaleInstances()
    fs.mkdirSync(dir)
    try {
      return new KvmTraceInstance(dir)
    } catch (e) {
      fs.rmdirSync(dir)
      throw e
    }
  } catch (e) {
    unmountIfLastVmrr()
    throw e instanceof TracepointsUnavailable ? e : new TracepointsUnavailable({ reason: `tracefs: ${errorText(e)}` })
  }
}

/**
 * The host's KVM tracepoints for this process for the life of the scope, or why they
 * cannot be had here (not root, no tracefs, a kernel without KVM tracepoints).
 */
export const hostKvmTracepoints: Effect.Effect<TracepointSource, TracepointsUnavailable, Scope.Scope> = Effect.acquireRelease(
  Effect.try({
    try: open,
    catch: (e) => (e instanceof TracepointsUnavailable ? e : new TracepointsUnavailable({ reason: errorText(e) }))
  }),
  (instance) => Effect.ignore(Effect.try(() => instance.close()))
)
