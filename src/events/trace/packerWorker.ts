import * as fs from "node:fs"
import { type MessagePort, receiveMessageOnPort, workerData } from "node:worker_threads"
import { makePackedCodec } from "./packedCodec.ts"
import { flagReady, flagResults, type PackerTables, type PackReply, type PackRequest } from "./packerProtocol.ts"
import { frameOf } from "./frameBytes.ts"
import { makeRawChunkFramer } from "./rawPack.ts"
import { packedChunkAt, packsTo } from "./verifyPacked.ts"

/**
 * The packer thread (packerThread.ts): raw chunks in, packed, framed (msgpack, CRC) and
 * written at their offsets, in the order they came; each reply is followed by a bump of
 * the shared results counter so that a writer blocked in `Atomics.wait` wakes.
 */

const { port, flags, tables } = workerData as { readonly port: MessagePort; readonly flags: Int32Array; readonly tables: PackerTables }
const hostInputs = new Set(tables.hostInputTags)
const codec = makePackedCodec({
  layouts: tables.layouts,
  isHostInputTag: (tag) => hostInputs.has(tag),
  // Only decoding validates msgpack-coded fields, and this thread never decodes.
  is: () => () => true
})
const frameRawChunk = makeRawChunkFramer(codec, tables.layouts)

interface File {
  readonly fd: number
  position: number
  /** Something for it failed: nothing more is written. */
  failed: boolean
}
const files = new Map<number, File>()

const reply = (message: PackReply, transfer: Array<ArrayBuffer> = []): void => {
  port.postMessage(message, transfer)
  Atomics.add(flags, flagResults, 1)
  Atomics.notify(flags, flagResults)
}

const writeAt = (file: File, bytes: Uint8Array): void => {
  let done = 0
  while (done < bytes.length) done += fs.writeSync(file.fd, bytes, done, bytes.length - done, file.position + done)
  file.position += bytes.length
}

const failed = (id: number, words: Float64Array | undefined, fields: { error?: string; tooLarge?: number; writeFailed?: boolean }): void => {
  if (words === undefined) reply({ _tag: "Failed", id, ...fields })
  else reply({ _tag: "Failed", id, ...fields, words }, words.buffer instanceof ArrayBuffer ? [words.buffer] : [])
}

const handle = (request: PackRequest): void => {
  switch (request._tag) {
    case "Open":
      files.set(request.file, { fd: request.fd, position: request.position, failed: false })
      return
    case "Close":
      files.delete(request.file)
      return
    case "Verify":
      return reply({ _tag: "Verified", id: request.id, same: packsTo(codec, request, request.expected) })
    case "VerifyAt": {
      const expected = packedChunkAt(request.fd, request.size, request.offset, request.firstSeq)
      return reply({ _tag: "Verified", id: request.id, same: expected !== undefined && packsTo(codec, request, expected) })
    }
  }
  const file = files.get(request.file)
  const words = request._tag === "Chunk" ? request.words : undefined
  if (file === undefined || file.failed) return failed(request.id, words, {})
  let frame: Uint8Array
  let firstTime = 0
  let inputSeqs: ReadonlyArray<number> = []
  try {
    if (request._tag === "Frame") frame = request.frame
    else if (request._tag === "Checkpoint") {
      const framed = frameOf(request.checkpoint)
      if (typeof framed === "number") {
        file.failed = true
        return failed(request.id, words, { tooLarge: framed })
      }
      frame = framed
    } else {
      const framed = frameRawChunk(request)
      if (typeof framed.frame === "number") {
        file.failed = true
        return failed(request.id, words, { tooLarge: framed.frame })
      }
      frame = framed.frame
      firstTime = framed.entry.firstTime
      inputSeqs = framed.entry.inputSeqs
    }
  } catch (e) {
    file.failed = true
    return failed(request.id, words, { error: e instanceof Error ? e.message : String(e) })
  }
  try {
    writeAt(file, frame)
  } catch (e) {
    file.failed = true
    return failed(request.id, words, { error: e instanceof Error ? e.message : String(e), writeFailed: true })
  }
  // Transferred words go back: freed by the writer's thread, not this one's garbage collector.
  if (words !== undefined && words.buffer instanceof ArrayBuffer) {
    reply({ _tag: "Written", id: request.id, length: frame.length, firstTime, inputSeqs, words }, [words.buffer])
  } else reply({ _tag: "Written", id: request.id, length: frame.length, firstTime, inputSeqs })
}

/**
 * While requests keep coming (a recording or a replay runs), they are taken straight from
 * the port, the thread sleeping a millisecond at a time in between, rather than through
 * the event loop: waking a thread parked in its event loop costs every post a system call
 * on the vCPU thread. After `IDLE_MS` without a request, back to the event loop.
 */
const IDLE_MS = 20
const POLL_MS = 1
const takeWhileBusy = (): void => {
  let last = performance.now()
  for (;;) {
    const received = receiveMessageOnPort(port)
    if (received !== undefined) {
      handle(received.message as PackRequest)
      last = performance.now()
    } else if (performance.now() - last > IDLE_MS) return
    // Nobody notifies this slot: a plain sleep.
    else Atomics.wait(flags, flagReady, 1, POLL_MS)
  }
}

port.on("message", (request: PackRequest) => {
  handle(request)
  takeWhileBusy()
})

Atomics.store(flags, flagReady, 1)
Atomics.notify(flags, flagReady)
