/**
 * The two IPFS documents of the chain fallback, msgpack in one raw block each (CIDv1 raw sha2-256,
 * like bundles):
 *
 * - **input** (gateway → workers, its CID in `requestExecution`): the function (owner, project,
 *   name, functionId, bundle CID), its options and public env, the canonicalisable request, the
 *   gateway's peer id (where the bundle can be fetched) and the job's deadline. Workers check that
 *   `inputHash(request)` and the functionId equal what the chain says before running it. Secrets are
 *   never put here (the document is public), only their names: workers fetch the values from the
 *   gateway over SECRETS_PROTOCOL.
 * - **output** (worker → gateway, its CID in `reveal`): the response or the wire error; its
 *   `outputHash` is what the chain finalized, so the gateway verifies what it fetched.
 */
import { pack, unpack } from 'msgpackr'
import type { Address, Hex } from 'viem'
import {
  functionId, inputHash, outputHash, rawCid, WIRE_ERROR_CODES,
  type FunctionOptions, type FunctionRef, type WireError, type WireRequest, type WireResponse
} from '#protocol'
import { NodeError } from '../errors.ts'

export const FALLBACK_DOC_VERSION = 1

export interface FallbackInput {
  v: number
  type: 'fallback-input'
  jobId: Hex
  fn: FunctionRef
  options: FunctionOptions
  env: Record<string, string>
  request: WireRequest
  /** unix ms: the execution must finish before it */
  deadline: number
  /** base58 peer id of the requesting gateway (holds the bundle and the input) */
  gateway: string
  /**
   * Names (never values) of the project's secrets: a worker taking a slot asks the gateway for
   * them over SECRETS_PROTOCOL. Absent when the project has none.
   */
  secretNames?: string[]
}

export interface FallbackOutput {
  v: number
  type: 'fallback-output'
  response?: WireResponse
  error?: WireError
}

export interface EncodedDocument { cid: string, bytes: Uint8Array }

function encode (doc: object): EncodedDocument {
  const bytes = new Uint8Array(pack(doc))
  return { cid: rawCid(bytes), bytes }
}

function bad (what: string): never {
  throw new NodeError('BAD_FALLBACK_DOCUMENT', `the fallback document is malformed: ${what}`)
}

function bytesOf (x: unknown, what: string): Uint8Array {
  if (x instanceof Uint8Array) return new Uint8Array(x.buffer, x.byteOffset, x.byteLength)
  return bad(`${what} is not bytes`)
}

function headersOf (x: unknown, what: string): Array<[string, string]> {
  if (!Array.isArray(x) || !x.every(h => Array.isArray(h) && h.length === 2 && typeof h[0] === 'string' && typeof h[1] === 'string')) bad(`${what} are not [name, value] pairs`)
  return x as Array<[string, string]>
}

export function encodeFallbackInput (doc: Omit<FallbackInput, 'v' | 'type'>): EncodedDocument {
  return encode({ v: FALLBACK_DOC_VERSION, type: 'fallback-input', ...doc })
}

/**
 * Decodes an input document and checks it against the request on chain: the inputHash and the
 * functionId must match. Throws NodeError BAD_FALLBACK_DOCUMENT or FALLBACK_MISMATCH.
 */
export function decodeFallbackInput (bytes: Uint8Array, expected: { inputHash: Hex, functionId: Hex }): FallbackInput {
  let raw: any
  try { raw = unpack(bytes) } catch { bad('not msgpack') }
  if (raw?.v !== FALLBACK_DOC_VERSION || raw?.type !== 'fallback-input') bad('not a version 1 input document')
  const fn = raw.fn
  if (typeof fn?.wallet !== 'string' || typeof fn?.project !== 'string' || typeof fn?.name !== 'string' || typeof fn?.bundleCid !== 'string' || typeof fn?.id !== 'string') bad('fn')
  const o = raw.options
  if (typeof o?.memoryMb !== 'number' || typeof o?.timeoutMs !== 'number' || !Array.isArray(o?.network) || !['function', 'execution'].includes(o?.isolation)) bad('options')
  if (typeof raw.env !== 'object' || raw.env === null || !Object.values(raw.env).every(v => typeof v === 'string')) bad('env')
  const r = raw.request
  if (typeof r?.method !== 'string' || typeof r?.url !== 'string') bad('request')
  const request: WireRequest = { method: r.method, url: r.url, headers: headersOf(r.headers, 'request headers'), body: bytesOf(r.body, 'request body') }
  if (typeof raw.deadline !== 'number' || typeof raw.gateway !== 'string' || typeof raw.jobId !== 'string') bad('deadline, gateway or jobId')
  if (raw.secretNames !== undefined && (!Array.isArray(raw.secretNames) || raw.secretNames.length > 64 || !raw.secretNames.every((n: unknown) => typeof n === 'string' && n.length <= 64))) bad('secretNames')
  let hash: Hex
  try { hash = inputHash(request) } catch { bad('request cannot be canonicalised') }
  if (hash !== expected.inputHash) throw new NodeError('FALLBACK_MISMATCH', 'the input document does not hash to the inputHash on chain')
  const id = functionId(fn.wallet as Address, fn.project, fn.name)
  if (id !== expected.functionId || fn.id !== id) throw new NodeError('FALLBACK_MISMATCH', 'the input document names another function than the request on chain')
  return {
    v: raw.v,
    type: 'fallback-input',
    jobId: raw.jobId,
    fn: { wallet: fn.wallet, project: fn.project, name: fn.name, id: fn.id, bundleCid: fn.bundleCid },
    options: { memoryMb: o.memoryMb, timeoutMs: o.timeoutMs, network: o.network.map(String), isolation: o.isolation },
    env: raw.env,
    request,
    deadline: raw.deadline,
    gateway: raw.gateway,
    ...(raw.secretNames !== undefined && raw.secretNames.length > 0 ? { secretNames: raw.secretNames as string[] } : {})
  }
}

export function encodeFallbackOutput (result: { response?: WireResponse, error?: WireError }): EncodedDocument {
  return encode(result.response !== undefined
    ? { v: FALLBACK_DOC_VERSION, type: 'fallback-output', response: result.response }
    : { v: FALLBACK_DOC_VERSION, type: 'fallback-output', error: result.error })
}

/** Decodes an output document and checks it against the finalized outputHash (FALLBACK_MISMATCH otherwise). */
export function decodeFallbackOutput (bytes: Uint8Array, expectedOutputHash: Hex): FallbackOutput {
  let raw: any
  try { raw = unpack(bytes) } catch { bad('not msgpack') }
  if (raw?.v !== FALLBACK_DOC_VERSION || raw?.type !== 'fallback-output') bad('not a version 1 output document')
  let out: FallbackOutput
  if (raw.response !== undefined) {
    const r = raw.response
    if (typeof r?.status !== 'number') bad('response status')
    out = { v: raw.v, type: 'fallback-output', response: { status: r.status, headers: headersOf(r.headers, 'response headers'), body: bytesOf(r.body, 'response body') } }
  } else {
    const e = raw.error
    if (typeof e?.code !== 'string' || !(e.code in WIRE_ERROR_CODES) || typeof e?.message !== 'string') bad('error')
    out = { v: raw.v, type: 'fallback-output', error: { code: e.code, message: e.message } }
  }
  let hash: Hex
  try { hash = outputHash(out.response !== undefined ? { response: out.response } : { error: out.error as WireError }) } catch { bad('output cannot be canonicalised') }
  if (hash !== expectedOutputHash) throw new NodeError('FALLBACK_MISMATCH', 'the output document does not hash to the finalized outputHash')
  return out
}
