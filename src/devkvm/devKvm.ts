/**
 * The real /dev/kvm behind the KVM-shaped API of `src/kernel/api.ts`: the second
 * implementation of the interface the model (`src/kernel/kvm.ts`) implements, so the
 * same userspace code can drive either. Each method is the ioctl it is named after.
 *
 * What this backend does not do (yet; issue 6):
 * - virtual time: real KVM counts no instructions, so `kickAt` does nothing and
 *   `instructionsRetired` is NaN; callers bound a run by the number of KVM_RUN calls;
 * - events: it writes nothing into the EventLog, because every event needs a virtual
 *   time and the kernel's own view (kvm_exit, kvm_pio, ...) would need tracepoints;
 * - in-kernel irqchip/PIT, KVM_GET_SUPPORTED_CPUID, KVM_EXIT_FAIL_ENTRY as its own
 *   exit (reported as an internal error with suberror 0), and changing or deleting
 *   memslots.
 * String I/O comes as KVM gives it: a KVM_EXIT_IO with `count` elements in `data`
 * (REP INS arrives as one exit of count n; REP OUTS one element per exit).
 */
import * as Data from "effect/Data"
import type { EventLog } from "../events/EventLog.ts"
import { KvmExit, KvmInternalError } from "../events/exitReasons.ts"
import type {
  CpuidEntry,
  KvmDtable,
  KvmRegs,
  KvmRunExit,
  KvmSegment,
  KvmSregs,
  KvmVcpuApi,
  KvmVmApi,
  UserspaceMemoryRegion
} from "../kernel/api.ts"
import {
  KVM_API_VERSION,
  KVM_CPUID_FLAG_SIGNIFCANT_INDEX,
  KVM_CREATE_VCPU,
  KVM_CREATE_VM,
  KVM_EXIT_IO_IN,
  KVM_GET_API_VERSION,
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
  SIZEOF_KVM_REGS,
  SIZEOF_KVM_SREGS,
  SIZEOF_KVM_USERSPACE_MEMORY_REGION
} from "./kvmAbi.ts"
import {
  EINTR,
  isMapFailed,
  loadLibc,
  MAP_ANONYMOUS,
  MAP_PRIVATE,
  MAP_SHARED,
  O_CLOEXEC,
  O_RDWR,
  PROT_READ,
  PROT_WRITE,
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

const PAGE_SIZE = 4096
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

/** A VM fd on the real /dev/kvm. */
export class DevKvmVm implements KvmVmApi {
  readonly shadows: ShadowSlot[] = []
  private readonly vcpus = new Map<number, DevKvmVcpu>()
  private readonly ownMappings: HostMapping[] = []
  private closed = false

  constructor(
    private readonly sys: DevKvmSystem,
    readonly fd: number
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
 * KVM_CREATE_VM on /dev/kvm. Same shape as `createVm` of the model (a `KernelFactory`);
 * the log is not written (see the header comment). Throws `KvmUnavailable` where
 * /dev/kvm cannot be used, `KvmIoctlFailed` if the kernel refuses the VM.
 */
export const createDevKvmVm = (_log?: EventLog): DevKvmVm => {
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
  return new DevKvmVm(s, fd)
}

// ---- the vCPU fd ------------------------------------------------------------------------

const INTERNAL_ERROR_NAMES: Record<number, string> = Object.fromEntries(Object.entries(KvmInternalError).map(([k, v]) => [v, k]))
const KVM_EXIT_NAMES: Record<number, string> = Object.fromEntries(Object.entries(KvmExit).map(([k, v]) => [v, k]))

/** A vCPU fd and its mmap'd `struct kvm_run`. */
export class DevKvmVcpu implements KvmVcpuApi {
  /** Real KVM counts no instructions: there is no virtual time on this backend. */
  readonly instructionsRetired = Number.NaN
  /** KVM_RUN calls made: what a caller can bound a run by instead of `kickAt`. */
  runs = 0

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

  /** A no-op: real KVM has no instruction counter to stop at. Bound runs by `runs` instead. */
  kickAt(_instructionsRetired: number): void {}

  // ---- KVM_RUN -------------------------------------------------------------

  run(): KvmRunExit {
    this.completeUserspaceExit()
    this.vm.syncToHost()
    this.runs++
    const r = this.libc.ioctlPtr(this.fd, KVM_RUN, null)
    const errno = r < 0 ? this.libc.errno() : 0
    this.vm.syncFromHost()
    if (r < 0) {
      // A signal interrupted the vCPU: KVM sets exit_reason KVM_EXIT_INTR and returns -EINTR.
      if (errno === EINTR) return this.leave({ _tag: "KVM_EXIT_INTR", exitReason: KvmExit.KVM_EXIT_INTR })
      throw new KvmIoctlFailed({ ioctl: "KVM_RUN", errno, reason: this.libc.strerror(errno) })
    }
    return this.leave(this.decodeExit())
  }

  private leave(exit: KvmRunExit): KvmRunExit {
    this.pendingExit = exit
    return exit
  }

  /** Userspace's answer to an IN or an MMIO read goes where KVM will read it on re-entry. */
  private completeUserspaceExit(): void {
    const exit = this.pendingExit
    this.pendingExit = undefined
    if (exit === undefined) return
    if (exit._tag === "KVM_EXIT_IO" && exit.direction === "in") this.kvmRun.set(exit.data, this.pendingDataOffset)
    else if (exit._tag === "KVM_EXIT_MMIO" && !exit.isWrite) this.kvmRun.set(exit.data, KvmRunOffset.mmio_data)
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
        return this.internalError(suberror, `KVM_EXIT_INTERNAL_ERROR ${name} at rip ${hex(this.getRegs().rip)}, data [${data.join(" ")}]`)
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
