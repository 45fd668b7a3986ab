/**
 * The builder's side of API keys (`peerhost keys create|revoke|list`): mint a key locally, send
 * only its hash to each gateway in a change signed by the builder's wallet.
 */
import type { Address, Hex } from 'viem'
import { NAME_PATTERN } from '#protocol'
import { ConfigError, NodeError } from '../errors.ts'
import { gatewayJson } from '../gateway/client.ts'
import { apiKeyHash, apiKeyId, KEY_ID_PATTERN, KEY_NAME_PATTERN, type StoredKey } from './api-keys.ts'
import { keyChangeMessage, type KeyChange, type KeyChangeBody } from './key-change.ts'

export interface KeyTarget {
  gateway: string
  account: { address: Address, signMessage: (args: { message: string }) => Promise<Hex> }
  project: string
  /** the project's namespace (the wallet that created it); @default account.address */
  namespace?: Address
}

const base = (url: string): string => url.replace(/\/+$/, '')

async function send (t: KeyTarget, action: KeyChange['action'], id: string, extra: { hash?: string, name?: string }): Promise<any> {
  if (!NAME_PATTERN.test(t.project)) throw new ConfigError('BAD_PROJECT', `project names match ${NAME_PATTERN.source}, got "${t.project}"`)
  const info = await gatewayJson(`${base(t.gateway)}/_peerhost/keys`)
  if (typeof info?.gateway !== 'string' || !Number.isInteger(info.chainId)) throw new NodeError('GATEWAY_ERROR', `${base(t.gateway)}/_peerhost/keys did not describe a gateway; is it a PeerHost gateway that takes API keys?`)
  const wallet = t.namespace ?? t.account.address
  const issued = Math.floor(Date.now() / 1000)
  const signature = await t.account.signMessage({ message: keyChangeMessage({ action, gateway: info.gateway, chainId: info.chainId, wallet, project: t.project, id, issued, ...extra }) })
  const body: KeyChangeBody = { issued, signature, ...extra }
  return await gatewayJson(`${base(t.gateway)}/_peerhost/keys/${wallet}/${t.project}/${id}`, {
    method: action === 'create' ? 'PUT' : 'DELETE',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body)
  })
}

/** Stores the hash of `key` (minted by mintApiKey) on one gateway, named `name`. */
export async function putApiKey (t: KeyTarget & { key: string, name: string }): Promise<{ id: string, name: string, created: number }> {
  if (!KEY_NAME_PATTERN.test(t.name)) throw new ConfigError('BAD_KEY_NAME', `a key name matches ${KEY_NAME_PATTERN.source}, got "${t.name}"`)
  const hash = apiKeyHash(t.key)
  return await send(t, 'create', apiKeyId(hash), { hash, name: t.name })
}

export async function revokeApiKey (t: KeyTarget & { id: string }): Promise<{ id: string, revoked: boolean }> {
  if (!KEY_ID_PATTERN.test(t.id)) throw new ConfigError('BAD_KEY_ID', `a key id is 16 lower-case hex characters (see peerhost keys list), got "${t.id}"`)
  return await send(t, 'revoke', t.id, {})
}

export async function listApiKeys (gateway: string, wallet: Address, project: string): Promise<StoredKey[]> {
  if (!NAME_PATTERN.test(project)) throw new ConfigError('BAD_PROJECT', `project names match ${NAME_PATTERN.source}, got "${project}"`)
  const out = await gatewayJson(`${base(gateway)}/_peerhost/keys/${wallet}/${project}`)
  return out.keys as StoredKey[]
}
