/**
 * The five libc calls a VMM needs to drive /dev/kvm (open, ioctl, mmap, munmap, close),
 * and mount/umount2 for tracefs, bound through koffi. Loaded lazily: importing this
 * module on a machine without koffi's native part, or without glibc, must not fail
 * until a KVM backend is actually asked for.
 */
import { createRequire } from "node:module"

export const O_RDWR = 0o2
export const O_CLOEXEC = 0o2000000
export const PROT_READ = 0x1
export const PROT_WRITE = 0x2
export const MAP_SHARED = 0x01
export const MAP_PRIVATE = 0x02
export const MAP_ANONYMOUS = 0x20
export const EINTR = 4
export const ITIMER_REAL = 0
/** `struct itimerval`: it_interval and it_value, each a `struct timeval` of two 64-bit fields. */
export const SIZEOF_ITIMERVAL = 32

/** An address in this process, as koffi hands pointers back (an opaque external). */
export type HostPointer = unknown

export interface Libc {
  open(path: string, flags: number): number
  /** ioctl(fd, request, &struct): the struct is a buffer koffi passes by address, in and out. */
  ioctlPtr(fd: number, request: number, arg: Uint8Array | null): number
  /** ioctl(fd, request, value): the ioctls whose argument is an integer (KVM_CREATE_VCPU, KVM_SET_TSS_ADDR). */
  ioctlInt(fd: number, request: number, arg: number): number
  /** mmap; MAP_FAILED comes back as a null pointer check via `isMapFailed`. */
  mmap(length: number, prot: number, flags: number, fd: number, offset: number): HostPointer
  munmap(ptr: HostPointer, length: number): number
  close(fd: number): number
  errno(): number
  strerror(errno: number): string
  /** The host memory at `ptr` as an ArrayBuffer, without a copy. */
  view(ptr: HostPointer, length: number): ArrayBuffer
  /** The numeric address of `ptr` (for kvm_userspace_memory_region.userspace_addr). */
  address(ptr: HostPointer): bigint
  /** mount(2), for tracefs where it is not mounted. */
  mount(source: string, target: string, fstype: string, flags: number): number
  /** umount2(2). */
  umount(target: string, flags: number): number
  /** setitimer(2) with `struct itimerval` buffers; `old` receives what was left of the previous timer. */
  setitimer(which: number, value: Uint8Array, old: Uint8Array | null): number
}

interface Koffi {
  load(name: string): { func(proto: string): (...args: unknown[]) => unknown }
  errno(): number
  view(ptr: unknown, length: number): ArrayBuffer
  address(ptr: unknown): bigint
}

let cached: Libc | undefined

/** Binds libc through koffi once per process. Throws (with koffi's message) where that is impossible. */
export const loadLibc = (): Libc => {
  if (cached !== undefined) return cached
  // koffi is CommonJS with a native addon: require it only when a KVM backend is built.
  const koffi = createRequire(import.meta.url)("koffi") as Koffi
  const lib = koffi.load("libc.so.6")
  const open = lib.func("int open(const char *path, int flags)")
  // ioctl is variadic in libc; on x86-64 SysV a variadic integer/pointer argument is passed
  // exactly like a fixed one, so two fixed prototypes avoid koffi's per-call variadic typing.
  const ioctlPtr = lib.func("int ioctl(int fd, unsigned long request, void *arg)")
  const ioctlInt = lib.func("int ioctl(int fd, unsigned long request, unsigned long arg)")
  const mmap = lib.func("void *mmap(void *addr, size_t length, int prot, int flags, int fd, int64_t offset)")
  const munmap = lib.func("int munmap(void *addr, size_t length)")
  const close = lib.func("int close(int fd)")
  const strerror = lib.func("const char *strerror(int errnum)")
  const mount = lib.func("int mount(const char *source, const char *target, const char *fstype, unsigned long flags, const void *data)")
  const umount2 = lib.func("int umount2(const char *target, int flags)")
  const setitimer = lib.func("int setitimer(int which, const void *value, void *old)")
  cached = {
    open: (path, flags) => open(path, flags) as number,
    ioctlPtr: (fd, request, arg) => ioctlPtr(fd, request, arg) as number,
    ioctlInt: (fd, request, arg) => ioctlInt(fd, request, arg) as number,
    mmap: (length, prot, flags, fd, offset) => mmap(null, length, prot, flags, fd, offset),
    munmap: (ptr, length) => munmap(ptr, length) as number,
    close: (fd) => close(fd) as number,
    errno: () => koffi.errno(),
    strerror: (e) => strerror(e) as string,
    view: (ptr, length) => koffi.view(ptr, length),
    address: (ptr) => koffi.address(ptr),
    mount: (source, target, fstype, flags) => mount(source, target, fstype, flags, null) as number,
    umount: (target, flags) => umount2(target, flags) as number,
    setitimer: (which, value, old) => setitimer(which, value, old) as number
  }
  return cached
}

/** mmap returns MAP_FAILED ((void *)-1) on error, which koffi hands back as that address. */
export const isMapFailed = (libc: Libc, ptr: HostPointer): boolean => ptr === null || libc.address(ptr) === 0xffffffffffffffffn
