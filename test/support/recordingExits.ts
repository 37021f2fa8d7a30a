import { type ExitingInstructions, type IoSize, PORT_IO_LEAVES } from "../../src/kernel/cpu/bus.ts"
import { type Cpu, Reg } from "../../src/kernel/cpu/cpu.ts"

export interface PortAccess {
  readonly direction: "in" | "out"
  readonly port: number
  readonly size: IoSize
  readonly value: number
  readonly qualification: number
}

/** Records every exiting instruction; HLT requests a stop, as the kernel usually does. */
export class RecordingExits implements ExitingInstructions {
  readonly ports: PortAccess[] = []
  cpu: Cpu | undefined
  halts = 0
  cpuids = 0
  /** Value returned by IN for a port (default: all ones of the access size). */
  inValue: (port: number, size: IoSize) => number = (_port, size) => (size === 4 ? 0xffffffff : (1 << (size * 8)) - 1)
  /** Number of upcoming port accesses that leave the CPU instead of completing. */
  leavePortAccesses = 0

  portIn(port: number, size: IoSize, qualification: number): number {
    if (this.leavePortAccesses > 0) {
      this.leavePortAccesses--
      return PORT_IO_LEAVES
    }
    const value = this.inValue(port, size)
    this.ports.push({ direction: "in", port, size, value, qualification })
    return value
  }

  portOut(port: number, size: IoSize, value: number, qualification: number): boolean {
    if (this.leavePortAccesses > 0) {
      this.leavePortAccesses--
      return true
    }
    this.ports.push({ direction: "out", port, size, value, qualification })
    return false
  }

  cpuid(): void {
    const cpu = this.cpu!
    this.cpuids++
    const leaf = cpu.regs[Reg.EAX]
    cpu.regs[Reg.EAX] = leaf === 0 ? 1 : 0x663
    cpu.regs[Reg.EBX] = 0x756e6547
    cpu.regs[Reg.ECX] = 0x6c65746e
    cpu.regs[Reg.EDX] = 0x49656e69
  }

  hlt(): void {
    this.halts++
    this.cpu!.requestStop()
  }

  /** MSRs the test has set; RDMSR of any other index is refused (#GP). */
  readonly msrs = new Map<number, bigint>()
  readonly msrAccesses: Array<{ readonly op: "rdmsr" | "wrmsr" | "rdtsc"; readonly index: number }> = []
  /** What RDTSC returns. */
  tsc = 0n

  rdmsr(index: number): boolean {
    this.msrAccesses.push({ op: "rdmsr", index })
    const v = this.msrs.get(index)
    if (v === undefined) return false
    this.cpu!.regs[Reg.EAX] = Number(v & 0xffffffffn)
    this.cpu!.regs[Reg.EDX] = Number((v >> 32n) & 0xffffffffn)
    return true
  }

  wrmsr(index: number, low: number, high: number): boolean {
    this.msrAccesses.push({ op: "wrmsr", index })
    if (!this.msrs.has(index)) return false
    this.msrs.set(index, (BigInt(high >>> 0) << 32n) | BigInt(low >>> 0))
    return true
  }

  rdtsc(): void {
    this.msrAccesses.push({ op: "rdtsc", index: 0 })
    this.cpu!.regs[Reg.EAX] = Number(this.tsc & 0xffffffffn)
    this.cpu!.regs[Reg.EDX] = Number((this.tsc >> 32n) & 0xffffffffn)
  }
}
