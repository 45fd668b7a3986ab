/**
 * Builder wallets: a standard Ethereum JSON keystore (version 3, scrypt, aes-128-ctr; what geth,
 * Foundry's `cast wallet` and MetaMask import) created and opened with ox's Keystore.
 */
// the Keystore module alone: ox's index loads all of ox (0.5 s of CPU per process), and every CLI
// command and node imports this file
import * as Keystore from 'ox/Keystore'
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts'
import type { Hex } from 'viem'
import { ConfigError } from './errors.ts'

export interface KeystoreJson {
  version: 3
  id: string
  address: string
  crypto: Record<string, unknown>
}

/**
 * Encrypts `privateKey` (a new one by default) with `password`. `scryptN` is the scrypt cost
 * (@default 262144, the standard; lower only in tests: the keystore records it).
 */
export async function createKeystore (password: string, privateKey: Hex = generatePrivateKey(), options: { scryptN?: number } = {}): Promise<{ address: `0x${string}`, keystore: KeystoreJson }> {
  if (password.length === 0) throw new ConfigError('EMPTY_PASSWORD', 'the wallet password is empty; set PEERHOST_WALLET_PASSWORD or type one at the prompt')
  const [key, opts] = await Keystore.scryptAsync({ password, n: options.scryptN })
  const ks = Keystore.encrypt(privateKey, key, opts) as unknown as Omit<KeystoreJson, 'address'>
  const address = privateKeyToAccount(privateKey).address
  // geth stores the address without 0x; tools use it to list wallets without the password
  return { address, keystore: { ...ks, address: address.slice(2).toLowerCase() } as KeystoreJson }
}

/** Decrypts a keystore; a wrong password is a ConfigError BAD_PASSWORD. */
export async function openKeystore (json: string, password: string): Promise<Hex> {
  let ks: any
  try {
    ks = JSON.parse(json)
  } catch (err) {
    throw new ConfigError('BAD_KEYSTORE', 'the keystore file is not JSON', { cause: err })
  }
  if (ks?.version !== 3 || typeof ks?.crypto !== 'object') throw new ConfigError('BAD_KEYSTORE', 'the keystore file is not a version 3 Ethereum JSON keystore')
  try {
    const key = await Keystore.toKeyAsync(ks, { password })
    return Keystore.decrypt(ks, key)
  } catch (err) {
    throw new ConfigError('BAD_PASSWORD', 'the keystore password is wrong (or the keystore is damaged)', { cause: err })
  }
}

/** Validates a raw private key from the environment (CI). */
export function parsePrivateKey (value: string, from = 'PEERHOST_PRIVATE_KEY'): Hex {
  const hex = value.trim().startsWith('0x') ? value.trim() : `0x${value.trim()}`
  if (!/^0x[0-9a-fA-F]{64}$/.test(hex)) throw new ConfigError('BAD_PRIVATE_KEY', `${from} must be a 32-byte hex private key`)
  return hex as Hex
}
