import type { MachineConfig } from "../../src/events/MachineConfig.ts"
import type { VmEvent } from "../../src/events/VmEvent.ts"
import type { TraceHeaderInput } from "../../src/events/trace/schema.ts"

export const config: MachineConfig = {
  memoryMiB: 2,
  loadAddress: 0x7c00,
  entry: 0x7c00,
  mode: "real",
  instructionLimit: 1_000_000
}

export const header: TraceHeaderInput = {
  config,
  image: Uint8Array.from({ length: 64 }, (_, i) => (i * 37) & 0xff)
}

const registers = { eax: 0, ecx: 1, edx: 2, ebx: 3, esp: 0x7c00, ebp: 0, esi: 0, edi: 0, eip: 0x7c10, eflags: 2, cr0: 0x10, cr3: 0 }

/** `count` events of every kind in turn, with consecutive `seq` from `first`. */
export const sampleEvents = (count: number, first = 0): Array<VmEvent> =>
  Array.from({ length: count }, (_, i): VmEvent => {
    const seq = first + i
    const common = { seq, vcpu: 0, time: seq * 3 }
    switch (seq % 9) {
      case 0: return { _tag: "VmEntry", ...common, rip: 0x7c00 + seq }
      case 1: return { _tag: "VmExit", ...common, reason: 30, qualification: 0x3f80008, rip: 0x7c02, instructionLength: 1, handledIn: "userspace" }
      case 2: return { _tag: "Pio", ...common, direction: "out", port: 0x3f8, size: 1, count: 1, values: [0x41] }
      case 3: return { _tag: "Mmio", ...common, op: "write", gpa: 0xfee00000, length: 4, value: seq }
      case 4: return { _tag: "PageFault", ...common, gpa: 0x1000, errorCode: 0x181, outcome: "mapped" }
      case 5: return { _tag: "UserspaceExit", ...common, exitReason: 2, detail: "io" }
      case 6: return { _tag: "DeviceOutput", ...common, device: "serial", bytes: new Uint8Array([72, 105, 10]) }
      case 7: return { _tag: "Unassigned", ...common, space: "io", address: 0x80, size: 1, write: true }
      default: return { _tag: "RunEnd", ...common, reason: "hlt", registers }
    }
  })

/** `sizes.length` chunks of the given sizes, `seq` running on across them. */
export const sampleChunks = (sizes: ReadonlyArray<number>): Array<Array<VmEvent>> => {
  let seq = 0
  return sizes.map((size) => {
    const chunk = sampleEvents(size, seq)
    seq += size
    return chunk
  })
}
