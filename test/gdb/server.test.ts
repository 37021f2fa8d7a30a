import { readFileSync } from "node:fs"
import * as net from "node:net"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import { describe, expect, it } from "vitest"
import type { MachineConfig } from "../../src/events/MachineConfig.ts"
import { LiveTarget } from "../../src/gdb/liveTarget.ts"
import { framePacket, type Incoming, PacketParser } from "../../src/gdb/packets.ts"
import { type GdbAddress, parseGdbAddress, serveGdb } from "../../src/gdb/server.ts"
import type { SessionEnd } from "../../src/gdb/stub.ts"
import { noHostInput } from "../../src/qemu/hostInput.ts"

/** guests/echo.bin with nothing on its console: it polls the UART until the instruction limit. */
const config: MachineConfig = { memoryMiB: 16, loadAddress: 0x7c00, entry: 0x7c00, mode: "real", instructionLimit: 50_000_000 }
const image = readFileSync("guests/echo.bin")

/** A stub serving a fresh live echo run on an ephemeral port. */
const serve = async (): Promise<{ readonly port: number; readonly ended: Promise<SessionEnd> }> => {
  const target = Either.getOrThrow(LiveTarget.create(config, image, noHostInput, () => {}, { recorded: false }))
  let listening: (where: GdbAddress) => void = () => {}
  const where = new Promise<GdbAddress>((resolve) => (listening = resolve))
  const ended = Effect.runPromise(serveGdb(target, { host: "127.0.0.1", port: 0 }, listening))
  return { port: (await where).port, ended }
}

/** A raw RSP client: what it receives, parsed. */
const client = async (port: number) => {
  const socket = net.connect(port, "127.0.0.1")
  await new Promise<void>((resolve) => socket.once("connect", () => resolve()))
  const parser = new PacketParser()
  const received: Incoming[] = []
  let naks = 0
  let wake = () => {}
  socket.on("data", (data) => {
    const items = parser.feed(data)
    naks += items.filter((i) => i._tag === "Nak").length
    received.push(...items)
    wake()
  })
  const closed = new Promise<void>((resolve) => socket.once("close", () => resolve()))
  /** Waits until a packet satisfying `match` arrives (10 s at most). */
  const until = async (match: (data: string) => boolean): Promise<string> => {
    const deadline = Date.now() + 10_000
    for (;;) {
      const i = received.findIndex((r) => r._tag === "Packet" && match(r.data))
      if (i >= 0) return (received.splice(0, i + 1).at(-1) as { data: string }).data
      if (Date.now() > deadline) throw new Error(`no matching packet; received ${JSON.stringify(received)}`)
      await new Promise<void>((resolve) => {
        wake = resolve
        setTimeout(resolve, 100)
      })
    }
  }
  return { socket, until, closed, naks: () => naks, send: (text: string) => socket.write(text, "latin1") }
}

describe("gdb server over TCP", () => {
  it("parses --gdb addresses: 127.0.0.1 unless a host is given", () => {
    expect(parseGdbAddress("1234")).toEqual({ host: "127.0.0.1", port: 1234 })
    expect(parseGdbAddress(":0")).toEqual({ host: "127.0.0.1", port: 0 })
    expect(parseGdbAddress("0.0.0.0:1234")).toEqual({ host: "0.0.0.0", port: 1234 })
    expect(parseGdbAddress("[::1]:1234")).toEqual({ host: "::1", port: 1234 })
    for (const bad of ["", "host:", "99999", "12ab"]) expect(parseGdbAddress(bad)).toBeUndefined()
  })

  it("stops a running continue when gdb sends 0x03, and ends on k", async () => {
    const { port, ended } = await serve()
    const gdb = await client(port)
    gdb.send(framePacket("c"))
    await new Promise((resolve) => setTimeout(resolve, 300))
    gdb.send("\x03")
    expect(await gdb.until((d) => d.startsWith("T"))).toBe("T02thread:01;")
    gdb.send(framePacket("k"))
    expect(await ended).toBe("killed")
    await gdb.closed
  })

  it("naks a bad checksum, ignores noise, refuses a second connection, and takes a disconnect as a detach", async () => {
    const { port, ended } = await serve()
    const gdb = await client(port)
    gdb.send("noise$g#00")
    gdb.send(framePacket("qC"))
    expect(await gdb.until((d) => d.startsWith("QC"))).toBe("QC01")
    expect(gdb.naks()).toBe(1)
    const second = await client(port)
    await second.closed
    gdb.socket.destroy()
    expect(await ended).toBe("detached")
  })
})
