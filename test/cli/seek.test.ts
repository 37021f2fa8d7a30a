import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { vmrr } from "../support/cli.ts"

const dir = mkdtempSync(join(tmpdir(), "vmrr-seek-"))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const golden = "traces/hello32.vmrr"

describe("seek and reverse commands: bad input is one line and status 1 or 2", () => {
  it("an event past the end of the recording", async () => {
    const r = await vmrr("replay", golden, "--to", "999999")
    expect(r.status).toBe(1)
    expect(r.stderr).toBe("vmrr: event 999999 is outside the recording (0 to 633)\n")
  })

  it("an instruction count past the end, and a negative one", async () => {
    const late = await vmrr("state", golden, "--at", "10000000", "--icount")
    expect(late.stderr).toMatch(/^vmrr: instruction count 10000000 is outside the recording \(0 to \d+\)\n$/)
    const negative = await vmrr("replay", golden, "--at", "-3")
    expect(negative.status).toBe(2)
    expect(negative.stderr.split("\n").length).toBe(2)
  })

  it("a malformed --memory and --write, an unknown --kind", async () => {
    const memory = await vmrr("state", golden, "--at", "5", "--memory", "zz:4")
    expect(memory.status).toBe(2)
    expect(memory.stderr).toMatch(/--memory: expected ADDR:LEN/)
    const write = await vmrr("reverse", golden, "--write", "nowhere")
    expect(write.stderr).toBe('vmrr: --write: expected ADDR[:LEN], got "nowhere"\n')
    const kind = await vmrr("reverse", golden, "--kind", "lunch")
    expect(kind.stderr).toBe('vmrr: "lunch" is not an event kind (e.g. VmExit, Pio, EPT_VIOLATION, kvm_pio)\n')
  })

  it("a trace cut off before its end frame still seeks (indexed by a scan)", async () => {
    const bytes = readFileSync(golden)
    const cut = join(dir, "cut.vmrr")
    writeFileSync(cut, bytes.subarray(0, bytes.length - 40))
    const r = await vmrr("state", cut, "--at", "100")
    expect(r.status).toBe(0)
    expect(r.stdout).toMatch(/^t=\d+, before event #\d+: /)
  })

  it("a trace of another format version", async () => {
    const bytes = Buffer.from(readFileSync(golden))
    const damaged = join(dir, "v9.vmrr")
    // The header's msgpack has `formatVersion` then a positive fixint: make it 9 (the checksum is fixed below).
    const at = bytes.indexOf(Buffer.from("formatVersion")) + "formatVersion".length
    bytes[at] = 9
    const { crc32 } = await import("node:zlib")
    const length = bytes.readUInt32LE(8)
    bytes.writeUInt32LE(crc32(bytes.subarray(16, 16 + length)), 12)
    writeFileSync(damaged, bytes)
    const r = await vmrr("replay", damaged, "--to", "3")
    expect(r.stderr).toBe(`vmrr: ${damaged}: trace format version 9, this vmrr reads 2 and 3; it was written by ${JSON.parse(readFileSync("package.json", "utf8")).name} ${JSON.parse(readFileSync("package.json", "utf8")).version}\n`)
  })
})
