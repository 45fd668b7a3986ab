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
 * answered here. Code that keeps the CPU busy until the limit is LIMIT_CPU: vm's `timeout`
 * interrupts module code and the handler's synchronous part; a loop that starts after an `await`
 * cannot be interrupted from inside the process, so the host kills the process (gVisor: the
 * sandbox; dev: the worker thread) when no answer came by `timeoutMs` + grace, and reports
 * LIMIT_CPU too (the shim's own timer could not fire: its event loop was blocked).
 */
import vm from 'node:vm'
import { inspect } from 'node:util'
import { webcrypto } from 'node:crypto'
import type { ShimError, ShimLimits, ShimRequest, ShimResponse } from './messages.ts'

export interface RealmOutcome {
  response?: ShimResponse
  error?: ShimError
  logs: string
  logsTruncated: boolean
  execMs: number
  setupMs: number
}

/** Forwards a function's `fetch()` to the host broker; rejects with a public message. */
export type FetchBridge = (request: ShimRequest) => Promise<ShimResponse>

const scriptCache = new Map<string, vm.Script>()
const MAX_CACHED_SCRIPTS = 16

/** Compiles a bundle once; the compiled script runs in any number of fresh contexts. */
export function compileBundle (cid: string, bundle: Uint8Array): vm.Script {
  let script = scriptCache.get(cid)
  if (script !== undefined) return script
  const source = new TextDecoder().decode(bundle)
  // CommonJS wrapper evaluated inside the realm, so `module`/`exports` are the realm's objects
  script = new vm.Script(`(function () { const module = { exports: {} }; const exports = module.exports;\n${source}\n;return module.exports })()`, {
    filename: `bundle-${cid}.js`
  })
  if (scriptCache.size >= MAX_CACHED_SCRIPTS) scriptCache.delete(scriptCache.keys().next().value as string)
  scriptCache.set(cid, script)
  return script
}

export function hasBundle (cid: string): boolean {
  return scriptCache.has(cid)
}

const callScript = new vm.Script('globalThis.__peerhostCall()', { filename: 'peerhost-call.js' })

class LogSink {
  text = ''
  bytes = 0
  truncated = false
  readonly max: number
  constructor (max: number) { this.max = max }

  write (level: string, args: unknown[]): void {
    if (this.truncated) return
    let line: string
    try {
      line = args.map(a => typeof a === 'string' ? a : inspect(a, { depth: 4, maxArrayLength: 100, maxStringLength: this.max, breakLength: Infinity })).join(' ')
    } catch {
      line = '[unprintable]'
    }
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

function makeConsole (sink: LogSink): Record<string, (...args: unknown[]) => void> {
  const c: Record<string, (...args: unknown[]) => void> = {}
  for (const level of ['log', 'info', 'warn', 'error', 'debug', 'trace']) {
    c[level] = (...args: unknown[]) => { sink.write(level, args) }
  }
  c.dir = (v: unknown) => { sink.write('log', [v]) }
  return c
}

class TimeoutSignal extends Error {}

function toRequest (req: ShimRequest, signal: AbortSignal): Request {
  const hasBody = req.body.byteLength > 0 && req.method !== 'GET' && req.method !== 'HEAD'
  return new Request(req.url, {
    method: req.method,
    headers: req.headers,
    body: hasBody ? req.body : undefined,
    signal
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
}

/** Runs one execution in a fresh realm. Never throws. */
export async function runExecution (opts: RunOptions): Promise<RealmOutcome> {
  const setupStart = performance.now()
  const { limits } = opts
  const sink = new LogSink(limits.maxLogBytes)
  const timers = new Set<ReturnType<typeof setTimeout>>()
  const intervals = new Set<ReturnType<typeof setInterval>>()
  const abort = new AbortController()
  let subrequests = 0
  let subrequestBreach: ShimError | undefined
  let execStart = 0
  let setupMs = 0
  const finish = (o: { response?: ShimResponse, error?: ShimError }): RealmOutcome => {
    for (const t of timers) clearTimeout(t)
    for (const t of intervals) clearInterval(t)
    abort.abort()
    const execMs = execStart === 0 ? 0 : performance.now() - execStart
    return { ...o, logs: sink.text, logsTruncated: sink.truncated, execMs, setupMs }
  }

  let script: vm.Script
  try {
    script = opts.bundle !== undefined ? compileBundle(opts.cid, opts.bundle) : (scriptCache.get(opts.cid) ?? (() => { throw new Error('bundle not loaded') })())
  } catch (err) {
    sink.write('error', [`bundle failed to compile: ${describeThrow(err)}`])
    return finish({ error: { code: 'FUNCTION_ERROR', message: 'the bundle failed to compile' } })
  }

  const fetchImpl = async (input: unknown, init?: RequestInit): Promise<Response> => {
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

  const sandboxGlobals: Record<string, unknown> = {
    console: makeConsole(sink),
    fetch: fetchImpl,
    Request,
    Response,
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
    performance: { now: () => performance.now(), timeOrigin: performance.timeOrigin },
    queueMicrotask,
    setTimeout: (fn: (...a: unknown[]) => void, ms?: number, ...args: unknown[]) => {
      const t = setTimeout((...a: unknown[]) => { timers.delete(t); fn(...a) }, ms, ...args)
      timers.add(t)
      return t
    },
    clearTimeout: (t: ReturnType<typeof setTimeout>) => { timers.delete(t); clearTimeout(t) },
    setInterval: (fn: (...a: unknown[]) => void, ms?: number, ...args: unknown[]) => {
      const t = setInterval(fn, ms, ...args)
      intervals.add(t)
      return t
    },
    clearInterval: (t: ReturnType<typeof setInterval>) => { intervals.delete(t); clearInterval(t) }
  }
  const context = vm.createContext(sandboxGlobals, { name: 'peerhost-function', codeGeneration: { strings: true, wasm: true } })

  const waitUntil: Promise<unknown>[] = []
  const fnCtx = {
    waitUntil: (p: unknown) => { waitUntil.push(Promise.resolve(p)) },
    passThroughOnException: () => {}
  }
  const envObj = vm.runInContext('({})', context) as Record<string, string>
  for (const [k, v] of Object.entries(opts.env)) envObj[k] = v

  let request: Request
  try {
    request = toRequest(opts.request, abort.signal)
  } catch {
    return finish({ error: { code: 'FUNCTION_ERROR', message: 'the request could not be represented as a Request' } })
  }
  setupMs = performance.now() - setupStart
  execStart = performance.now()
  const deadline = execStart + limits.timeoutMs

  let timeoutTimer: ReturnType<typeof setTimeout> | undefined
  const timedOut = new Promise<never>((_resolve, reject) => {
    timeoutTimer = setTimeout(() => { reject(new TimeoutSignal()) }, limits.timeoutMs)
  })
  timedOut.catch(() => {})
  const timeoutError = (): ShimError => ({ code: 'LIMIT_TIMEOUT', message: 'the function exceeded its wall-clock limit', details: { limit: 'timeoutMs', measured: Math.round(performance.now() - execStart), configured: limits.timeoutMs } })

  try {
    let value: unknown
    try {
      const exportsObj = script.runInContext(context, { timeout: limits.timeoutMs }) as any
      const handler = exportsObj?.default ?? exportsObj
      if (handler === null || typeof handler !== 'object' || typeof handler.fetch !== 'function') {
        sink.write('error', ['the bundle exports no fetch(request, env, ctx) handler (expected `export default { fetch }`)'])
        return finish({ error: { code: 'FUNCTION_ERROR', message: 'the bundle exports no fetch handler' } })
      }
      const remaining = Math.max(1, Math.floor(deadline - performance.now()))
      ;(context as any).__peerhostCall = () => handler.fetch(request, envObj, fnCtx)
      const ret = callScript.runInContext(context, { timeout: remaining })
      delete (context as any).__peerhostCall
      value = await Promise.race([Promise.resolve(ret), timedOut])
    } catch (err) {
      if (err instanceof TimeoutSignal) return finish({ error: timeoutError() })
      // vm interrupted synchronous code that ran until the limit: the function kept the CPU busy
      if ((err as any)?.code === 'ERR_SCRIPT_EXECUTION_TIMEOUT') return finish({ error: { code: 'LIMIT_CPU', message: 'the function exceeded its CPU limit', details: { limit: 'cpuMs', measured: Math.round(performance.now() - execStart), configured: limits.timeoutMs } } })
      sink.write('error', [`Uncaught ${describeThrow(err)}`])
      if (subrequestBreach !== undefined) return finish({ error: subrequestBreach })
      return finish({ error: { code: 'FUNCTION_ERROR', message: 'the function threw an error' } })
    }

    if (!(value instanceof Response)) {
      let kind: string = typeof value
      if (value === null) kind = 'null'
      else if (kind === 'object') kind = Object.prototype.toString.call(value)
      sink.write('error', [`fetch() returned ${kind}, not a Response`])
      return finish({ error: { code: 'RESULT_INVALID', message: 'the function did not return a Response', details: { returned: kind.slice(0, 64) } } })
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
    const response: ShimResponse = { status: value.status, headers: [...value.headers], body: read.body }

    if (waitUntil.length > 0) {
      try {
        await Promise.race([Promise.allSettled(waitUntil), timedOut])
      } catch {
        sink.write('warn', ['ctx.waitUntil work was cut off at the wall-clock limit'])
      }
    }
    return finish({ response })
  } finally {
    clearTimeout(timeoutTimer)
  }
}
