/**
 * Host-side shaping of what a shim reports into an `ExecutionResult`, shared by both executors.
 * The shim's output is untrusted (a function may have taken over its realm's harness, SBX-12), so
 * every field is validated here; anything malformed becomes RESULT_INVALID.
 */
import { LIMITS, PEERHOST_HEADER_PREFIX, WIRE_ERROR_CODES, type JobTimings, type WireError, type WireErrorCode, type WireResponse } from '#protocol'
import type { ExecutionResult, StreamHooks } from './executor.ts'
import { STREAM_CHUNK_BYTES, type BodyChunkMessage, type BodyHeadMessage, type ResultMessage } from './runtime/messages.ts'

const SHIM_CODES = new Set<WireErrorCode>(['FUNCTION_ERROR', 'RESULT_INVALID', 'LIMIT_TIMEOUT', 'LIMIT_CPU', 'LIMIT_MEMORY', 'LIMIT_RESPONSE_SIZE', 'LIMIT_SUBREQUESTS'])

/**
 * A wire error for a limit breach: `details` name the limit, the configured value and, only when
 * something measured it, the measured value (never an estimate); `extra` says what was measured.
 */
export function limitError (code: WireErrorCode, limit: string, measured: number | undefined, configured: number, extra: Record<string, string | number | boolean> = {}): WireError {
  const details: Record<string, string | number | boolean> = { limit, configured, ...extra }
  if (measured !== undefined) details.measured = measured
  return { code, message: WIRE_ERROR_CODES[code].message, details }
}

export function wireError (code: WireErrorCode, details?: Record<string, string | number | boolean>): WireError {
  return details === undefined ? { code, message: WIRE_ERROR_CODES[code].message } : { code, message: WIRE_ERROR_CODES[code].message, details }
}

/**
 * The error of a job whose caller's signal ended it (before it ran, or before its answer was
 * used): DEADLINE_EXCEEDED once the job's deadline passed — what a client still waiting should
 * get (504), not a sandbox failure — otherwise the caller left and nobody reads it.
 */
export function abortedError (job: { deadline: number }): WireError {
  return Date.now() >= job.deadline ? wireError('DEADLINE_EXCEEDED') : wireError('SANDBOX_INFRA', { reason: 'aborted' })
}

/**
 * A time limit hit by an execution that got less time than its function's `timeoutMs` (the job
 * waited — for a slot, a boot — until its deadline left less) is the deadline's doing, not the
 * function's: DEADLINE_EXCEEDED (504, infra) instead of LIMIT_TIMEOUT or a wall-clock LIMIT_CPU
 * reporting "configured: 1" for a function configured with 500. A limit error whose measured
 * figure is over the function's own limit stays the function's.
 */
export function deadlineCut<T extends { error?: WireError }> (result: T, configuredMs: number, givenMs: number): T {
  const e = result.error
  if (e === undefined || givenMs >= configuredMs || (e.code !== 'LIMIT_TIMEOUT' && e.code !== 'LIMIT_CPU')) return result
  const measured = e.details?.measured
  if (typeof measured === 'number' && measured > configuredMs) return result
  return { ...result, error: wireError('DEADLINE_EXCEEDED', { reason: 'the request deadline left the function less than its timeoutMs', configuredMs, givenMs }) }
}

export function errorResult (error: WireError, timings: JobTimings, logs = '', logsTruncated = false): ExecutionResult {
  return { error, logs, logsTruncated, timings }
}

function isPlainDetails (v: unknown): v is Record<string, string | number | boolean> {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return false
  const entries = Object.entries(v)
  return entries.length <= 16 && entries.every(([k, x]) => k.length <= 64 && (typeof x === 'number' || typeof x === 'boolean' || (typeof x === 'string' && x.length <= 256)))
}

export function validResponse (r: unknown, maxBytes: number, session: boolean): WireResponse | 'too-large' | undefined {
  if (r === null || typeof r !== 'object') return undefined
  const { status, headers, body } = r as Record<string, unknown>
  // 101 (a WebSocket session that ran) only when the execution was one
  const upgrade = session && status === 101 && body instanceof Uint8Array && body.byteLength === 0
  if (typeof status !== 'number' || !Number.isInteger(status) || ((status < 200 || status > 599) && !upgrade)) return undefined
  if (!(body instanceof Uint8Array)) return undefined
  if (body.byteLength > maxBytes) return 'too-large'
  if (!Array.isArray(headers) || headers.length > LIMITS.maxHeaders) return undefined
  const out: Array<[string, string]> = []
  for (const h of headers) {
    if (!Array.isArray(h) || h.length !== 2 || typeof h[0] !== 'string' || typeof h[1] !== 'string') return undefined
    if (h[0].length > 256 || h[1].length > LIMITS.maxStringBytes) return undefined
    const name = h[0].toLowerCase()
    // PeerHost's own headers are set by the worker and gateway, never by a function
    if (name.startsWith(PEERHOST_HEADER_PREFIX)) continue
    out.push([name, h[1]])
  }
  return { status, headers: out, body }
}

/** Caps a log string at `max` UTF-8 bytes. */
export function capLogs (logs: unknown, max: number): { logs: string, truncated: boolean } {
  if (typeof logs !== 'string') return { logs: '', truncated: false }
  if (logs.length <= max / 4 || Buffer.byteLength(logs) <= max) return { logs, truncated: false }
  const cut = Buffer.from(logs).subarray(0, max).toString('utf8').replace(/\uFFFD$/, '')
  return { logs: cut, truncated: true }
}

/** Turns a shim `result` message into an ExecutionResult; never throws. */
export function shapeResult (msg: ResultMessage, limits: { maxResponseBytes: number, maxLogBytes: number, session?: boolean }, timings: JobTimings): ExecutionResult {
  const capped = capLogs(msg.logs, limits.maxLogBytes)
  const logsTruncated = capped.truncated || msg.logsTruncated === true
  if (msg.error !== undefined) {
    const e = msg.error as unknown as Record<string, unknown>
    const code = e?.code as WireErrorCode
    if (!SHIM_CODES.has(code)) return { error: wireError('RESULT_INVALID'), logs: capped.logs, logsTruncated, timings }
    const details = isPlainDetails(e.details) ? e.details : undefined
    return { error: wireError(code, details), logs: capped.logs, logsTruncated, timings }
  }
  const response = validResponse(msg.response, limits.maxResponseBytes, limits.session === true)
  if (response === 'too-large') {
    const size = (msg.response as WireResponse).body.byteLength
    return { error: limitError('LIMIT_RESPONSE_SIZE', 'maxResponseBytes', size, limits.maxResponseBytes), logs: capped.logs, logsTruncated, timings }
  }
  if (response === undefined) return { error: wireError('RESULT_INVALID'), logs: capped.logs, logsTruncated, timings }
  return { response, logs: capped.logs, logsTruncated, timings }
}

/** Execution time left for a job: the smaller of its option and its deadline. */
export function effectiveTimeoutMs (timeoutMs: number, deadline: number, now = Date.now()): number {
  return Math.max(1, Math.min(timeoutMs, deadline - now))
}

/**
 * What the host does when an execution has not answered by its limit + grace: `0` kills it as
 * hung (LIMIT_CPU), more ms waits that long again. A sandbox whose threads waited for a CPU for a
 * good part of the time (`waitedMs` ≥ a quarter of `wallMs`) and used less CPU than its limit was
 * starved by other work on the machine, not spinning or blocked: killing it would blame the
 * function for the machine's load and cost a sandbox boot (~0.5 s of a core) exactly when the
 * machine has none to spare. It gets more time until it has used its limit in CPU or the job's
 * deadline (`leftMs`) is near. Unknown figures (no cgroup accounting) keep the wall-clock rule.
 */
export function hostTimeoutVerdict (f: { wallMs: number, waitedMs?: number, cpuMs?: number, timeoutMs: number, leftMs: number, extendedMs?: number }): number {
  if (f.waitedMs === undefined || f.cpuMs === undefined) return 0
  if (f.cpuMs >= f.timeoutMs) return 0
  if (f.waitedMs < f.wallMs / 4) return 0
  // at most max(1 s, timeoutMs) of extra time in all: a starved execution ends by twice its limit
  const room = Math.min(f.leftMs, Math.max(1_000, f.timeoutMs) - (f.extendedMs ?? 0))
  if (room <= 0) return 0
  return Math.ceil(Math.min(room, Math.max(100, f.timeoutMs - f.cpuMs)))
}

/** The host's side of one execution's streamed body (both executors). */
export interface HostStream {
  /** a `body-head` or `body-chunk` from the shim (untrusted: checked here) */
  onMessage: (m: BodyHeadMessage | BodyChunkMessage) => void
  /** the execution's result, with `streamed` once the head went out (and the host's own verdicts) */
  finish: (result: ExecutionResult) => ExecutionResult
}

/**
 * Relays a shim's streamed body to `hooks`: the head once (a valid status and header list), then
 * each chunk in order, acknowledging each to the shim (`ack`) only once `hooks.onChunk` passed it
 * on, so the shim's window, not the host's memory, absorbs a slow client. The host counts the
 * bytes itself: past `hooks.maxBytes` nothing more is passed on and the result is
 * LIMIT_RESPONSE_SIZE whatever the shim says; a malformed message (SBX-12) is RESULT_INVALID. A
 * chunk `onChunk` rejects (nobody reads any more) cancels the stream in the shim.
 */
export function hostStream (hooks: StreamHooks, ack: (bytes: number, cancel?: boolean) => void): HostStream {
  let head: { status: number } | undefined
  let bytes = 0
  let over = false
  let bad = false
  let cancelled = false
  return {
    onMessage (m) {
      if (bad || over) return
      if (m.t === 'body-head') {
        const r = head === undefined ? validResponse({ status: m.status, headers: m.headers, body: new Uint8Array(0) }, 0, false) : undefined
        if (r === undefined || r === 'too-large') { bad = true; return }
        head = { status: r.status }
        hooks.onHead(r.status, r.headers)
        return
      }
      if (head === undefined || !(m.data instanceof Uint8Array) || m.data.byteLength > STREAM_CHUNK_BYTES) { bad = true; return }
      if (bytes + m.data.byteLength > hooks.maxBytes) { over = true; return }
      bytes += m.data.byteLength
      const n = m.data.byteLength
      // a chunk that could not be passed on (the reader is gone) cancels the stream in the shim
      hooks.onChunk(m.data).then(() => { ack(n) }, () => { if (!cancelled) { cancelled = true; ack(0, true) } })
    },
    finish (result) {
      if (head === undefined) return bad ? { ...result, response: undefined, error: wireError('RESULT_INVALID') } : result
      const streamed = { status: head.status, bytes }
      const { response: _dropped, ...rest } = result
      if (bad) return { ...rest, streamed, error: wireError('RESULT_INVALID') }
      if (over) return { ...rest, streamed, error: limitError('LIMIT_RESPONSE_SIZE', 'maxStreamBytes', undefined, hooks.maxBytes) }
      if (result.error !== undefined) return { ...rest, streamed }
      return { ...rest, streamed, response: { status: head.status, headers: result.response?.headers ?? [], body: new Uint8Array(0) } }
    }
  }
}
