/**
 * Strict validators for every wire message (messages.ts).
 *
 * Each validator takes `unknown` and returns a **fresh, normalized copy** of the message: plain
 * objects (prototype `Object.prototype`) with keys in the order of the type definition, optional
 * fields that are `undefined` left out, and `-0` turned into `0`. The encoder encodes that copy,
 * so two equal messages always encode to the same bytes whatever their key order.
 *
 * Anything else is rejected with a `ProtocolError`:
 * - `INVALID_FIELD` for a missing, extra, mistyped or out-of-range field; the message names the
 *   field path and what was expected (`job.request.headers[3][0]: expected a lower-case header name`);
 * - `UNSUPPORTED_VERSION` when `v` is an integer other than PROTOCOL_VERSION;
 * - `UNKNOWN_TYPE` when `type` is a string that names no message.
 *
 * Rules worth knowing when producing messages:
 * - hashes and ids (bytes32) and signatures are lower-case `0x` hex (as viem produces them), so
 *   they compare as strings; signatures are 65 bytes with `v` 27 or 28 and a low `s` (EIP-2);
 * - addresses are `0x` + 40 hex digits, all lower-case or EIP-55 checksummed (compare them
 *   case-insensitively);
 * - CIDs are CIDv1 raw sha2-256 in their canonical base32 string form;
 * - header names are lower-case tokens; header values hold only what Node's HTTP stack accepts
 *   (tab, 0x20–0x7e, 0x80–0xff);
 * - strings are well-formed Unicode (no lone surrogates) and at most LIMITS.maxStringBytes of
 *   UTF-8 unless a tighter limit applies;
 * - JobTimings are finite non-negative numbers (fractions allowed: they come from
 *   `performance.now()`); every other number is a safe integer.
 */
import { getAddress } from 'viem'
import { CID } from 'multiformats/cid'
import { isWireErrorCode, ProtocolError, type WireError } from './errors.ts'
import { LIMITS, PROTOCOL_VERSION } from './constants.ts'
import { parseFunctionOptions } from './options.ts'
import type {
  BundleRequest, BundleResponse, SecretsRequest, SecretsResponse, ErrorMessage, SegmentEnd, SegmentFrame, SessionEnd, SessionOpen, SessionPrice, SessionTicket, StreamChunk, StreamEnd, StreamHead, TranscriptSummary, WsClose, WsFrame, FunctionOptions, FunctionRef, JobRequest, JobResult,
  JobTimings, Message, MessageType, WireRequest, WireResponse, WorkerAdvert
} from './messages.ts'
import type { Address, Hex } from 'viem'

/** Project and function names: lower-case letters, digits and `-`, starting with a letter or digit. */
export const NAME_PATTERN = /^[a-z0-9][a-z0-9-]{0,62}$/

/** Every message type, in a fixed order. */
export const MESSAGE_TYPES = ['advert', 'job', 'result', 'error', 'bundle-request', 'bundle', 'secrets-request', 'secrets', 'session-open', 'ws', 'ws-close', 'ticket', 'segment', 'segment-end', 'session-end', 'stream-head', 'stream-chunk', 'stream-end'] as const satisfies readonly MessageType[]

export function isMessageType (x: unknown): x is MessageType {
  return typeof x === 'string' && (MESSAGE_TYPES as readonly string[]).includes(x)
}

/** Map keys that are never accepted anywhere (prototype pollution). */
export const FORBIDDEN_KEYS: ReadonlySet<string> = new Set(['__proto__', 'constructor', 'prototype'])

/** Internal options: the codec asks for binary fields to be copied into plain Uint8Arrays. */
interface Ctx {
  copyBinary: boolean
}
const DEFAULT_CTX: Ctx = { copyBinary: false }

// ---------------------------------------------------------------------------------------------
// primitives

function fail (path: string, expected: string): never {
  throw new ProtocolError('INVALID_FIELD', `${path}: expected ${expected}`, { details: { field: path } })
}

function show (key: string): string {
  return JSON.stringify(key.length > 64 ? `${key.slice(0, 64)}…` : key)
}

type Obj = Record<string, unknown>

function isPlainObject (x: unknown): x is Obj {
  if (typeof x !== 'object' || x === null || Array.isArray(x)) return false
  const proto = Object.getPrototypeOf(x)
  return proto === Object.prototype || proto === null
}

/** Checks `x` is a plain object whose keys are all in `required` or `optional`; returns a reader. */
function record (x: unknown, path: string, required: readonly string[], optional: readonly string[] = []): (key: string) => unknown {
  if (!isPlainObject(x)) fail(path, 'a map')
  for (const key of Object.keys(x)) {
    if (!required.includes(key) && !optional.includes(key)) {
      throw new ProtocolError('INVALID_FIELD', `${path}.${show(key)}: unexpected field`, { details: { field: `${path}.${key.slice(0, 64)}` } })
    }
  }
  for (const key of required) {
    if (!Object.hasOwn(x, key) || x[key] === undefined) fail(`${path}.${key}`, 'a value (the field is missing)')
  }
  return (key: string) => Object.hasOwn(x, key) ? x[key] : undefined
}

/** UTF-8 length of a well-formed string, without allocating. */
export function utf8Length (s: string): number {
  let n = 0
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c < 0x80) n += 1
    else if (c < 0x800) n += 2
    else if (c >= 0xd800 && c <= 0xdbff) { n += 4; i++ } else n += 3
  }
  return n
}

function str (x: unknown, path: string, maxBytes: number = LIMITS.maxStringBytes): string {
  if (typeof x !== 'string') fail(path, 'a string')
  if (!x.isWellFormed()) fail(path, 'a well-formed Unicode string (no lone surrogates)')
  // a UTF-8 string is never shorter in bytes than in UTF-16 units, nor more than 3× longer
  if (x.length > maxBytes || (x.length * 3 > maxBytes && utf8Length(x) > maxBytes)) fail(path, `a string of at most ${maxBytes} bytes`)
  return x
}

function pattern (x: unknown, path: string, re: RegExp, expected: string, maxBytes: number = LIMITS.maxIdBytes): string {
  if (typeof x !== 'string' || x.length > maxBytes || !re.test(x)) fail(path, expected)
  return x
}

function int (x: unknown, path: string, min: number, max: number): number {
  if (typeof x !== 'number' || !Number.isSafeInteger(x) || x < min || x > max) fail(path, `an integer from ${min} to ${max}`)
  return x + 0
}

function bool (x: unknown, path: string): boolean {
  if (typeof x !== 'boolean') fail(path, 'a boolean')
  return x
}

function bytes (x: unknown, path: string, maxBytes: number, ctx: Ctx, exactLength?: number): Uint8Array {
  if (!(x instanceof Uint8Array)) fail(path, 'binary data')
  if (exactLength !== undefined && x.byteLength !== exactLength) fail(path, `${exactLength} bytes of binary data`)
  if (x.byteLength > maxBytes) fail(path, `binary data of at most ${maxBytes} bytes`)
  return ctx.copyBinary ? new Uint8Array(x) : x
}

function array (x: unknown, path: string, maxLength: number): unknown[] {
  if (!Array.isArray(x)) fail(path, 'an array')
  if (x.length > maxLength) fail(path, `an array of at most ${maxLength} elements`)
  return x
}

/** Validates every element (holes of sparse arrays count as undefined) into a fresh dense array. */
function items<T> (x: unknown, path: string, maxLength: number, each: (item: unknown, i: number) => T): T[] {
  return Array.from(array(x, path, maxLength), each)
}

const HEX32 = /^0x[0-9a-f]{64}$/
const ADDRESS = /^0x[0-9a-fA-F]{40}$/
const SIGNATURE = /^0x[0-9a-f]{130}$/
const SECP256K1_HALF_N = 0x7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0n

/** Lower-case `0x` + 64 hex digits (a bytes32: job id, hash, function id). */
export function isHex32 (x: unknown): x is Hex {
  return typeof x === 'string' && HEX32.test(x)
}

function hex32 (x: unknown, path: string): Hex {
  if (!isHex32(x)) fail(path, 'a bytes32 as lower-case 0x hex (66 characters)')
  return x
}

function address (x: unknown, path: string): Address {
  if (typeof x !== 'string' || !ADDRESS.test(x)) fail(path, 'an address as 0x + 40 hex digits')
  if (/[a-f]/.test(x) && /[A-F]/.test(x) && getAddress(x) !== x) fail(path, 'an address that is lower-case or has a valid EIP-55 checksum')
  return x as Address
}

/** A 65-byte secp256k1 signature, lower-case hex, `v` 27/28 and low `s` (no malleable twin). */
export function isSignature (x: unknown): x is Hex {
  if (typeof x !== 'string' || !SIGNATURE.test(x)) return false
  const s = BigInt(`0x${x.slice(66, 130)}`)
  const v = x.slice(130)
  return s > 0n && s <= SECP256K1_HALF_N && (v === '1b' || v === '1c')
}

function signature (x: unknown, path: string): Hex {
  if (!isSignature(x)) fail(path, 'a 65-byte signature as lower-case 0x hex with v 27 or 28 and a low s')
  return x
}

function decimal (x: unknown, path: string, bits: number): string {
  if (typeof x !== 'string' || x.length > 78 || !/^(0|[1-9][0-9]*)$/.test(x) || BigInt(x) >= (1n << BigInt(bits))) {
    fail(path, `a uint${bits} as a decimal string`)
  }
  return x
}

const CID_STRING = /^b[a-z2-7]+$/
const RAW_CODEC = 0x55
const SHA2_256 = 0x12

/** A CIDv1 raw sha2-256 in canonical base32 form (what `rawCid()` returns). */
export function isRawCid (x: unknown): x is string {
  if (typeof x !== 'string' || x.length > LIMITS.maxIdBytes || !CID_STRING.test(x)) return false
  try {
    const cid = CID.parse(x)
    return cid.version === 1 && cid.code === RAW_CODEC && cid.multihash.code === SHA2_256 &&
      cid.multihash.digest.byteLength === 32 && cid.toString() === x
  } catch {
    return false
  }
}

function cid (x: unknown, path: string): string {
  if (!isRawCid(x)) fail(path, 'a CIDv1 raw sha2-256 in base32')
  return x
}

const PEER_ID = /^[1-9A-HJ-NP-Za-km-z]{32,128}$/
const TOKEN_CHARS = "!#$%&'*+\\-.^_`|~0-9"
const METHOD = new RegExp(`^[${TOKEN_CHARS}A-Za-z]+$`)
const HEADER_NAME = new RegExp(`^[${TOKEN_CHARS}a-z]+$`)
/** Exactly what Node's `http` accepts in a header value (tab, 0x20–0x7e, 0x80–0xff). */
const HEADER_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/
/** A multiaddr in string form: checked for shape only (protocol/ does not parse multiaddrs). */
const MULTIADDR = /^(?:\/[\x21-\x2e\x30-\x7e]+)+$/
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/

function version (x: unknown, path: string): number {
  if (typeof x !== 'number' || !Number.isSafeInteger(x)) fail(`${path}.v`, `the protocol version ${PROTOCOL_VERSION}`)
  if (x !== PROTOCOL_VERSION) {
    throw new ProtocolError('UNSUPPORTED_VERSION', `${path}.v: version ${x} is not supported; this node speaks version ${PROTOCOL_VERSION}`, { details: { field: `${path}.v`, version: x } })
  }
  return x
}

function literal<T extends string> (x: unknown, path: string, value: T): T {
  if (x !== value) fail(path, JSON.stringify(value))
  return value
}

// ---------------------------------------------------------------------------------------------
// parts

function headerList (x: unknown, path: string): Array<[string, string]> {
  const list = array(x, path, LIMITS.maxHeaders)
  const out: Array<[string, string]> = []
  for (let i = 0; i < list.length; i++) {
    const pair = list[i]
    const p = `${path}[${i}]`
    if (!Array.isArray(pair) || pair.length !== 2) fail(p, 'a [name, value] pair')
    const name = pattern(pair[0], `${p}[0]`, HEADER_NAME, 'a lower-case header name')
    const value = str(pair[1], `${p}[1]`)
    if (!HEADER_VALUE.test(value)) fail(`${p}[1]`, 'a header value without CR, LF, NUL, other control characters or characters above U+00FF')
    out.push([name, value])
  }
  return out
}

function url (x: unknown, path: string): string {
  const s = str(x, path)
  // WHATWG URL parsing silently drops tabs and newlines and trims spaces; a wire URL has none
  if (!/^[\x21-\x7e]+$/.test(s)) fail(path, 'an absolute http(s) URL of printable ASCII characters')
  const parsed = URL.parse(s)
  if (parsed === null || (parsed.protocol !== 'http:' && parsed.protocol !== 'https:')) fail(path, 'an absolute http(s) URL')
  return s
}

export function validateWireRequest (x: unknown, path: string = 'request', ctx: Ctx = DEFAULT_CTX): WireRequest {
  const get = record(x, path, ['method', 'url', 'headers', 'body'])
  return {
    method: pattern(get('method'), `${path}.method`, METHOD, 'an HTTP method token'),
    url: url(get('url'), `${path}.url`),
    headers: headerList(get('headers'), `${path}.headers`),
    body: bytes(get('body'), `${path}.body`, LIMITS.maxRequestBodyBytes, ctx)
  }
}

export function validateWireResponse (x: unknown, path: string = 'response', ctx: Ctx = DEFAULT_CTX): WireResponse {
  const get = record(x, path, ['status', 'headers', 'body'])
  return {
    status: int(get('status'), `${path}.status`, 100, 599),
    headers: headerList(get('headers'), `${path}.headers`),
    body: bytes(get('body'), `${path}.body`, LIMITS.maxResponseBodyBytes, ctx)
  }
}

export function validateWireError (x: unknown, path: string = 'error'): WireError {
  const get = record(x, path, ['code', 'message'], ['details'])
  const code = get('code')
  if (!isWireErrorCode(code)) fail(`${path}.code`, 'a wire error code (WIRE_ERROR_CODES)')
  const out: WireError = { code, message: str(get('message'), `${path}.message`, LIMITS.maxErrorMessageBytes) }
  const details = get('details')
  if (details !== undefined) {
    if (!isPlainObject(details)) fail(`${path}.details`, 'a map')
    const keys = Object.keys(details)
    if (keys.length > LIMITS.maxMapSize) fail(`${path}.details`, `a map of at most ${LIMITS.maxMapSize} entries`)
    const d: Record<string, string | number | boolean> = {}
    for (const key of keys) {
      const p = `${path}.details.${show(key)}`
      if (key.length === 0 || FORBIDDEN_KEYS.has(key)) fail(p, 'a non-empty key other than __proto__, constructor or prototype')
      str(key, p, LIMITS.maxIdBytes)
      const value = details[key]
      if (typeof value === 'string') d[key] = str(value, p)
      else if (typeof value === 'boolean') d[key] = value
      else if (typeof value === 'number' && Number.isFinite(value)) d[key] = value + 0
      else fail(p, 'a string, a finite number or a boolean')
    }
    out.details = d
  }
  return out
}

function functionRef (x: unknown, path: string): FunctionRef {
  const get = record(x, path, ['wallet', 'project', 'name', 'id', 'bundleCid'])
  return {
    wallet: address(get('wallet'), `${path}.wallet`),
    project: pattern(get('project'), `${path}.project`, NAME_PATTERN, 'a project name of lower-case letters, digits and -'),
    name: pattern(get('name'), `${path}.name`, NAME_PATTERN, 'a function name of lower-case letters, digits and -'),
    id: hex32(get('id'), `${path}.id`),
    bundleCid: cid(get('bundleCid'), `${path}.bundleCid`)
  }
}

function functionOptions (x: unknown, path: string): FunctionOptions {
  // the one options schema (options.ts), shared with peerhost.json and the manifest
  return parseFunctionOptions(x, path)
}

/** A map of environment-variable names to strings (env, secrets), bounded in entries, name and value sizes. */
function stringMap (x: unknown, path: string, limits: { entries: number, nameBytes: number, valueBytes: number, what: string }): Record<string, string> {
  if (!isPlainObject(x)) fail(path, 'a map of strings')
  const keys = Object.keys(x)
  if (keys.length > limits.entries) fail(path, `a map of at most ${limits.entries} ${limits.what}`)
  const out: Record<string, string> = {}
  for (const key of keys) {
    const p = `${path}.${show(key)}`
    if (FORBIDDEN_KEYS.has(key) || key.length > limits.nameBytes || !ENV_NAME.test(key)) fail(p, `an environment variable name ([A-Za-z_][A-Za-z0-9_]*, at most ${limits.nameBytes} characters, not __proto__, constructor or prototype)`)
    out[key] = str(x[key], p, limits.valueBytes)
  }
  return out
}

function env (x: unknown, path: string): Record<string, string> {
  return stringMap(x, path, { entries: LIMITS.maxMapSize, nameBytes: LIMITS.maxIdBytes, valueBytes: LIMITS.maxStringBytes, what: 'entries' })
}

function secrets (x: unknown, path: string): Record<string, string> {
  return stringMap(x, path, { entries: LIMITS.maxSecrets, nameBytes: LIMITS.maxEnvNameBytes, valueBytes: LIMITS.maxSecretBytes, what: 'secrets' })
}

function timing (x: unknown, path: string): number {
  if (typeof x !== 'number' || !Number.isFinite(x) || x < 0 || x > LIMITS.maxTimingMs) fail(path, `a number of milliseconds from 0 to ${LIMITS.maxTimingMs}`)
  return x + 0
}

function timings (x: unknown, path: string): JobTimings {
  const get = record(x, path, ['queueMs', 'execMs', 'sandboxMs'])
  return {
    queueMs: timing(get('queueMs'), `${path}.queueMs`),
    execMs: timing(get('execMs'), `${path}.execMs`),
    sandboxMs: timing(get('sandboxMs'), `${path}.sandboxMs`)
  }
}

// ---------------------------------------------------------------------------------------------
// messages

export function validateWorkerAdvert (x: unknown, ctx: Ctx = DEFAULT_CTX): WorkerAdvert {
  const p = 'advert'
  const get = record(x, p, ['v', 'type', 'peerId', 'address', 'addrs', 'capacity', 'load', 'warm', 'ts', 'seq', 'sig'], ['full', 'price', 'sessionPrice', 'sessions', 'maxSessions'])
  const full = get('full')
  const sessions = get('sessions')
  const maxSessions = get('maxSessions')
  const price = get('price')
  const sessionPrice = get('sessionPrice')
  const advert: WorkerAdvert = {
    v: version(get('v'), p),
    type: literal(get('type'), `${p}.type`, 'advert'),
    peerId: pattern(get('peerId'), `${p}.peerId`, PEER_ID, 'a base58btc libp2p peer id'),
    address: address(get('address'), `${p}.address`),
    addrs: items(get('addrs'), `${p}.addrs`, LIMITS.maxAdvertAddrs, (a, i) => pattern(a, `${p}.addrs[${i}]`, MULTIADDR, 'a multiaddr string such as /ip4/127.0.0.1/tcp/4001')),
    capacity: int(get('capacity'), `${p}.capacity`, 0, LIMITS.maxWorkerCapacity),
    load: int(get('load'), `${p}.load`, 0, LIMITS.maxWorkerCapacity),
    warm: items(get('warm'), `${p}.warm`, LIMITS.maxWarmFunctions, (c, i) => cid(c, `${p}.warm[${i}]`)),
    ts: int(get('ts'), `${p}.ts`, 0, Number.MAX_SAFE_INTEGER),
    seq: int(get('seq'), `${p}.seq`, 0, Number.MAX_SAFE_INTEGER),
    sig: bytes(get('sig'), `${p}.sig`, 64, ctx, 64)
  }
  if (full !== undefined) advert.full = bool(full, `${p}.full`)
  if (price !== undefined) advert.price = decimal(price, `${p}.price`, 256)
  if (sessionPrice !== undefined) advert.sessionPrice = sessionPriceOf(sessionPrice, `${p}.sessionPrice`)
  if (sessions !== undefined) advert.sessions = int(sessions, `${p}.sessions`, 0, LIMITS.maxWorkerSessions)
  if (maxSessions !== undefined) advert.maxSessions = int(maxSessions, `${p}.maxSessions`, 0, LIMITS.maxWorkerSessions)
  return advert
}

function sessionPriceOf (x: unknown, path: string): SessionPrice {
  const get = record(x, path, ['perMessage', 'perMinute'])
  return { perMessage: decimal(get('perMessage'), `${path}.perMessage`, 256), perMinute: decimal(get('perMinute'), `${path}.perMinute`, 256) }
}

export function validateJobRequest (x: unknown, ctx: Ctx = DEFAULT_CTX): JobRequest {
  const p = 'job'
  const get = record(x, p, ['v', 'type', 'jobId', 'attempt', 'fn', 'options', 'request', 'inputHash', 'env', 'deadline', 'ticket', 'ticketSig'], ['secrets', 'session'])
  const t = record(get('ticket'), `${p}.ticket`, ['worker', 'gateway', 'fee', 'epoch', 'deadline'])
  const given = get('secrets')
  const job: JobRequest = {
    v: version(get('v'), p),
    type: literal(get('type'), `${p}.type`, 'job'),
    jobId: hex32(get('jobId'), `${p}.jobId`),
    attempt: int(get('attempt'), `${p}.attempt`, 1, LIMITS.maxAttempts),
    fn: functionRef(get('fn'), `${p}.fn`),
    options: functionOptions(get('options'), `${p}.options`),
    request: validateWireRequest(get('request'), `${p}.request`, ctx),
    inputHash: hex32(get('inputHash'), `${p}.inputHash`),
    env: env(get('env'), `${p}.env`),
    deadline: int(get('deadline'), `${p}.deadline`, 0, Number.MAX_SAFE_INTEGER),
    ticket: {
      worker: address(t('worker'), `${p}.ticket.worker`),
      gateway: address(t('gateway'), `${p}.ticket.gateway`),
      fee: decimal(t('fee'), `${p}.ticket.fee`, 256),
      epoch: decimal(t('epoch'), `${p}.ticket.epoch`, 64),
      deadline: decimal(t('deadline'), `${p}.ticket.deadline`, 64)
    },
    ticketSig: signature(get('ticketSig'), `${p}.ticketSig`)
  }
  if (given !== undefined) job.secrets = secrets(given, `${p}.secrets`)
  const session = get('session')
  if (session !== undefined) {
    if (session !== true) fail(`${p}.session`, 'true (or no field)')
    job.session = true
  }
  return job
}

export function validateSessionOpen (x: unknown): SessionOpen {
  const p = 'session-open'
  const get = record(x, p, ['v', 'type', 'jobId', 'attempt', 'headers'])
  return {
    v: version(get('v'), p),
    type: literal(get('type'), `${p}.type`, 'session-open'),
    jobId: hex32(get('jobId'), `${p}.jobId`),
    attempt: int(get('attempt'), `${p}.attempt`, 1, LIMITS.maxAttempts),
    headers: headerList(get('headers'), `${p}.headers`)
  }
}

export function validateWsFrame (x: unknown, ctx: Ctx = DEFAULT_CTX): WsFrame {
  const p = 'ws'
  const get = record(x, p, ['v', 'type', 'binary', 'data'])
  return {
    v: version(get('v'), p),
    type: literal(get('type'), `${p}.type`, 'ws'),
    binary: bool(get('binary'), `${p}.binary`),
    data: bytes(get('data'), `${p}.data`, LIMITS.maxWsMessageBytes, ctx)
  }
}

/** Close codes that may travel (RFC 6455 §7.4: 1000–1014 defined ones, 3000–4999 registered/private). */
function closeCode (x: unknown, path: string): number {
  const code = int(x, path, 1000, 4999)
  if ((code > 1014 && code < 3000) || code === 1004 || code === 1005 || code === 1006) fail(path, 'a close code that may be sent: 1000–1003, 1007–1014 or 3000–4999')
  return code
}

export function validateWsClose (x: unknown): WsClose {
  const p = 'ws-close'
  const get = record(x, p, ['v', 'type', 'code', 'reason'], ['delivered'])
  const delivered = get('delivered')
  return {
    v: version(get('v'), p),
    type: literal(get('type'), `${p}.type`, 'ws-close'),
    code: closeCode(get('code'), `${p}.code`),
    reason: str(get('reason'), `${p}.reason`, 123),
    ...(delivered !== undefined ? { delivered: int(delivered, `${p}.delivered`, 0, Number.MAX_SAFE_INTEGER) } : {})
  }
}

function transcriptSummary (x: unknown, path: string): TranscriptSummary {
  const get = record(x, path, ['inHash', 'outHash', 'messagesIn', 'messagesOut', 'bytesIn', 'bytesOut'])
  return {
    inHash: hex32(get('inHash'), `${path}.inHash`),
    outHash: hex32(get('outHash'), `${path}.outHash`),
    messagesIn: int(get('messagesIn'), `${path}.messagesIn`, 0, Number.MAX_SAFE_INTEGER),
    messagesOut: int(get('messagesOut'), `${path}.messagesOut`, 0, Number.MAX_SAFE_INTEGER),
    bytesIn: int(get('bytesIn'), `${path}.bytesIn`, 0, Number.MAX_SAFE_INTEGER),
    bytesOut: int(get('bytesOut'), `${path}.bytesOut`, 0, Number.MAX_SAFE_INTEGER)
  }
}

export function validateSessionTicket (x: unknown): SessionTicket {
  const p = 'ticket'
  const get = record(x, p, ['v', 'type', 'jobId', 'attempt', 'fee', 'ticketSig'])
  return {
    v: version(get('v'), p),
    type: literal(get('type'), `${p}.type`, 'ticket'),
    jobId: hex32(get('jobId'), `${p}.jobId`),
    attempt: int(get('attempt'), `${p}.attempt`, 1, LIMITS.maxAttempts),
    fee: decimal(get('fee'), `${p}.fee`, 256),
    ticketSig: signature(get('ticketSig'), `${p}.ticketSig`)
  }
}

export function validateSegmentFrame (x: unknown): SegmentFrame {
  const p = 'segment'
  const get = record(x, p, ['v', 'type', 'jobId', 'attempt', 'segment', 'closeFee', 'closeSig', 'segmentJobId', 'epoch', 'fee', 'ticketSig'])
  return {
    v: version(get('v'), p),
    type: literal(get('type'), `${p}.type`, 'segment'),
    jobId: hex32(get('jobId'), `${p}.jobId`),
    attempt: int(get('attempt'), `${p}.attempt`, 1, LIMITS.maxAttempts),
    segment: int(get('segment'), `${p}.segment`, 1, LIMITS.maxSessionSegments),
    closeFee: decimal(get('closeFee'), `${p}.closeFee`, 256),
    closeSig: signature(get('closeSig'), `${p}.closeSig`),
    segmentJobId: hex32(get('segmentJobId'), `${p}.segmentJobId`),
    epoch: decimal(get('epoch'), `${p}.epoch`, 63),
    fee: decimal(get('fee'), `${p}.fee`, 256),
    ticketSig: signature(get('ticketSig'), `${p}.ticketSig`)
  }
}

export function validateSegmentEnd (x: unknown): SegmentEnd {
  const p = 'segment-end'
  const get = record(x, p, ['v', 'type', 'jobId', 'attempt', 'segment', 'fee', 'transcript', 'outputHash', 'receiptSig'])
  return {
    v: version(get('v'), p),
    type: literal(get('type'), `${p}.type`, 'segment-end'),
    jobId: hex32(get('jobId'), `${p}.jobId`),
    attempt: int(get('attempt'), `${p}.attempt`, 1, LIMITS.maxAttempts),
    segment: int(get('segment'), `${p}.segment`, 0, LIMITS.maxSessionSegments),
    fee: decimal(get('fee'), `${p}.fee`, 256),
    transcript: transcriptSummary(get('transcript'), `${p}.transcript`),
    outputHash: hex32(get('outputHash'), `${p}.outputHash`),
    receiptSig: signature(get('receiptSig'), `${p}.receiptSig`)
  }
}

export function validateSessionEnd (x: unknown): SessionEnd {
  const p = 'session-end'
  const get = record(x, p, ['v', 'type', 'jobId', 'attempt', 'transcript', 'outputHash', 'receiptSig', 'logs', 'logsTruncated'], ['fee', 'segment', 'error'])
  const fee = get('fee')
  const segment = get('segment')
  // keys in the type's order (fee between receiptSig and logs): equal messages encode equally
  const out: SessionEnd = {
    v: version(get('v'), p),
    type: literal(get('type'), `${p}.type`, 'session-end'),
    jobId: hex32(get('jobId'), `${p}.jobId`),
    attempt: int(get('attempt'), `${p}.attempt`, 1, LIMITS.maxAttempts),
    transcript: transcriptSummary(get('transcript'), `${p}.transcript`),
    outputHash: hex32(get('outputHash'), `${p}.outputHash`),
    receiptSig: signature(get('receiptSig'), `${p}.receiptSig`),
    ...(fee !== undefined ? { fee: decimal(fee, `${p}.fee`, 256) } : {}),
    ...(segment !== undefined ? { segment: int(segment, `${p}.segment`, 0, LIMITS.maxSessionSegments) } : {}),
    logs: str(get('logs'), `${p}.logs`, LIMITS.maxLogBytes),
    logsTruncated: bool(get('logsTruncated'), `${p}.logsTruncated`)
  }
  const error = get('error')
  if (error !== undefined) out.error = validateWireError(error, `${p}.error`)
  return out
}

export function validateStreamHead (x: unknown): StreamHead {
  const p = 'stream-head'
  const get = record(x, p, ['v', 'type', 'jobId', 'attempt', 'status', 'headers'])
  return {
    v: version(get('v'), p),
    type: literal(get('type'), `${p}.type`, 'stream-head'),
    jobId: hex32(get('jobId'), `${p}.jobId`),
    attempt: int(get('attempt'), `${p}.attempt`, 1, LIMITS.maxAttempts),
    status: int(get('status'), `${p}.status`, 200, 599),
    headers: headerList(get('headers'), `${p}.headers`)
  }
}

export function validateStreamChunk (x: unknown, ctx: Ctx = DEFAULT_CTX): StreamChunk {
  const p = 'stream-chunk'
  const get = record(x, p, ['v', 'type', 'data'])
  return {
    v: version(get('v'), p),
    type: literal(get('type'), `${p}.type`, 'stream-chunk'),
    data: bytes(get('data'), `${p}.data`, LIMITS.maxStreamChunkBytes, ctx)
  }
}

export function validateStreamEnd (x: unknown): StreamEnd {
  const p = 'stream-end'
  const get = record(x, p, ['v', 'type', 'jobId', 'attempt', 'bytes', 'bodyHash', 'outputHash', 'receiptSig', 'logs', 'logsTruncated', 'timings'], ['error'])
  const out: StreamEnd = {
    v: version(get('v'), p),
    type: literal(get('type'), `${p}.type`, 'stream-end'),
    jobId: hex32(get('jobId'), `${p}.jobId`),
    attempt: int(get('attempt'), `${p}.attempt`, 1, LIMITS.maxAttempts),
    bytes: int(get('bytes'), `${p}.bytes`, 0, LIMITS.maxStreamBytes),
    bodyHash: hex32(get('bodyHash'), `${p}.bodyHash`),
    outputHash: hex32(get('outputHash'), `${p}.outputHash`),
    receiptSig: signature(get('receiptSig'), `${p}.receiptSig`),
    logs: str(get('logs'), `${p}.logs`, LIMITS.maxLogBytes),
    logsTruncated: bool(get('logsTruncated'), `${p}.logsTruncated`),
    timings: timings(get('timings'), `${p}.timings`)
  }
  const error = get('error')
  if (error !== undefined) out.error = validateWireError(error, `${p}.error`)
  return out
}

export function validateJobResult (x: unknown, ctx: Ctx = DEFAULT_CTX): JobResult {
  const p = 'result'
  const get = record(x, p, ['v', 'type', 'jobId', 'attempt', 'logs', 'logsTruncated', 'timings', 'outputHash', 'receiptSig'], ['response', 'error'])
  const v = version(get('v'), p)
  const type = literal(get('type'), `${p}.type`, 'result')
  const jobId = hex32(get('jobId'), `${p}.jobId`)
  const attempt = int(get('attempt'), `${p}.attempt`, 1, LIMITS.maxAttempts)
  const rawResponse = get('response')
  const rawError = get('error')
  if ((rawResponse === undefined) === (rawError === undefined)) fail(p, 'exactly one of response and error')
  return {
    v,
    type,
    jobId,
    attempt,
    ...(rawResponse !== undefined ? { response: validateWireResponse(rawResponse, `${p}.response`, ctx) } : {}),
    ...(rawError !== undefined ? { error: validateWireError(rawError, `${p}.error`) } : {}),
    logs: str(get('logs'), `${p}.logs`, LIMITS.maxLogBytes),
    logsTruncated: bool(get('logsTruncated'), `${p}.logsTruncated`),
    timings: timings(get('timings'), `${p}.timings`),
    outputHash: hex32(get('outputHash'), `${p}.outputHash`),
    receiptSig: signature(get('receiptSig'), `${p}.receiptSig`)
  }
}

export function validateErrorMessage (x: unknown): ErrorMessage {
  const p = 'error'
  const get = record(x, p, ['v', 'type', 'error'], ['jobId'])
  const v = version(get('v'), p)
  const type = literal(get('type'), `${p}.type`, 'error')
  const jobId = get('jobId')
  const error = validateWireError(get('error'), `${p}.error`)
  return jobId === undefined ? { v, type, error } : { v, type, jobId: hex32(jobId, `${p}.jobId`), error }
}

export function validateBundleRequest (x: unknown): BundleRequest {
  const p = 'bundle-request'
  const get = record(x, p, ['v', 'type', 'cid'])
  return { v: version(get('v'), p), type: literal(get('type'), `${p}.type`, 'bundle-request'), cid: cid(get('cid'), `${p}.cid`) }
}

export function validateBundleResponse (x: unknown, ctx: Ctx = DEFAULT_CTX): BundleResponse {
  const p = 'bundle'
  const get = record(x, p, ['v', 'type', 'cid', 'bytes'])
  return {
    v: version(get('v'), p),
    type: literal(get('type'), `${p}.type`, 'bundle'),
    cid: cid(get('cid'), `${p}.cid`),
    bytes: bytes(get('bytes'), `${p}.bytes`, LIMITS.maxBundleBytes, ctx)
  }
}

export function validateSecretsRequest (x: unknown): SecretsRequest {
  const p = 'secrets-request'
  const get = record(x, p, ['v', 'type', 'inputCid'])
  return { v: version(get('v'), p), type: literal(get('type'), `${p}.type`, 'secrets-request'), inputCid: cid(get('inputCid'), `${p}.inputCid`) }
}

export function validateSecretsResponse (x: unknown): SecretsResponse {
  const p = 'secrets'
  const get = record(x, p, ['v', 'type', 'inputCid', 'secrets'])
  return {
    v: version(get('v'), p),
    type: literal(get('type'), `${p}.type`, 'secrets'),
    inputCid: cid(get('inputCid'), `${p}.inputCid`),
    secrets: secrets(get('secrets'), `${p}.secrets`)
  }
}

/**
 * Validates any message: `v` first (UNSUPPORTED_VERSION), then `type` (UNKNOWN_TYPE), then every
 * field of that type (INVALID_FIELD). Returns a normalized copy.
 */
export function validateMessage (x: unknown, ctx: Ctx = DEFAULT_CTX): Message {
  if (!isPlainObject(x)) fail('message', 'a map')
  version(Object.hasOwn(x, 'v') ? x.v : undefined, 'message')
  const type = Object.hasOwn(x, 'type') ? x.type : undefined
  if (typeof type !== 'string') fail('message.type', 'a message type string')
  switch (type) {
    case 'advert': return validateWorkerAdvert(x, ctx)
    case 'job': return validateJobRequest(x, ctx)
    case 'result': return validateJobResult(x, ctx)
    case 'error': return validateErrorMessage(x)
    case 'bundle-request': return validateBundleRequest(x)
    case 'bundle': return validateBundleResponse(x, ctx)
    case 'secrets-request': return validateSecretsRequest(x)
    case 'secrets': return validateSecretsResponse(x)
    case 'session-open': return validateSessionOpen(x)
    case 'ws': return validateWsFrame(x, ctx)
    case 'ws-close': return validateWsClose(x)
    case 'ticket': return validateSessionTicket(x)
    case 'segment': return validateSegmentFrame(x)
    case 'segment-end': return validateSegmentEnd(x)
    case 'session-end': return validateSessionEnd(x)
    case 'stream-head': return validateStreamHead(x)
    case 'stream-chunk': return validateStreamChunk(x, ctx)
    case 'stream-end': return validateStreamEnd(x)
    default:
      throw new ProtocolError('UNKNOWN_TYPE', `message.type: ${show(type)} is not a known message type; expected one of ${MESSAGE_TYPES.join(', ')}`, { details: { field: 'message.type' } })
  }
}

/** Like `validateMessage`, and the type must be `type` (INVALID_FIELD otherwise). */
export function validateMessageOf<T extends MessageType> (x: unknown, type: T, ctx: Ctx = DEFAULT_CTX): Extract<Message, { type: T }> {
  const msg = validateMessage(x, ctx)
  if (msg.type !== type) fail('message.type', `a "${type}" message, got "${msg.type}"`)
  return msg as Extract<Message, { type: T }>
}

/**
 * Rejects an advert whose timestamp is older than LIMITS.advertMaxAgeMs or further than
 * LIMITS.advertMaxFutureMs ahead of `nowMs` (ProtocolError STALE).
 */
export function assertAdvertFresh (advert: Pick<WorkerAdvert, 'ts'>, nowMs: number = Date.now()): void {
  if (advert.ts < nowMs - LIMITS.advertMaxAgeMs) {
    throw new ProtocolError('STALE', `advert.ts: the advert is ${nowMs - advert.ts} ms old; at most ${LIMITS.advertMaxAgeMs} ms is accepted`, { details: { field: 'advert.ts', ts: advert.ts, now: nowMs } })
  }
  if (advert.ts > nowMs + LIMITS.advertMaxFutureMs) {
    throw new ProtocolError('STALE', `advert.ts: the advert is ${advert.ts - nowMs} ms in the future; at most ${LIMITS.advertMaxFutureMs} ms is accepted`, { details: { field: 'advert.ts', ts: advert.ts, now: nowMs } })
  }
}

export type { Ctx as ValidateContext }
