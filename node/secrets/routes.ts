/**
 * Gateway HTTP routes for secrets (mounted through the gateway's `routes` hook):
 *
 * - `GET /_peerhost/gateway` — `{ address, chainId, encryptionKey, algorithm }`: the key to seal
 *   secrets to. Clients check it against the key the gateway published on chain
 *   (`WorkerStaking.GatewayInfoSet`) before trusting it (client.ts).
 * - `PUT /_peerhost/secrets/<wallet>/<project>/<NAME>` — body `{ sealed, issued, signature }`
 *   (change.ts): the envelope must open with this gateway's key for exactly this chain, gateway,
 *   wallet, project and name, and hold at most LIMITS.maxSecretBytes of UTF-8. `200 { name, issued }`.
 * - `DELETE /_peerhost/secrets/<wallet>/<project>/<NAME>` — body `{ issued, signature }`.
 * - `GET /_peerhost/secrets/<wallet>/<project>` — `{ secrets: [{ name, issued }] }`: names and
 *   change times only, never values (names are not secret, like environment variable names).
 *
 * Changes must be signed by the project's *current owner* (`owners`: FunctionRegistry.ownerOf,
 * which follows transferProject/acceptProject), not by the wallet in the path: the path's wallet
 * is the namespace the project was created under and stays its key after a transfer.
 *
 * Errors are JSON: 400 BAD_REQUEST (malformed body, unknown name shape, envelope that does not
 * open, stale `issued`), 401 UNAUTHORIZED (signature not by the project's owner, or `issued`
 * outside the allowed clock skew), 413 (body too large), 500 INTERNAL when the owner cannot be
 * read from the chain.
 */
import type { Hono } from 'hono'
import { isAddress, isHex, recoverMessageAddress, type Address } from 'viem'
import { LIMITS, NAME_PATTERN } from '#protocol'
import { jsonError, readBody } from '../gateway/http.ts'
import type { Logger } from '../logger.ts'
import { namespaceOwners, type ProjectOwners } from '../gateway/owners.ts'
import { SECRET_CHANGE_SKEW_SEC, secretChangeMessage, type SecretChange } from './change.ts'
import { SEALED_ALGORITHM, type SecretKeyPair } from './sealed.ts'
import { SECRET_NAME, type SecretStore } from './store.ts'

export interface SecretRoutesComponents {
  store: SecretStore
  key: SecretKeyPair
  chainId: number
  /** the gateway's address (signs its tickets; part of every envelope's context) */
  gateway: Address
  logger: Logger
  /** who owns a project now; @default the path's wallet (no chain) */
  owners?: ProjectOwners
}

/** sealed envelope overhead (version, ephemeral key, nonce, tag) plus base64 and JSON framing */
const MAX_BODY_BYTES = 2 * LIMITS.maxSecretBytes + 1024

export function secretRoutes (components: SecretRoutesComponents): (app: Hono) => void {
  const { store, key, chainId, gateway } = components
  const owners = components.owners ?? namespaceOwners()
  const log = components.logger.child({ component: 'peerhost:secrets' })
  const encryptionKey = `0x${Buffer.from(key.publicKey).toString('hex')}`

  function target (wallet: string, project: string, name?: string): Response | undefined {
    if (!isAddress(wallet, { strict: false })) return jsonError('BAD_REQUEST', `the path's wallet must be a 0x-prefixed 20-byte address, got "${wallet.slice(0, 60)}"`)
    if (!NAME_PATTERN.test(project)) return jsonError('BAD_REQUEST', `the path's project must match ${NAME_PATTERN.source}, got "${project.slice(0, 80)}"`)
    if (name !== undefined && !SECRET_NAME.test(name)) return jsonError('BAD_REQUEST', `a secret name is an environment variable name ([A-Za-z_][A-Za-z0-9_]*, at most ${LIMITS.maxEnvNameBytes} characters), got "${name.slice(0, 80)}"`)
    return undefined
  }

  /** Parses and authorizes a change to `<wallet>/<project>/<name>`; a Response when it is refused. */
  async function authorize (req: Request, params: Record<string, string>, action: SecretChange['action']): Promise<Response | { wallet: string, project: string, name: string, issued: number, sealed?: Uint8Array }> {
    const { wallet, project, name } = params
    const bad = target(wallet, project, name)
    if (bad !== undefined) return bad
    const change = { action, gateway, chainId, wallet, project, name }
    const raw = await readBody(req, MAX_BODY_BYTES)
    if (raw === undefined) return jsonError('PAYLOAD_TOO_LARGE', `a secret change is at most ${MAX_BODY_BYTES} bytes (values at most ${LIMITS.maxSecretBytes})`)
    let body: any
    try { body = JSON.parse(new TextDecoder().decode(raw)) } catch { body = undefined }
    const expected = change.action === 'put' ? '{ "sealed": "<base64>", "issued": <unix seconds>, "signature": "0x…" }' : '{ "issued": <unix seconds>, "signature": "0x…" }'
    if (typeof body !== 'object' || body === null) return jsonError('BAD_REQUEST', `expected a JSON body ${expected}`)
    if (!Number.isSafeInteger(body.issued) || body.issued <= 0) return jsonError('BAD_REQUEST', `"issued" must be the unix time in seconds of signing; expected ${expected}`)
    if (typeof body.signature !== 'string' || !isHex(body.signature) || body.signature.length !== 132) return jsonError('BAD_REQUEST', `"signature" must be a 65-byte 0x hex signature; expected ${expected}`)
    let sealed: Uint8Array | undefined
    if (change.action === 'put') {
      if (typeof body.sealed !== 'string' || !/^[A-Za-z0-9+/]+={0,2}$/.test(body.sealed)) return jsonError('BAD_REQUEST', `"sealed" must be the base64 envelope; expected ${expected}`)
      sealed = new Uint8Array(Buffer.from(body.sealed, 'base64'))
    }
    const now = Math.floor(Date.now() / 1000)
    if (Math.abs(now - body.issued) > SECRET_CHANGE_SKEW_SEC) return jsonError('UNAUTHORIZED', `the change was signed at ${body.issued}, more than ${SECRET_CHANGE_SKEW_SEC} s from this gateway's clock (${now}); sign it again`)
    let signer: Address
    try {
      signer = await recoverMessageAddress({ message: secretChangeMessage({ ...change, sealed, issued: body.issued }), signature: body.signature })
    } catch {
      return jsonError('UNAUTHORIZED', 'the signature does not recover to an address')
    }
    let owner: Address
    try {
      owner = await owners.ownerOf(change.wallet as Address, change.project)
    } catch (err: any) {
      log.warn({ err: err?.message, project: `${change.wallet}/${change.project}` }, 'cannot read the project owner')
      return jsonError('INTERNAL', 'cannot read the project\'s owner from FunctionRegistry; retry shortly')
    }
    if (signer.toLowerCase() !== owner.toLowerCase()) return jsonError('UNAUTHORIZED', `the change is signed by ${signer}, not by the project's current owner ${owner}`)
    const last = store.lastIssued(change.wallet, change.project, change.name)
    if (body.issued <= last) return jsonError('BAD_REQUEST', `a change signed at ${last} already applies to ${change.name}; this one (${body.issued}) is not newer — sign it again`)
    return { wallet, project, name, issued: body.issued, sealed }
  }

  return (app) => {
    app.get('/_peerhost/gateway', c => c.json({ address: gateway, chainId, encryptionKey, algorithm: SEALED_ALGORITHM }))

    app.get('/_peerhost/secrets/:wallet/:project', c => {
      const { wallet, project } = c.req.param()
      const bad = target(wallet, project)
      if (bad !== undefined) return bad
      return c.json({ secrets: store.list(wallet, project) })
    })

    app.put('/_peerhost/secrets/:wallet/:project/:name', async c => {
      const ok = await authorize(c.req.raw, c.req.param(), 'put')
      if (ok instanceof Response) return ok
      const { wallet, project, name } = ok
      let value: Uint8Array
      try {
        value = key.open(ok.sealed!, { chainId, gateway, wallet, project, name })
      } catch (err) {
        return jsonError('BAD_REQUEST', (err as Error).message)
      }
      if (value.byteLength > LIMITS.maxSecretBytes) return jsonError('PAYLOAD_TOO_LARGE', `a secret value is at most ${LIMITS.maxSecretBytes} bytes, this one is ${value.byteLength}`)
      try {
        new TextDecoder('utf-8', { fatal: true }).decode(value)
      } catch {
        return jsonError('BAD_REQUEST', 'a secret value must be UTF-8 text')
      } finally {
        value.fill(0)
      }
      try {
        store.put(wallet, project, name, ok.sealed!, ok.issued)
      } catch (err: any) {
        if (err?.code === 'TOO_MANY_SECRETS') return jsonError('BAD_REQUEST', err.message)
        throw err
      }
      log.info({ project: `${wallet.toLowerCase()}/${project}`, name }, 'secret put')
      return c.json({ name, issued: ok.issued })
    })

    app.delete('/_peerhost/secrets/:wallet/:project/:name', async c => {
      const ok = await authorize(c.req.raw, c.req.param(), 'delete')
      if (ok instanceof Response) return ok
      const { wallet, project, name } = ok
      const existed = store.list(wallet, project).some(s => s.name === name)
      store.delete(wallet, project, name, ok.issued)
      log.info({ project: `${wallet.toLowerCase()}/${project}`, name, existed }, 'secret deleted')
      return c.json({ name, issued: ok.issued, deleted: existed })
    })
  }
}
