/**
 * The real /dev/kvm behind the KVM-shaped API of `src/kernel/api.ts`: the second
 * implementation of the interface the model (`src/kernel/kvm.ts`) implements, so the
 * same userspace code can drive either. Each method is the ioctl it is named after.
 *
 * Virtual time: real KVM counts no instructions, so this backend's clock is the number
 * of KVM_RUN calls that entered the guest (`clock` = "exits"); `kickAt` stops the run
 * at such a count with `kvm_run.immediate_exit`, as QEMU kicks a vCPU.
 *
 * Events: given an EventLog, the vCPU logs what userspace sees of each KVM_RUN, in the
 * model's order and shape: `kvm_pio` and `kvm_mmio` from `kvm_run` (an IN or MMIO read
 * when userspace has answered it), then `kvm_userspace_exit`. What happened inside the
 * kernel (entries, exits handled there, page faults) is invisible here; where the host
 * allows, `tracepoints` hands over the host's own KVM tracepoints for each KVM_RUN,
 * logged as `Tracepoint` events ahead of that run's userspace events.
 *
 * Interrupts: KVM_CREATE_IRQCHIP, KVM_CREATE_PIT2 and KVM_IRQ_LINE (the machine's `kernel`
 * irqchip mode, the PIT on the host's clock). With them KVM blocks a HLT in the kernel,
 * and one with IF = 0 for ever; so that such a guest ends its run as on the model
 * (KVM_EXIT_HLT), a watchdog signal (SIGALRM) ends each KVM_RUN that lasts 100 ms, and
 * a vCPU then found halted with IF = 0 is reported as KVM_EXIT_HLT; otherwise it is
 * re-entered. The split and userspace modes, and the chips' state ioctls a checkpoint
 * needs, are refused (`KvmNotOffered`).
 *
 * Not done: KVM_GET_SUPPORTED_CPUID, KVM_EXIT_FAIL_ENTRY as its
 * own exit (reported as an internal error with suberror 0), and changing or deleting
 * memslots. String I/O comes as KVM gives it: a KVM_EXIT_IO with `count` elements in
 * `data` (REP INS arrives as one exit of count n; REP OUTS one element per exit).
 */
import * as Data from "effect/Data"
import type { EventLog } from "../events/EventLog.ts"
import type { LapicState } from "../hw/intc/lapic.ts"
import type { PitState } from "../hw/timer/i8254.ts"
import type { KernelFactory } from "../qemu/machine.ts"
import { KvmExit, KvmInternalError } from "../events/exitReasons.ts"
import {
  readExitData,
  type CpuidEntry,
  type KvmIrqchip,
  type KvmIrqchipVcpuApi,
  type KvmIrqchipVmApi,
  type KvmMpState,
  type KvmMsi,
  type KvmDtable,
  type KvmRegs,
  type KvmRunExit,
  type KvmSegment,
  type KvmSregs,
  type KvmVcpuApi,
  type KvmVmApi,
  type UserspaceMemoryRegion
} from "../kernel/api.ts"
import {
  KVM_API_VERSION,
  KVM_CPUID_FLAG_SIGNIFCANT_INDEX,
  KVM_CREATE_IRQCHIP,
  KVM_CREATE_PIT2,
  KVM_CREATE_VCPU,
  KVM_CREATE_VM,
  KVM_EXIT_IO_IN,
  KVM_GET_API_VERSION,
  KVM_GET_MP_STATE,
  KVM_INTERRUPT,
  KVM_IRQ_LINE,
  KVM_MP_STATE_HALTED,
  KVM_MP_STATE_RUNNABLE,
  KVM_PIT_SPEAKER_DUMMY,
  KVM_SET_MP_STATE,
  KVM_GET_REGS,
  KVM_GET_SREGS,
  KVM_GET_VCPU_MMAP_SIZE,
  KVM_RUN,
  KVM_SET_CPUID2,
  KVM_SET_REGS,
  KVM_SET_SREGS,
  KVM_SET_TSS_ADDR,
  KVM_SET_USER_MEMORY_REGION,
  KvmCpuidEntry2Offset,
  KvmRegsOffset,
  KvmRunOffset,
  KvmSegmentOffset,
  KvmSregsOffset,
  KvmUserspaceMemoryRegionOffset,
  SIZEOF_KVM_CPUID2,
  SIZEOF_KVM_CPUID_ENTRY2,
  SIZEOF_KVM_INTERRUPT,
  SIZEOF_KVM_IRQ_LEVEL,
  SIZEOF_KVM_MP_STATE,
  SIZEOF_KVM_PIT_CONFIG,
  SIZEOF_KVM_REGS,
  SIZEOF_KVM_SREGS,
  SIZEOF_KVM_USERSPACE_MEMORY_REGION
} from "./kvmAbi.ts"
import {
  EINTR,
  isMapFailed,
  ITIMER_REAL,
  loadLibc,
  MAP_ANONYMOUS,
  MAP_PRIVATE,
  MAP_SHARED,
  O_CLOEXEC,
  O_RDWR,
  PROT_READ,
  PROT_WRITE,
  SIZEOF_ITIMERVAL,
  type HostPointer,
  type Libc
} from "./libc.ts"

/** /dev/kvm cannot be used here: absent, not permitted, wrong API version, or no FFI. */
export class KvmUnavailable extends Data.TaggedError("KvmUnavailable")<{ readonly reason: string }> {
  override get message(): string {
    return `/dev/kvm is not usable: ${this.reason}`
  }
}

/** An ioctl on a KVM fd failed: which one, and errno as the kernel said it. */
export class KvmIoctlFailed extends Data.TaggedError("KvmIoctlFailed")<{
  readonly ioctl: string
  readonly errno: number
  readonly reason: string
}> {
  override get message(): string {
    return `${this.ioctl} failed: ${this.reason} (errno ${this.errno})`
  }
}

/** Something the real /dev/kvm has and this backend does not offer (yet): which ioctl or mode, and why. */
export class KvmNotOffered extends Data.TaggedError("KvmNotOffered")<{ readonly what: string; readonly why: string }> {
  override get message(): string {
    return `--backend kvm does not offer ${this.what}: ${this.why}`
  }
}

const PAGE_SIZE = 4096
const RFLAGS_IF = 0x200
/** Where QEMU puts the three pages VMX needs for real mode without unrestricted guest (KVM_SET_TSS_ADDR). */
const TSS_ADDR = 0xfffbd000

const hex = (n: number | bigint): string => `0x${n.toString(16)}`

// ---- /dev/kvm ------------------------------------------------------------------

/** The /dev/kvm fd: KVM_GET_API_VERSION checked, KVM_GET_VCPU_MMAP_SIZE read once. */
interface DevKvmSystem {
  readonly libc: Libc
  readonly fd: number
  readonly vcpuMmapSize: number
}

let system: DevKvmSystem | KvmUnavailable | undefined

const openSystem = (): DevKvmSystem | KvmUnavailable => {
  let libc: Libc
  try {
    libc = loadLibc()
  } catch (cause) {
    return new KvmUnavailable({ reason: `cannot load libc through koffi: ${cause instanceof Error ? cause.message : String(cause)}` })
  }
  const fd = libc.open("/dev/kvm", O_RDWR | O_CLOEXEC)
  if (fd < 0) {
    const errno = libc.errno()
    return new KvmUnavailable({ reason: `open("/dev/kvm"): ${libc.strerror(errno)}` })
  }
  const version = libc.ioctlInt(fd, KVM_GET_API_VERSION, 0)
  if (version !== KVM_API_VERSION) {
    libc.close(fd)
    return new KvmUnavailable({ reason: `KVM_GET_API_VERSION is ${version}, expected ${KVM_API_VERSION}` })
  }
  const vcpuMmapSize = libc.ioctlInt(fd, KVM_GET_VCPU_MMAP_SIZE, 0)
  if (vcpuMmapSize < PAGE_SIZE) {
    libc.close(fd)
    return new KvmUnavailable({ reason: `KVM_GET_VCPU_MMAP_SIZE: ${libc.strerror(libc.errno())}` })
  }
  return { libc, fd, vcpuMmapSize }
}

/** Opens /dev/kvm once per process; the same answer thereafter. */
const devKvm = (): DevKvmSystem | KvmUnavailable => (system ??= openSystem())

/** Why /dev/kvm cannot run guests here, or undefined where it can. */
export const devKvmUnavailable = (): KvmUnavailable | undefined => {
  const s = devKvm()
  return s instanceof KvmUnavailable ? s : undefined
}

/** Whether /dev/kvm can run guests here, and if not, why: for skipping tests with a reason. */
export const devKvmAvailability = (): { readonly usable: true } | { readonly usable: false; readonly reason: string } => {
  const s = devKvm()
  if (s instanceof KvmUnavailable) return { usable: false, reason: s.message }
  return { usable: true }
}

const ioctlError = (libc: Libc, ioctl: string): KvmIoctlFailed => {
  const errno = libc.errno()
  return new KvmIoctlFailed({ ioctl, errno, reason: libc.strerror(errno) })
}

// ---- the HLT watchdog (in-kernel irqchip) ------------------------------------------

const WATCHDOG_MS = 100
const watchdogArm = new Uint8Array(SIZEOF_ITIMERVAL)
// it_value (the second timeval) = 100 ms, it_interval 0: one shot per KVM_RUN.
new DataView(watchdogArm.buffer).setBigInt64(24, BigInt(WATCHDOG_MS * 1000), true)
const watchdogDisarm = new Uint8Array(SIZEOF_ITIMERVAL)
const watchdogLeft = new Uint8Array(SIZEOF_ITIMERVAL)
let watchdogHandled = false

/** Node's default for SIGALRM ends the process; a listener makes it only interrupt the ioctl (EINTR). */
const handleWatchdogSignal = (): void => {
  if (watchdogHandled) return
  watchdogHandled = true
  process.on("SIGALRM", () => {})
}

/** Disarms the watchdog; true if it had fired (nothing was left of it). */
const watchdogFired = (libc: Libc): boolean => {
  libc.setitimer(ITIMER_REAL, watchdogDisarm, watchdogLeft)
  return watchdogLeft.every((b) => b === 0)
}

// ---- guest memory ----------------------------------------------------------------

interface HostMapping {
  readonly ptr: HostPointer
  readonly address: bigint
  readonly size: number
}

/** Guest RAM this module mapped, by the ArrayBuffer JS sees it through. */
const guestMemory = new WeakMap<ArrayBufferLike, HostMapping>()

/**
 * Anonymous host memory KVM can map into a guest, as a Uint8Array userspace reads and
 * writes directly (koffi views the mapping without a copy). A memslot given memory
 * from here is shared with the guest, as in QEMU; any other Uint8Array is copied in
 * before and out after every KVM_RUN. The mapping lives as long as the process:
 * unmapping it under a live view would crash, so only `freeGuestMemory` does that.
 */
export const allocateGuestMemory = (size: number): Uint8Array => {
  const s = devKvm()
  if (s instanceof KvmUnavailable) throw s
  const mapping = mapAnonymous(s.libc, size)
  const memory = new Uint8Array(s.libc.view(mapping.ptr, size))
  guestMemory.set(memory.buffer, mapping)
  return memory
}

/** Unmaps memory from `allocateGuestMemory`; the array must not be touched afterwards. */
export const freeGuestMemory = (memory: Uint8Array): void => {
  const mapping = guestMemory.get(memory.buffer)
  const s = devKvm()
  if (mapping === undefined || s instanceof KvmUnavailable) return
  guestMemory.delete(memory.buffer)
  s.libc.munmap(mapping.ptr, mapping.size)
}

const mapAnonymous = (libc: Libc, size: number): HostMapping => {
  const ptr = libc.mmap(size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
  if (isMapFailed(libc, ptr)) throw ioctlError(libc, `mmap(${size} bytes of guest memory)`)
  return { ptr, address: libc.address(ptr), size }
}

/** A memslot whose JS array is not host memory KVM sees: a shadow mapping, synchronised around KVM_RUN. */
interface ShadowSlot {
  readonly user: Uint8Array
  readonly shadow: Uint8Array
}

// ---- the VM fd -----------------------------------------------------------------------

/** One host tracepoint line: its name and its fields as tracefs prints them. */
export interface HostTracepoint {
  readonly name: string
  readonly fields: string
}

/** Where the host's KVM tracepoints for this VM come from: everything since the last call. */
export interface TracepointSource {
  drain(): ReadonlyArray<HostTracepoint>
}

export interface DevKvmVmOptions {
  readonly tracepoints?: TracepointSource
}

const notOffered = (what: string, why: string): KvmNotOffered => new KvmNotOffered({ what, why })
const CHECKPOINT_STATE = "its state is not converted to the chip models' (checkpoints are the model's)"

/** A VM fd on the real /dev/kvm. */
export class DevKvmVm implements KvmVmApi, KvmIrqchipVmApi {
  readonly shadows: ShadowSlot[] = []
  /** KVM_CREATE_IRQCHIP was done: HLT blocks in the kernel, so KVM_RUN runs under the watchdog. */
  irqchip = false
  private readonly vcpus = new Map<number, DevKvmVcpu>()
  private readonly ownMappings: HostMapping[] = []
  private closed = false

  constructor(
    private readonly sys: DevKvmSystem,
    readonly fd: number,
    readonly log: EventLog | undefined,
    readonly tracepoints: TracepointSource | undefined
  ) {}

  setUserMemoryRegion(region: UserspaceMemoryRegion): void {
    const { slot, guestPhysAddr, memory } = region
    const size = memory.length
    if ((guestPhysAddr & 0xfff) !== 0 || (size & 0xfff) !== 0 || size === 0) {
      throw new RangeError(`memslot ${slot}: base ${hex(guestPhysAddr)} and size ${size} must be non-zero multiples of 4 KiB`)
    }
    const libc = this.sys.libc
    let address: bigint
    const mapped = guestMemory.get(memory.buffer)
    if (mapped !== undefined && memory.byteOffset % PAGE_SIZE === 0 && memory.byteOffset + size <= mapped.size) {
      address = mapped.address + BigInt(memory.byteOffset)
    } else {
      const shadow = mapAnonymous(libc, size)
      this.ownMappings.push(shadow)
      const view = new Uint8Array(libc.view(shadow.ptr, size))
      view.set(memory)
      this.shadows.push({ user: memory, shadow: view })
      address = shadow.address
    }
    const buf = new Uint8Array(SIZEOF_KVM_USERSPACE_MEMORY_REGION)
    const dv = new DataView(buf.buffer)
    const o = KvmUserspaceMemoryRegionOffset
    dv.setUint32(o.slot, slot, true)
    dv.setUint32(o.flags, 0, true)
    dv.setBigUint64(o.guest_phys_addr, BigInt(guestPhysAddr), true)
    dv.setBigUint64(o.memory_size, BigInt(size), true)
    dv.setBigUint64(o.userspace_addr, address, true)
    if (libc.ioctlPtr(this.fd, KVM_SET_USER_MEMORY_REGION, buf) < 0) throw ioctlError(libc, `KVM_SET_USER_MEMORY_REGION(slot ${slot})`)
  }

  createVcpu(id: number): KvmVcpuApi {
    if (this.vcpus.has(id)) throw new RangeError(`vCPU ${id} already exists`)
    const libc = this.sys.libc
    const fd = libc.ioctlInt(this.fd, KVM_CREATE_VCPU, id)
    if (fd < 0) throw ioctlError(libc, `KVM_CREATE_VCPU(${id})`)
    const size = this.sys.vcpuMmapSize
    const ptr = libc.mmap(size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
    if (isMapFailed(libc, ptr)) {
      const e = ioctlError(libc, "mmap(struct kvm_run)")
      libc.close(fd)
      throw e
    }
    const vcpu = new DevKvmVcpu(id, this, libc, fd, ptr, size)
    this.vcpus.set(id, vcpu)
    return vcpu
  }

  // ---- the in-kernel irqchip ----------------------------------------------------------

  private vmIoctl(request: number, name: string, buf: Uint8Array | null): void {
    if (this.sys.libc.ioctlPtr(this.fd, request, buf) < 0) throw ioctlError(this.sys.libc, name)
  }

  /** KVM's timers run on the host's clock; only the default rate (shift 0) means "no scaling". */
  setIcountShift(shift: number): void {
    if (shift !== 0) throw notOffered("--icount-shift", "real KVM counts no instructions")
  }

  createIrqchip(): void {
    if (this.sys.libc.ioctlInt(this.fd, KVM_CREATE_IRQCHIP, 0) < 0) throw ioctlError(this.sys.libc, "KVM_CREATE_IRQCHIP")
    this.irqchip = true
    handleWatchdogSignal()
  }

  enableSplitIrqchip(): void {
    throw notOffered("--irqchip split", "KVM_CAP_SPLIT_IRQCHIP and KVM_SIGNAL_MSI are not wired to /dev/kvm")
  }

  createPit2(): void {
    const config = new Uint8Array(SIZEOF_KVM_PIT_CONFIG)
    new DataView(config.buffer).setUint32(0, KVM_PIT_SPEAKER_DUMMY, true)
    this.vmIoctl(KVM_CREATE_PIT2, "KVM_CREATE_PIT2", config)
  }

  irqLine(irq: number, level: boolean): void {
    const buf = new Uint8Array(SIZEOF_KVM_IRQ_LEVEL)
    const dv = new DataView(buf.buffer)
    dv.setUint32(0, irq, true)
    dv.setUint32(4, level ? 1 : 0, true)
    this.vmIoctl(KVM_IRQ_LINE, `KVM_IRQ_LINE(${irq}, ${level ? 1 : 0})`, buf)
  }

  signalMsi(_msi: KvmMsi): void {
    throw notOffered("KVM_SIGNAL_MSI", "only the split irqchip sends MSIs, and it is not wired to /dev/kvm")
  }

  getIrqchip(_chipId: KvmIrqchip["chipId"]): KvmIrqchip {
    throw notOffered("KVM_GET_IRQCHIP", CHECKPOINT_STATE)
  }

  setIrqchip(_chip: KvmIrqchip): void {
    throw notOffered("KVM_SET_IRQCHIP", CHECKPOINT_STATE)
  }

  getPit2(): PitState {
    throw notOffered("KVM_GET_PIT2", CHECKPOINT_STATE)
  }

  setPit2(_state: PitState): void {
    throw notOffered("KVM_SET_PIT2", CHECKPOINT_STATE)
  }

  /** Closes the vCPU and VM fds and unmaps what this VM mapped (shadow memory, kvm_run). */
  close(): void {
    if (this.closed) return
    this.closed = true
    const libc = this.sys.libc
    for (const v of this.vcpus.values()) v.close()
    libc.close(this.fd)
    for (const m of this.ownMappings) libc.munmap(m.ptr, m.size)
  }

  /** Copy-in/copy-out memslots: userspace's array → host memory before KVM_RUN, back after. */
  syncToHost(): void {
    for (const s of this.shadows) s.shadow.set(s.user)
  }

  syncFromHost(): void {
    for (const s of this.shadows) s.user.set(s.shadow)
  }
}

/**
 * KVM_CREATE_VM on /dev/kvm. Same shape as `createVm` of the model; without a log no
 * events are written. Throws `KvmUnavailable` where /dev/kvm cannot be used,
 * `KvmIoctlFailed` if the kernel refuses the VM.
 */
export const createDevKvmVm = (log?: EventLog, options: DevKvmVmOptions = {}): DevKvmVm => {
  const s = devKvm()
  if (s instanceof KvmUnavailable) throw s
  const fd = s.libc.ioctlInt(s.fd, KVM_CREATE_VM, 0)
  if (fd < 0) throw ioctlError(s.libc, "KVM_CREATE_VM")
  // What QEMU's kvm_arch_init does; VMX needs it for real mode without unrestricted guest, SVM ignores it.
  if (s.libc.ioctlInt(fd, KVM_SET_TSS_ADDR, TSS_ADDR) < 0) {
    const e = ioctlError(s.libc, "KVM_SET_TSS_ADDR")
    s.libc.close(fd)
    throw e
  }
  return new DevKvmVm(s, fd, log, options.tracepoints)
}

/** The machine's kernel on /dev/kvm: VMs from `createDevKvmVm`, guest RAM that KVM can map. */
export const devKvmKernel = (options: DevKvmVmOptions = {}): KernelFactory =>
  Object.assign((log: EventLog) => createDevKvmVm(log, options), { allocateRam: allocateGuestMemory })

// ---- the vCPU fd ------------------------------------------------------------------------

const INTERNAL_ERROR_NAMES: Record<number, string> = Object.fromEntries(Object.entries(KvmInternalError).map(([k, v]) => [v, k]))
const KVM_EXIT_NAMES: Record<number, string> = Object.fromEntries(Object.entries(KvmExit).map(([k, v]) => [v, k]))

/** A vCPU fd and its mmap'd `struct kvm_run`. */
export class DevKvmVcpu implements KvmVcpuApi, KvmIrqchipVcpuApi {
  /** Real KVM counts no instructions: virtual time here is KVM_RUN calls that entered the guest. */
  readonly clock = "exits"
  /** KVM_RUN calls that entered the guest: what a caller can bound a run by. */
  runs = 0
  private kickTime = Number.POSITIVE_INFINITY

  private readonly kvmRun: Uint8Array
  private readonly kvmRunView: DataView
  private readonly regsBuf = new Uint8Array(SIZEOF_KVM_REGS)
  private readonly regsView = new DataView(this.regsBuf.buffer)
  private readonly sregsBuf = new Uint8Array(SIZEOF_KVM_SREGS)
  private readonly sregsView = new DataView(this.sregsBuf.buffer)
  /** The exit KVM_RUN returned last: IN and MMIO-read data userspace filled go back into kvm_run. */
  private pendingExit: KvmRunExit | undefined
  private pendingDataOffset = 0

  constructor(
    readonly id: number,
    private readonly vm: DevKvmVm,
    private readonly libc: Libc,
    readonly fd: number,
    private readonly kvmRunPtr: HostPointer,
    private readonly kvmRunSize: number
  ) {
    this.kvmRun = new Uint8Array(libc.view(kvmRunPtr, kvmRunSize))
    this.kvmRunView = new DataView(this.kvmRun.buffer)
  }

  close(): void {
    this.libc.munmap(this.kvmRunPtr, this.kvmRunSize)
    this.libc.close(this.fd)
  }

  /** The virtual time of this backend: KVM_RUN calls that entered the guest. */
  get instructionsRetired(): number {
    return this.runs
  }

  /** The next KVM_RUN at or after this many runs returns KVM_EXIT_INTR without entering the guest. */
  kickAt(runs: number): void {
    this.kickTime = runs
  }

  // ---- KVM_RUN -------------------------------------------------------------

  run(): KvmRunExit {
    this.completeUserspaceExit()
    // immediate_exit: KVM_RUN returns -EINTR before entering, QEMU's way to kick a vCPU.
    const kicked = this.runs >= this.kickTime
    this.kvmRun[KvmRunOffset.immediate_exit] = kicked ? 1 : 0
    this.vm.syncToHost()
    const watched = this.vm.irqchip && !kicked
    let r: number
    let errno: number
    let haltedForGood = false
    for (;;) {
      if (watched) this.libc.setitimer(ITIMER_REAL, watchdogArm, null)
      r = this.libc.ioctlPtr(this.fd, KVM_RUN, null)
      errno = r < 0 ? this.libc.errno() : 0
      // Only the watchdog's own EINTR is looked at; any other signal ends the run below.
      if (!(watched && watchdogFired(this.libc) && r < 0 && errno === EINTR)) break
      haltedForGood = this.getMpState() === "halted" && (this.getRegs().rflags & RFLAGS_IF) === 0
      if (haltedForGood) break
    }
    if (!kicked) this.runs++
    this.vm.syncFromHost()
    this.logTracepoints()
    // What the model's kernel returns for a HLT that nothing can wake.
    if (haltedForGood) return this.leave({ _tag: "KVM_EXIT_HLT", exitReason: KvmExit.KVM_EXIT_HLT })
    if (r < 0) {
      // Our kick: KVM sets exit_reason KVM_EXIT_INTR and returns -EINTR.
      if (errno === EINTR && kicked) return this.leave({ _tag: "KVM_EXIT_INTR", exitReason: KvmExit.KVM_EXIT_INTR }, "exit budget reached")
      // A signal (Ctrl-C) is the host asking to stop: the vCPU loop is synchronous, and a
      // guest that never exits would otherwise be re-entered before any handler could run.
      throw new KvmIoctlFailed({ ioctl: "KVM_RUN", errno, reason: errno === EINTR ? "interrupted by a signal" : this.libc.strerror(errno) })
    }
    const exit = this.decodeExit()
    this.logExitData(exit)
    return this.leave(exit, exit._tag === "KVM_EXIT_INTERNAL_ERROR" ? exit.detail : undefined)
  }

  private leave(exit: KvmRunExit, detail?: string): KvmRunExit {
    const log = this.vm.log
    if (log !== undefined) {
      log.push({
        _tag: "UserspaceExit",
        seq: log.nextSeq,
        vcpu: this.id,
        time: this.runs,
        exitReason: exit.exitReason,
        ...(detail === undefined ? {} : { detail })
      })
    }
    this.pendingExit = exit
    return exit
  }

  /** Userspace's answer to an IN or an MMIO read goes where KVM will read it on re-entry. */
  private completeUserspaceExit(): void {
    const exit = this.pendingExit
    this.pendingExit = undefined
    if (exit === undefined) return
    if (exit._tag === "KVM_EXIT_IO" && exit.direction === "in") {
      this.kvmRun.set(exit.data, this.pendingDataOffset)
      this.logPio(exit)
    } else if (exit._tag === "KVM_EXIT_MMIO" && !exit.isWrite) {
      this.kvmRun.set(exit.data, KvmRunOffset.mmio_data)
      this.logMmio("read", exit)
    }
  }

  // ---- events: what userspace sees, in the model's order -------------------------

  /** What an exit carries out of the guest: OUT values, an MMIO write, an MMIO read still to answer. */
  private logExitData(exit: KvmRunExit): void {
    if (exit._tag === "KVM_EXIT_IO" && exit.direction === "out") this.logPio(exit)
    else if (exit._tag === "KVM_EXIT_MMIO") this.logMmio(exit.isWrite ? "write" : "unsatisfied-read", exit)
  }

  private logPio(exit: Extract<KvmRunExit, { _tag: "KVM_EXIT_IO" }>): void {
    const log = this.vm.log
    if (log === undefined) return
    const values: number[] = []
    for (let i = 0; i < exit.count; i++) values.push(readExitData(exit.data, i * exit.size, exit.size))
    log.push({ _tag: "Pio", seq: log.nextSeq, vcpu: this.id, time: this.runs, direction: exit.direction, port: exit.port, size: exit.size, count: exit.count, values })
  }

  private logMmio(op: "read" | "write" | "unsatisfied-read", exit: Extract<KvmRunExit, { _tag: "KVM_EXIT_MMIO" }>): void {
    const log = this.vm.log
    if (log === undefined) return
    const value = op === "unsatisfied-read" ? 0 : readExitData(exit.data, 0, exit.len)
    log.push({ _tag: "Mmio", seq: log.nextSeq, vcpu: this.id, time: this.runs, op, gpa: exit.physAddr, length: exit.len, value })
  }

  /** The host kernel's view of the KVM_RUN that just returned, ahead of what userspace saw. */
  private logTracepoints(): void {
    const log = this.vm.log
    const source = this.vm.tracepoints
    if (log === undefined || source === undefined) return
    for (const t of source.drain()) {
      log.push({ _tag: "Tracepoint", seq: log.nextSeq, vcpu: this.id, time: this.runs, name: t.name, fields: t.fields })
    }
  }

  private decodeExit(): KvmRunExit {
    const dv = this.kvmRunView
    const o = KvmRunOffset
    const reason = dv.getUint32(o.exit_reason, true)
    switch (reason) {
      case KvmExit.KVM_EXIT_IO: {
        const size = dv.getUint8(o.io_size) as 1 | 2 | 4
        const count = dv.getUint32(o.io_count, true)
        const offset = Number(dv.getBigUint64(o.io_data_offset, true))
        this.pendingDataOffset = offset
        const isIn = dv.getUint8(o.io_direction) === KVM_EXIT_IO_IN
        return {
          _tag: "KVM_EXIT_IO",
          exitReason: KvmExit.KVM_EXIT_IO,
          direction: isIn ? "in" : "out",
          port: dv.getUint16(o.io_port, true),
          size,
          count,
          // A copy, so the exit value stays as it was when later runs reuse kvm_run; for IN,
          // zeros as the model gives (kvm_run holds stale bytes there until userspace fills it).
          data: isIn ? new Uint8Array(size * count) : this.kvmRun.slice(offset, offset + size * count)
        }
      }
      case KvmExit.KVM_EXIT_MMIO: {
        const len = dv.getUint32(o.mmio_len, true) as 1 | 2 | 4
        const isWrite = dv.getUint8(o.mmio_is_write) !== 0
        return {
          _tag: "KVM_EXIT_MMIO",
          exitReason: KvmExit.KVM_EXIT_MMIO,
          physAddr: Number(dv.getBigUint64(o.mmio_phys_addr, true)),
          isWrite,
          len,
          data: isWrite ? this.kvmRun.slice(o.mmio_data, o.mmio_data + len) : new Uint8Array(len)
        }
      }
      case KvmExit.KVM_EXIT_HLT:
        return { _tag: "KVM_EXIT_HLT", exitReason: KvmExit.KVM_EXIT_HLT }
      case KvmExit.KVM_EXIT_SHUTDOWN:
        return { _tag: "KVM_EXIT_SHUTDOWN", exitReason: KvmExit.KVM_EXIT_SHUTDOWN }
      case KvmExit.KVM_EXIT_INTR:
        return { _tag: "KVM_EXIT_INTR", exitReason: KvmExit.KVM_EXIT_INTR }
      case KvmExit.KVM_EXIT_INTERNAL_ERROR: {
        const suberror = dv.getUint32(o.internal_suberror, true)
        const ndata = Math.min(dv.getUint32(o.internal_ndata, true), 16)
        const data: string[] = []
        for (let i = 0; i < ndata; i++) data.push(hex(dv.getBigUint64(o.internal_data + 8 * i, true)))
        const name = INTERNAL_ERROR_NAMES[suberror] ?? `suberror ${suberror}`
        const rip = hex(this.getRegs().rip)
        // struct emulation_failure: flags, then (KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES) u8 insn_size, u8 insn_bytes[15].
        const withBytes = suberror === KvmInternalError.KVM_INTERNAL_ERROR_EMULATION && ndata >= 3 && (dv.getBigUint64(o.internal_data, true) & 1n) === 1n
        if (withBytes) {
          const size = Math.min(dv.getUint8(o.internal_data + 8), 15)
          const bytes = Array.from(this.kvmRun.subarray(o.internal_data + 9, o.internal_data + 9 + size), (b) => b.toString(16).padStart(2, "0"))
          return this.internalError(suberror, `KVM_EXIT_INTERNAL_ERROR ${name}: KVM's emulator failed at rip ${rip} [${bytes.join(" ")}]`)
        }
        return this.internalError(suberror, `KVM_EXIT_INTERNAL_ERROR ${name} at rip ${rip}, data [${data.join(" ")}]`)
      }
      case KvmExit.KVM_EXIT_FAIL_ENTRY: {
        // The API has no FAIL_ENTRY member yet; suberror 0 marks "not an internal error proper".
        const why = dv.getBigUint64(o.fail_entry_hardware_entry_failure_reason, true)
        return this.internalError(0, `KVM_EXIT_FAIL_ENTRY: hardware_entry_failure_reason ${hex(why)} on cpu ${dv.getUint32(o.fail_entry_cpu, true)}`)
      }
      case KvmExit.KVM_EXIT_EXCEPTION:
        return this.internalError(
          0,
          `KVM_EXIT_EXCEPTION: vector ${dv.getUint32(o.ex_exception, true)} error code ${hex(dv.getUint32(o.ex_error_code, true))}`
        )
      case KvmExit.KVM_EXIT_UNKNOWN:
        return this.internalError(0, `KVM_EXIT_UNKNOWN: hardware_exit_reason ${hex(dv.getBigUint64(o.hw_hardware_exit_reason, true))}`)
      default:
        return this.internalError(0, `${KVM_EXIT_NAMES[reason] ?? `exit reason ${reason}`} is not handled by this backend`)
    }
  }

  private internalError(suberror: number, detail: string): KvmRunExit {
    return { _tag: "KVM_EXIT_INTERNAL_ERROR", exitReason: KvmExit.KVM_EXIT_INTERNAL_ERROR, suberror, detail }
  }

  // ---- interrupts ---------------------------------------------------------------------

  /** KVM_INTERRUPT: KVM refuses it (ENXIO) while the irqchip is in the kernel, the only mode offered here. */
  interrupt(vector: number): void {
    const buf = new Uint8Array(SIZEOF_KVM_INTERRUPT)
    new DataView(buf.buffer).setUint32(0, vector, true)
    this.ioctl(KVM_INTERRUPT, `KVM_INTERRUPT(${vector})`, buf)
  }

  get requestInterruptWindow(): boolean {
    return this.kvmRun[KvmRunOffset.request_interrupt_window] !== 0
  }

  set requestInterruptWindow(on: boolean) {
    this.kvmRun[KvmRunOffset.request_interrupt_window] = on ? 1 : 0
  }

  get readyForInterruptInjection(): boolean {
    return this.kvmRun[KvmRunOffset.ready_for_interrupt_injection] !== 0
  }

  get ifFlag(): boolean {
    return this.kvmRun[KvmRunOffset.if_flag] !== 0
  }

  getLapic(): LapicState | undefined {
    throw notOffered("KVM_GET_LAPIC", CHECKPOINT_STATE)
  }

  setLapic(_state: LapicState): void {
    throw notOffered("KVM_SET_LAPIC", CHECKPOINT_STATE)
  }

  getMpState(): KvmMpState {
    const buf = new Uint8Array(SIZEOF_KVM_MP_STATE)
    this.ioctl(KVM_GET_MP_STATE, "KVM_GET_MP_STATE", buf)
    return new DataView(buf.buffer).getUint32(0, true) === KVM_MP_STATE_HALTED ? "halted" : "runnable"
  }

  setMpState(state: KvmMpState): void {
    const buf = new Uint8Array(SIZEOF_KVM_MP_STATE)
    new DataView(buf.buffer).setUint32(0, state === "halted" ? KVM_MP_STATE_HALTED : KVM_MP_STATE_RUNNABLE, true)
    this.ioctl(KVM_SET_MP_STATE, "KVM_SET_MP_STATE", buf)
  }

  // ---- register ioctls -------------------------------------------------------------

  private ioctl(request: number, name: string, buf: Uint8Array | null): void {
    if (this.libc.ioctlPtr(this.fd, request, buf) < 0) throw ioctlError(this.libc, name)
  }

  /** The low 32 bits of each register: the API describes a 32-bit guest. */
  getRegs(): KvmRegs {
    this.ioctl(KVM_GET_REGS, "KVM_GET_REGS", this.regsBuf)
    const dv = this.regsView
    const o = KvmRegsOffset
    const r = (off: number) => dv.getUint32(off, true)
    return {
      rax: r(o.rax), rbx: r(o.rbx), rcx: r(o.rcx), rdx: r(o.rdx), rsi: r(o.rsi), rdi: r(o.rdi),
      rsp: r(o.rsp), rbp: r(o.rbp), rip: r(o.rip), rflags: r(o.rflags)
    }
  }

  /** Upper halves and r8–r15 are zero, as a 32-bit guest leaves them. */
  setRegs(regs: KvmRegs): void {
    this.regsBuf.fill(0)
    const dv = this.regsView
    const o = KvmRegsOffset
    const w = (off: number, v: number) => dv.setUint32(off, v >>> 0, true)
    w(o.rax, regs.rax); w(o.rbx, regs.rbx); w(o.rcx, regs.rcx); w(o.rdx, regs.rdx); w(o.rsi, regs.rsi)
    w(o.rdi, regs.rdi); w(o.rsp, regs.rsp); w(o.rbp, regs.rbp); w(o.rip, regs.rip); w(o.rflags, regs.rflags)
    this.ioctl(KVM_SET_REGS, "KVM_SET_REGS", this.regsBuf)
  }

  getSregs(): KvmSregs {
    this.ioctl(KVM_GET_SREGS, "KVM_GET_SREGS", this.sregsBuf)
    const dv = this.sregsView
    const o = KvmSregsOffset
    const seg = (at: number): KvmSegment => {
      const s = KvmSegmentOffset
      const flag = (f: number) => dv.getUint8(at + f) !== 0
      return {
        base: Number(dv.getBigUint64(at + s.base, true) & 0xffffffffn),
        limit: dv.getUint32(at + s.limit, true),
        selector: dv.getUint16(at + s.selector, true),
        type: dv.getUint8(at + s.type),
        present: flag(s.present),
        dpl: dv.getUint8(at + s.dpl),
        db: flag(s.db),
        s: flag(s.s),
        l: flag(s.l),
        g: flag(s.g),
        avl: flag(s.avl),
        unusable: flag(s.unusable)
      }
    }
    const dtable = (at: number): KvmDtable => ({ base: Number(dv.getBigUint64(at, true) & 0xffffffffn), limit: dv.getUint16(at + 8, true) })
    const cr = (at: number) => Number(dv.getBigUint64(at, true) & 0xffffffffn)
    return {
      cs: seg(o.cs), ds: seg(o.ds), es: seg(o.es), fs: seg(o.fs), gs: seg(o.gs), ss: seg(o.ss),
      gdt: dtable(o.gdt), idt: dtable(o.idt),
      cr0: cr(o.cr0), cr2: cr(o.cr2), cr3: cr(o.cr3), cr4: cr(o.cr4)
    }
  }

  /**
   * Read-modify-write: TR, LDTR, CR8, EFER, APIC base and the interrupt bitmap are not in
   * the API, so they keep what KVM has (its reset values unless something changed them).
   */
  setSregs(sregs: KvmSregs): void {
    this.ioctl(KVM_GET_SREGS, "KVM_GET_SREGS", this.sregsBuf)
    const dv = this.sregsView
    const o = KvmSregsOffset
    const seg = (at: number, v: KvmSegment) => {
      const s = KvmSegmentOffset
      const flag = (f: number, b: boolean) => dv.setUint8(at + f, b ? 1 : 0)
      dv.setBigUint64(at + s.base, BigInt(v.base >>> 0), true)
      dv.setUint32(at + s.limit, v.limit >>> 0, true)
      dv.setUint16(at + s.selector, v.selector, true)
      dv.setUint8(at + s.type, v.type)
      flag(s.present, v.present)
      dv.setUint8(at + s.dpl, v.dpl)
      flag(s.db, v.db); flag(s.s, v.s); flag(s.l, v.l); flag(s.g, v.g); flag(s.avl, v.avl); flag(s.unusable, v.unusable)
    }
    const dtable = (at: number, t: KvmDtable) => {
      dv.setBigUint64(at, BigInt(t.base >>> 0), true)
      dv.setUint16(at + 8, t.limit, true)
    }
    seg(o.cs, sregs.cs); seg(o.ds, sregs.ds); seg(o.es, sregs.es); seg(o.fs, sregs.fs); seg(o.gs, sregs.gs); seg(o.ss, sregs.ss)
    dtable(o.gdt, sregs.gdt); dtable(o.idt, sregs.idt)
    dv.setBigUint64(o.cr0, BigInt(sregs.cr0 >>> 0), true)
    dv.setBigUint64(o.cr2, BigInt(sregs.cr2 >>> 0), true)
    dv.setBigUint64(o.cr3, BigInt(sregs.cr3 >>> 0), true)
    dv.setBigUint64(o.cr4, BigInt(sregs.cr4 >>> 0), true)
    this.ioctl(KVM_SET_SREGS, "KVM_SET_SREGS", this.sregsBuf)
  }

  /** KVM_SET_CPUID2 with exactly the table userspace gives, as the model answers CPUID from it. */
  setCpuid(entries: ReadonlyArray<CpuidEntry>): void {
    const buf = new Uint8Array(SIZEOF_KVM_CPUID2 + entries.length * SIZEOF_KVM_CPUID_ENTRY2)
    const dv = new DataView(buf.buffer)
    dv.setUint32(0, entries.length, true)
    const o = KvmCpuidEntry2Offset
    entries.forEach((e, i) => {
      const at = SIZEOF_KVM_CPUID2 + i * SIZEOF_KVM_CPUID_ENTRY2
      dv.setUint32(at + o.function, e.function >>> 0, true)
      dv.setUint32(at + o.index, e.index >>> 0, true)
      dv.setUint32(at + o.flags, e.significantIndex ? KVM_CPUID_FLAG_SIGNIFCANT_INDEX : 0, true)
      dv.setUint32(at + o.eax, e.eax >>> 0, true)
      dv.setUint32(at + o.ebx, e.ebx >>> 0, true)
      dv.setUint32(at + o.ecx, e.ecx >>> 0, true)
      dv.setUint32(at + o.edx, e.edx >>> 0, true)
    })
    this.ioctl(KVM_SET_CPUID2, "KVM_SET_CPUID2", buf)
  }
}
