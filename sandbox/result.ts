/**
 * Host-side shaping of what a shim reports into an `ExecutionResult`, shared by both executors.
 * The shim's output is untrusted (a function may have taken over its realm's harness, SBX-12), so
 * every field is validated here; anything malformed becomes RESULT_INVALID.
 */
import { LIMITS, PEERHOST_HEADER_PREFIX, WIRE_ERROR_CODES, type JobTimings, type WireError, type WireErrorCode, type WireResponse } from '#protocol'
import type { ExecutionResult } from './executor.ts'
import type { ResultMessage } from './runtime/messages.ts'

const SHIM_CODES = new Set<WireErrorCode>(['FUNCTION_ERROR', 'RESULT_INVALID', 'LIMIT_TIMEOUT', 'LIMIT_CPU', 'LIMIT_RESPONSE_SIZE', 'LIMIT_SUBREQUESTS'])

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

export function errorResult (error: WireError, timings: JobTimings, logs = '', logsTruncated = false): ExecutionResult {
  return { error, logs, logsTruncated, timings }
}

function isPlainDetails (v: unknown): v is Record<string, string | number | boolean> {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return false
  const entries = Object.entries(v)
  return entries.length <= 16 && entries.every(([k, x]) => k.length <= 64 && (typeof x === 'number' || typeof x === 'boolean' || (typeof x === 'string' && x.length <= 256)))
}

function validResponse (r: unknown, maxBytes: number): WireResponse | 'too-large' | undefined {
  if (r === null || typeof r !== 'object') return undefined
  const { status, headers, body } = r as Record<string, unknown>
  if (typeof status !== 'number' || !Number.isInteger(status) || status < 200 || status > 599) return undefined
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
export function shapeResult (msg: ResultMessage, limits: { maxResponseBytes: number, maxLogBytes: number }, timings: JobTimings): ExecutionResult {
  const capped = capLogs(msg.logs, limits.maxLogBytes)
  const logsTruncated = capped.truncated || msg.logsTruncated === true
  if (msg.error !== undefined) {
    const e = msg.error as unknown as Record<string, unknown>
    const code = e?.code as WireErrorCode
    if (!SHIM_CODES.has(code)) return { error: wireError('RESULT_INVALID'), logs: capped.logs, logsTruncated, timings }
    const details = isPlainDetails(e.details) ? e.details : undefined
    return { error: wireError(code, details), logs: capped.logs, logsTruncated, timings }
  }
  const response = validResponse(msg.response, limits.maxResponseBytes)
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
