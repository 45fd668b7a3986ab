/**
 * The WebSocket API of Cloudflare Workers inside a function's realm: `new WebSocketPair()` gives
 * `{ 0: client, 1: server }`; the function calls `server.accept()`, listens for `message`,
 * `close` and `error`, `send`s text or binary and `close(code, reason)`s, and returns
 * `new Response(null, { status: 101, webSocket: client })`. The runtime then binds the server
 * end to the host's session channel (session.ts) for as long as the session lasts.
 *
 * This file runs inside the sandbox: node: built-ins and its own folder only.
 */

export type WsData = string | Uint8Array

/** What the server end reports to the host once bound (the runtime sets it). */
export interface WsSink {
  send: (data: WsData) => void
  close: (code: number, reason: string) => void
}

const CONNECTING = 0
const OPEN = 1
const CLOSING = 2
const CLOSED = 3

/** Close codes a function may send (RFC 6455 §7.4: 1000, or 3000–4999 for applications). */
function validCloseCode (code: number): boolean {
  return code === 1000 || (Number.isInteger(code) && code >= 3000 && code <= 4999)
}

/** Most UTF-8 bytes of a close reason (a close frame's payload is at most 125 bytes). */
const MAX_REASON_BYTES = 123

export class PeerHostWebSocket extends EventTarget {
  static readonly CONNECTING = CONNECTING
  static readonly OPEN = OPEN
  static readonly CLOSING = CLOSING
  static readonly CLOSED = CLOSED
  readyState = CONNECTING
  /** @internal the other end of the pair */
  peer?: PeerHostWebSocket
  /** @internal which end: only the server end is the function's */
  readonly role: 'client' | 'server'
  /** @internal accept() was called */
  accepted = false
  /** @internal set when bound to the host; sends before that wait in `queued` */
  sink?: WsSink
  /** @internal close() was called once */
  closeSent = false
  /** @internal */
  queued: Array<{ data: WsData } | { code: number, reason: string }> = []

  /** the function's listeners, by the wrapper registered for each (type, listener, capture) */
  #wrappers = new Map<string, WeakMap<object, (event: Event) => void>>()
  /** what the function's listeners threw during the dispatch under way */
  #thrown: unknown[] = []

  constructor (role: 'client' | 'server') {
    super()
    this.role = role
  }

  /*
   * Node's EventTarget does not let an exception thrown by a listener reach dispatchEvent's caller:
   * it rethrows it on a later tick as an uncaught exception, which ended the shim (exit code 1) and
   * every session in its sandbox — the issue's own echo example, answering a close with the peer's
   * code (`server.close(event.code)`), throws when that code is 1001 or 1006. Each listener is
   * wrapped so what it throws is kept and rethrown by dispatchEvent, where the runtime reports it in
   * the function's logs (realm.ts) and the sandbox serves on.
   */
  override addEventListener (...[type, listener, options]: Parameters<EventTarget['addEventListener']>): void {
    if (listener === null || listener === undefined || (typeof listener !== 'function' && typeof listener.handleEvent !== 'function')) { super.addEventListener(type, listener, options); return }
    const key = `${type}\0${typeof options === 'boolean' ? options : options?.capture === true}`
    let byListener = this.#wrappers.get(key)
    if (byListener === undefined) this.#wrappers.set(key, byListener = new WeakMap())
    let wrapper = byListener.get(listener)
    if (wrapper === undefined) {
      wrapper = (event: Event) => {
        try {
          if (typeof listener === 'function') listener.call(this, event)
          else listener.handleEvent(event)
        } catch (err) { this.#thrown.push(err) }
      }
      byListener.set(listener, wrapper)
    }
    super.addEventListener(type, wrapper, options)
  }

  override removeEventListener (...[type, listener, options]: Parameters<EventTarget['removeEventListener']>): void {
    const key = `${type}\0${typeof options === 'boolean' ? options : options?.capture === true}`
    const wrapper = listener === null || listener === undefined ? undefined : this.#wrappers.get(key)?.get(listener)
    super.removeEventListener(type, wrapper ?? listener, options)
  }

  /** Dispatches to every listener; then throws the first thing a listener threw, if any. */
  override dispatchEvent (event: Event): boolean {
    const outer = this.#thrown
    this.#thrown = []
    try {
      const result = super.dispatchEvent(event)
      if (this.#thrown.length > 0) throw this.#thrown[0]
      return result
    } finally {
      this.#thrown = outer
    }
  }

  accept (): void {
    if (this.role !== 'server') throw new TypeError('accept() is called on the server end of a WebSocketPair (pair[1]); the client end (pair[0]) goes in the Response')
    if (this.accepted) throw new TypeError('accept() was already called on this WebSocket')
    this.accepted = true
    this.readyState = OPEN
  }

  send (data: unknown): void {
    if (!this.accepted) throw new TypeError('call server.accept() before server.send()')
    if (this.readyState !== OPEN) throw new TypeError('the WebSocket is closing or closed; send() is not possible')
    let out: WsData
    if (typeof data === 'string') out = data
    else if (data instanceof ArrayBuffer || Object.prototype.toString.call(data) === '[object ArrayBuffer]') out = new Uint8Array((data as ArrayBuffer).slice(0))
    else if (ArrayBuffer.isView(data)) out = new Uint8Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength))
    else throw new TypeError('send() takes a string, an ArrayBuffer or an ArrayBuffer view')
    if (this.sink !== undefined) this.sink.send(out)
    else this.queued.push({ data: out })
  }

  close (code: number = 1000, reason: string = ''): void {
    if (!validCloseCode(code)) throw new TypeError(`close code ${String(code)} is not allowed: use 1000 or 3000–4999`)
    if (typeof reason !== 'string' || Buffer.byteLength(reason) > MAX_REASON_BYTES) throw new TypeError(`the close reason must be a string of at most ${MAX_REASON_BYTES} UTF-8 bytes`)
    // a close answered from a `close` listener is allowed (readyState is CLOSED by then)
    if (this.closeSent) return
    this.closeSent = true
    if (this.readyState !== CLOSED) this.readyState = CLOSING
    if (this.sink !== undefined) this.sink.close(code, reason)
    else this.queued.push({ code, reason })
  }

  /** @internal the host delivered a message from the client */
  deliver (data: WsData): void {
    if (this.readyState !== OPEN) return
    // as in Workers: text arrives as a string, binary as an ArrayBuffer
    const value = typeof data === 'string' ? data : data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength)
    this.dispatchEvent(new MessageEvent('message', { data: value }))
  }

  /** @internal the client closed (or the host ended the session) */
  closedByPeer (code: number, reason: string): void {
    if (this.readyState === CLOSED) return
    this.readyState = CLOSED
    const ev = new Event('close') as Event & { code: number, reason: string, wasClean: boolean }
    Object.defineProperties(ev, { code: { value: code }, reason: { value: reason }, wasClean: { value: code !== 1006 } })
    this.dispatchEvent(ev)
  }

  /** @internal the session failed (the host lost the client) */
  failed (message: string): void {
    const ev = new Event('error') as Event & { message: string }
    Object.defineProperty(ev, 'message', { value: message })
    this.dispatchEvent(ev)
  }
}

/** `new WebSocketPair()`: `{ 0: client, 1: server }`, iterable as in Workers. */
export class WebSocketPair {
  0: PeerHostWebSocket
  1: PeerHostWebSocket
  constructor () {
    const client = new PeerHostWebSocket('client')
    const server = new PeerHostWebSocket('server')
    client.peer = server
    server.peer = client
    this[0] = client
    this[1] = server
  }

  * [Symbol.iterator] (): Generator<PeerHostWebSocket> { yield this[0]; yield this[1] }
}

/** The upgrade answer a function returns: `status` 101 and the client end of a pair. */
const upgrades = new WeakMap<Response, PeerHostWebSocket>()

/**
 * `Response` as functions see it: the Web one, plus what Workers add for WebSockets — status
 * 101 with `webSocket: client` (undici's Response refuses a status under 200).
 */
export class FunctionResponse extends Response {
  constructor (body?: ConstructorParameters<typeof Response>[0], init?: ResponseInit & { webSocket?: unknown }) {
    const ws = init?.webSocket
    if (init?.status === 101) {
      if (!(ws instanceof PeerHostWebSocket) || ws.role !== 'client') throw new TypeError('a 101 response needs `webSocket`: the client end (pair[0]) of a WebSocketPair')
      if (body !== null && body !== undefined) throw new TypeError('a 101 response has no body')
      const { webSocket: _ws, status: _s, ...rest } = init
      super(null, { ...rest, status: 200 })
      upgrades.set(this, ws)
      return
    }
    if (ws !== undefined && ws !== null) throw new TypeError('`webSocket` is only allowed with status 101')
    super(body, init)
  }

  get webSocket (): PeerHostWebSocket | null { return upgrades.get(this) ?? null }

  /** `x instanceof Response` stays true for every Response (a fetch() answer, Response.json()) */
  static override [Symbol.hasInstance] (x: unknown): boolean { return Function.prototype[Symbol.hasInstance].call(Response, x) }
}

// `status` is an accessor on Response.prototype (undici); the subclass reports 101 for upgrades
const baseStatus = Object.getOwnPropertyDescriptor(Response.prototype, 'status')!.get!
Object.defineProperty(FunctionResponse.prototype, 'status', {
  configurable: true,
  enumerable: true,
  get (this: Response): number { return upgrades.has(this) ? 101 : baseStatus.call(this) }
})

/** The client end a 101 response carries, or undefined for any other response. */
export function upgradeOf (response: Response): PeerHostWebSocket | undefined {
  return upgrades.get(response)
}

/** `scheduler.wait(ms)` of Workers: a promise that resolves after `ms` (timers of the execution). */
export function schedulerFor (setTimer: (fn: () => void, ms: number) => unknown): { wait: (ms: number) => Promise<void> } {
  return {
    wait: async (ms: number) => await new Promise<void>(resolve => { setTimer(resolve, Math.max(0, Number(ms) || 0)) })
  }
}
