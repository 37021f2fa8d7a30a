/**
 * The machine's state as named sections, after QEMU's VMState: each section knows how
 * to save its part of the machine (through the KVM API for what the kernel holds,
 * directly for userspace's own devices) and how to load it back. A checkpoint is
 * `{ [section name]: data }`; adding a device or chip to checkpoints is adding one
 * entry to `stateSections` (the interrupt chips' section, interruptState.ts, calls
 * KVM_GET/SET_IRQCHIP, _PIT2 and _LAPIC for the chips in the kernel and keeps the
 * plain-data state of those in userspace, as the bus does for devices).
 *
 * Data is plain (numbers, strings, booleans, arrays, Uint8Array) so it goes into a
 * trace as msgpack. Loading checks the data and throws `VmStateError` for anything
 * that is not what the section saves.
 */
import * as Data from "effect/Data"
import * as Either from "effect/Either"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import {
  hasVcpuState,
  hasVmState,
  type KvmEmulationState,
  type KvmRunExit,
  type KvmSregs,
  type KvmVcpuApi,
  type KvmVcpuStateApi,
  type KvmVmApi,
  type KvmVmStateApi,
  savedMsrs
} from "../kernel/api.ts"
import type { BusSnapshot } from "./bus.ts"
import { interruptSection } from "./interruptState.ts"
import type { Machine } from "./machine.ts"

export class VmStateError extends Data.TaggedError("VmStateError")<{ readonly section: string; readonly reason: string }> {
  override get message(): string {
    return `state section ${this.section}: ${this.reason}`
  }
}

/** Saves at a checkpoint and loads at a restore, for one part of the machine. */
export interface StateSection {
  readonly name: string
  /**
   * An incremental section saves only what changed since its previous save; a restore
   * loads it from every checkpoint up to the target, oldest first (guest RAM).
   */
  readonly incremental: boolean
  /** Saved only by machines that have the part (undefined from `save`), so a checkpoint may lack it. */
  readonly optional?: boolean
  save(machine: StatefulMachine): unknown
  load(machine: StatefulMachine, data: unknown): void
}

/** A machine whose kernel has the state ioctls. */
export type StatefulMachine = Machine & {
  readonly vm: KvmVmApi & KvmVmStateApi
  readonly vcpu: KvmVcpuApi & KvmVcpuStateApi
}

export const isStateful = (machine: Machine): machine is StatefulMachine => hasVmState(machine.vm) && hasVcpuState(machine.vcpu)

const U32 = Schema.Number
const Segment = Schema.Struct({
  base: U32, limit: U32, selector: U32, type: U32, present: Schema.Boolean, dpl: U32,
  db: Schema.Boolean, s: Schema.Boolean, l: Schema.Boolean, g: Schema.Boolean, avl: Schema.Boolean, unusable: Schema.Boolean
})
const Dtable = Schema.Struct({ base: U32, limit: U32 })
const Sregs = Schema.Struct({
  cs: Segment, ds: Segment, es: Segment, fs: Segment, gs: Segment, ss: Segment, gdt: Dtable, idt: Dtable,
  cr0: U32, cr2: U32, cr3: U32, cr4: U32, tr: Schema.optionalWith(Segment, { exact: true }), ldt: Schema.optionalWith(Segment, { exact: true })
})
const Regs = Schema.Struct({ rax: U32, rbx: U32, rcx: U32, rdx: U32, rsi: U32, rdi: U32, rsp: U32, rbp: U32, rip: U32, rflags: U32 })
const Bytes = Schema.Uint8ArrayFromSelf
const Size = Schema.Literal(1, 2, 4)
const PendingExit = Schema.Union(
  Schema.Struct({ _tag: Schema.Literal("KVM_EXIT_IO"), exitReason: Schema.Literal(2), direction: Schema.Literal("in", "out"), port: U32, size: Size, count: U32, data: Bytes }),
  Schema.Struct({ _tag: Schema.Literal("KVM_EXIT_MMIO"), exitReason: Schema.Literal(6), physAddr: U32, isWrite: Schema.Boolean, len: Size, data: Bytes }),
  Schema.Struct({ _tag: Schema.String, exitReason: U32 })
)
const CpuSection = Schema.Struct({
  regs: Regs,
  sregs: Sregs,
  debugRegs: Schema.Struct({ db: Schema.Tuple(U32, U32, U32, U32), dr6: U32, dr7: U32 }),
  msrs: Schema.Array(Schema.Struct({ index: U32, data: U32 })),
  events: Schema.Struct({ interruptShadow: U32 }),
  emulation: Schema.Struct({
    instructionsRetired: U32,
    pendingExit: Schema.optionalWith(PendingExit, { exact: true }),
    completions: Schema.Array(Schema.Struct({ kind: Schema.Literal("pio", "mmio"), address: U32, size: U32, isWrite: Schema.Boolean, value: U32 })),
    emulating: Schema.Boolean,
    debugStopped: Schema.optionalWith(Schema.Boolean, { exact: true })
  })
})
const EptSection = Schema.Array(Schema.Tuple(U32, U32))
const RamSection = Schema.Struct({ frames: Schema.Array(U32), pages: Bytes })
const BusSection = Schema.Array(Schema.Struct({ name: Schema.String, kind: Schema.String, base: U32, length: U32, state: Schema.Unknown }))

const check = <A, I>(section: string, schema: Schema.Schema<A, I>, data: unknown): A => {
  const decoded = Schema.decodeUnknownEither(schema, { errors: "first", onExcessProperty: "ignore" })(data)
  if (Either.isRight(decoded)) return decoded.right
  const issue = ParseResult.ArrayFormatter.formatErrorSync(decoded.left)[0]
  throw new VmStateError({ section, reason: `${issue?.path.join(".") || "data"}: ${issue?.message ?? "does not decode"}` })
}

/** Runs a kernel or bus call that refuses bad state with a throw, as one VmStateError. */
const guard = (section: string, f: () => void): void => {
  try {
    f()
  } catch (e) {
    if (e instanceof VmStateError) throw e
    throw new VmStateError({ section, reason: e instanceof Error ? e.message : String(e) })
  }
}

/** KVM_GET_REGS, _SREGS, _DEBUGREGS, _MSRS, _VCPU_EVENTS and the model's in-flight emulation. */
const cpuSection: StateSection = {
  name: "cpu",
  incremental: false,
  save: ({ vcpu }) => {
    const emulation = vcpu.getEmulationState()
    // Key by key rather than conditional spreads (slow in V8); optional keys are absent, not undefined.
    const saved: Record<string, unknown> = { instructionsRetired: emulation.instructionsRetired }
    if (emulation.pendingExit !== undefined) saved.pendingExit = emulation.pendingExit
    saved.completions = emulation.completions
    saved.emulating = emulation.emulating
    // A checkpoint taken inside a KVM_RUN (runMachine's Checkpointer) resumes without a traced entry.
    if (emulation.debugStopped === true) saved.debugStopped = true
    return {
      regs: vcpu.getRegs(),
      sregs: vcpu.getSregs(),
      debugRegs: vcpu.getDebugRegs(),
      msrs: vcpu.getMsrs(savedMsrs),
      events: vcpu.getVcpuEvents(),
      emulation: saved
    }
  },
  load: ({ vcpu }, data) => {
    const s = check("cpu", CpuSection, data)
    guard("cpu", () => {
      // Virtual time first: the TSC MSR is set relative to it.
      const emulation: KvmEmulationState = {
        instructionsRetired: s.emulation.instructionsRetired,
        pendingExit: s.emulation.pendingExit as KvmRunExit | undefined,
        completions: s.emulation.completions,
        emulating: s.emulation.emulating,
        ...(s.emulation.debugStopped === true ? { debugStopped: true } : {})
      }
      vcpu.setEmulationState(emulation)
      vcpu.setRegs(s.regs)
      vcpu.setSregs(s.sregs as KvmSregs)
      vcpu.setDebugRegs({ db: [...s.debugRegs.db], dr6: s.debugRegs.dr6, dr7: s.debugRegs.dr7 })
      vcpu.setMsrs(s.msrs)
      vcpu.setVcpuEvents(s.events)
    })
  }
}

const eptSection: StateSection = {
  name: "ept",
  incremental: false,
  save: ({ vm }) => vm.getEptEntries(),
  load: ({ vm }, data) => {
    const entries = check("ept", EptSection, data)
    guard("ept", () => vm.setEptEntries(entries))
  }
}

const PAGE = 4096

/**
 * The dirty bitmap, reused from save to save (read within one save, never kept): a
 * fresh one every checkpoint costs more than the rest of the RAM section. Its words
 * view lets the scan skip zeros 32 frames at a time.
 */
let dirtyBitmap = new Uint8Array(0)
let dirtyWords = new Int32Array(0)

/** Guest RAM: the pages KVM_GET_DIRTY_LOG names, one memslot (slot 0 at guest-physical 0). */
const ramSection: StateSection = {
  name: "ram",
  incremental: true,
  save: ({ vm, ram }) => {
    const bytes = (ram.length / PAGE + 7) >>> 3
    if (dirtyBitmap.length !== bytes) {
      dirtyBitmap = new Uint8Array(bytes)
      dirtyWords = new Int32Array(dirtyBitmap.buffer, 0, bytes >>> 2)
    }
    const bitmap = vm.getDirtyLog(0, dirtyBitmap)
    const words = dirtyWords
    const frames: number[] = []
    for (let byte = 0; byte < bitmap.length; byte++) {
      if ((byte & 3) === 0 && byte >>> 2 < words.length && words[byte >>> 2] === 0) {
        byte += 3
        continue
      }
      if (bitmap[byte] === 0) continue
      for (let bit = 0; bit < 8; bit++) if ((bitmap[byte] & (1 << bit)) !== 0) frames.push(byte * 8 + bit)
    }
    const pages = new Uint8Array(frames.length * PAGE)
    for (let i = 0; i < frames.length; i++) pages.set(ram.subarray(frames[i] * PAGE, (frames[i] + 1) * PAGE), i * PAGE)
    return { frames, pages }
  },
  load: ({ ram }, data) => {
    const { frames, pages } = check("ram", RamSection, data)
    if (pages.length !== frames.length * PAGE) throw new VmStateError({ section: "ram", reason: `${frames.length} frames but ${pages.length} bytes of pages` })
    frames.forEach((f, i) => {
      if (!Number.isInteger(f) || (f + 1) * PAGE > ram.length) throw new VmStateError({ section: "ram", reason: `frame ${f} is outside guest RAM` })
      ram.set(pages.subarray(i * PAGE, (i + 1) * PAGE), f * PAGE)
    })
  }
}

/** Userspace device states, by bus: immutable plain data, so saving is taking references. */
const busSection = (name: "pio" | "mmio"): StateSection => ({
  name,
  incremental: false,
  save: (machine) => machine[name].snapshot(),
  load: (machine, data) => {
    const snapshot = check(name, BusSection, data) as BusSnapshot
    const restored = machine[name].restore(snapshot)
    if (Either.isLeft(restored)) throw new VmStateError({ section: name, reason: restored.left.message })
  }
})

const TimersSection = Schema.Struct({ ns: Schema.Number })

/**
 * Real-time mode: where the timers' clock stands, the host reading they last saw (as
 * QEMU's "timer" section keeps its clock's offsets). Virtual-time machines have none:
 * their clock is the instruction count.
 */
const timersSection: StateSection = {
  name: "timers",
  incremental: false,
  optional: true,
  save: ({ interrupts }) => (interrupts?.clock === undefined ? undefined : { ns: interrupts.clock.now }),
  load: ({ interrupts }, data) => {
    const { ns } = check("timers", TimersSection, data)
    if (interrupts?.clock === undefined) throw new VmStateError({ section: "timers", reason: "the machine has no real-time clock (--clock realtime)" })
    interrupts.clock.now = ns
  }
}

/**
 * Every section, in load order: RAM and the EPT before the vCPU (whose load drops what
 * the interpreter cached from memory), interrupts after the vCPU, devices last.
 */
export const stateSections: ReadonlyArray<StateSection> = [ramSection, eptSection, cpuSection, timersSection, interruptSection, busSection("pio"), busSection("mmio")]

/** Every section's data now. */
export const saveVmState = (machine: StatefulMachine): Record<string, unknown> => {
  const out: Record<string, unknown> = {}
  for (const section of stateSections) {
    const data = section.save(machine)
    if (data !== undefined) out[section.name] = data
  }
  return out
}

/**
 * Loads a checkpoint: `target` for every section, plus the incremental sections of
 * `earlier` checkpoints (oldest first). Throws VmStateError; a section missing from
 * the target is an error, one the machine does not have is ignored.
 */
export const loadVmState = (
  machine: StatefulMachine,
  target: Readonly<Record<string, unknown>>,
  earlier: ReadonlyArray<Readonly<Record<string, unknown>>>
): void => {
  for (const section of stateSections) {
    if (section.incremental) for (const e of earlier) if (e[section.name] !== undefined) section.load(machine, e[section.name])
    const data = target[section.name]
    if (data === undefined && section.optional === true) continue
    if (data === undefined) throw new VmStateError({ section: section.name, reason: "missing from the checkpoint" })
    section.load(machine, data)
  }
}
