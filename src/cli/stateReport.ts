import type { KvmSegment } from "../kernel/api.ts"
import { describeEvent } from "../events/describe.ts"
import type { ReplaySession } from "../replay/session.ts"

const hex = (n: number, width = 8): string => `0x${(n >>> 0).toString(16).padStart(width, "0")}`

const segment = (name: string, s: KvmSegment): string =>
  `${name} ${hex(s.selector, 4)} base ${hex(s.base)} limit ${hex(s.limit)} type ${s.type.toString(16)} dpl ${s.dpl}${s.db ? " 32-bit" : " 16-bit"}`

/** Where the session is, its registers and the instruction about to run, as `vmrr state` prints them. */
export const formatState = (session: ReplaySession): string[] => {
  const { time, seq } = session.position
  const { regs: r, sregs: s } = session.registers()
  const next = session.recorded(seq)
  const { address, text } = session.currentInstruction()
  return [
    `t=${time}, before event #${seq}${next === undefined ? " (the end of the recording)" : `: ${describeEvent(next)}`}`,
    `eax ${hex(r.rax)}  ebx ${hex(r.rbx)}  ecx ${hex(r.rcx)}  edx ${hex(r.rdx)}`,
    `esi ${hex(r.rsi)}  edi ${hex(r.rdi)}  ebp ${hex(r.rbp)}  esp ${hex(r.rsp)}`,
    `eip ${hex(r.rip)}  eflags ${hex(r.rflags)}`,
    segment("cs", s.cs),
    segment("ss", s.ss),
    segment("ds", s.ds),
    `cr0 ${hex(s.cr0)}  cr2 ${hex(s.cr2)}  cr3 ${hex(s.cr3)}  cr4 ${hex(s.cr4)}`,
    `${hex(address)}: ${text}`
  ]
}

/** `len` bytes at linear `address`, 16 to a line, as `xxd` groups them. */
export const formatMemory = (session: ReplaySession, address: number, length: number): string[] => {
  const bytes = session.readLinear(address, length)
  if (bytes === undefined) return [`${hex(address)}: not mapped (or outside RAM)`]
  const lines: string[] = []
  for (let at = 0; at < bytes.length; at += 16) {
    const row = Array.from(bytes.subarray(at, at + 16), (b) => b.toString(16).padStart(2, "0")).join(" ")
    lines.push(`${hex(address + at)}: ${row}`)
  }
  return lines
}
