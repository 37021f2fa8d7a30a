/**
 * Runs one program on a backend of the KVM-shaped API, exactly as userspace would:
 * same memory image, same registers, same CPUID table, and the same deterministic
 * answers to every IN and MMIO read. Both backends are driven by this one loop, so any
 * difference in the outcome is a difference between the kernels.
 */
import { createDevKvmVm, allocateGuestMemory, type DevKvmVm } from "../../src/devkvm/devKvm.ts"
import { EventLog } from "../../src/events/EventLog.ts"
import { readExitData, writeExitData, type KvmRegs, type KvmSegment, type KvmSregs, type KvmVcpuApi, type KvmVmApi } from "../../src/kernel/api.ts"
import { createVm } from "../../src/kernel/kvm.ts"
import { qemu32CpuidTable } from "../../src/qemu/cpuid.ts"
import { codeOf, Layout, listing, type Program } from "./programs.ts"

/** One element of userspace-visible I/O, flattened: a string I/O exit of count n is n of these. */
export interface Access {
  readonly space: "pio" | "mmio"
  readonly write: boolean
  readonly address: number
  readonly size: number
  readonly value: number
}

export interface Outcome {
  /** How the last KVM_RUN ended: hlt, shutdown, internal-error (with detail), or run-limit. */
  readonly end: string
  readonly regs: KvmRegs
  readonly accesses: ReadonlyArray<Access>
  /** KVM_RUN calls: string I/O may be batched differently, so this is reported, not compared. */
  readonly runs: number
  readonly ram: Uint8Array
  /** Nanoseconds spent inside run(). */
  readonly runNanos: number
}

export interface Backend {
  readonly name: string
  run(program: Program): Outcome
}

/** Far more than any generated program needs; bounds a run where kickAt cannot (real KVM). */
const MAX_RUNS = 4096

const flat = (selector: number, type: number, base = 0, limit = 0xffffffff): KvmSegment => ({
  base, limit, selector, type, present: true, dpl: 0, db: true, s: true, l: false, g: limit === 0xffffffff, avl: false, unusable: false
})
const real = (selector: number, type: number, base = selector << 4): KvmSegment => ({
  base, limit: 0xffff, selector, type, present: true, dpl: 0, db: false, s: true, l: false, g: false, avl: false, unusable: false
})

const CODE = 0xb
const DATA = 0x3

/** The same RAM image for both backends: vectors, descriptor tables, handlers, code, scratch. */
const writeImage = (ram: Uint8Array, p: Program): void => {
  ram.fill(0)
  const dv = new DataView(ram.buffer, ram.byteOffset, ram.byteLength)
  for (let v = 0; v < 32; v++) {
    const handler = Layout.HANDLERS + v
    dv.setUint16(Layout.IVT + 4 * v, handler, true)
    dv.setUint16(Layout.IVT + 4 * v + 2, 0, true)
    // 32-bit interrupt gate, selector 8, DPL 0, present.
    dv.setUint16(Layout.IDT + 8 * v, handler, true)
    dv.setUint16(Layout.IDT + 8 * v + 2, 0x08, true)
    dv.setUint16(Layout.IDT + 8 * v + 4, 0x8e00, true)
    dv.setUint16(Layout.IDT + 8 * v + 6, 0, true)
    ram[handler] = 0xf4
  }
  // GDT: null, flat 32-bit code (0x08), flat data (0x10).
  dv.setBigUint64(Layout.GDT + 8, 0x00cf9b000000ffffn, true)
  dv.setBigUint64(Layout.GDT + 16, 0x00cf93000000ffffn, true)
  ram.set(codeOf(p), Layout.CODE)
  let x = p.fill | 1
  for (let a = Layout.SCRATCH; a < Layout.SCRATCH + 0x1000; a++) {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    ram[a] = x & 0xff
  }
}

const initialSregs = (base: KvmSregs, p: Program): KvmSregs => {
  const mmioFs = (s: KvmSegment): KvmSegment => ({ ...s, base: Layout.MMIO_BASE, limit: 0xffff, g: false })
  if (p.mode === "real") {
    const d = real(0, DATA)
    return {
      ...base,
      cs: real(0, CODE), ds: d, es: d, ss: d, gs: d, fs: real(Layout.MMIO_BASE >>> 4, DATA),
      gdt: { base: Layout.GDT, limit: 23 }, idt: { base: Layout.IVT, limit: 0x3ff },
      cr0: 0x60000010
    }
  }
  const d = flat(0x10, DATA)
  return {
    ...base,
    cs: flat(0x08, CODE), ds: d, es: d, ss: d, gs: d, fs: mmioFs(d),
    gdt: { base: Layout.GDT, limit: 23 }, idt: { base: Layout.IDT, limit: 32 * 8 - 1 },
    cr0: 0x60000011
  }
}

const initialRegs = (p: Program): KvmRegs => ({
  rax: p.regs[0], rcx: p.regs[1], rdx: p.regs[2], rbx: p.regs[3], rsp: Layout.STACK_TOP, rbp: p.regs[5], rsi: p.regs[6], rdi: p.regs[7],
  rip: Layout.CODE, rflags: p.flags | 2
})

/** What the harness's devices answer: a function of the access's position in the stream and its address. */
const answer = (index: number, address: number, size: number): number => {
  let h = Math.imul(index + 1, 0x9e3779b1) ^ Math.imul(address + size, 0x85ebca77)
  h ^= h >>> 15
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 13
  return size === 4 ? h >>> 0 : h & (2 ** (8 * size) - 1)
}

/** kvm_cpu_exec for a test machine: run, serve the exit, repeat until something ends the run. */
const drive = (vcpu: KvmVcpuApi): Omit<Outcome, "ram"> => {
  const accesses: Access[] = []
  let nanos = 0n
  for (let runs = 1; runs <= MAX_RUNS; runs++) {
    const t0 = process.hrtime.bigint()
    const exit = vcpu.run()
    nanos += process.hrtime.bigint() - t0
    const done = (end: string) => ({ end, regs: vcpu.getRegs(), accesses, runs, runNanos: Number(nanos) })
    switch (exit._tag) {
      case "KVM_EXIT_IO":
        for (let i = 0; i < exit.count; i++) {
          const write = exit.direction === "out"
          const value = write ? readExitData(exit.data, i * exit.size, exit.size) : answer(accesses.length, exit.port, exit.size)
          if (!write) writeExitData(exit.data, i * exit.size, exit.size, value)
          accesses.push({ space: "pio", write, address: exit.port, size: exit.size, value })
        }
        break
      case "KVM_EXIT_MMIO": {
        const value = exit.isWrite ? readExitData(exit.data, 0, exit.len) : answer(accesses.length, exit.physAddr, exit.len)
        if (!exit.isWrite) writeExitData(exit.data, 0, exit.len, value)
        accesses.push({ space: "mmio", write: exit.isWrite, address: exit.physAddr, size: exit.len, value })
        break
      }
      case "KVM_EXIT_HLT":
        return done("hlt")
      case "KVM_EXIT_SHUTDOWN":
        return done("shutdown")
      case "KVM_EXIT_INTR":
        return done("intr")
      case "KVM_EXIT_INTERNAL_ERROR":
        return done(`internal-error: ${exit.detail}`)
    }
  }
  return { end: "run-limit", regs: vcpu.getRegs(), accesses, runs: MAX_RUNS, runNanos: Number(nanos) }
}

const start = (vcpu: KvmVcpuApi, p: Program): void => {
  vcpu.setSregs(initialSregs(vcpu.getSregs(), p))
  vcpu.setRegs(initialRegs(p))
}

/** The model: a fresh VM per program (cheap), bounded by virtual time. */
export const modelBackend = (): Backend => ({
  name: "model",
  run(p) {
    const vm: KvmVmApi = createVm(new EventLog())
    const ram = new Uint8Array(Layout.RAM_SIZE)
    writeImage(ram, p)
    vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memory: ram })
    const vcpu = vm.createVcpu(0)
    vcpu.setCpuid(qemu32CpuidTable)
    vcpu.kickAt(1_000_000)
    start(vcpu, p)
    return { ...drive(vcpu), ram: ram.slice() }
  }
})

/**
 * Real KVM: one VM and vCPU reused while runs end in HLT (creating a VM costs far more
 * than a run); after anything else the VM is replaced so no state carries over.
 */
export const devKvmBackend = (): Backend & { close(): void } => {
  const ram = allocateGuestMemory(Layout.RAM_SIZE)
  let current: { vm: DevKvmVm; vcpu: KvmVcpuApi } | undefined
  const fresh = () => {
    const vm = createDevKvmVm()
    vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memory: ram })
    const vcpu = vm.createVcpu(0)
    vcpu.setCpuid(qemu32CpuidTable)
    return { vm, vcpu }
  }
  return {
    name: "kvm",
    run(p) {
      current ??= fresh()
      writeImage(ram, p)
      start(current.vcpu, p)
      const out = drive(current.vcpu)
      if (out.end !== "hlt") {
        current.vm.close()
        current = undefined
      }
      return { ...out, ram: ram.slice() }
    },
    close() {
      current?.vm.close()
      current = undefined
    }
  }
}

// ---- comparing -------------------------------------------------------------------------

const FLAG_NAMES: Record<number, string> = {
  0: "CF", 2: "PF", 4: "AF", 6: "ZF", 7: "SF", 8: "TF", 9: "IF", 10: "DF", 11: "OF", 12: "IOPL0", 13: "IOPL1",
  14: "NT", 16: "RF", 17: "VM", 18: "AC", 19: "VIF", 20: "VIP", 21: "ID"
}
const hex = (n: number): string => `0x${(n >>> 0).toString(16)}`
const REGS = ["rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "rip"] as const

/** Which exception handler the run halted in, if any. */
export const exceptionOf = (o: Outcome): number | undefined => {
  const v = o.regs.rip - Layout.HANDLERS - 1
  return o.end === "hlt" && v >= 0 && v < 32 ? v : undefined
}

const accessText = (a: Access | undefined): string =>
  a === undefined ? "(none)" : `${a.space} ${a.write ? "write" : "read"} ${hex(a.address)}/${a.size} = ${hex(a.value)}`

/** Every difference, by name: registers, each EFLAGS bit, the end, the I/O stream, RAM. */
export const differences = (model: Outcome, kvm: Outcome): string[] => {
  const out: string[] = []
  if (model.end !== kvm.end) out.push(`end: model ${model.end}, kvm ${kvm.end}`)
  const em = exceptionOf(model)
  const ek = exceptionOf(kvm)
  if (em !== ek) out.push(`exception: model ${em === undefined ? "none" : `#${em}`}, kvm ${ek === undefined ? "none" : `#${ek}`}`)
  for (const r of REGS) if (model.regs[r] >>> 0 !== kvm.regs[r] >>> 0) out.push(`${r.replace(/^r/, "e")}: model ${hex(model.regs[r])}, kvm ${hex(kvm.regs[r])}`)
  const fx = (model.regs.rflags ^ kvm.regs.rflags) >>> 0
  if (fx !== 0) {
    const bits: string[] = []
    for (let b = 0; b < 32; b++) if (fx & (1 << b)) bits.push(`${FLAG_NAMES[b] ?? `bit${b}`}=${(kvm.regs.rflags >>> b) & 1}`)
    out.push(`eflags: model ${hex(model.regs.rflags)}, kvm ${hex(kvm.regs.rflags)} (kvm has ${bits.join(" ")})`)
  }
  const n = Math.max(model.accesses.length, kvm.accesses.length)
  for (let i = 0; i < n; i++) {
    const a = model.accesses[i]
    const b = kvm.accesses[i]
    if (accessText(a) !== accessText(b)) {
      out.push(`access #${i}: model ${accessText(a)}, kvm ${accessText(b)}`)
      break
    }
  }
  const bytes: string[] = []
  for (let i = 0; i < model.ram.length && bytes.length < 12; i++) {
    if (model.ram[i] !== kvm.ram[i]) bytes.push(`[${hex(i)}] model ${hex(model.ram[i])} kvm ${hex(kvm.ram[i])}`)
  }
  if (bytes.length > 0) out.push(`ram: ${bytes.join(", ")}`)
  return out
}

export const report = (p: Program, model: Outcome, kvm: Outcome, diffs: ReadonlyArray<string>): string =>
  [
    `${p.mode} program differs between the model and /dev/kvm`,
    listing(p),
    `initial: ${["eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi"].map((r, i) => `${r}=${hex(i === 4 ? Layout.STACK_TOP : p.regs[i])}`).join(" ")} eflags=${hex(p.flags | 2)}`,
    ...diffs.map((d) => `  ${d}`)
  ].join("\n")
