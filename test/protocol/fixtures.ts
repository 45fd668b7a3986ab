/**
 * Fixed, valid messages of every type and fast-check arbitraries of valid messages, shared by the
 * protocol specs and the golden-vector generator. Every function returns a fresh object.
 */
import fc from 'fast-check'
import { bytesToHex, type Address, type Hex } from 'viem'
import assert from 'node:assert/strict'
import {
  FUNCTION_OPTION_BOUNDS, functionId, LIMITS, PROTOCOL_ERROR_CODES, PROTOCOL_VERSION, ProtocolError, rawCid, WIRE_ERROR_CODES,
  type BundleRequest, type BundleResponse, type SecretsRequest, type SecretsResponse, type ErrorMessage, type JobRequest, type JobResult,
  type Message, type MessageType, type SessionEnd, type ProtocolErrorCode, type WireError, type WireErrorCode, type WorkerAdvert
} from '#protocol'

/** Runs `fn`, which must throw a ProtocolError with a code from the closed set; returns the code. */
export function codeOf (fn: () => unknown): ProtocolErrorCode {
  try {
    fn()
  } catch (err) {
    assert.ok(err instanceof ProtocolError, `expected a ProtocolError, got ${String(err)}`)
    assert.ok(Object.hasOwn(PROTOCOL_ERROR_CODES, err.code), `unknown code ${err.code}`)
    return err.code
  }
  assert.fail('expected a ProtocolError, nothing was thrown')
}

/** Hardhat account #0: a well-known key, never used for anything real. */
export const HARDHAT_KEY_0: Hex = '0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80'
export const HARDHAT_ADDRESS_0: Address = '0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266'
export const GATEWAY_ADDRESS: Address = '0x70997970c51812dc3a010c7d01b50e0d17dc79c8'
export const PEER_ID = '12D3KooWRSfQupY9xjpwjpPsCYVaZy891mEigJFUQgeADvQbLCqY'
/** Two real signatures by HARDHAT_KEY_0 (any valid 65-byte low-s signature will do in messages). */
export const SIG_1: Hex = '0x57d93e673abd1c8ca28d7d870da4995a5987b69449dc0075c830b9e621e606a226db414cac3feeb4a33075a1d890975da6da7ce8e4004754315fa8e8faed2fa91c'
export const SIG_2: Hex = '0x3315dedff01891bc0faa9276dd049c0be4bcdaa822541f37ffdeb36429ccdc7e5ea982754a19267aa1b4d33986b472946598845e486940f0b35d21efddf504291b'

const enc = new TextEncoder()
export const BUNDLE_BYTES = enc.encode('module.exports = { default: { fetch: () => new Response("hello") } }\n')
export const BUNDLE_CID = rawCid(BUNDLE_BYTES)
export const JOB_ID: Hex = `0x${'11'.repeat(32)}`
export const INPUT_HASH: Hex = `0x${'22'.repeat(32)}`
export const OUTPUT_HASH: Hex = `0x${'33'.repeat(32)}`

export function advert (): WorkerAdvert {
  return {
    v: PROTOCOL_VERSION,
    type: 'advert',
    peerId: PEER_ID,
    address: HARDHAT_ADDRESS_0,
    addrs: ['/ip4/127.0.0.1/tcp/40001', '/ip4/127.0.0.1/tcp/40002/ws'],
    capacity: 8,
    load: 3,
    warm: [BUNDLE_CID],
    ts: 1_764_000_000_000,
    seq: 42,
    sig: new Uint8Array(64).fill(7)
  }
}

export function job (): JobRequest {
  return {
    v: PROTOCOL_VERSION,
    type: 'job',
    jobId: JOB_ID,
    attempt: 1,
    fn: {
      wallet: HARDHAT_ADDRESS_0,
      project: 'demo',
      name: 'hello',
      id: functionId(HARDHAT_ADDRESS_0, 'demo', 'hello'),
      bundleCid: BUNDLE_CID
    },
    options: { memoryMb: 128, timeoutMs: 10_000, network: ['api.example.com', '*.example.org:8443'], isolation: 'function' },
    request: {
      method: 'POST',
      url: 'http://127.0.0.1:8080/0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266/demo/hello/x?b=2&a=1',
      headers: [['content-type', 'application/json'], ['accept', '*/*'], ['x-custom', 'v']],
      body: enc.encode('{"hello":"world"}')
    },
    inputHash: INPUT_HASH,
    env: { GREETING: 'hi', MODE: 'test' },
    deadline: 1_764_000_030_000,
    ticket: { worker: HARDHAT_ADDRESS_0, gateway: GATEWAY_ADDRESS, fee: '1000000000000000', epoch: '7', deadline: '1764000030' },
    ticketSig: SIG_1
  }
}

export function result (): JobResult {
  return {
    v: PROTOCOL_VERSION,
    type: 'result',
    jobId: JOB_ID,
    attempt: 1,
    response: { status: 200, headers: [['content-type', 'text/plain;charset=UTF-8']], body: enc.encode('hello') },
    logs: 'log line\n',
    logsTruncated: false,
    timings: { queueMs: 0.25, execMs: 1.5, sandboxMs: 0 },
    outputHash: OUTPUT_HASH,
    receiptSig: SIG_2
  }
}

export function errorResult (): JobResult {
  return {
    v: PROTOCOL_VERSION,
    type: 'result',
    jobId: JOB_ID,
    attempt: 2,
    error: { code: 'LIMIT_TIMEOUT', message: 'the function exceeded its wall-clock limit', details: { limit: 'timeoutMs', measured: 10_001, configured: 10_000 } },
    logs: '',
    logsTruncated: true,
    timings: { queueMs: 1, execMs: 10_001, sandboxMs: 2 },
    outputHash: OUTPUT_HASH,
    receiptSig: SIG_2
  }
}

export function errorMessage (): ErrorMessage {
  return { v: PROTOCOL_VERSION, type: 'error', jobId: JOB_ID, error: { code: 'OVERLOADED', message: 'the worker has no free capacity' } }
}

export function bundleRequest (): BundleRequest {
  return { v: PROTOCOL_VERSION, type: 'bundle-request', cid: BUNDLE_CID }
}

export function bundleResponse (): BundleResponse {
  return { v: PROTOCOL_VERSION, type: 'bundle', cid: BUNDLE_CID, bytes: BUNDLE_BYTES.slice() }
}

/** One fixed message per type (and a second result, with an error). */
/** A session-end frame (the receipt fields are result()'s). */
export function sessionEnd (): SessionEnd {
  return {
    v: PROTOCOL_VERSION,
    type: 'session-end',
    jobId: result().jobId,
    attempt: 1,
    transcript: { inHash: `0x${'11'.repeat(32)}`, outHash: `0x${'22'.repeat(32)}`, messagesIn: 3, messagesOut: 2, bytesIn: 30, bytesOut: 20 },
    outputHash: result().outputHash,
    receiptSig: result().receiptSig,
    logs: '',
    logsTruncated: false
  }
}

export function fixtures (): Array<{ name: string, message: Message }> {
  return [
    { name: 'advert', message: advert() },
    { name: 'advert-priced', message: { ...advert(), full: true, price: '25000000000000' } },
    { name: 'advert-session-priced', message: { ...advert(), price: '25000000000000', sessionPrice: { perMessage: '1000000000', perMinute: '0' } } },
    { name: 'job', message: job() },
    { name: 'job-secrets', message: { ...job(), secrets: { API_TOKEN: 'tok-123', DB_URL: 'postgres://u:p@db/x' } } },
    { name: 'result', message: result() },
    { name: 'result-error', message: errorResult() },
    { name: 'error', message: errorMessage() },
    { name: 'bundle-request', message: bundleRequest() },
    { name: 'bundle', message: bundleResponse() },
    { name: 'secrets-request', message: { v: PROTOCOL_VERSION, type: 'secrets-request', inputCid: BUNDLE_CID } },
    { name: 'secrets', message: { v: PROTOCOL_VERSION, type: 'secrets', inputCid: BUNDLE_CID, secrets: { API_TOKEN: 'tok-123' } } },
    { name: 'job-session', message: { ...job(), session: true } },
    { name: 'session-open', message: { v: PROTOCOL_VERSION, type: 'session-open', jobId: result().jobId, attempt: 1, headers: [['set-cookie', 'a=1']] } },
    { name: 'ws-text', message: { v: PROTOCOL_VERSION, type: 'ws', binary: false, data: new TextEncoder().encode('héllo') } },
    { name: 'ws-binary', message: { v: PROTOCOL_VERSION, type: 'ws', binary: true, data: new Uint8Array([0, 1, 2, 255]) } },
    { name: 'ws-close', message: { v: PROTOCOL_VERSION, type: 'ws-close', code: 4001, reason: 'bye' } },
    { name: 'ticket', message: { v: PROTOCOL_VERSION, type: 'ticket', jobId: result().jobId, attempt: 1, fee: '25000000100000', ticketSig: result().receiptSig } },
    { name: 'session-end', message: sessionEnd() },
    { name: 'session-end-metered', message: { ...sessionEnd(), fee: '25000000100000' } },
    { name: 'segment', message: { v: PROTOCOL_VERSION, type: 'segment', jobId: result().jobId, attempt: 1, segment: 1, closeFee: '25000000100000', closeSig: result().receiptSig, segmentJobId: OUTPUT_HASH, epoch: '8', fee: '0', ticketSig: result().receiptSig } },
    { name: 'segment-end', message: { v: PROTOCOL_VERSION, type: 'segment-end', jobId: result().jobId, attempt: 1, segment: 0, fee: '25000000100000', transcript: sessionEnd().transcript, outputHash: sessionEnd().outputHash, receiptSig: sessionEnd().receiptSig } },
    { name: 'session-end-segmented', message: { ...sessionEnd(), fee: '3000', segment: 2 } },
    { name: 'stream-head', message: { v: PROTOCOL_VERSION, type: 'stream-head', jobId: result().jobId, attempt: 1, status: 200, headers: [['content-type', 'text/event-stream']] } },
    { name: 'stream-chunk', message: { v: PROTOCOL_VERSION, type: 'stream-chunk', data: new TextEncoder().encode('data: 0\n\n') } },
    {
      name: 'stream-end',
      message: {
        v: PROTOCOL_VERSION,
        type: 'stream-end',
        jobId: result().jobId,
        attempt: 1,
        bytes: 9,
        bodyHash: `0x${'33'.repeat(32)}`,
        outputHash: result().outputHash,
        receiptSig: result().receiptSig,
        logs: '',
        logsTruncated: false,
        timings: { queueMs: 1, execMs: 2, sandboxMs: 0.5 },
        error: { code: 'LIMIT_RESPONSE_SIZE', message: 'the function response exceeded its size limit' }
      }
    }
  ]
}

// ---------------------------------------------------------------------------------------------
// arbitraries of valid messages

const SECP256K1_HALF_N = 0x7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0n
const chars = (s: string): fc.Arbitrary<string> => fc.constantFrom(...s.split(''))
const LOWER = 'abcdefghijklmnopqrstuvwxyz'
const DIGITS = '0123456789'

export const hex32Arb: fc.Arbitrary<Hex> = fc.uint8Array({ minLength: 32, maxLength: 32 }).map(b => bytesToHex(b))
export const addressArb: fc.Arbitrary<Address> = fc.uint8Array({ minLength: 20, maxLength: 20 }).map(b => bytesToHex(b) as Address)
export const signatureArb: fc.Arbitrary<Hex> = fc.tuple(
  fc.uint8Array({ minLength: 32, maxLength: 32 }),
  fc.bigInt({ min: 1n, max: SECP256K1_HALF_N }),
  fc.constantFrom('1b', '1c')
).map(([r, s, v]) => `${bytesToHex(r)}${s.toString(16).padStart(64, '0')}${v}` as Hex)
export const cidArb: fc.Arbitrary<string> = fc.uint8Array({ maxLength: 16 }).map(b => rawCid(b))
const nameArb = fc.tuple(chars(LOWER + DIGITS), fc.string({ unit: chars(LOWER + DIGITS + '-'), maxLength: 20 })).map(([a, b]) => a + b)
const peerIdArb = fc.string({ unit: chars('123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz'), minLength: 32, maxLength: 60 })
const headerNameArb = fc.string({ unit: chars(LOWER + DIGITS + "!#$%&'*+-.^_`|~"), minLength: 1, maxLength: 24 })
const headerValueArb = fc.string({
  unit: fc.oneof(fc.integer({ min: 0x20, max: 0x7e }), fc.constant(0x09), fc.integer({ min: 0x80, max: 0xff })).map(c => String.fromCharCode(c)),
  maxLength: 40
})
const headersArb = fc.array(fc.tuple(headerNameArb, headerValueArb), { maxLength: 8 }) as fc.Arbitrary<Array<[string, string]>>
const bodyArb = fc.uint8Array({ maxLength: 64 })
const urlArb = fc.webUrl({ withQueryParameters: true, withFragments: true }).filter(u => /^[\x21-\x7e]+$/.test(u))
const textArb = fc.string({ unit: 'grapheme', maxLength: 40 })
const wireErrorCodeArb = fc.constantFrom(...(Object.keys(WIRE_ERROR_CODES) as WireErrorCode[]))
const safeNat = fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER })
const envKeyArb = fc.tuple(chars(LOWER + '_ABCXYZ'), fc.string({ unit: chars(LOWER + DIGITS + '_ABCXYZ'), maxLength: 12 }))
  .map(([a, b]) => a + b).filter(k => k !== 'constructor' && k !== 'prototype' && k !== '__proto__')
const decimalArb = (bits: number): fc.Arbitrary<string> => fc.bigInt({ min: 0n, max: (1n << BigInt(bits)) - 1n }).map(String)

export const wireErrorArb: fc.Arbitrary<WireError> = fc.record({
  code: wireErrorCodeArb,
  message: textArb,
  details: fc.dictionary(fc.string({ unit: chars(LOWER), minLength: 1, maxLength: 8 }).filter(k => k !== 'constructor' && k !== 'prototype'),
    fc.oneof(textArb, fc.boolean(), fc.integer(), fc.double({ noNaN: true, noDefaultInfinity: true })), { maxKeys: 4 })
}, { requiredKeys: ['code', 'message'] })

export const advertArb: fc.Arbitrary<WorkerAdvert> = fc.record({
  v: fc.constant(PROTOCOL_VERSION),
  type: fc.constant('advert' as const),
  peerId: peerIdArb,
  address: addressArb,
  addrs: fc.array(fc.integer({ min: 1, max: 65535 }).map(p => `/ip4/10.0.0.1/tcp/${p}`), { maxLength: 4 }),
  capacity: fc.integer({ min: 0, max: LIMITS.maxWorkerCapacity }),
  load: fc.integer({ min: 0, max: LIMITS.maxWorkerCapacity }),
  warm: fc.array(cidArb, { maxLength: 4 }),
  ts: safeNat,
  seq: safeNat,
  sig: fc.uint8Array({ minLength: 64, maxLength: 64 })
}, { requiredKeys: ['v', 'type', 'peerId', 'address', 'addrs', 'capacity', 'load', 'warm', 'ts', 'seq', 'sig'] }).chain(a => fc.record({
  full: fc.option(fc.boolean(), { nil: undefined }),
  price: fc.option(fc.bigInt({ min: 0n, max: (1n << 256n) - 1n }).map(String), { nil: undefined })
}).map(({ full, price }) => ({ ...a, ...(full === undefined ? {} : { full }), ...(price === undefined ? {} : { price }) })))

const jobWithoutSecretsArb: fc.Arbitrary<JobRequest> = fc.record({
  v: fc.constant(PROTOCOL_VERSION),
  type: fc.constant('job' as const),
  jobId: hex32Arb,
  attempt: fc.integer({ min: 1, max: LIMITS.maxAttempts }),
  fn: fc.record({ wallet: addressArb, project: nameArb, name: nameArb, id: hex32Arb, bundleCid: cidArb }),
  options: fc.record({
    memoryMb: fc.integer({ min: FUNCTION_OPTION_BOUNDS.memoryMb.min, max: FUNCTION_OPTION_BOUNDS.memoryMb.max }),
    timeoutMs: fc.integer({ min: FUNCTION_OPTION_BOUNDS.timeoutMs.min, max: FUNCTION_OPTION_BOUNDS.timeoutMs.max }),
    network: fc.array(fc.domain(), { maxLength: 3 }),
    isolation: fc.constantFrom('function' as const, 'execution' as const)
  }),
  request: fc.record({
    method: fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'PURGE'),
    url: urlArb,
    headers: headersArb,
    body: bodyArb
  }),
  inputHash: hex32Arb,
  env: fc.dictionary(envKeyArb, textArb, { maxKeys: 4 }),
  deadline: safeNat,
  ticket: fc.record({ worker: addressArb, gateway: addressArb, fee: decimalArb(256), epoch: decimalArb(64), deadline: decimalArb(64) }),
  ticketSig: signatureArb
})
/** jobs with and without the optional `secrets` map */
export const jobArb: fc.Arbitrary<JobRequest> = fc.tuple(jobWithoutSecretsArb, fc.option(fc.dictionary(envKeyArb, textArb, { maxKeys: 3 }), { nil: undefined }))
  .map(([j, secrets]) => secrets === undefined ? j : { ...j, secrets })

const timingArb = fc.double({ min: 0, max: LIMITS.maxTimingMs, noNaN: true }).map(x => x + 0)
export const resultArb: fc.Arbitrary<JobResult> = fc.tuple(
  fc.record({
    v: fc.constant(PROTOCOL_VERSION),
    type: fc.constant('result' as const),
    jobId: hex32Arb,
    attempt: fc.integer({ min: 1, max: LIMITS.maxAttempts }),
    logs: textArb,
    logsTruncated: fc.boolean(),
    timings: fc.record({ queueMs: timingArb, execMs: timingArb, sandboxMs: timingArb }),
    outputHash: hex32Arb,
    receiptSig: signatureArb
  }),
  fc.oneof(
    fc.record({ status: fc.integer({ min: 100, max: 599 }), headers: headersArb, body: bodyArb }).map(response => ({ response })),
    wireErrorArb.map(error => ({ error }))
  )
).map(([r, outcome]) => ({ ...r, ...outcome }))

export const errorMessageArb: fc.Arbitrary<ErrorMessage> = fc.record({
  v: fc.constant(PROTOCOL_VERSION),
  type: fc.constant('error' as const),
  jobId: hex32Arb,
  error: wireErrorArb
}, { requiredKeys: ['v', 'type', 'error'] })

export const bundleRequestArb: fc.Arbitrary<BundleRequest> = fc.record({
  v: fc.constant(PROTOCOL_VERSION), type: fc.constant('bundle-request' as const), cid: cidArb
})

export const bundleResponseArb: fc.Arbitrary<BundleResponse> = fc.record({
  v: fc.constant(PROTOCOL_VERSION), type: fc.constant('bundle' as const), cid: cidArb, bytes: fc.uint8Array({ maxLength: 256 })
})

export const secretsRequestArb: fc.Arbitrary<SecretsRequest> = fc.record({
  v: fc.constant(PROTOCOL_VERSION), type: fc.constant('secrets-request' as const), inputCid: cidArb
})
export const secretsResponseArb: fc.Arbitrary<SecretsResponse> = fc.record({
  v: fc.constant(PROTOCOL_VERSION), type: fc.constant('secrets' as const), inputCid: cidArb, secrets: fc.dictionary(envKeyArb, textArb, { maxKeys: 3 })
})
export const messageArb: fc.Arbitrary<Message> = fc.oneof(advertArb, jobArb, resultArb, errorMessageArb, bundleRequestArb, bundleResponseArb, secretsRequestArb, secretsResponseArb)

export const MESSAGE_TYPE_LIST: MessageType[] = ['advert', 'job', 'result', 'error', 'bundle-request', 'bundle', 'secrets-request', 'secrets']
