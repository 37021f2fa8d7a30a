import { type Field, kindByName, kindLayouts } from "./eventLayouts.ts"
import { LOG_WORDS, type RawChunk, rawEvents, type RawWriter, releaseRawChunk, takeWords, writeRawEvent } from "./rawEvents.ts"
import type { VmEvent } from "./VmEvent.ts"


/**
 * Where the hot loop puts events: binary records in a typed array (rawEvents.ts), no
 * Effect, no promise, and no object per event on the paths that run per exit. The kernel
 * and userspace share one per VM, as KVM tracepoints and QEMU trace events land in one
 * trace buffer. The edge drains it into chunks.
 *
 * `push` takes any event as an object; the methods named after a kind write the records
 * of the kinds every I/O exit logs without building one.
 */
export class EventLog implements RawWriter {
  /** Sequence number of the next event. */
  nextSeq = 0
  words = takeWords(LOG_WORDS)
  pos = 0
  objects: Array<unknown> = []
  private count = 0

  ensure(n: number): void {
    if (this.pos + n <= this.words.length) return
    const grown = takeWords(Math.max(this.words.length * 2, this.pos + n))
    grown.set(this.words.subarray(0, this.pos))
    this.words = grown
  }

  /** Appends an event that the caller built with `seq: log.nextSeq`. */
  push(event: VmEvent): void {
    if (event.seq !== this.nextSeq) throw new Error(`event log: ${event._tag} with seq ${event.seq}, expected ${this.nextSeq}`)
    writeRawEvent(this, event)
    this.count++
    this.nextSeq++
  }

  /** `kvm_entry`. */
  vmEntry(vcpu: number, time: number, rip: number): void {
    const at = this.reserve(4)
    const w = this.words
    w[at] = VM_ENTRY
    w[at + 1] = vcpu
    w[at + 2] = time
    w[at + 3] = rip >>> 0
  }

  /** `kvm_exit`; `guestPhysical` only for the exits that report one. */
  vmExit(
    vcpu: number, time: number, reason: number, qualification: number, guestPhysical: number | undefined,
    rip: number, instructionLength: number, handledIn: "kernel" | "userspace"
  ): void {
    const at = this.reserve(10)
    const w = this.words
    w[at] = VM_EXIT
    w[at + 1] = vcpu
    w[at + 2] = time
    w[at + 3] = reason
    w[at + 4] = qualification >>> 0
    if (guestPhysical === undefined) {
      w[at + 5] = 0
      this.pos = at + 6
    } else {
      w[at + 5] = 1
      w[at + 6] = guestPhysical >>> 0
      this.pos = at + 7
    }
    const p = this.pos
    w[p] = rip >>> 0
    w[p + 1] = instructionLength
    w[p + 2] = handledIn === "kernel" ? 0 : 1
    this.pos = p + 3
  }

  /** `kvm_pio` of one access. */
  pio(vcpu: number, time: number, direction: "in" | "out", port: number, size: 1 | 2 | 4, value: number): void {
    const at = this.reserve(9)
    const w = this.words
    w[at] = PIO
    w[at + 1] = vcpu
    w[at + 2] = time
    w[at + 3] = direction === "in" ? 0 : 1
    w[at + 4] = port
    w[at + 5] = size >> 1 // the index in [1, 2, 4]
    w[at + 6] = 1
    w[at + 7] = 1
    w[at + 8] = value >>> 0
  }

  /** `kvm_mmio`. */
  mmio(vcpu: number, time: number, op: "read" | "write" | "unsatisfied-read", gpa: number, length: 1 | 2 | 4, value: number): void {
    const at = this.reserve(7)
    const w = this.words
    w[at] = MMIO
    w[at + 1] = vcpu
    w[at + 2] = time
    w[at + 3] = op === "read" ? 0 : op === "write" ? 1 : 2
    w[at + 4] = gpa
    w[at + 5] = length >> 1
    w[at + 6] = value >>> 0
  }

  /** `kvm_userspace_exit`. */
  userspaceExit(vcpu: number, time: number, exitReason: number, detail?: string): void {
    const at = this.reserve(6)
    const w = this.words
    w[at] = USERSPACE_EXIT
    w[at + 1] = vcpu
    w[at + 2] = time
    w[at + 3] = exitReason
    if (detail === undefined) {
      w[at + 4] = 0
      this.pos = at + 5
    } else {
      w[at + 4] = 1
      w[at + 5] = this.objects.push(detail) - 1
    }
  }

  /** An access to an address no device claims. */
  unassigned(vcpu: number, time: number, space: "io" | "mmio", address: number, size: 1 | 2 | 4, write: boolean): void {
    const at = this.reserve(7)
    const w = this.words
    w[at] = UNASSIGNED
    w[at + 1] = vcpu
    w[at + 2] = time
    w[at + 3] = space === "io" ? 0 : 1
    w[at + 4] = address
    w[at + 5] = size >> 1
    w[at + 6] = write ? 1 : 0
  }

  get pending(): number {
    return this.count
  }

  /** Takes everything logged so far, in order, as binary records. */
  drain(): RawChunk {
    // A full buffer goes with the chunk (copying it would cost more than taking a spare
    // one); a small chunk is copied, so that a reader keeping many does not keep a buffer each.
    const handOver = this.pos >= this.words.length >> 2
    const chunk: RawChunk = {
      firstSeq: this.nextSeq - this.count,
      count: this.count,
      words: handOver ? this.words.subarray(0, this.pos) : this.words.slice(0, this.pos),
      objects: this.objects
    }
    if (handOver) this.words = takeWords(this.words.length)
    this.pos = 0
    this.count = 0
    if (chunk.objects.length > 0) this.objects = []
    return chunk
  }

  /** The same as objects, for readers that are not on a hot path. */
  drainEvents(): Array<VmEvent> {
    const chunk = this.drain()
    const events = rawEvents(chunk)
    releaseRawChunk(chunk)
    return events
  }

  /** Room for a record of `words` words; counts the event. Returns where it starts. */
  private reserve(words: number): number {
    if (this.pos + words > this.words.length) this.ensure(words)
    const at = this.pos
    this.pos = at + words
    this.count++
    this.nextSeq++
    return at
  }
}

/**
 * The kinds with their own writer: their layouts are written out by hand above, so a
 * change to their schema must fail here, at load, not write records that read back wrong.
 */
const handWritten = (tag: string, signature: string): number => {
  const k = kindByName.get(tag)
  const describe = (f: Field) => `${f.name}${f.optional ? "?" : ""}:${f.codec._tag === "literal" ? f.codec.values.join("|") : f.codec._tag}`
  const actual = k === undefined ? "none" : kindLayouts[k]!.fields.map(describe).join(",")
  if (actual !== signature) throw new Error(`event log: ${tag}'s writer expects fields ${signature}, the schema has ${actual}`)
  return k!
}

const VM_ENTRY = handWritten("VmEntry", "seq:int,vcpu:int,time:int,rip:int")
const VM_EXIT = handWritten(
  "VmExit",
  "seq:int,vcpu:int,time:int,reason:int,qualification:int,guestPhysical?:int,rip:int,instructionLength:int,handledIn:kernel|userspace"
)
const PIO = handWritten("Pio", "seq:int,vcpu:int,time:int,direction:in|out,port:int,size:1|2|4,count:int,values:ints")
const MMIO = handWritten("Mmio", "seq:int,vcpu:int,time:int,op:read|write|unsatisfied-read,gpa:int,length:1|2|4,value:int")
const USERSPACE_EXIT = handWritten("UserspaceExit", "seq:int,vcpu:int,time:int,exitReason:int,detail?:string")
const UNASSIGNED = handWritten("Unassigned", "seq:int,vcpu:int,time:int,space:io|mmio,address:int,size:1|2|4,write:bool")
