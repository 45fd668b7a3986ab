/**
 * Types for PeerHost functions (`import type { ExportedHandler } from 'peerhost/types'`, or
 * `"types": ["peerhost/types"]` in tsconfig.json). A function is an ES module whose default export
 * has `fetch(request, env, ctx)`, as in Cloudflare Workers; `Request`, `Response`, `URL`, `fetch`
 * and the other web globals come from TypeScript's "webworker" lib, which mirrors what the
 * sandbox provides better than "dom" (no window, no document).
 */

/**
 * What a function sees as `env`: the project's `env` from peerhost.json and its secrets
 * (`peerhost secret put`, or `.dev.vars` under `peerhost dev`), all strings. Extend it for your
 * own names: `interface MyEnv extends Env { API_TOKEN: string }`.
 */
export interface Env {
  readonly [name: string]: string | undefined
}

/** The third argument of `fetch`. */
export interface ExecutionContext {
  /** keeps the execution alive until `promise` settles (bounded by the function's timeoutMs) */
  waitUntil (promise: Promise<unknown>): void
  /** accepted for Workers compatibility; PeerHost has no origin to fall back to, so it does nothing */
  passThroughOnException (): void
}

/** The handler of one HTTP request. */
export type FetchHandler<E = Env> = (request: Request, env: E, ctx: ExecutionContext) => Response | Promise<Response>

/** The default export of a function module: `export default { fetch } satisfies ExportedHandler` */
export interface ExportedHandler<E = Env> {
  fetch: FetchHandler<E>
}

declare global {
  /**
   * The server end of a WebSocketPair as the function uses it (sandbox/runtime/websocket.ts):
   * `accept()` before answering 101; `send` text or binary (at most the session's message size,
   * 1 MiB by default); `close(code, reason)` with 1000–1003, 1007–1014 or 3000–4999 and at most 123 UTF-8 bytes;
   * events 'message', 'close' and 'error'.
   */
  interface WebSocket {
    /** Workers: starts handling events on the server side of a WebSocketPair */
    accept (): void
  }

  /** `const { 0: client, 1: server } = new WebSocketPair()`, as in Cloudflare Workers. */
  class WebSocketPair {
    constructor ()
    0: WebSocket
    1: WebSocket
  }

  interface ResponseInit {
    /** Workers: the client side of a WebSocketPair, answered with status 101 */
    webSocket?: WebSocket | null
  }

  /** Workers' scheduler: `await scheduler.wait(ms)` */
  var scheduler: { wait (ms: number): Promise<void> }
}

// With @types/node the global Response takes undici's ResponseInit: the same field there
declare module 'undici-types' {
  interface ResponseInit {
    webSocket?: WebSocket | null
  }
}
