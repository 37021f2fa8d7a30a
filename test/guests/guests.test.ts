import { readFileSync } from "node:fs"
import { join } from "node:path"
import { Chunk, Effect, Stream } from "effect"
import { describe, expect, it } from "vitest"
import type { MachineConfig } from "../../src/events/MachineConfig.ts"
import type { RunEnd, VmEvent } from "../../src/events/VmEvent.ts"
import { runMachine } from "../../src/qemu/runMachine.ts"
import { repoRoot, vmrr } from "../support/cli.ts"

/**
 * The self-checking guests in guests/ (paging, rings, faults, triplefault): each
 * prints `PASS name` / `FAIL name: detail` / `INFO name: text` lines on COM1, then
 * `DONE passed/total`, and exits through isa-debug-exit with status 1 when every
 * check passed. They run here exactly as `vmrr run guests/X.bin --mode pm32 --load
 * 0x100000` runs them. The check lists below are the guests' own, in order, so a
 * guest that stops early or skips a check fails here too.
 */

const config: MachineConfig = {
  memoryMiB: 16,
  loadAddress: 0x100000,
  entry: 0x100000,
  mode: "pm32",
  instructionLimit: 20_000_000
}

interface GuestRun {
  readonly lines: ReadonlyArray<string>
  readonly end: RunEnd
}

const runs = new Map<string, GuestRun>()

/** Runs a guest once (memoised across the checks that read it). */
const run = (name: string): GuestRun => {
  const cached = runs.get(name)
  if (cached !== undefined) return cached
  const image = new Uint8Array(readFileSync(join(repoRoot, "guests", `${name}.bin`)))
  const events: VmEvent[] = Effect.runSync(Stream.runCollect(runMachine(config, image)).pipe(Effect.map(Chunk.toArray)))
  const serial = events.flatMap((e) => (e._tag === "DeviceOutput" && e.device === "serial0" ? [...e.bytes] : []))
  const lines = Buffer.from(serial).toString("latin1").split("\r\n")
  if (lines.at(-1) === "") lines.pop()
  const end = events.at(-1)
  if (end?._tag !== "RunEnd") throw new Error(`${name}: the event stream does not end with RunEnd`)
  const result = { lines, end }
  runs.set(name, result)
  return result
}

const guests: Record<string, ReadonlyArray<string>> = {
  paging: [
    "paging_enabled",
    "alias_4k",
    "pse_4m_page",
    "accessed_on_read",
    "dirty_on_write",
    "accessed_dirty_on_first_write",
    "pse_accessed_dirty",
    "pf_read_not_present",
    "pf_write_not_present",
    "pf_pde_not_present",
    "pf_split_write",
    "pf_fetch_not_present",
    "wp1_supervisor_write_faults",
    "wp0_supervisor_write_allowed",
    "pf_user_reads_supervisor_page",
    "pf_user_fetches_supervisor_page",
    "pf_user_writes_read_only_page",
    "tlb_invlpg",
    "tlb_cr3_reload"
  ],
  rings: [
    "iret_to_ring3",
    "iret_nulls_dpl0_data_segments",
    "int80_trap_gate_stack_switch",
    "int_gate_clears_if",
    "int_dpl0_gate_from_ring3",
    "cli_iopl0",
    "sti_iopl0",
    "popf_keeps_if_and_iopl",
    "io_bitmap_allows",
    "io_bitmap_denies_in",
    "io_bitmap_denies_out",
    "io_bitmap_word_straddle",
    "iopl3_io_and_cli",
    "call_gate_to_ring0",
    "mov_to_cr0_ring3",
    "mov_from_cr3_ring3",
    "hlt_ring3",
    "lgdt_ring3",
    "lidt_ring3",
    "ltr_ring3",
    "rdmsr_ring3",
    "load_dpl0_ds_ring3",
    "far_call_dpl0_code",
    "wrmsr_rdmsr_sysenter_eip",
    "sysexit_to_ring3",
    "sysenter_to_ring0",
    "alignment_check_ring3"
  ],
  faults: [
    "de_divide_by_zero",
    "de_idiv_overflow",
    "de_div8_overflow",
    "de_aam_zero",
    "db_single_step",
    "db_instruction_breakpoint",
    "db_data_write_breakpoint",
    "bp_int3",
    "of_into_overflow",
    "of_into_no_overflow",
    "br_bound_above",
    "br_bound_below",
    "br_bound_in_range",
    "ud_ud2",
    "ud_lock_nop",
    "ud_lock_register_add",
    "nm_wait_with_ts",
    "nm_clts",
    "segment_base_and_limit",
    "gp_segment_limit",
    "gp_segment_limit_straddle",
    "gp_expand_down",
    "gp_write_read_only_segment",
    "gp_null_ds_use",
    "gp_null_ss_load",
    "gp_selector_beyond_gdt",
    "gp_far_jmp_to_data_segment",
    "np_far_jmp_absent_code",
    "ss_stack_limit",
    "np_segment_load",
    "np_idt_gate",
    "df_gp_with_absent_gate",
    "ts_iret_nt_bad_back_link"
  ]
}

for (const [guest, checks] of Object.entries(guests)) {
  describe(`guests/${guest}.bin`, () => {
    it.each(checks)("%s", (check) => {
      const { lines, end } = run(guest)
      const line = lines.find((l) => l === `PASS ${check}` || l.startsWith(`FAIL ${check}:`))
      const missing = `no line for ${check}: the run ended with ${end.reason}${end.message === undefined ? "" : ` (${end.message})`} after\n${lines.join("\n")}`
      expect(line ?? missing).toBe(`PASS ${check}`)
    })

    it("prints only PASS and INFO lines, in order, then DONE n/n, and exits with status 1", () => {
      const { lines, end } = run(guest)
      const done = lines.at(-1)
      const body = lines.slice(0, -1)
      expect(body.filter((l) => !l.startsWith("INFO ")), "lines other than INFO").toEqual(checks.map((c) => `PASS ${c}`))
      expect(done).toBe(`DONE ${checks.length}/${checks.length}`)
      expect({ reason: end.reason, exitCode: end.exitCode }).toEqual({ reason: "debug-exit", exitCode: 1 })
    })
  })
}

describe("guests/triplefault.bin", () => {
  it("ends the run with a triple fault: RunEnd reason shutdown, after its one INFO line", () => {
    const { lines, end } = run("triplefault")
    expect(lines).toEqual(["INFO triple_fault: empty IDT, then ud2; the run must end in shutdown"])
    expect(end.reason).toBe("shutdown")
  })
})

describe("vmrr run on a self-checking guest", () => {
  it("prints the guest's lines on stdout and exits with the guest's status: 1 when every check passed", async () => {
    const r = await vmrr("run", "guests/paging.bin", "--mode", "pm32", "--load", "0x100000")
    expect(r.stdout.split("\r\n").at(-2)).toBe(`DONE ${guests.paging.length}/${guests.paging.length}`)
    expect(r.stderr).toMatch(/^vmrr: debug-exit \(status 1\)/m)
    expect(r.status).toBe(1)
  })
})
