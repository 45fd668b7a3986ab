/**
 * Sealed chain-fallback documents: nothing a client sent or received is public on IPFS or on chain.
 *
 * - **sealed input** (gateway → the drawn workers; its CID posted with `postInput` once the slots
 *   are drawn): msgpack `{ v: 1, type: 'fallback-sealed-input', recipients: { <worker address>:
 *   envelope }, nonce, body }`. `body` is AES-256-GCM (random 32-byte content key, 12-byte nonce,
 *   tag appended; additional data `peerhost-chain-input-v1\n<chainId>\n<coordinator>\n<requestId>`)
 *   over msgpack `{ input: <input document bytes (documents.ts)>, secrets?: {…}, gatewayKey: <32
 *   bytes> }`. Each envelope is the content key sealed (node/secrets/sealed.ts: X25519 + HKDF-SHA256
 *   + AES-256-GCM) to a drawn worker's key published in the coordinator's pool (`join(key)`), with
 *   the context (chainId, coordinator, worker address, `chain-input`, requestId): an envelope copied
 *   to another request or worker does not open. The project's secrets travel inside, so only a
 *   worker the chain drew for this request can read them.
 * - **sealed output** (a worker → the gateway; its CID in `reveal`): msgpack `{ v: 1, type:
 *   'fallback-sealed-output', envelope }`, the output document (documents.ts) sealed to the
 *   gateway's key from the input with the context (chainId, coordinator, gateway address,
 *   `chain-output`, requestId). The chain's `outputHash` is over the plaintext result, so the
 *   gateway checks what it opened against what was finalized.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto'
import { pack, unpack } from 'msgpackr'
import { rawCid } from '#protocol'
import { NodeError } from '../errors.ts'
import { sealSecret, type SecretKeyPair } from '../secrets/sealed.ts'
import type { EncodedDocument } from './documents.ts'

export const SEALED_DOC_VERSION = 1

export interface SealedScope {
  chainId: number
  /** ExecutionCoordinator address */
  coordinator: string
  requestId: bigint
}

export interface SealedInputContent {
  /** the input document (documents.ts encodeFallbackInput bytes) */
  input: Uint8Array
  secrets?: Record<string, string>
  /** the gateway's X25519 public key: where the output is sealed to */
  gatewayKey: Uint8Array
}

function bad (what: string): never {
  throw new NodeError('BAD_FALLBACK_DOCUMENT', `the sealed fallback document is malformed: ${what}`)
}

function bodyAad (s: SealedScope): Buffer {
  return Buffer.from(`peerhost-chain-input-v1\n${s.chainId}\n${s.coordinator.toLowerCase()}\n${s.requestId}`)
}

function envelopeContext (s: SealedScope, who: string, what: 'chain-input' | 'chain-output') {
  return { chainId: s.chainId, gateway: s.coordinator, wallet: who, project: what, name: s.requestId.toString() }
}

/** Encrypts the input to every drawn worker's key (`recipients`: address → raw X25519 key). */
export function sealFallbackInput (scope: SealedScope, content: SealedInputContent, recipients: ReadonlyArray<{ address: string, key: Uint8Array }>): EncodedDocument {
  if (recipients.length === 0) throw new NodeError('FALLBACK_NO_RECIPIENT', 'no drawn worker to seal the input to')
  const contentKey = randomBytes(32)
  const nonce = randomBytes(12)
  const cipher = createCipheriv('aes-256-gcm', contentKey, nonce)
  cipher.setAAD(bodyAad(scope))
  const plain = pack({ input: content.input, gatewayKey: content.gatewayKey, ...(content.secrets !== undefined ? { secrets: content.secrets } : {}) })
  const body = Buffer.concat([cipher.update(plain), cipher.final(), cipher.getAuthTag()])
  const envelopes: Record<string, Uint8Array> = {}
  for (const r of recipients) envelopes[r.address.toLowerCase()] = sealSecret(r.key, contentKey, envelopeContext(scope, r.address.toLowerCase(), 'chain-input'))
  const bytes = new Uint8Array(pack({ v: SEALED_DOC_VERSION, type: 'fallback-sealed-input', recipients: envelopes, nonce: new Uint8Array(nonce), body: new Uint8Array(body) }))
  return { cid: rawCid(bytes), bytes }
}

/** Opens a sealed input as drawn worker `address`; NodeError SECRET_UNSEALABLE / BAD_FALLBACK_DOCUMENT otherwise. */
export function openFallbackInput (bytes: Uint8Array, scope: SealedScope, address: string, key: SecretKeyPair): SealedInputContent {
  let raw: any
  try { raw = unpack(bytes) } catch { bad('not msgpack') }
  if (raw?.v !== SEALED_DOC_VERSION || raw?.type !== 'fallback-sealed-input') bad('not a version 1 sealed input')
  const envelope = raw.recipients?.[address.toLowerCase()]
  if (!(envelope instanceof Uint8Array)) throw new NodeError('FALLBACK_NOT_RECIPIENT', `the sealed input has no envelope for ${address}`)
  const contentKey = key.open(envelope, envelopeContext(scope, address.toLowerCase(), 'chain-input'))
  if (!(raw.nonce instanceof Uint8Array) || raw.nonce.byteLength !== 12 || !(raw.body instanceof Uint8Array) || raw.body.byteLength < 16) bad('nonce or body')
  const decipher = createDecipheriv('aes-256-gcm', contentKey, raw.nonce)
  decipher.setAAD(bodyAad(scope))
  decipher.setAuthTag(raw.body.subarray(raw.body.byteLength - 16))
  let plain: Buffer
  try {
    plain = Buffer.concat([decipher.update(raw.body.subarray(0, raw.body.byteLength - 16)), decipher.final()])
  } catch {
    throw new NodeError('SECRET_UNSEALABLE', 'the sealed input body does not open for this request (altered, or sealed for another request)')
  }
  const inner = unpack(plain) as any
  if (!(inner?.input instanceof Uint8Array) || !(inner?.gatewayKey instanceof Uint8Array) || inner.gatewayKey.byteLength !== 32) bad('inner content')
  if (inner.secrets !== undefined && (typeof inner.secrets !== 'object' || Object.values(inner.secrets).some(v => typeof v !== 'string'))) bad('secrets')
  return { input: inner.input, gatewayKey: inner.gatewayKey, ...(inner.secrets !== undefined ? { secrets: inner.secrets } : {}) }
}

/** Seals an output document (documents.ts encodeFallbackOutput bytes) to the gateway's key. */
export function sealFallbackOutput (scope: SealedScope, gateway: string, gatewayKey: Uint8Array, output: Uint8Array): EncodedDocument {
  const envelope = sealSecret(gatewayKey, output, envelopeContext(scope, gateway.toLowerCase(), 'chain-output'))
  const bytes = new Uint8Array(pack({ v: SEALED_DOC_VERSION, type: 'fallback-sealed-output', envelope }))
  return { cid: rawCid(bytes), bytes }
}

/** Opens a sealed output with the gateway's key pair; returns the output document bytes. */
export function openFallbackOutput (bytes: Uint8Array, scope: SealedScope, gateway: string, key: SecretKeyPair): Uint8Array {
  let raw: any
  try { raw = unpack(bytes) } catch { bad('not msgpack') }
  if (raw?.v !== SEALED_DOC_VERSION || raw?.type !== 'fallback-sealed-output' || !(raw.envelope instanceof Uint8Array)) bad('not a version 1 sealed output')
  return key.open(raw.envelope, envelopeContext(scope, gateway.toLowerCase(), 'chain-output'))
}
