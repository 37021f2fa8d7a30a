/**
 * The gdb stub's TCP edge: listen (127.0.0.1 unless another address is given), take one
 * gdb connection, feed its bytes to the stub, and while the target runs, advance it a
 * slice at a time with the event loop in between so that gdb's interrupt gets through.
 * Later connections are refused while one is served, as QEMU's gdbstub does.
 */
import * as net from "node:net"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import { type SessionEnd, GdbStub } from "./stub.ts"
import type { Target } from "./target.ts"

export interface GdbAddress {
  readonly host: string
  readonly port: number
}

/** `[HOST:]PORT` as `--gdb` takes it; port 0 lets the system choose. */
export const parseGdbAddress = (text: string): GdbAddress | undefined => {
  const match = /^(?:(.*):)?([0-9]{1,5})$/.exec(text.trim())
  if (match === null) return undefined
  const port = Number(match[2])
  const host = match[1] === undefined || match[1] === "" ? "127.0.0.1" : match[1].replace(/^\[(.*)\]$/, "$1")
  return port <= 65535 ? { host, port } : undefined
}

export class GdbServerError extends Data.TaggedError("GdbServerError")<{ readonly reason: string }> {
  override get message(): string {
    return `gdb server: ${this.reason}`
  }
}

/** Instructions the target runs between two looks at the connection. */
const SLICE = 20_000

/**
 * Serves one gdb session over `target` and succeeds with how it ended (a disconnect
 * counts as a detach). `announce` gets the address actually listened on.
 */
export const serveGdb = (
  target: Target,
  address: GdbAddress,
  announce: (where: GdbAddress) => void
): Effect.Effect<SessionEnd, GdbServerError> =>
  Effect.async<SessionEnd, GdbServerError>((resume) => {
    const server = net.createServer()
    let connection: net.Socket | undefined
    let pumping = false
    let finished = false
    const finish = (end: SessionEnd) => {
      if (finished) return
      finished = true
      server.close()
      connection?.end()
      resume(Effect.succeed(end))
    }
    server.on("error", (e) => {
      if (finished) return
      finished = true
      server.close()
      resume(Effect.fail(new GdbServerError({ reason: `cannot listen on ${address.host}:${address.port}: ${e.message}` })))
    })
    server.on("connection", (socket) => {
      if (connection !== undefined || finished) return void socket.destroy()
      connection = socket
      socket.setNoDelay(true)
      const stub = new GdbStub(target, (wire) => void socket.write(wire, "latin1"))
      const pump = () => {
        pumping = false
        if (finished || !stub.running) return
        stub.run(SLICE)
        if (stub.ended !== undefined) return finish(stub.ended)
        if (stub.running) {
          pumping = true
          setImmediate(pump)
        }
      }
      socket.on("data", (data) => {
        stub.receive(data)
        if (stub.ended !== undefined) return finish(stub.ended)
        if (stub.running && !pumping) {
          pumping = true
          setImmediate(pump)
        }
      })
      // The connection's end is the session's: gdb gone without D or k is a detach.
      socket.on("close", () => finish(stub.ended ?? "detached"))
      socket.on("error", () => socket.destroy())
    })
    server.listen(address.port, address.host, () => {
      const bound = server.address()
      announce(typeof bound === "object" && bound !== null ? { host: bound.address, port: bound.port } : address)
    })
    return Effect.sync(() => {
      finished = true
      server.close()
      connection?.destroy()
    })
  })
