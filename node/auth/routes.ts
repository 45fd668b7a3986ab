/**
 * Gateway HTTP routes for API keys (mounted through the gateway's `routes` hook), the same model
 * as secrets (node/secrets/routes.ts):
 *
 * - `GET /_peerhost/keys` — `{ gateway, chainId }`: what a change must name.
 * - `PUT /_peerhost/keys/<wallet>/<project>/<id>` — body `{ hash, name, issued, signature }`
 *   (key-change.ts): store a key's hash. `200 { id, name, created }`; 409 when the id or hash was
 *   ever created here before.
 * - `DELETE /_peerhost/keys/<wallet>/<project>/<id>` — body `{ issued, signature }`: revoke; the
 *   next request with that key is refused. `200 { id, revoked }`; 404 for an unknown id.
 * - `GET /_peerhost/keys/<wallet>/<project>` — `{ keys: [{ id, name, created, revoked? }] }`: ids
 *   and names, never hashes.
 *
 * Changes must be signed by the project's current owner (FunctionRegistry.ownerOf via `owners`).
 */
import type { Hono } from 'hono'
import { isAddress, isHex, recoverMessageAddress, type Address } from 'viem'
import { DEV_DOMAIN, NAME_PATTERN } from '#protocol'
import { NODE_DEFAULTS } from '../constants.ts'
import { jsonError, readBody } from '../gateway/http.ts'
import { namespaceOwners, type ProjectOwners } from '../gateway/owners.ts'
import type { Logger } from '../logger.ts'
import { apiKeyId, KEY_HASH_PATTERN, KEY_ID_PATTERN, KEY_NAME_PATTERN, type ApiKeyStore } from './api-keys.ts'
import { keyChangeMessage, type KeyChange } from './key-change.ts'

export interface KeyRoutesComponents {
  store: ApiKeyStore
  /** the chain the gateway follows (named in every change); @default DEV_DOMAIN.chainId (no chain) */
  chainId?: number
  /** the gateway's address (named in every change) */
  gateway: Address
  logger: Logger
  /** who owns a project now; @default the path's wallet (no chain) */
  owners?: ProjectOwners
}

const MAX_BODY_BYTES = 1024

export function keyRoutes (components: KeyRoutesComponents): (app: Hono) => void {
  const { store, gateway } = components
  const chainId = components.chainId ?? DEV_DOMAIN.chainId
  const owners = components.owners ?? namespaceOwners()
  const log = components.logger.child({ component: 'peerhost:auth' })

  function target (wallet: string, project: string, id?: string): Response | undefined {
    if (!isAddress(wallet, { strict: false })) return jsonError('BAD_REQUEST', `the path's wallet must be a 0x-prefixed 20-byte address, got "${wallet.slice(0, 60)}"`)
    if (!NAME_PATTERN.test(project)) return jsonError('BAD_REQUEST', `the path's project must match ${NAME_PATTERN.source}, got "${project.slice(0, 80)}"`)
    if (id !== undefined && !KEY_ID_PATTERN.test(id)) return jsonError('BAD_REQUEST', `a key id is 16 lower-case hex characters (see peerhost keys list), got "${id.slice(0, 40)}"`)
    return undefined
  }

  async function authorize (req: Request, params: Record<string, string>, action: KeyChange['action']): Promise<Response | KeyChange> {
    const { wallet, project, id } = params
    const bad = target(wallet, project, id)
    if (bad !== undefined) return bad
    const expected = action === 'create' ? '{ "hash": "0x<sha-256 of the key>", "name": "<label>", "issued": <unix seconds>, "signature": "0x…" }' : '{ "issued": <unix seconds>, "signature": "0x…" }'
    const raw = await readBody(req, MAX_BODY_BYTES)
    if (raw === undefined) return jsonError('PAYLOAD_TOO_LARGE', `a key change is at most ${MAX_BODY_BYTES} bytes`)
    let body: any
    try { body = JSON.parse(new TextDecoder().decode(raw)) } catch { body = undefined }
    if (typeof body !== 'object' || body === null) return jsonError('BAD_REQUEST', `expected a JSON body ${expected}`)
    if (!Number.isSafeInteger(body.issued) || body.issued <= 0) return jsonError('BAD_REQUEST', `"issued" must be the unix time in seconds of signing; expected ${expected}`)
    if (typeof body.signature !== 'string' || !isHex(body.signature) || body.signature.length !== 132) return jsonError('BAD_REQUEST', `"signature" must be a 65-byte 0x hex signature; expected ${expected}`)
    const change: KeyChange = { action, gateway, chainId, wallet, project, id, issued: body.issued }
    if (action === 'create') {
      if (typeof body.hash !== 'string' || !KEY_HASH_PATTERN.test(body.hash)) return jsonError('BAD_REQUEST', `"hash" must be 0x + 64 lower-case hex (the SHA-256 of the key); expected ${expected}`)
      if (apiKeyId(body.hash) !== id) return jsonError('BAD_REQUEST', `the key id is the first 16 hex characters of its hash: ${apiKeyId(body.hash)}, not ${id}`)
      if (typeof body.name !== 'string' || !KEY_NAME_PATTERN.test(body.name)) return jsonError('BAD_REQUEST', `"name" must match ${KEY_NAME_PATTERN.source}; expected ${expected}`)
      change.hash = body.hash
      change.name = body.name
    }
    const now = Math.floor(Date.now() / 1000)
    const skew = NODE_DEFAULTS.authKeyChangeSkewSec
    if (Math.abs(now - body.issued) > skew) return jsonError('UNAUTHORIZED', `the change was signed at ${body.issued}, more than ${skew} s from this gateway's clock (${now}); sign it again`)
    let signer: Address
    try {
      signer = await recoverMessageAddress({ message: keyChangeMessage(change), signature: body.signature })
    } catch {
      return jsonError('UNAUTHORIZED', 'the signature does not recover to an address')
    }
    let owner: Address
    try {
      owner = await owners.ownerOf(wallet as Address, project)
    } catch (err: any) {
      log.warn({ err: err?.message, project: `${wallet}/${project}` }, 'cannot read the project owner')
      return jsonError('INTERNAL', 'cannot read the project\'s owner from FunctionRegistry; retry shortly')
    }
    if (signer.toLowerCase() !== owner.toLowerCase()) return jsonError('UNAUTHORIZED', `the change is signed by ${signer}, not by the project's current owner ${owner}`)
    return change
  }

  return (app) => {
    app.get('/_peerhost/keys', c => c.json({ gateway, chainId }))

    app.get('/_peerhost/keys/:wallet/:project', c => {
      const { wallet, project } = c.req.param()
      const bad = target(wallet, project)
      if (bad !== undefined) return bad
      return c.json({ keys: store.list(wallet, project) })
    })

    app.put('/_peerhost/keys/:wallet/:project/:id', async c => {
      const ok = await authorize(c.req.raw, c.req.param(), 'create')
      if (ok instanceof Response) return ok
      try {
        store.create(ok.wallet, ok.project, { id: ok.id, hash: ok.hash!, name: ok.name!, issued: ok.issued })
      } catch (err: any) {
        if (err?.code === 'KEY_EXISTS') return c.json({ error: { code: 'CONFLICT', message: err.message } }, 409)
        if (err?.code === 'TOO_MANY_KEYS') return jsonError('BAD_REQUEST', err.message)
        throw err
      }
      log.info({ project: `${ok.wallet.toLowerCase()}/${ok.project}`, id: ok.id, name: ok.name }, 'api key created')
      return c.json({ id: ok.id, name: ok.name, created: ok.issued })
    })

    app.delete('/_peerhost/keys/:wallet/:project/:id', async c => {
      const ok = await authorize(c.req.raw, c.req.param(), 'revoke')
      if (ok instanceof Response) return ok
      if (!store.revoke(ok.wallet, ok.project, ok.id, ok.issued)) return jsonError('NOT_FOUND', `${ok.wallet.toLowerCase()}/${ok.project} has no key ${ok.id} on this gateway`)
      log.info({ project: `${ok.wallet.toLowerCase()}/${ok.project}`, id: ok.id }, 'api key revoked')
      return c.json({ id: ok.id, revoked: true })
    })
  }
}
