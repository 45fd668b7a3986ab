/**
 * Canonical encodings of requests, responses and wire errors, and the hashes over them:
 * `inputHash` (in tickets and receipts) and `outputHash` (in receipts, compared across workers).
 *
 * The layouts are plain length-prefixed binary so that any language, or a contract, can
 * reproduce them byte for byte:
 *
 *     u32(n)    4-byte big-endian unsigned integer
 *     field(x)  u32(byteLength(x)) || x          (strings are UTF-8)
 *
 *     canonicalRequest =
 *       field("peerhost-request-v1")
 *       field(METHOD)                   the method, ASCII upper-cased
 *       field(path)                     the URL path, percent-escapes normalized (below)
 *       u32(q) || q × (field(key) || field(value))
 *                                       query parameters, decoded to raw bytes (below), sorted by
 *                                       key bytes, then value bytes
 *       u32(h) || h × (field(name) || field(value))
 *                                       only the HASHED_REQUEST_HEADERS: lower-cased names,
 *                                       values without leading/trailing spaces and tabs,
 *                                       sorted by name; repeated names keep their order
 *       field(body)
 *
 *     canonicalResponse =
 *       field("peerhost-response-v1")
 *       u32(status)
 *       u32(h) || h × (field(name) || field(value))
 *                                       every header except `date` and names starting with
 *                                       PEERHOST_HEADER_PREFIX: lower-cased names, trimmed
 *                                       values, sorted by name; repeated names keep their order
 *       field(body)
 *
 *     canonicalError = field("peerhost-error-v1") || field(code)
 *
 *     inputHash  = keccak256(canonicalRequest)
 *     outputHash = keccak256(canonicalResponse)  or  keccak256(canonicalError)
 *
 * The scheme, host and port are not part of a request's encoding, so the same request reaching
 * two gateways hashes the same. An error hashes only its code: every honest worker agrees on it,
 * whatever the message or details say.
 *
 * URL normalization (the URL is first parsed as a WHATWG URL, which resolves `.`/`..` segments and
 * percent-encodes non-ASCII characters):
 * - path: every `%xx` escape is upper-cased, and an escape of an unreserved character
 *   (A–Z a–z 0–9 - . _ ~) is replaced by the character itself (RFC 3986 §6.2.2.2); nothing else
 *   changes, so `/a%2Fb` and `/a/b` stay different;
 * - query: split on `&` (empty pieces dropped), then on the first `=` (a piece without `=` has an
 *   empty value); in keys and values `+` is a space byte and `%xx` is the byte xx (a `%` not
 *   followed by two hex digits stays a literal `%`), as in `application/x-www-form-urlencoded`
 *   but without UTF-8 decoding, so distinct byte strings never collapse into one.
 */
import type { Hex } from 'viem'
import { keccak256 } from './keccak.ts'
import { HASHED_REQUEST_HEADERS, LIMITS, PEERHOST_HEADER_PREFIX } from './constants.ts'
import { isWireErrorCode, ProtocolError, type WireError, type WireErrorCode } from './errors.ts'
import type { FunctionOptions, FunctionRef, WireRequest, WireResponse } from './messages.ts'
import { BinaryWriter, utf8 } from './binary.ts'

export const CANONICAL_REQUEST_TAG = 'peerhost-request-v1'
export const CANONICAL_RESPONSE_TAG = 'peerhost-response-v1'
export const CANONICAL_ERROR_TAG = 'peerhost-error-v1'

const METHOD = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/
const HASHED: ReadonlySet<string> = new Set(HASHED_REQUEST_HEADERS)

function invalid (field: string, expected: string): never {
  throw new ProtocolError('INVALID_FIELD', `${field}: expected ${expected}`, { details: { field } })
}

function checkHeaders (headers: unknown, field: string): Array<[string, string]> {
  if (!Array.isArray(headers)) invalid(field, 'an array of [name, value] pairs')
  for (let i = 0; i < headers.length; i++) {
    const pair = headers[i]
    if (!Array.isArray(pair) || pair.length !== 2 || typeof pair[0] !== 'string' || typeof pair[1] !== 'string' ||
      !pair[0].isWellFormed() || !pair[1].isWellFormed()) {
      // lone surrogates would all encode as U+FFFD, so distinct values could hash the same
      invalid(`${field}[${i}]`, 'a [name, value] pair of well-formed strings')
    }
  }
  return headers as Array<[string, string]>
}

function checkBody (body: unknown, field: string): Uint8Array {
  if (!(body instanceof Uint8Array)) invalid(field, 'binary data')
  return body
}

function trimOws (s: string): string {
  return s.replace(/^[ \t]+|[ \t]+$/g, '')
}

/** Lower-cases names, trims values, keeps the selected headers and sorts them stably by name. */
function sortedHeaders (headers: Array<[string, string]>, keep: (name: string) => boolean): Array<[string, string]> {
  const out: Array<[string, string]> = []
  for (const [name, value] of headers) {
    const lower = name.toLowerCase()
    if (keep(lower)) out.push([lower, trimOws(value)])
  }
  // Array.prototype.sort is stable, so repeated names keep their order
  return out.sort((a, b) => a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0)
}

function writeHeaders (w: BinaryWriter, headers: Array<[string, string]>): void {
  w.u32(headers.length)
  for (const [name, value] of headers) w.field(name).field(value)
}

function isHex (c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66)
}

function isUnreserved (c: number): boolean {
  return (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) ||
    c === 0x2d || c === 0x2e || c === 0x5f || c === 0x7e
}

/** Path normalization: upper-case escapes, unescape unreserved characters. */
export function normalizePath (path: string): string {
  if (!path.includes('%')) return path
  return path.replace(/%([0-9a-fA-F]{2})/g, (_, hex: string) => {
    const c = parseInt(hex, 16)
    return isUnreserved(c) ? String.fromCharCode(c) : `%${hex.toUpperCase()}`
  })
}

/** Form-style decoding to raw bytes: `+` is a space, `%xx` a byte, everything else its UTF-8. */
function decodeQueryComponent (s: string): Uint8Array {
  const src = utf8(s)
  const out = new Uint8Array(src.byteLength)
  let n = 0
  for (let i = 0; i < src.byteLength; i++) {
    const c = src[i]
    if (c === 0x2b) {
      out[n++] = 0x20
    } else if (c === 0x25 && i + 2 < src.byteLength && isHex(src[i + 1]) && isHex(src[i + 2])) {
      out[n++] = parseInt(String.fromCharCode(src[i + 1], src[i + 2]), 16)
      i += 2
    } else {
      out[n++] = c
    }
  }
  return out.subarray(0, n)
}

function compareBytes (a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.byteLength, b.byteLength)
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i] - b[i]
  return a.byteLength - b.byteLength
}

/** Query parameters as raw (key, value) bytes, sorted by key then value. */
export function canonicalQuery (search: string): Array<[Uint8Array, Uint8Array]> {
  const query = search.startsWith('?') ? search.slice(1) : search
  const out: Array<[Uint8Array, Uint8Array]> = []
  for (const piece of query.split('&')) {
    if (piece === '') continue
    const eq = piece.indexOf('=')
    const key = eq === -1 ? piece : piece.slice(0, eq)
    const value = eq === -1 ? '' : piece.slice(eq + 1)
    out.push([decodeQueryComponent(key), decodeQueryComponent(value)])
  }
  return out.sort((a, b) => compareBytes(a[0], b[0]) || compareBytes(a[1], b[1]))
}

/** The canonical request encoding (layout in the module comment). Throws ProtocolError INVALID_FIELD. */
export function canonicalRequest (req: Pick<WireRequest, 'method' | 'url' | 'headers' | 'body'>): Uint8Array {
  if (typeof req !== 'object' || req === null) invalid('request', 'a request')
  const { method } = req
  if (typeof method !== 'string' || method.length > LIMITS.maxIdBytes || !METHOD.test(method)) invalid('request.method', 'an HTTP method token')
  const parsed = typeof req.url === 'string' ? URL.parse(req.url) : null
  if (parsed === null || (parsed.protocol !== 'http:' && parsed.protocol !== 'https:')) invalid('request.url', 'an absolute http(s) URL')
  const headers = sortedHeaders(checkHeaders(req.headers, 'request.headers'), name => HASHED.has(name))
  const body = checkBody(req.body, 'request.body')

  const w = new BinaryWriter()
    .field(CANONICAL_REQUEST_TAG)
    .field(method.toUpperCase())
    .field(normalizePath(parsed.pathname))
  const query = canonicalQuery(parsed.search)
  w.u32(query.length)
  for (const [key, value] of query) w.field(key).field(value)
  writeHeaders(w, headers)
  return w.field(body).finish()
}

/** keccak256 of the canonical request encoding: the `inputHash` of tickets and receipts. */
export function inputHash (req: Pick<WireRequest, 'method' | 'url' | 'headers' | 'body'>): Hex {
  return keccak256(canonicalRequest(req))
}

/** The canonical response encoding (layout in the module comment). Throws ProtocolError INVALID_FIELD. */
export function canonicalResponse (res: WireResponse): Uint8Array {
  if (typeof res !== 'object' || res === null) invalid('response', 'a response')
  if (typeof res.status !== 'number' || !Number.isInteger(res.status) || res.status < 100 || res.status > 599) {
    invalid('response.status', 'an integer from 100 to 599')
  }
  const headers = sortedHeaders(checkHeaders(res.headers, 'response.headers'),
    name => name !== 'date' && !name.startsWith(PEERHOST_HEADER_PREFIX))
  const body = checkBody(res.body, 'response.body')
  const w = new BinaryWriter().field(CANONICAL_RESPONSE_TAG).u32(res.status)
  writeHeaders(w, headers)
  return w.field(body).finish()
}

/** The canonical encoding of a wire error: its code only. */
export function canonicalError (code: WireErrorCode): Uint8Array {
  if (!isWireErrorCode(code)) invalid('error.code', 'a wire error code (WIRE_ERROR_CODES)')
  return new BinaryWriter().field(CANONICAL_ERROR_TAG).field(code).finish()
}

/** keccak256 of the canonical response, or of the canonical error when the job produced an error. */
export function outputHash (x: { response: WireResponse } | { error: WireError }): Hex {
  if (typeof x !== 'object' || x === null) invalid('result', 'a response or an error')
  if ('error' in x && x.error !== undefined) {
    if ('response' in x && (x as { response?: unknown }).response !== undefined) invalid('result', 'exactly one of response and error')
    if (typeof x.error !== 'object' || x.error === null) invalid('error', 'a wire error')
    return keccak256(canonicalError(x.error.code))
  }
  if (!('response' in x)) invalid('result', 'a response or an error')
  return keccak256(canonicalResponse(x.response))
}

export const CANONICAL_JOB_TAG = 'peerhost-job-v1'

/** What a job's output depends on besides its input: the `jobHash` of tickets and receipts covers it. */
export interface JobShape {
  fn: Pick<FunctionRef, 'wallet' | 'project' | 'name' | 'id' | 'bundleCid'>
  options: FunctionOptions
  env: Record<string, string>
  /** names only: values stay off every signature (they must never be provable or public) */
  secretNames: string[]
  inputHash: Hex
  /** unix ms after which the execution must not run */
  deadline: number
}

/**
 * The canonical job encoding:
 *
 *     field("peerhost-job-v1")
 *     field(wallet lower-case hex) field(project) field(name) field(functionId hex) field(bundleCid)
 *     u32(memoryMb) u32(timeoutMs) u32(n) n × field(host, sorted) field(isolation)
 *     u32(e) e × (field(key) field(value)), sorted by key
 *     u32(s) s × field(secret name), sorted
 *     field(inputHash hex) u64(deadline ms)
 *
 * `jobHash = keccak256(canonicalJob)`. A ticket and a receipt sign it, so one signed ticket names
 * exactly one execution: the same (jobId, attempt) with other options, env, bundle or deadline is
 * another ticket, and a worker refuses to sign twice for one (gateway, jobId, attempt).
 */
export function canonicalJob (job: JobShape): Uint8Array {
  if (typeof job !== 'object' || job === null) invalid('job', 'a job')
  const { fn, options } = job
  if (typeof fn !== 'object' || fn === null) invalid('job.fn', 'a function reference')
  if (typeof options !== 'object' || options === null) invalid('job.options', 'function options')
  if (!Number.isSafeInteger(job.deadline) || job.deadline < 0) invalid('job.deadline', 'unix milliseconds')
  const w = new BinaryWriter().field(CANONICAL_JOB_TAG)
    .field(String(fn.wallet).toLowerCase()).field(String(fn.project)).field(String(fn.name)).field(String(fn.id)).field(String(fn.bundleCid))
    .u32(options.memoryMb).u32(options.timeoutMs)
  const hosts = [...options.network].map(String).sort()
  w.u32(hosts.length)
  for (const h of hosts) w.field(h)
  w.field(String(options.isolation))
  const env = Object.keys(job.env).sort()
  w.u32(env.length)
  for (const k of env) w.field(k).field(String(job.env[k]))
  const names = [...job.secretNames].map(String).sort()
  w.u32(names.length)
  for (const n of names) w.field(n)
  return w.field(String(job.inputHash)).u64(job.deadline).finish()
}

/** keccak256 of the canonical job encoding: the `jobHash` of tickets and receipts. */
export function jobHash (job: JobShape): Hex {
  return keccak256(canonicalJob(job))
}
