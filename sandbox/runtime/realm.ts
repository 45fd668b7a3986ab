/**
 * Runs one execution of a function bundle in a fresh JavaScript realm (`node:vm` context): builds
 * the Web-standard `Request`, calls `fetch(request, env, ctx)`, reads the returned `Response`
 * with a size cap, captures `console` with a byte cap, honours `ctx.waitUntil`, and stops waiting
 * at the wall-clock limit. Shared by the gVisor shim and the development executor.
 *
 * The realm separates executions' globals; it is NOT a security boundary (Node's vm docs say so):
 * the Web classes handed in come from this process's realm. In gVisor the sandbox is the boundary;
 * a function that escapes its realm reaches only the shim of its own sandbox.
 *
 * Time limits: an idle wait past `timeoutMs` (a promise that never settles) is LIMIT_TIMEOUT,
 * answered here. Code that keeps the CPU busy past the limit blocks this event loop, so the host
 * kills the process (gVisor: the sandbox; dev: the worker thread) when no answer came by
 * `timeoutMs` + grace and reports LIMIT_CPU (the shim's own timer could not fire).
 */
import { AsyncLocalStorage } from 'node:async_hooks'
import vm from 'node:vm'
import { inspect } from 'node:util'
import { webcrypto } from 'node:crypto'
import { STREAM_BUFFER_MAX_BYTES, STREAM_CHUNK_BYTES, type RealmOutcome, type ShimError, type ShimLimits, type ShimRequest, type ShimResponse } from './messages.ts'
import { compatBuffer, compatRequire } from './compat.ts'
import { bundleFileName, cleanStack, registerSourceMap } from './stack.ts'
import { FunctionResponse, schedulerFor, upgradeOf, WebSocketPair, type WsData } from './websocket.ts'

export type { RealmOutcome } from './messages.ts'

/** Forwards a function's `fetch()` to the host broker; rejects with a public message. */
export type FetchBridge = (request: ShimRequest) => Promise<ShimResponse>

const scriptCache = new Map<string, vm.Script>()
/** the source path of each bundle's entry (`functions/x.ts`), from the build's banner */
const entries = new Map<string, string>()
const MAX_CACHED_SCRIPTS = 16
const ENTRY_BANNER = /^\/\/ peerhost-entry: (\S+)/

/** Compiles a bundle once; the compiled script runs in any number of fresh contexts. */
export function compileBundle (cid: string, bundle: Uint8Array): vm.Script {
  let script = scriptCache.get(cid)
  if (script !== undefined) return script
  const source = new TextDecoder().decode(bundle)
  // CommonJS wrapper evaluated inside the realm, so `module`/`exports` are the realm's objects;
  // `require` is the nodejs_compat subset (compat.ts). lineOffset -1: the bundle's first line is
  // line 1 in stack traces, as in its source map
  script = new vm.Script(`(function (require) { const module = { exports: {} }; const exports = module.exports;\n${source}\n;return module.exports })`, {
    filename: bundleFileName(cid),
    lineOffset: -1
  })
  if (scriptCache.size >= MAX_CACHED_SCRIPTS) {
    const oldest = scriptCache.keys().next().value as string
    scriptCache.delete(oldest)
    entries.delete(oldest)
  }
  scriptCache.set(cid, script)
  const entry = ENTRY_BANNER.exec(source)
  if (entry !== null) entries.set(cid, entry[1])
  registerSourceMap(cid, source)
  return script
}

const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'] as const

/**
 * The function's request handler: `export default { fetch }`, or named method exports
 * (`export function GET (request, env, ctx)`), where HEAD falls back to GET and other methods get
 * 405. Undefined when the bundle has neither.
 */
function handlerOf (exportsObj: any): ((request: Request, env: unknown, ctx: unknown) => unknown) | undefined {
  const def = exportsObj?.default ?? exportsObj
  if (def !== null && typeof def === 'object' && typeof def.fetch === 'function') return (r, e, c) => def.fetch(r, e, c)
  if (exportsObj === null || typeof exportsObj !== 'object') return undefined
  const own = METHODS.filter(m => typeof exportsObj[m] === 'function')
  if (own.length === 0) return undefined
  const allow = [...own, ...(own.includes('GET') && !own.includes('HEAD') ? ['HEAD'] : [])].join(', ')
  return (request, env, ctx) => {
    const m = request.method.toUpperCase()
    const fn = exportsObj[m] ?? (m === 'HEAD' ? exportsObj.GET : undefined)
    if (typeof fn !== 'function') return new Response(null, { status: 405, headers: { allow } })
    return fn(request, env, ctx)
  }
}

export function hasBundle (cid: string): boolean {
  return scriptCache.has(cid)
}


class LogSink {
  text = ''
  bytes = 0
  truncated = false
  readonly max: number
  /** maps stack frames to the builder's sources and drops the runtime's */
  private readonly clean: (text: string) => string
  constructor (max: number, clean: (text: string) => string = t => t) { this.max = max; this.clean = clean }

  write (level: string, args: unknown[]): void {
    if (this.truncated) return
    let line: string
    try {
      line = args.map(a => typeof a === 'string' ? a : inspect(a, { depth: 4, maxArrayLength: 100, maxStringLength: this.max, breakLength: Infinity })).join(' ')
    } catch {
      line = '[unprintable]'
    }
    line = this.clean(line)
    if (line.length > this.max) line = line.slice(0, this.max)
    const entry = (level === 'log' ? '' : `[${level}] `) + line + '\n'
    const size = Buffer.byteLength(entry)
    if (this.bytes + size > this.max) {
      const room = this.max - this.bytes
      // cut on a character boundary, under the byte budget
      const buf = Buffer.from(entry).subarray(0, Math.max(0, room))
      const cut = new TextDecoder('utf-8', { fatal: false }).decode(buf).replace(/\uFFFD$/, '')
      this.text += cut
      this.bytes += Buffer.byteLength(cut)
      this.truncated = true
      return
    }
    this.text += entry
    this.bytes += size
  }
}

class TimeoutSignal extends Error {}

function toRequest (req: ShimRequest): Request {
  const hasBody = req.body.byteLength > 0 && req.method !== 'GET' && req.method !== 'HEAD'
  // no AbortSignal: undici keeps a signal's requests reachable until finalizers run, which a busy
  // shim can postpone indefinitely (measured: the heap grows by ~2 KB per execution)
  return new Request(req.url, {
    method: req.method,
    headers: req.headers,
    body: hasBody ? req.body : undefined
  })
}

async function readCapped (response: Response, max: number): Promise<{ body?: Uint8Array, measured: number }> {
  if (response.body === null) return { body: new Uint8Array(0), measured: 0 }
  const reader = response.body.getReader()
  const chunks: Uint8Array[] = []
  let total = 0
  for (;;) {
    const { done, value } = await reader.read()
    if (done) break
    // chunks may come from the function's realm, where `instanceof Uint8Array` is false
    if (!ArrayBuffer.isView(value)) {
      reader.cancel().catch(() => {})
      throw new TypeError('the response body stream produced a chunk that is not bytes')
    }
    const chunk = new Uint8Array(value.buffer, value.byteOffset, value.byteLength)
    total += chunk.byteLength
    if (total > max) {
      reader.cancel().catch(() => {})
      return { measured: total }
    }
    chunks.push(chunk)
  }
  const body = new Uint8Array(total)
  let off = 0
  for (const c of chunks) { body.set(c, off); off += c.byteLength }
  return { body, measured: total }
}

/** V8's error for a buffer the process could not get memory for (any realm's RangeError). */
function allocationFailed (err: unknown): boolean {
  return err !== null && typeof err === 'object' && (err as Error).name === 'RangeError' && /allocation failed/i.test(String((err as Error).message))
}

function describeThrow (err: unknown): string {
  if (err !== null && typeof err === 'object' && 'stack' in err && typeof (err as any).stack === 'string') return (err as any).stack
  try { return String(err) } catch { return '[unprintable value]' }
}

export interface RunOptions {
  cid: string
  bundle?: Uint8Array
  request: ShimRequest
  env: Record<string, string>
  limits: ShimLimits
  fetchBridge?: FetchBridge
  /** set when the request is a WebSocket upgrade the host can hold open (session.ts) */
  session?: SessionBridge
  /** set when the host can relay a streamed response body (session.ts) */
  stream?: StreamBridge
}

/** How a streamed response body reaches the host. */
export interface StreamBridge {
  /** most body bytes in all */
  maxBytes: number
  head: (status: number, headers: Array<[string, string]>) => void
  /** sends one piece (≤ STREAM_CHUNK_BYTES); resolves when the host has room for more */
  chunk: (data: Uint8Array) => Promise<void>
}

const NOT_YET = Symbol('not yet')

/**
 * Reads a response body for a host that can relay streams: a body that is whole at once (every
 * read settles without the event loop turning) and small is returned whole, as without a bridge;
 * otherwise the head goes out and the body follows chunk by chunk, each send waiting for the
 * host's room (backpressure), all of it within the execution's wall-clock limit.
 */
async function readOrStream (response: Response, bridge: StreamBridge, timedOut: Promise<never>): Promise<{ body?: Uint8Array, streamed?: number, error?: ShimError, thrown?: unknown, timedOut?: true }> {
  if (response.body === null) return { body: new Uint8Array(0) }
  const reader = response.body.getReader()
  const held: Uint8Array[] = []
  let total = 0
  let streamed: number | undefined
  const send = async (chunk: Uint8Array): Promise<void> => {
    for (let off = 0; off < chunk.byteLength; off += STREAM_CHUNK_BYTES) {
      const piece = chunk.subarray(off, Math.min(chunk.byteLength, off + STREAM_CHUNK_BYTES))
      streamed! += piece.byteLength
      await Promise.race([bridge.chunk(piece), timedOut])
    }
  }
  const start = async (): Promise<void> => {
    streamed = 0
    bridge.head(response.status, [...response.headers])
    for (const c of held.splice(0)) await send(c)
  }
  try {
    for (;;) {
      const next = reader.read()
      if (streamed === undefined) {
        // a body the function holds already settles in microtasks; one still being produced waits for the event loop
        const first = await Promise.race([next, new Promise<typeof NOT_YET>(resolve => { setImmediate(resolve, NOT_YET) })])
        if (first === NOT_YET) await start()
      }
      const { done, value } = await Promise.race([next, timedOut])
      if (done) break
      // chunks may come from the function's realm, where `instanceof Uint8Array` is false
      if (!ArrayBuffer.isView(value)) throw new TypeError('the response body stream produced a chunk that is not bytes')
      const chunk = new Uint8Array(value.buffer, value.byteOffset, value.byteLength)
      total += chunk.byteLength
      if (total > bridge.maxBytes) {
        reader.cancel().catch(() => {})
        return { streamed, error: { code: 'LIMIT_RESPONSE_SIZE', message: 'the function response exceeded its size limit', details: { limit: 'maxStreamBytes', measured: total, configured: bridge.maxBytes } } }
      }
      if (streamed === undefined) {
        held.push(chunk)
        if (total > STREAM_BUFFER_MAX_BYTES) await start()
      } else {
        await send(chunk)
      }
    }
  } catch (err) {
    reader.cancel().catch(() => {})
    if (streamed === undefined) throw err
    if (err instanceof TimeoutSignal) return { streamed, timedOut: true }
    return { streamed, error: { code: 'FUNCTION_ERROR', message: 'the response body stream failed' }, thrown: err }
  }
  if (streamed !== undefined) return { streamed }
  const body = new Uint8Array(total)
  let off = 0
  for (const c of held) { body.set(c, off); off += c.byteLength }
  return { body }
}

/** How a WebSocket session talks to the host; `timeoutMs` bounds the whole session. */
export interface SessionBridge {
  /** longest the session may last once open, ms */
  maxMs: number
  /** the function accepted: the host completes the upgrade */
  open: (headers: Array<[string, string]>) => void
  send: (data: WsData) => void
  close: (code: number, reason: string) => void
  /** registers what the host delivers: client messages and the client's close */
  onInbound: (handlers: { message: (data: WsData) => void, close: (code: number, reason: string) => void }) => void
}

/** What a realm's globals delegate to: set for the one execution that uses the realm. */
interface RealmSlot {
  sink?: LogSink
  fetch?: (input: unknown, init?: RequestInit) => Promise<Response>
  timers: Set<ReturnType<typeof setTimeout>>
  intervals: Set<ReturnType<typeof setInterval>>
}

interface Realm { context: vm.Context, slot: RealmSlot }

function createRealm (): Realm {
  const slot: RealmSlot = { timers: new Set(), intervals: new Set() }
  const consoleObj: Record<string, (...args: unknown[]) => void> = {}
  for (const level of ['log', 'info', 'warn', 'error', 'debug', 'trace']) {
    consoleObj[level] = (...args: unknown[]) => { slot.sink?.write(level, args) }
  }
  consoleObj.dir = (v: unknown) => { slot.sink?.write('log', [v]) }
  const sandboxGlobals: Record<string, unknown> = {
    console: consoleObj,
    fetch: async (input: unknown, init?: RequestInit) => {
      if (slot.fetch === undefined) throw new TypeError('fetch() is not available outside an execution')
      return await slot.fetch(input, init)
    },
    Request,
    // the Web Response plus status 101 with `webSocket` (websocket.ts)
    Response: FunctionResponse,
    WebSocketPair,
    MessageEvent,
    Headers,
    FormData,
    Blob,
    File,
    URL,
    URLSearchParams,
    TextEncoder,
    TextDecoder,
    TextEncoderStream,
    TextDecoderStream,
    ReadableStream,
    WritableStream,
    TransformStream,
    CompressionStream,
    DecompressionStream,
    AbortController,
    AbortSignal,
    Event,
    EventTarget,
    DOMException,
    structuredClone,
    atob,
    btoa,
    crypto: webcrypto,
    // nodejs_compat: Buffer as a global, as in Cloudflare Workers
    Buffer: compatBuffer(),
    performance: { now: () => performance.now(), timeOrigin: performance.timeOrigin },
    queueMicrotask,
    // Workers' `scheduler.wait(ms)`: on the execution's own timers, cleared when it ends
    scheduler: schedulerFor((fn, ms) => {
      const t = setTimeout(() => { slot.timers.delete(t); fn() }, ms)
      slot.timers.add(t)
      return t
    }),
    setTimeout: (fn: (...a: unknown[]) => void, ms?: number, ...args: unknown[]) => {
      const t = setTimeout((...a: unknown[]) => { slot.timers.delete(t); fn(...a) }, ms, ...args)
      slot.timers.add(t)
      return t
    },
    clearTimeout: (t: ReturnType<typeof setTimeout>) => { slot.timers.delete(t); clearTimeout(t) },
    setInterval: (fn: (...a: unknown[]) => void, ms?: number, ...args: unknown[]) => {
      const t = setInterval(fn, ms, ...args)
      slot.intervals.add(t)
      return t
    },
    clearInterval: (t: ReturnType<typeof setInterval>) => { slot.intervals.delete(t); clearInterval(t) }
  }
  const context = vm.createContext(sandboxGlobals, { name: 'peerhost-function', codeGeneration: { strings: true, wasm: true } })
  return { context, slot }
}

const emptyObject = new vm.Script('({})')

/** A realm created ahead of the next execution, while the shim is idle (off the request path). */
let prepared: Realm | undefined

/** Creates the next execution's realm now (call when idle). */
export function prepareRealm (): void {
  prepared ??= createRealm()
}

/**
 * The execution whose code is running, as async context: timers, promise callbacks and event
 * listeners the function sets up carry its realm's slot, so an error thrown outside the handler's
 * promise chain is told to the execution it belongs to (see installUncaughtHandlers).
 */
const executions = new AsyncLocalStorage<RealmSlot>()

/**
 * Reports `err`, thrown or rejected outside any handler, to the log of the execution it came from
 * (as Workers does: "Uncaught …" in that request's logs). False when no execution's code was
 * running (the runtime's own fault).
 */
export function reportUncaught (err: unknown, inPromise: boolean): boolean {
  const slot = executions.getStore()
  if (slot === undefined) return false
  // after the execution ended its sink is gone: late errors go nowhere, like late console calls
  slot.sink?.write('error', [`Uncaught ${inPromise ? '(in promise) ' : ''}${describeThrow(err)}`])
  return true
}

/**
 * Makes the process survive a function's stray errors: a throw in a timer callback or an event
 * listener, or a promise rejected with nobody awaiting it. By Node's defaults each ends the process,
 * and with it every execution and WebSocket session sharing the sandbox (a client closing with 1001
 * to an echo whose close listener answered `server.close(event.code)` took 32 sessions down). Such
 * an error goes to its execution's log; the execution runs on to its end or its limits. An error
 * outside any execution is the runtime's own: printed to stderr, the process exits 1 as before.
 */
export function installUncaughtHandlers (): void {
  const fatal = (err: unknown): void => {
    process.stderr.write(`${describeThrow(err)}\n`)
    process.exit(1)
  }
  process.on('uncaughtException', (err) => { if (!reportUncaught(err, false)) fatal(err) })
  process.on('unhandledRejection', (reason) => { if (!reportUncaught(reason, true)) fatal(reason) })
}

/** Runs one execution in a fresh realm. Never throws. */
export async function runExecution (opts: RunOptions): Promise<RealmOutcome> {
  // each realm serves exactly one execution
  const realm = prepared ?? createRealm()
  prepared = undefined
  return await executions.run(realm.slot, async () => await execute(opts, realm))
}

async function execute (opts: RunOptions, realm: Realm): Promise<RealmOutcome> {
  const setupStart = performance.now()
  const { limits } = opts
  const sink = new LogSink(limits.maxLogBytes, (text) => cleanStack(text, opts.cid))
  const { context, slot } = realm
  let subrequests = 0
  let subrequestBreach: ShimError | undefined
  let execStart = 0
  let setupMs = 0
  const finish = (o: { response?: ShimResponse, error?: ShimError }): RealmOutcome => {
    for (const t of slot.timers) clearTimeout(t)
    for (const t of slot.intervals) clearInterval(t)
    slot.timers.clear()
    slot.intervals.clear()
    // late console/fetch calls from leftover callbacks go nowhere
    slot.sink = undefined
    slot.fetch = undefined
    const execMs = execStart === 0 ? 0 : performance.now() - execStart
    return { ...o, logs: sink.text, logsTruncated: sink.truncated, execMs, setupMs }
  }
  slot.sink = sink

  let script: vm.Script
  try {
    script = opts.bundle !== undefined ? compileBundle(opts.cid, opts.bundle) : (scriptCache.get(opts.cid) ?? (() => { throw new Error('bundle not loaded') })())
  } catch (err) {
    sink.write('error', [`bundle failed to compile: ${describeThrow(err)}`])
    return finish({ error: { code: 'FUNCTION_ERROR', message: 'the bundle failed to compile' } })
  }

  slot.fetch = async (input: unknown, init?: RequestInit): Promise<Response> => {
    if (!limits.network || opts.fetchBridge === undefined) {
      throw new TypeError('fetch() is disabled: this function has no network allow-list (set "network" in peerhost.json)')
    }
    if (subrequests >= limits.maxSubrequests) {
      subrequestBreach ??= { code: 'LIMIT_SUBREQUESTS', message: 'the function exceeded its outbound fetch limits', details: { limit: 'subrequests', measured: subrequests + 1, configured: limits.maxSubrequests } }
      throw new TypeError(`fetch() refused: at most ${limits.maxSubrequests} subrequests per execution`)
    }
    subrequests++
    const req = new Request(input as any, init)
    const body = req.body === null ? new Uint8Array(0) : new Uint8Array(await req.arrayBuffer())
    const res = await opts.fetchBridge({ method: req.method, url: req.url, headers: [...req.headers], body })
    const nullBody = res.status === 204 || res.status === 205 || res.status === 304 || req.method === 'HEAD'
    return new Response(nullBody ? null : res.body, { status: res.status, headers: res.headers })
  }

  const waitUntil: Promise<unknown>[] = []
  const fnCtx = {
    waitUntil: (p: unknown) => { waitUntil.push(Promise.resolve(p)) },
    passThroughOnException: () => {}
  }
  const envObj = emptyObject.runInContext(context) as Record<string, string>
  for (const [k, v] of Object.entries(opts.env)) envObj[k] = v

  let request: Request
  try {
    request = toRequest(opts.request)
  } catch {
    return finish({ error: { code: 'FUNCTION_ERROR', message: 'the request could not be represented as a Request' } })
  }
  // clock reads are syscalls under gVisor ptrace (the vDSO is not used): three per execution
  execStart = performance.now()
  setupMs = execStart - setupStart

  let timeoutTimer: ReturnType<typeof setTimeout> | undefined
  const timedOut = new Promise<never>((_resolve, reject) => {
    timeoutTimer = setTimeout(() => { reject(new TimeoutSignal()) }, limits.timeoutMs)
  })
  timedOut.catch(() => {})
  const timeoutError = (): ShimError => ({ code: 'LIMIT_TIMEOUT', message: 'the function exceeded its wall-clock limit', details: { limit: 'timeoutMs', measured: Math.round(performance.now() - execStart), configured: limits.timeoutMs } })

  /** waits for ctx.waitUntil work (within the wall-clock limit), then ends with `response` */
  const settle = async (response: ShimResponse): Promise<RealmOutcome> => {
    if (waitUntil.length > 0) {
      try {
        await Promise.race([Promise.allSettled(waitUntil), timedOut])
      } catch {
        sink.write('warn', ['ctx.waitUntil work was cut off at the wall-clock limit'])
      }
    }
    return finish({ response })
  }

  try {
    let value: unknown
    try {
      // no vm `timeout` option: Node implements it with a watchdog thread per call, which costs
      // ~1 ms per execution under gVisor ptrace; the host kills a spinning sandbox instead
      const exportsObj = (script.runInContext(context) as (require: unknown) => unknown)(compatRequire) as any
      const handler = handlerOf(exportsObj)
      if (handler === undefined) {
        sink.write('error', [`${entries.get(opts.cid) ?? 'the bundle'} exports no handler: expected \`export default { async fetch (request, env, ctx) { … } }\` or named GET/POST/… functions`])
        return finish({ error: { code: 'FUNCTION_ERROR', message: 'the bundle exports no fetch handler' } })
      }
      const ret = handler(request, envObj, fnCtx)
      value = await Promise.race([Promise.resolve(ret), timedOut])
    } catch (err) {
      if (err instanceof TimeoutSignal) return finish({ error: timeoutError() })
      sink.write('error', [`Uncaught ${describeThrow(err)}`])
      if (subrequestBreach !== undefined) return finish({ error: subrequestBreach })
      // the sandbox refused memory before its cgroup killed it (gVisor may fail an mmap near the
      // limit): the function's memory limit, and the host adds what the cgroup measured
      if (allocationFailed(err)) return finish({ error: { code: 'LIMIT_MEMORY', message: 'the function ran out of memory', details: { reason: 'allocation-failed' } } })
      return finish({ error: { code: 'FUNCTION_ERROR', message: 'the function threw an error' } })
    }

    if (!(value instanceof Response)) {
      let kind: string = typeof value
      if (value === null) kind = 'null'
      else if (kind === 'object') kind = Object.prototype.toString.call(value)
      sink.write('error', [`fetch() returned ${kind}, not a Response`])
      return finish({ error: { code: 'RESULT_INVALID', message: 'the function did not return a Response', details: { returned: kind.slice(0, 64) } } })
    }
    const client = upgradeOf(value)
    if (client !== undefined) return finish(await runSession(client, value, opts.session, sink, slot))
    if (opts.stream !== undefined) {
      let out
      try {
        out = await readOrStream(value, opts.stream, timedOut)
      } catch (err) {
        if (err instanceof TimeoutSignal) return finish({ error: timeoutError() })
        sink.write('error', [`reading the response body failed: ${describeThrow(err)}`])
        return finish({ error: { code: 'FUNCTION_ERROR', message: 'the response body stream failed' } })
      }
      if (out.thrown !== undefined) sink.write('error', [`the response body stream failed: ${describeThrow(out.thrown)}`])
      if (out.timedOut === true) return { ...finish({ error: timeoutError() }), streamed: out.streamed }
      if (out.streamed === undefined && out.body !== undefined) {
        // whole and small: the ordinary answer (waitUntil below)
        return await settle({ status: value.status, headers: [...value.headers], body: out.body })
      }
      if (out.error !== undefined) {
        if (out.error.code === 'LIMIT_RESPONSE_SIZE') sink.write('error', ['the streamed response body exceeded its size limit; the stream was cut'])
        return { ...finish({ error: out.error }), ...(out.streamed !== undefined ? { streamed: out.streamed } : {}) }
      }
      const streamedOutcome = await settle({ status: value.status, headers: [...value.headers], body: new Uint8Array(0) })
      return { ...streamedOutcome, streamed: out.streamed }
    }
    let read
    try {
      read = await Promise.race([readCapped(value, limits.maxResponseBytes), timedOut])
    } catch (err) {
      if (err instanceof TimeoutSignal) return finish({ error: timeoutError() })
      sink.write('error', [`reading the response body failed: ${describeThrow(err)}`])
      return finish({ error: { code: 'FUNCTION_ERROR', message: 'the response body stream failed' } })
    }
    if (read.body === undefined) {
      return finish({ error: { code: 'LIMIT_RESPONSE_SIZE', message: 'the function response exceeded its size limit', details: { limit: 'maxResponseBytes', measured: read.measured, configured: limits.maxResponseBytes } } })
    }
    return await settle({ status: value.status, headers: [...value.headers], body: read.body })
  } finally {
    clearTimeout(timeoutTimer)
  }
}

/**
 * A function answered with 101 and the client end of a WebSocketPair: checks the server end was
 * accepted, opens the session with the host and keeps the execution alive until either side
 * closes or the session's time limit passes. The outcome's response is the 101 itself.
 */
async function runSession (client: NonNullable<ReturnType<typeof upgradeOf>>, value: Response, bridge: SessionBridge | undefined, sink: LogSink, slot: RealmSlot): Promise<{ response?: ShimResponse, error?: ShimError }> {
  if (bridge === undefined) {
    sink.write('error', ['fetch() returned a 101 WebSocket response to a request that is not a WebSocket upgrade'])
    return { error: { code: 'RESULT_INVALID', message: 'the function returned a WebSocket to a request that is not an upgrade' } }
  }
  const server = client.peer!
  if (!server.accepted) {
    sink.write('error', ['fetch() returned a WebSocket whose server end was never accepted: call server.accept() before returning new Response(null, { status: 101, webSocket: client })'])
    return { error: { code: 'FUNCTION_ERROR', message: 'the function returned a WebSocket without calling server.accept()', details: { reason: 'the function returned a WebSocket without calling server.accept()' } } }
  }
  const headers: Array<[string, string]> = [...value.headers]
  let end!: () => void
  const ended = new Promise<void>(resolve => { end = resolve })
  // the host calls these from its channel: they run as this execution, so what a listener throws
  // (EventTarget re-throws it on the next tick, never to this caller) is reported to its log
  // (installUncaughtHandlers)
  bridge.onInbound({
    message: (data) => { executions.run(slot, () => { server.deliver(data) }) },
    close: (code, reason) => {
      executions.run(slot, () => { server.closedByPeer(code, reason) })
      // a close answered from the listener goes out first
      setImmediate(end)
    }
  })
  server.sink = {
    send: (data) => { bridge.send(data) },
    close: (code, reason) => { bridge.close(code, reason); end() }
  }
  bridge.open(headers)
  for (const q of server.queued.splice(0)) {
    if ('data' in q) bridge.send(q.data)
    else { bridge.close(q.code, q.reason); end() }
  }
  let limit: ReturnType<typeof setTimeout> | undefined
  const over = await Promise.race([ended.then(() => false), new Promise<boolean>(resolve => { limit = setTimeout(() => resolve(true), bridge.maxMs) })])
  clearTimeout(limit)
  // the session's time limit: the host closes the client side with its own code
  if (over) sink.write('warn', ['the WebSocket session reached its time limit'])
  server.readyState = 3
  server.sink = undefined
  return { response: { status: 101, headers, body: new Uint8Array(0) } }
}
