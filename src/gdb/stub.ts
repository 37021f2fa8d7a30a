/**
 * The gdb stub: the Remote Serial Protocol's commands over a Target, for one gdb
 * connection, all-stop, one thread. Plain synchronous code: bytes from gdb go in through
 * `receive`, the wire text to send comes out through `write`, and while the target runs
 * the server calls `run` a slice at a time (so an interrupt can arrive in between).
 * Anything malformed or unknown gets the protocol's answer (an error or the empty
 * reply); nothing gdb sends can throw out of here.
 */
import { encodeAllRegisters, encodeRegister, type GeneralRegisters, TARGET_XML, WRITABLE_REGISTERS } from "./i386.ts"
import {
  bytesToHex,
  escape,
  framePacket,
  hexToBytes,
  hexToText,
  le32FromHex,
  PacketParser,
  parseHexNumber,
  textToHex
} from "./packets.ts"
import { continueBackward, continueForward, type Resumption, stepBackward, stepForward, StopPoints, type StopReason } from "./resume.ts"
import type { Target } from "./target.ts"

/** How the session ended: gdb killed the target, detached, or the live guest's run is over. */
export type SessionEnd = "killed" | "detached" | "exited"

/** Thread id of the one vCPU, as gdb sees it. */
const THREAD = "01"
/** Largest packet gdb may send us (PacketSize, hex). */
const PACKET_SIZE = 0x4000
/** Errors as gdbserver sends them: errno values. */
const E_FAULT = "E0e"
const E_INVALID = "E16"
const E_REFUSED = "E01"

const messageOf = (e: unknown): string => (e instanceof Error ? e.message : String(e))

export class GdbStub {
  private readonly parser = new PacketParser()
  private readonly points = new StopPoints()
  private ack = true
  /** What gdb said it understands in qSupported. */
  private gdbFeatures = new Set<string>()
  /** The last packet sent, for a NAK to resend. */
  private lastSent = ""
  private lastStop = `T05thread:${THREAD};`
  private resumption: Resumption | undefined
  /** Set once the session is over; the server then closes the connection. */
  ended: SessionEnd | undefined

  constructor(
    private readonly target: Target,
    private readonly write: (wire: string) => void
  ) {}

  get running(): boolean {
    return this.resumption !== undefined
  }

  /** Bytes from gdb, in any slicing. */
  receive(bytes: Uint8Array | string): void {
    for (const item of this.parser.feed(bytes)) {
      switch (item._tag) {
        case "Ack":
          break
        case "Nak":
          if (this.lastSent !== "") this.write(this.lastSent)
          break
        case "Interrupt":
          if (this.resumption !== undefined) this.stop({ _tag: "Interrupted" })
          break
        case "Packet":
          if (!item.checksumOk) {
            if (this.ack) this.write("-")
            break
          }
          if (this.ack) this.write("+")
          try {
            this.handle(item.data)
          } catch (e) {
            // A bug behind a command must not take vmrr down: gdb shows the text of an `E.` reply.
            this.send(escape(`E.vmrr: ${messageOf(e)}`))
          }
      }
      if (this.ended !== undefined) return
    }
  }

  /** Advances the running target by about `budget` instructions; sends the stop reply when it stops. */
  run(budget: number): void {
    const r = this.resumption
    if (r === undefined) return
    let stop: StopReason | undefined
    try {
      stop = r.advance(budget)
    } catch (e) {
      stop = { _tag: "Failed", message: messageOf(e) }
    }
    if (stop !== undefined) this.stop(stop)
  }

  private send(data: string): void {
    this.lastSent = framePacket(data)
    this.write(this.lastSent)
  }

  private stop(reason: StopReason): void {
    this.resumption = undefined
    const reply = this.stopReply(reason)
    if (reply.console !== undefined) this.send(`O${textToHex(reply.console)}`)
    this.lastStop = reply.packet
    this.send(reply.packet)
    if (reply.packet.startsWith("W") || reply.packet.startsWith("X")) this.ended = "exited"
  }

  private stopReply(reason: StopReason): { readonly packet: string; readonly console?: string } {
    const thread = `thread:${THREAD};`
    switch (reason._tag) {
      case "Stepped":
        return { packet: `T05${thread}` }
      case "Breakpoint": {
        const feature = `${reason.kind}break`
        return { packet: this.gdbFeatures.has(`${feature}+`) ? `T05${feature}:;${thread}` : `T05${thread}` }
      }
      case "Watchpoint":
        return { packet: `T05${reason.kind === "write" ? "watch" : reason.kind === "read" ? "rwatch" : "awatch"}:${reason.address.toString(16)};${thread}` }
      case "Interrupted":
        return { packet: `T02${thread}` }
      case "ReplayBegin":
        return { packet: `T05replaylog:begin;${thread}` }
      case "Failed":
        return { packet: `T05${thread}`, console: `vmrr: the target failed: ${reason.message}\n` }
      case "Ended": {
        const end = reason.end
        if (end._tag === "ReplayFailed") return { packet: `T05replaylog:end;${thread}`, console: `vmrr: ${end.message}\n` }
        const o = end.outcome
        const why = `vmrr: ${o.reason}${o.exitCode === undefined ? "" : ` (status ${o.exitCode})`}${o.message === undefined ? "" : `: ${o.message}`}\n`
        if (this.target.history !== undefined) return { packet: `T05replaylog:end;${thread}`, console: `${why}vmrr: end of the recording\n` }
        // A live run is over: the guest's exit status, or a signal for a run the model had to stop.
        if (o.reason === "shutdown") return { packet: "X0b", console: why }
        if (o.reason === "internal-error") return { packet: "X04", console: why }
        return { packet: `W${((o.exitCode ?? 0) & 0xff).toString(16).padStart(2, "0")}`, console: why }
      }
    }
  }

  private handle(packet: string): void {
    const reply = this.reply(packet)
    if (reply !== undefined) this.send(reply)
  }

  /** The reply to one packet; undefined when there is none now (a resumption answers when it stops). */
  private reply(packet: string): string | undefined {
    const command = packet[0] ?? ""
    const body = packet.slice(1)
    switch (command) {
      case "?":
        return this.lastStop
      case "g":
        return encodeAllRegisters(this.target.registers())
      case "G":
        return this.writeAllRegisters(body)
      case "p": {
        const n = parseHexNumber(body)
        return (n === undefined ? undefined : encodeRegister(this.target.registers(), n)) ?? E_INVALID
      }
      case "P":
        return this.writeRegister(body)
      case "m":
        return this.readMemory(body)
      case "M":
        return this.writeMemory(body)
      // The signal of C/S means nothing to a guest; a resume address is not used (gdb 7+ sets the PC with P or G).
      case "c":
      case "C":
      case "s":
      case "S":
        this.resumption = command === "c" || command === "C" ? continueForward(this.target, this.points) : stepForward(this.target, this.points)
        return undefined
      case "b":
        return this.reverse(body)
      case "v":
        return this.vPacket(packet)
      case "Z":
      case "z":
        return this.stopPoint(command === "Z", body)
      case "q":
        return this.query(packet)
      case "Q":
        if (packet === "QStartNoAckMode") {
          this.send("OK")
          this.ack = false
          return undefined
        }
        return ""
      case "H":
        return "OK"
      case "T":
        return body === THREAD || body === "1" ? "OK" : E_INVALID
      case "D":
        this.send("OK")
        this.ended = "detached"
        return undefined
      case "k":
        this.ended = "killed"
        return undefined
      default:
        return ""
    }
  }

  private reverse(body: string): string | undefined {
    const history = this.target.history
    if (history === undefined || (body !== "s" && body !== "c")) return ""
    this.resumption = body === "s" ? stepBackward(this.target, history) : continueBackward(this.target, history, this.points)
    return undefined
  }

  private vPacket(packet: string): string | undefined {
    if (packet === "vCont?") return "vCont;c;C;s;S"
    if (packet.startsWith("vCont;")) {
      // All-stop with one thread: the first action is what the thread does.
      const action = packet.slice(6).split(";")[0].split(":")[0]
      if (action[0] === "c" || action[0] === "C") this.resumption = continueForward(this.target, this.points)
      else if (action[0] === "s" || action[0] === "S") this.resumption = stepForward(this.target, this.points)
      else return ""
      return undefined
    }
    if (packet.startsWith("vKill")) {
      this.send("OK")
      this.ended = "killed"
      return undefined
    }
    return ""
  }

  private query(packet: string): string {
    if (packet.startsWith("qSupported")) {
      this.gdbFeatures = new Set(packet.slice("qSupported:".length).split(";"))
      const reverse = this.target.history === undefined ? "" : ";ReverseStep+;ReverseContinue+"
      return `PacketSize=${PACKET_SIZE.toString(16)};qXfer:features:read+;swbreak+;hwbreak+;QStartNoAckMode+;vContSupported+${reverse}`
    }
    if (packet.startsWith("qXfer:features:read:")) return this.features(packet.slice("qXfer:features:read:".length))
    if (packet.startsWith("qRcmd,")) {
      const command = hexToText(packet.slice(6))
      if (command === undefined) return E_INVALID
      return textToHex(this.target.monitor(command) ?? `unknown monitor command "${command}"; try "monitor help"\n`)
    }
    switch (packet) {
      case "qC":
        return `QC${THREAD}`
      case "qfThreadInfo":
        return `m${THREAD}`
      case "qsThreadInfo":
        return "l"
      case "qAttached":
        return "1"
      default:
        return ""
    }
  }

  /** `target.xml:OFFSET,LENGTH`: a slice of the description, `m` if more follows, `l` if it is the last. */
  private features(args: string): string {
    const match = /^([^:]+):([0-9a-fA-F]+),([0-9a-fA-F]+)$/.exec(args)
    if (match === null) return E_INVALID
    if (match[1] !== "target.xml") return "E00"
    const offset = Number.parseInt(match[2], 16)
    const length = Number.parseInt(match[3], 16)
    const part = TARGET_XML.slice(offset, offset + length)
    return `${offset + length >= TARGET_XML.length ? "l" : "m"}${escape(part)}`
  }

  private stopPoint(insert: boolean, body: string): string {
    const [type, addressText, kindText] = body.split(",")
    const address = parseHexNumber(addressText ?? "")
    const size = parseHexNumber(kindText ?? "")
    if (address === undefined || size === undefined) return E_INVALID
    const points = this.points
    switch (type) {
      case "0":
      case "1":
        if (insert) points.breakpoints.set(address, type === "0" ? "sw" : "hw")
        else points.breakpoints.delete(address)
        return "OK"
      case "2":
      case "3":
      case "4": {
        if (size === 0) return E_INVALID
        const w = { address, length: size, kind: type === "2" ? "write" : type === "3" ? "read" : "access" } as const
        // The CPU watches at most 32 read/access watchpoints (one debug-status bit each).
        if (insert && w.kind !== "write" && points.watchpoints.filter((x) => x.kind !== "write").length >= 32) return E_INVALID
        if (insert) points.addWatchpoint(w)
        else points.removeWatchpoint(w)
        return "OK"
      }
      default:
        return ""
    }
  }

  private readMemory(body: string): string {
    const [addressText, lengthText] = body.split(",")
    const address = parseHexNumber(addressText ?? "")
    const length = parseHexNumber(lengthText ?? "")
    if (address === undefined || length === undefined || length > PACKET_SIZE / 2) return E_INVALID
    const bytes = this.target.readMemory(address, length)
    return bytes === undefined ? E_FAULT : bytesToHex(bytes)
  }

  private writeMemory(body: string): string {
    const match = /^([0-9a-fA-F]+),([0-9a-fA-F]+):([0-9a-fA-F]*)$/.exec(body)
    const address = match === null ? undefined : parseHexNumber(match[1])
    const bytes = match === null ? undefined : hexToBytes(match[3])
    if (address === undefined || bytes === undefined || bytes.length !== parseHexNumber(match![2])) return E_INVALID
    if (!this.target.writable) return E_REFUSED
    return this.target.writeMemory(address, bytes) ? "OK" : E_FAULT
  }

  private writeAllRegisters(body: string): string {
    const registers = this.target.registers()
    for (let n = 0; n < WRITABLE_REGISTERS; n++) {
      const value = le32FromHex(body.slice(8 * n, 8 * n + 8))
      if (value === undefined) return E_INVALID
      registers[n] = value
    }
    return this.setRegisters(registers)
  }

  /** `P n=value` for one of the writable registers. */
  private writeRegister(body: string): string {
    const [numberText, valueText] = body.split("=")
    const n = parseHexNumber(numberText ?? "")
    const value = le32FromHex(valueText ?? "")
    if (n === undefined || value === undefined || n >= WRITABLE_REGISTERS) return E_INVALID
    const registers = this.target.registers()
    registers[n] = value
    return this.setRegisters(registers)
  }

  private setRegisters(registers: GeneralRegisters): string {
    if (!this.target.writable) return E_REFUSED
    this.target.writeRegisters(registers)
    return "OK"
  }
}
