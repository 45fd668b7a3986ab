/**
 * Node keys on disk: the libp2p Ed25519 identity (`peer.key`, protobuf) and the secp256k1 key that
 * signs receipts or tickets (`evm.key`, hex). Both are created on first start with mode 0600 and
 * refused when other users can read them.
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { generatePrivateKey, privateKeyToAccount, type PrivateKeyAccount } from 'viem/accounts'
import type { Hex } from 'viem'
import { ConfigError } from './errors.ts'
import { fastSigner, type FastSigner } from './signing.ts'

export const PEER_KEY_FILE = 'peer.key'
export const EVM_KEY_FILE = 'evm.key'

export function ensureDataDir (dataDir: string): void {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 })
}

function readSecret (path: string): Buffer {
  const mode = statSync(path).mode & 0o777
  if ((mode & 0o077) !== 0) {
    throw new ConfigError('KEY_PERMISSIONS', `${path} is readable by other users (mode ${mode.toString(8)}); run chmod 600 ${path}`)
  }
  return readFileSync(path)
}

function writeSecret (path: string, data: Uint8Array | string): void {
  writeFileSync(path, data, { mode: 0o600, flag: 'wx' })
  chmodSync(path, 0o600)
}

/** Loads the node's libp2p identity, creating it on first start. */
export async function loadPeerKey (dataDir: string): Promise<PrivateKey> {
  ensureDataDir(dataDir)
  const path = join(dataDir, PEER_KEY_FILE)
  if (!existsSync(path)) writeSecret(path, privateKeyToProtobuf(await generateKeyPair('Ed25519')))
  try {
    return privateKeyFromProtobuf(readSecret(path))
  } catch (err) {
    if (err instanceof ConfigError) throw err
    throw new ConfigError('BAD_KEY_FILE', `${path} is not a libp2p private key; move it away to create a new identity`, { cause: err })
  }
}

/** Loads the node's secp256k1 signing account, creating it on first start. */
export function loadEvmAccount (dataDir: string): PrivateKeyAccount {
  return privateKeyToAccount(loadEvmKey(dataDir))
}

/** Loads the node's secp256k1 signer (libsecp256k1, for the request hot path). */
export function loadSigner (dataDir: string): FastSigner {
  return fastSigner(loadEvmKey(dataDir))
}

function loadEvmKey (dataDir: string): Hex {
  ensureDataDir(dataDir)
  const path = join(dataDir, EVM_KEY_FILE)
  if (!existsSync(path)) writeSecret(path, generatePrivateKey() + '\n')
  const hex = readSecret(path).toString('utf8').trim()
  if (!/^0x[0-9a-fA-F]{64}$/.test(hex)) {
    throw new ConfigError('BAD_KEY_FILE', `${path} does not hold a 0x-prefixed 32-byte hex private key`)
  }
  return hex as Hex
}
