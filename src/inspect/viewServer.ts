import * as fs from "node:fs"
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import type { ViewModel } from "./viewModel.ts"

/** The page could not be served: the port is taken, or the page's files are missing. */
export class ViewServerError extends Data.TaggedError("ViewServerError")<{ readonly reason: string }> {
  override get message(): string {
    return `cannot serve the viewer: ${this.reason}`
  }
}

/** The page's files, served as they are in the repo: no build step. */
const assets: Record<string, string> = {
  "/": "index.html",
  "/index.html": "index.html",
  "/view.js": "view.js",
  "/view.css": "view.css"
}
const contentTypes: Record<string, string> = { html: "text/html", js: "text/javascript", css: "text/css" }

const readAssets = (): Effect.Effect<Map<string, { body: Buffer; type: string }>, ViewServerError> =>
  Effect.try({
    try: () => {
      const out = new Map<string, { body: Buffer; type: string }>()
      for (const [path, file] of Object.entries(assets)) {
        const type = contentTypes[file.slice(file.lastIndexOf(".") + 1)]
        out.set(path, { body: fs.readFileSync(new URL(`./view/${file}`, import.meta.url)), type: `${type}; charset=utf-8` })
      }
      return out
    },
    catch: (e) => new ViewServerError({ reason: e instanceof Error ? e.message : String(e) })
  })

/**
 * Serves the page and its model on 127.0.0.1 (never another interface: a trace holds a
 * guest's memory image) for as long as the scope lasts; port 0 picks a free one.
 */
export const serveView = (model: ViewModel, port: number): Effect.Effect<string, ViewServerError, Scope.Scope> =>
  Effect.gen(function* () {
    const files = yield* readAssets()
    files.set("/model.json", { body: Buffer.from(JSON.stringify(model)), type: "application/json" })
    const server = http.createServer((request, response) => {
      const path = new URL(request.url ?? "/", "http://localhost").pathname
      const file = request.method === "GET" ? files.get(path) : undefined
      if (file === undefined) {
        response.writeHead(404, { "content-type": "text/plain" }).end("not found\n")
        return
      }
      response.writeHead(200, { "content-type": file.type, "cache-control": "no-store" }).end(file.body)
    })
    const address = yield* Effect.acquireRelease(
      Effect.async<AddressInfo, ViewServerError>((resume) => {
        server.once("error", (e) => resume(Effect.fail(new ViewServerError({ reason: e.message }))))
        server.listen(port, "127.0.0.1", () => resume(Effect.succeed(server.address() as AddressInfo)))
      }),
      () => Effect.async<void>((resume) => {
        server.closeAllConnections()
        server.close(() => resume(Effect.void))
      })
    )
    return `http://127.0.0.1:${address.port}/`
  })
