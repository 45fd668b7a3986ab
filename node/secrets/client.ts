/**
 * The builder's side of secrets (`peerhost secret put|delete|list`): find the gateway's key, check
 * it is the one the gateway published on chain, seal the value to it, sign the change with the
 * builder's wallet and send it. The value never leaves this process unsealed.
 */
import { getAddress, hexToBytes, isAddress, isHex, type Address, type Hex, type LocalAccount } from 'viem'
import { LIMITS, NAME_PATTERN } from '#protocol'
import { ConfigError, NodeError } from '../errors.ts'
import type { ChainClient } from '../chain/client.ts'
import { gatewayJson } from '../gateway/client.ts'
import { publishedGatewayInfo } from '../staking/register.ts'
import { secretChangeMessage, type SecretChange, type SecretChangeBody } from './change.ts'
import { sealSecret } from './sealed.ts'
import { SECRET_NAME, type StoredSecret } from './store.ts'

export interface GatewayKey {
  address: Address
  chainId: number
  encryptionKey: Hex
}

type Chain = Pick<ChainClient, 'publicClient' | 'contracts'>

/**
 * The gateway's secret-sealing key, as it serves it, checked against the key it published on
 * chain with `setGatewayInfo`: a gateway (or anyone in the middle) serving another key is refused.
 */
export async function gatewayKey (gatewayUrl: string, chain: Chain): Promise<GatewayKey> {
  const base = gatewayUrl.replace(/\/+$/, '')
  const info = await gatewayJson(`${base}/_peerhost/gateway`)
  if (typeof info?.address !== 'string' || !isAddress(info.address) || !isHex(info.encryptionKey) || !Number.isInteger(info.chainId)) {
    throw new NodeError('GATEWAY_ERROR', `${base}/_peerhost/gateway did not describe a gateway key; is ${base} a PeerHost gateway started with --contracts?`)
  }
  if (info.chainId !== chain.contracts.chainId) {
    throw new ConfigError('WRONG_CHAIN', `the gateway at ${base} follows chain ${info.chainId}, the contracts file is for chain ${chain.contracts.chainId}`)
  }
  const address = getAddress(info.address)
  const published = await publishedGatewayInfo(chain, address)
  if (published === undefined) {
    throw new ConfigError('GATEWAY_KEY_UNPUBLISHED', `gateway ${address} (${base}) has not published a secret key on chain; its operator must stake it as a gateway (peerhost gateway --stake <amount>)`)
  }
  if (published.encryptionKey.toLowerCase() !== info.encryptionKey.toLowerCase()) {
    throw new ConfigError('GATEWAY_KEY_MISMATCH', `the gateway at ${base} serves secret key ${info.encryptionKey} but ${address} published ${published.encryptionKey} on chain; refusing to seal a secret to it`)
  }
  return { address, chainId: info.chainId, encryptionKey: published.encryptionKey }
}

export interface SecretTarget {
  gateway: string
  chain: Chain
  account: LocalAccount
  project: string
  name: string
}

function checkTarget (t: Pick<SecretTarget, 'project' | 'name'>): void {
  if (!NAME_PATTERN.test(t.project)) throw new ConfigError('BAD_PROJECT', `project names match ${NAME_PATTERN.source}, got "${t.project}"`)
  if (!SECRET_NAME.test(t.name)) throw new ConfigError('BAD_SECRET_NAME', `a secret name is an environment variable name ([A-Za-z_][A-Za-z0-9_]*, at most ${LIMITS.maxEnvNameBytes} characters), got "${t.name}"`)
}

async function send (t: SecretTarget, action: SecretChange['action'], value?: string): Promise<{ name: string, issued: number, deleted?: boolean, gateway: Address }> {
  checkTarget(t)
  const key = await gatewayKey(t.gateway, t.chain)
  const wallet = t.account.address
  const sealed = value === undefined
    ? undefined
    : sealSecret(hexToBytes(key.encryptionKey), new TextEncoder().encode(value), { chainId: key.chainId, gateway: key.address, wallet, project: t.project, name: t.name })
  const issued = Math.floor(Date.now() / 1000)
  const signature = await t.account.signMessage({ message: secretChangeMessage({ action, gateway: key.address, chainId: key.chainId, wallet, project: t.project, name: t.name, sealed, issued }) })
  const body: SecretChangeBody = { issued, signature }
  if (sealed !== undefined) body.sealed = Buffer.from(sealed).toString('base64')
  const out = await gatewayJson(`${t.gateway.replace(/\/+$/, '')}/_peerhost/secrets/${wallet}/${t.project}/${t.name}`, {
    method: action === 'put' ? 'PUT' : 'DELETE',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body)
  })
  return { ...out, gateway: key.address }
}

/** Seals `value` to the gateway's published key and stores it under `<wallet>/<project>` as `name`. */
export async function putSecret (t: SecretTarget & { value: string }): Promise<{ name: string, issued: number, gateway: Address }> {
  const bytes = new TextEncoder().encode(t.value).byteLength
  if (bytes === 0) throw new ConfigError('EMPTY_SECRET', 'the secret value is empty; pass it on standard input')
  if (bytes > LIMITS.maxSecretBytes) throw new ConfigError('SECRET_TOO_LARGE', `a secret value is at most ${LIMITS.maxSecretBytes} bytes, this one is ${bytes}`)
  const out = await send(t, 'put', t.value)
  return { name: out.name, issued: out.issued, gateway: out.gateway }
}

export async function deleteSecret (t: SecretTarget): Promise<{ name: string, deleted: boolean, gateway: Address }> {
  const out = await send(t, 'delete')
  return { name: out.name, deleted: out.deleted === true, gateway: out.gateway }
}

export async function listSecrets (gateway: string, wallet: Address, project: string): Promise<StoredSecret[]> {
  checkTarget({ project, name: 'X' })
  const out = await gatewayJson(`${gateway.replace(/\/+$/, '')}/_peerhost/secrets/${wallet}/${project}`)
  return out.secrets as StoredSecret[]
}
