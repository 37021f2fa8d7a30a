import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import fc from "fast-check"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import type { MachineConfig } from "../../src/events/MachineConfig.ts"
import { openTraceWriter } from "../../src/events/trace/writer.ts"
import type { VmEvent } from "../../src/events/VmEvent.ts"
import { TARGET_XML } from "../../src/gdb/i386.ts"
import { LiveTarget } from "../../src/gdb/liveTarget.ts"
import { checksum, framePacket, hexToText, le32FromHex, le32Hex, PacketParser, textToHex, unescape } from "../../src/gdb/packets.ts"
import { ReplayTarget } from "../../src/gdb/replayTarget.ts"
import { GdbStub } from "../../src/gdb/stub.ts"
import type { Target } from "../../src/gdb/target.ts"
import { noHostInput } from "../../src/qemu/hostInput.ts"
import { recordMachine } from "../../src/qemu/runMachine.ts"
import { rawEvents } from "../../src/events/rawEvents.ts"
import { openReplaySession } from "../../src/replay/session.ts"

/** guests/hello.bin: real mode, CS = 0, so linear addresses are the offsets gdb sees. */
const config: MachineConfig = { memoryMiB: 16, loadAddress: 0x7c00, entry: 0x7c00, mode: "real", instructionLimit: 100_000_000 }
const image = readFileSync("guests/hello.bin")

const PUTS = 0x7c4f
/** The return address `call uart_init` and later `call puts` store here. */
const RETURN_SLOT = 0x7bfe

const dir = mkdtempSync(join(tmpdir(), "vmrr-stub-"))
const scope = Effect.runSync(Scope.make())
afterAll(() => {
  Effect.runSync(Scope.close(scope, Exit.void))
  rmSync(dir, { recursive: true, force: true })
})

/** Records hello with a checkpoint every 100 instructions, each event passed through `change`. */
const record = (path: string, change: (e: VmEvent) => VmEvent = (e) => e): Promise<number> =>
  Effect.runPromise(
    Effect.scoped(
      Effect.gen(function* () {
        const writer = yield* openTraceWriter(path, { config, image })
        yield* Stream.runForEach(recordMachine(config, image, { checkpointEvery: 100 }), ({ checkpoint, events }) =>
          Effect.zipRight(checkpoint === undefined ? Effect.void : writer.writeCheckpoint(checkpoint), writer.writeChunk(rawEvents(events).map(change))))
        return (yield* writer.close).eventCount
      })
    )
  )

const helloTrace = join(dir, "hello.vmrr")
const tamperedTrace = join(dir, "tampered.vmrr")
let eventCount = 0
beforeAll(async () => {
  eventCount = await record(helloTrace)
  await record(tamperedTrace, (e) => (e._tag === "DeviceOutput" && e.seq > 100 ? { ...e, bytes: Uint8Array.of(0x21) } : e))
})

const replay = (path = helloTrace): Target => new ReplayTarget(Effect.runSync(Scope.extend(openReplaySession(path), scope)))
const live = (recorded = false): Target => Either.getOrThrow(LiveTarget.create(config, image, noHostInput, () => undefined, { recorded }))

/** A gdb on the other end of a stub: sends packets, collects what comes back. */
const connect = (target: Target) => {
  let wire = ""
  const stub = new GdbStub(target, (text) => (wire += text))
  const parser = new PacketParser()
  /** Everything the stub sent since the last call: acks as "+"/"-", packets by their data. */
  const take = (): string[] => {
    const items = parser.feed(wire).map((i) => (i._tag === "Packet" ? i.data : i._tag === "Ack" ? "+" : i._tag === "Nak" ? "-" : "^C"))
    wire = ""
    return items
  }
  const settle = () => {
    for (let i = 0; i < 10_000 && stub.running; i++) stub.run(1000)
  }
  return {
    stub,
    take,
    raw: (text: string) => {
      stub.receive(text)
      settle()
      return take()
    },
    /** One command: its replies without the ack. */
    ask: (data: string): string[] => {
      stub.receive(framePacket(data))
      settle()
      return take().filter((r) => r !== "+")
    }
  }
}

/** An `O` packet: text for gdb's console, in hex (unlike the reply `OK`). */
const isConsoleOutput = (reply: string): boolean => /^O([0-9a-f]{2})+$/.test(reply)
const stopPacket = (replies: string[]): string => replies.filter((r) => !isConsoleOutput(r)).at(-1) ?? ""
const eip = (gdb: ReturnType<typeof connect>): number => le32FromHex(gdb.ask("p8")[0])!

describe("gdb stub: the protocol", () => {
  it("acks good packets, naks bad checksums, resends on a nak, and drops acks after QStartNoAckMode", () => {
    const gdb = connect(replay())
    expect(gdb.raw(framePacket("?"))).toEqual(["+", "T05thread:01;"])
    expect(gdb.raw("$?#00")).toEqual(["-"])
    expect(gdb.raw("-")).toEqual(["T05thread:01;"])
    expect(gdb.raw(framePacket("QStartNoAckMode"))).toEqual(["+", "OK"])
    expect(gdb.raw(framePacket("?"))).toEqual(["T05thread:01;"])
    expect(gdb.raw("$?#00")).toEqual([])
  })

  it("answers unknown packets and unsupported forms with the empty reply, bad arguments with errors", () => {
    const gdb = connect(replay())
    for (const p of ["vMustReplyEmpty", "qTStatus", "X7c00,0:", "!", "bx", "vCont;r7c00,7c10"]) expect(gdb.ask(p)).toEqual([""])
    for (const p of ["m7c00", "mzz,4", "Z0,zz,1", "p", "pzz", "Z2,7bfe,0", "Z3,7bfe,0", "Z4,zz,2"]) expect(gdb.ask(p)[0]).toMatch(/^E/)
  })

  it("offers reverse execution on replays only", () => {
    const features = "qSupported:multiprocess+;swbreak+;hwbreak+;qRelocInsn+"
    expect(connect(replay()).ask(features)[0]).toMatch(/;ReverseStep\+;ReverseContinue\+$/)
    expect(connect(live()).ask(features)[0]).not.toMatch(/Reverse/)
    expect(connect(live()).ask("bs")).toEqual([""])
  })

  it("serves the i386 target description in pieces", () => {
    const gdb = connect(replay())
    let xml = ""
    for (let offset = 0; ; offset += 0x100) {
      const [reply] = gdb.ask(`qXfer:features:read:target.xml:${offset.toString(16)},100`)
      xml += unescape(reply.slice(1))
      if (reply[0] === "l") break
      expect(reply[0]).toBe("m")
    }
    expect(xml).toBe(TARGET_XML)
    expect(xml).toContain('<feature name="org.gnu.gdb.i386.core">')
    expect(gdb.ask("qXfer:features:read:other.xml:0,100")[0]).toMatch(/^E/)
  })

  it("reads registers (x87 unavailable) and memory; unmapped memory is an error", () => {
    const gdb = connect(replay())
    const [g] = gdb.ask("g")
    expect(g).toHaveLength(2 * (16 * 4 + 8 * 10 + 8 * 4))
    expect(g.slice(8 * 8, 8 * 9)).toBe(le32Hex(0x7c00))
    expect(g.slice(16 * 8)).toMatch(/^x+$/)
    expect(gdb.ask("p4")).toEqual([le32Hex(0x7c00)])
    expect(gdb.ask("p10")).toEqual(["x".repeat(20)])
    expect(gdb.ask("m7c00,3")).toEqual(["fafce8"])
    expect(gdb.ask("mfffff000,4")).toEqual(["E0e"])
  })

  it("refuses to change a replay or a recorded run, and changes a live run", () => {
    const r = connect(replay())
    expect(r.ask("M7c00,1:90")).toEqual(["E01"])
    expect(r.ask(`P8=${le32Hex(0x7c05)}`)).toEqual(["E01"])
    expect(r.ask(`G${r.ask("g")[0]}`)).toEqual(["E01"])
    const l = connect(live())
    expect(l.ask("M7c00,2:9090")).toEqual(["OK"])
    expect(l.ask("m7c00,3")).toEqual(["9090e8"])
    expect(l.ask(`P0=${le32Hex(0x1234)}`)).toEqual(["OK"])
    expect(l.ask("p0")).toEqual([le32Hex(0x1234)])
    expect(l.ask(`Pa=${le32Hex(0)}`)[0]).toMatch(/^E/)
    const recorded = connect(live(true))
    expect(recorded.ask("M7c00,1:90")).toEqual(["E01"])
    expect(l.ask("Mfffff000,1:90")).toEqual(["E0e"])
    expect(recorded.ask(`P0=${le32Hex(0x1234)}`)).toEqual(["E01"])
  })

  it("makes the guest run what gdb wrote, even over an instruction it has run before", () => {
    // hello32's fib loop: `mov %edx,%eax` at 0x10001f, in a frame the loop never writes.
    const config32: MachineConfig = { ...config, mode: "pm32", loadAddress: 0x100000, entry: 0x100000 }
    const l = connect(Either.getOrThrow(LiveTarget.create(config32, readFileSync("guests/hello32.bin"), noHostInput, () => {}, { recorded: false })))
    l.ask("Z0,10001f,1")
    l.ask("c")
    l.ask("c") // the instruction has run once and is decoded
    expect(l.ask("M10001f,2:31c0")).toEqual(["OK"]) // xor %eax,%eax
    l.ask("s")
    expect(l.ask("p0")).toEqual([le32Hex(0)])
  })

  it("answers monitor commands, in hex", () => {
    const gdb = connect(replay())
    expect(hexToText(gdb.ask(`qRcmd,${textToHex("event")}`)[0])).toMatch(/^instruction 0, 0 of \d+ events verified/)
    expect(hexToText(gdb.ask(`qRcmd,${textToHex("seek 10")}`)[0])).toMatch(/^event #10 happens at instruction \d+/)
    expect(hexToText(gdb.ask(`qRcmd,${textToHex("nonsense")}`)[0])).toMatch(/unknown monitor command/)
  })

  it("ends the session on k and on D", () => {
    const killed = connect(replay())
    killed.stub.receive(framePacket("k"))
    expect(killed.stub.ended).toBe("killed")
    const detached = connect(replay())
    expect(detached.ask("D")).toEqual(["OK"])
    expect(detached.stub.ended).toBe("detached")
  })

  it("answers any packet without throwing, with one reply or a stop", () => {
    const gdb = connect(replay())
    const command = fc.constantFrom("?", "g", "G", "p", "P", "m", "M", "c", "s", "bs", "bc", "Z0,", "Z2,", "z0,", "q", "qXfer:features:read:target.xml:", "qRcmd,", "vCont;", "H", "T", "X", "Q")
    const args = fc.string({ maxLength: 40 }).map((t) => t.replace(/[#$}*\x03]/g, ""))
    fc.assert(
      fc.property(command, args, (c, a) => {
        if (gdb.stub.ended !== undefined) return
        const replies = gdb.ask(c + a)
        expect(replies.filter((r) => !isConsoleOutput(r)), `${c}${a}`).toHaveLength(1)
      }),
      { numRuns: 300 }
    )
  })

  it("never throws, whatever arrives", () => {
    const gdb = connect(replay())
    for (const junk of ["$#00", "$M#4d", "$P=#7d", "$qRcmd,zz#00", "\x03\x03", "$vCont;#00", "$Z#5a", "}}}}$$$###", "$g#6"]) {
      expect(() => gdb.raw(junk)).not.toThrow()
    }
    expect(checksum("g")).toBe(0x67)
  })
})

describe("gdb stub: execution", () => {
  it("steps forward and back, one instruction at a time, and says so at the start", () => {
    const gdb = connect(replay())
    expect(gdb.ask("s")).toEqual(["T05thread:01;"])
    expect(gdb.ask("vCont;s:1")).toEqual(["T05thread:01;"])
    expect(eip(gdb)).toBe(0x7c02)
    expect(gdb.ask("bs")).toEqual(["T05thread:01;"])
    expect(eip(gdb)).toBe(0x7c01)
    gdb.ask("bs")
    expect(gdb.ask("bs")).toEqual(["T05replaylog:begin;thread:01;"])
  })

  it("continues to a breakpoint, naming its kind when gdb understands it", () => {
    const gdb = connect(replay())
    gdb.ask("qSupported:swbreak+;hwbreak+")
    expect(gdb.ask(`Z0,${PUTS.toString(16)},1`)).toEqual(["OK"])
    expect(gdb.ask("c")).toEqual(["T05swbreak:;thread:01;"])
    expect(eip(gdb)).toBe(PUTS)
    expect(gdb.ask(`z0,${PUTS.toString(16)},1`)).toEqual(["OK"])
    expect(gdb.ask("Z1,7c3a,1")).toEqual(["OK"])
    expect(gdb.ask("vCont;c")).toEqual(["T05hwbreak:;thread:01;"])
  })

  it("reverse-continues to the last breakpoint before here, or to the start", () => {
    const gdb = connect(replay())
    gdb.ask("Z0,7c3a,1")
    gdb.ask("c")
    gdb.ask("c")
    expect(gdb.ask("bc")).toEqual(["T05thread:01;"])
    expect(eip(gdb)).toBe(0x7c3a)
    expect(gdb.ask("bc")).toEqual(["T05replaylog:begin;thread:01;"])
    expect(eip(gdb)).toBe(0x7c00)
  })

  it("stops after a write to a watched location going forward, before it going back", () => {
    const gdb = connect(replay())
    expect(gdb.ask(`Z2,${RETURN_SLOT.toString(16)},2`)).toEqual(["OK"])
    expect(gdb.ask("c")).toEqual([`T05watch:${RETURN_SLOT.toString(16)};thread:01;`])
    expect(eip(gdb)).toBe(0x7c0f) // in uart_init, just called
    expect(gdb.ask(`m${RETURN_SLOT.toString(16)},2`)).toEqual(["057c"])
    gdb.ask("c")
    expect(eip(gdb)).toBe(PUTS)
    expect(gdb.ask(`m${RETURN_SLOT.toString(16)},2`)).toEqual(["0b7c"])
    expect(gdb.ask("bc")).toEqual([`T05watch:${RETURN_SLOT.toString(16)};thread:01;`])
    expect(eip(gdb)).toBe(0x7c08) // on `call puts`, which is about to write it
    expect(gdb.ask(`m${RETURN_SLOT.toString(16)},2`)).toEqual(["057c"])
  })

  it("stops after a read (Z3) or any access (Z4) of a watched location going forward, before it going back", () => {
    const gdb = connect(replay())
    const slot = RETURN_SLOT.toString(16)
    expect(gdb.ask(`Z3,${slot},2`)).toEqual(["OK"])
    // The first read of the return slot is uart_init's `ret`, which lands on the instruction after the call.
    expect(gdb.ask("c")).toEqual([`T05rwatch:${slot};thread:01;`])
    expect(eip(gdb)).toBe(0x7c05)
    expect(gdb.ask("bc")).toEqual([`T05rwatch:${slot};thread:01;`])
    const ret = eip(gdb)
    expect(ret).toBeGreaterThan(0x7c0f) // on that `ret`, inside uart_init
    gdb.ask("s")
    expect(eip(gdb)).toBe(0x7c05)
    expect(gdb.ask(`z3,${slot},2`)).toEqual(["OK"])
    // From the start, the first access is the write of `call uart_init`.
    gdb.ask("bc")
    expect(gdb.ask(`Z4,${slot},2`)).toEqual(["OK"])
    expect(gdb.ask("c")).toEqual([`T05awatch:${slot};thread:01;`])
    expect(eip(gdb)).toBe(0x7c0f)
    expect(gdb.ask("c")).toEqual([`T05awatch:${slot};thread:01;`])
    expect(eip(gdb)).toBe(0x7c05)
  })

  it("stops when gdb interrupts a continue", () => {
    const gdb = connect(replay())
    gdb.stub.receive(framePacket("c"))
    expect(gdb.stub.running).toBe(true)
    gdb.stub.receive("\x03")
    expect(gdb.stub.running).toBe(false)
    expect(gdb.take()).toEqual(["+", "T02thread:01;"])
  })

  it("reaches the end of a replay with replaylog:end and the reason on gdb's console", () => {
    const gdb = connect(replay())
    const replies = gdb.ask("c")
    expect(replies.map((r) => (isConsoleOutput(r) ? hexToText(r.slice(1)) : r))).toEqual(["vmrr: hlt\nvmrr: end of the recording\n", "T05replaylog:end;thread:01;"])
    expect(gdb.ask("c")).toContain("T05replaylog:end;thread:01;")
    expect(gdb.stub.ended).toBeUndefined()
  })

  it("reports a divergence from the recording, and can still go back", () => {
    const gdb = connect(replay(tamperedTrace))
    const replies = gdb.ask("c")
    expect(stopPacket(replies)).toBe("T05replaylog:end;thread:01;")
    expect(hexToText(replies[0].slice(1))).toMatch(/^vmrr: replay diverged at event #\d+: recorded .* replay produced /)
    expect(gdb.ask("bc")).toEqual(["T05replaylog:begin;thread:01;"])
  })

  it("ends a live run with the guest's exit, as W", () => {
    const gdb = connect(live())
    expect(stopPacket(gdb.ask("c"))).toBe("W00")
    expect(gdb.stub.ended).toBe("exited")
  })

  it("a gdb-driven replay verifies: every event matches the recording", () => {
    const gdb = connect(replay())
    gdb.ask("Z0,7c3a,1")
    gdb.ask("Z2,7bfe,2")
    for (let i = 0; i < 20; i++) gdb.ask(i % 3 === 2 ? "bs" : "s")
    for (let i = 0; i < 5; i++) gdb.ask("c")
    gdb.ask("bc")
    gdb.ask("z0,7c3a,1")
    gdb.ask("z2,7bfe,2")
    expect(hexToText(gdb.ask("c")[0].slice(1))).toBe("vmrr: hlt\nvmrr: end of the recording\n")
    expect(hexToText(gdb.ask(`qRcmd,${textToHex("event")}`)[0])).toMatch(new RegExp(`^instruction \\d+, ${eventCount} of ${eventCount} events verified`))
  })
})
