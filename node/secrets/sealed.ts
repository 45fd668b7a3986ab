/**
 * Sealed secrets: a builder encrypts a secret value to one gateway's published X25519 key; only
 * that gateway can open it, and only for the project and name it was sealed for.
 *
 * Envelope (bytes): `0x01 | ephemeral X25519 public key (32) | nonce (12) | AES-256-GCM ciphertext | tag (16)`.
 * Key: HKDF-SHA256 over the X25519 shared secret, salt = ephemeral key ‖ gateway key, info
 * `peerhost-secret-v1`. Additional data (authenticated, not encrypted) = `secretContext(…)`:
 * chain id, gateway address, wallet, project and name — so a gateway refuses an envelope copied
 * from another project (whose function could otherwise print it), another name or another gateway.
 *
 * The gateway's key pair lives in `<dataDir>/secrets.key` (PKCS#8 PEM, mode 0600) and its public
 * half is published on chain with `WorkerStaking.setGatewayInfo(endpoint, key)` (publish.ts).
 */
import { createCipheriv, createDecipheriv, createPrivateKey, createPublicKey, diffieHellman, generateKeyPairSync, hkdfSync, randomBytes, type KeyObject } from 'node:crypto'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { NodeError } from '../errors.ts'
import { writeFileAtomic } from '../files.ts'

export const SECRET_KEY_FILE = 'secrets.key'
/** Names the algorithm in the gateway's `/_peerhost/gateway` answer. */
export const SEALED_ALGORITHM = 'x25519-hkdf-sha256-aes-256-gcm'
const VERSION = 0x01
const INFO = Buffer.from('peerhost-secret-v1')
const HEADER = 1 + 32 + 12
const TAG = 16

export interface SecretContext {
  chainId: number
  /** the gateway the secret is sealed to */
  gateway: string
  wallet: string
  project: string
  name: string
}

/** The additional authenticated data of an envelope: one line per field, addresses lower-cased. */
export function secretContext (c: SecretContext): Buffer {
  return Buffer.from(`peerhost-secret-v1\n${c.chainId}\n${c.gateway.toLowerCase()}\n${c.wallet.toLowerCase()}\n${c.project}\n${c.name}`)
}

function publicKeyObject (raw: Uint8Array): KeyObject {
  if (raw.byteLength !== 32) throw new NodeError('BAD_SECRET_KEY', `an X25519 public key is 32 bytes, got ${raw.byteLength}`)
  return createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: Buffer.from(raw).toString('base64url') }, format: 'jwk' })
}

function rawPublicKey (key: KeyObject): Uint8Array {
  return new Uint8Array(Buffer.from(key.export({ format: 'jwk' }).x!, 'base64url'))
}

function derive (shared: Buffer, ephemeral: Uint8Array, recipient: Uint8Array): Buffer {
  return Buffer.from(hkdfSync('sha256', shared, Buffer.concat([ephemeral, recipient]), INFO, 32))
}

/** Encrypts `plaintext` to the gateway's raw 32-byte X25519 public key. */
export function sealSecret (gatewayKey: Uint8Array, plaintext: Uint8Array, context: SecretContext): Uint8Array {
  const recipient = publicKeyObject(gatewayKey)
  const eph = generateKeyPairSync('x25519')
  const ephRaw = rawPublicKey(eph.publicKey)
  const key = derive(diffieHellman({ privateKey: eph.privateKey, publicKey: recipient }), ephRaw, gatewayKey)
  const nonce = randomBytes(12)
  const cipher = createCipheriv('aes-256-gcm', key, nonce)
  cipher.setAAD(secretContext(context))
  const body = Buffer.concat([cipher.update(plaintext), cipher.final()])
  return new Uint8Array(Buffer.concat([Buffer.of(VERSION), ephRaw, nonce, body, cipher.getAuthTag()]))
}

export interface SecretKeyPair {
  /** raw 32-byte X25519 public key, as published on chain */
  readonly publicKey: Uint8Array
  /** Opens an envelope sealed to this key for `context`; throws NodeError SECRET_UNSEALABLE otherwise. */
  open: (envelope: Uint8Array, context: SecretContext) => Uint8Array
}

function keyPair (privateKey: KeyObject): SecretKeyPair {
  const publicKey = rawPublicKey(createPublicKey(privateKey))
  return {
    publicKey,
    open (envelope, context) {
      const unsealable = (why: string): NodeError => new NodeError('SECRET_UNSEALABLE', `the secret cannot be opened by this gateway: ${why}`)
      if (envelope.byteLength < HEADER + TAG || envelope[0] !== VERSION) throw unsealable(`expected a version-1 envelope of at least ${HEADER + TAG} bytes`)
      const ephRaw = envelope.subarray(1, 33)
      let key: Buffer
      try {
        key = derive(diffieHellman({ privateKey, publicKey: publicKeyObject(ephRaw) }), ephRaw, publicKey)
      } catch {
        throw unsealable('the ephemeral key is not a valid X25519 key')
      }
      const decipher = createDecipheriv('aes-256-gcm', key, envelope.subarray(33, HEADER))
      decipher.setAAD(secretContext(context))
      decipher.setAuthTag(envelope.subarray(envelope.byteLength - TAG))
      try {
        return new Uint8Array(Buffer.concat([decipher.update(envelope.subarray(HEADER, envelope.byteLength - TAG)), decipher.final()]))
      } catch {
        throw unsealable('it was sealed to another key, or for another chain, gateway, project or name, or it was altered')
      }
    }
  }
}

/** Loads the gateway's secret-sealing key pair from `<dataDir>/secrets.key`, creating it (0600) on first use. */
export function loadSecretKey (dataDir: string): SecretKeyPair {
  const file = join(dataDir, SECRET_KEY_FILE)
  if (!existsSync(file)) {
    const { privateKey } = generateKeyPairSync('x25519')
    writeFileAtomic(file, privateKey.export({ format: 'pem', type: 'pkcs8' }) as string)
  }
  let key: KeyObject
  try {
    key = createPrivateKey(readFileSync(file))
  } catch (err) {
    throw new NodeError('BAD_SECRET_KEY', `${file} is not a PEM X25519 private key; move it away to make a new one (secrets sealed to the old key must then be put again)`, { cause: err })
  }
  if (key.asymmetricKeyType !== 'x25519') throw new NodeError('BAD_SECRET_KEY', `${file} holds a ${key.asymmetricKeyType ?? 'non-asymmetric'} key; expected X25519`)
  return keyPair(key)
}
