/**
 * The auth check a gateway runs on every function request, after routing and reading the body
 * and before anything is dispatched — to the mesh or to the chain fallback — so a refused request
 * never reaches a worker and costs the project nothing.
 *
 * - `api-key`: `authorization: Bearer <key>`, a live key of this project (api-keys.ts).
 * - `wallet`: `x-peerhost-signature` (request-signature.ts) by an address in the function's `allow`
 *   list, within NODE_DEFAULTS.authRequestSkewSec of the gateway's clock, never seen before.
 *
 * Refusals: 401 UNAUTHORIZED (missing, malformed, unknown, revoked, another project's, expired,
 * replayed), 403 FORBIDDEN (a valid signature by an address not allowed). The message says what
 * was expected and never echoes the credential. On success the verdict names the headers to strip
 * before dispatch (the credential), unless the function opted in with `forwardCredential`.
 */
import { hashMessage, isHex, recoverAddress, type Hex } from 'viem'
import { NODE_DEFAULTS } from '../constants.ts'
import type { Logger } from '../logger.ts'
import type { ApiKeyStore } from './api-keys.ts'
import type { FunctionAuth } from './policy.ts'
import { requestMessage, SIGNATURE_FORMAT, SIGNATURE_HEADER } from './request-signature.ts'

export type AuthVerdict =
  | { ok: true, strip: string[], caller?: string }
  | { ok: false, code: 'UNAUTHORIZED' | 'FORBIDDEN' | 'OVERLOADED', message: string }

export interface AuthRequest {
  /** the function's owner namespace, project and name (from the route) */
  wallet: string
  project: string
  fn: string
  method: string
  /** path and query as received */
  path: string
  headers: Headers
  body: Uint8Array
}

export interface AuthGuard {
  check: (auth: FunctionAuth | undefined, req: AuthRequest) => Promise<AuthVerdict>
}

export interface AuthGuardInit {
  /** @default NODE_DEFAULTS.authRequestSkewSec */
  skewSec?: number
  /** @default NODE_DEFAULTS.authSeenMax */
  seenMax?: number
}

export interface AuthGuardComponents {
  /** API keys; none = every `api-key` request is refused (this gateway holds no keys) */
  keys?: Pick<ApiKeyStore, 'lookup'>
  logger: Logger
  /** @default Date.now */
  now?: () => number
}

const BEARER = /^Bearer ([!-~]+)$/i

export function authGuard (init: AuthGuardInit = {}, components: AuthGuardComponents): AuthGuard {
  const skewMs = (init.skewSec ?? NODE_DEFAULTS.authRequestSkewSec) * 1000
  const seenMax = init.seenMax ?? NODE_DEFAULTS.authSeenMax
  const now = components.now ?? Date.now
  const log = components.logger.child({ component: 'peerhost:auth' })
  /**
   * Signed messages already accepted, by EIP-191 hash → when they may be forgotten. Keyed by the
   * message, not the signature bytes: an ECDSA signature has a second valid form (s ↔ n − s), so
   * a replay with the other form must still be caught. Only verified, allowed requests enter, so
   * nobody can block a client's request by sending its message first with a bad signature.
   */
  const seen = new Map<Hex, number>()

  function prune (t: number): void {
    for (const [k, until] of seen) {
      if (until > t) break
      seen.delete(k)
    }
  }

  async function wallet (auth: FunctionAuth, req: AuthRequest): Promise<AuthVerdict> {
    const header = req.headers.get(SIGNATURE_HEADER)
    if (header === null) return { ok: false, code: 'UNAUTHORIZED', message: `this function takes wallet-signed requests; expected the header ${SIGNATURE_FORMAT} (see signRequest)` }
    const dot = header.indexOf('.')
    const timestamp = Number(header.slice(0, dot))
    const signature = header.slice(dot + 1)
    if (dot <= 0 || !Number.isSafeInteger(timestamp) || !isHex(signature) || signature.length !== 132) {
      return { ok: false, code: 'UNAUTHORIZED', message: `${SIGNATURE_HEADER} is malformed; expected ${SIGNATURE_FORMAT}` }
    }
    const t = now()
    if (Math.abs(t - timestamp) > skewMs) {
      return { ok: false, code: 'UNAUTHORIZED', message: `the request was signed at ${timestamp} (unix ms), more than ${skewMs / 1000} s from this gateway's clock (${t}); sign each request when sending it` }
    }
    const message = requestMessage({ function: `${req.wallet}/${req.project}/${req.fn}`, method: req.method, path: req.path, body: req.body, timestamp })
    const digest = hashMessage(message)
    prune(t)
    if (seen.has(digest)) return { ok: false, code: 'UNAUTHORIZED', message: 'this signed request was already used (replay); sign every request anew' }
    let signer: string
    try {
      signer = (await recoverAddress({ hash: digest, signature: signature as Hex })).toLowerCase()
    } catch {
      return { ok: false, code: 'UNAUTHORIZED', message: `${SIGNATURE_HEADER} does not hold a valid signature` }
    }
    if (!(auth.allow ?? []).some(a => a.toLowerCase() === signer)) {
      // a signature over another request (other path, body, time) recovers to some random address too
      return { ok: false, code: 'FORBIDDEN', message: `the request is signed by ${signer}, which is not in this function's "allow" list (or the signature is over a different method, path, body or timestamp than this request's)` }
    }
    // a check between the lookup and here awaited: a concurrent replay may have been accepted meanwhile
    if (seen.has(digest)) return { ok: false, code: 'UNAUTHORIZED', message: 'this signed request was already used (replay); sign every request anew' }
    if (seen.size >= seenMax) {
      log.warn({ size: seen.size }, 'seen-signature cache full; refusing signed requests until entries expire')
      return { ok: false, code: 'OVERLOADED', message: 'this gateway cannot remember more signed requests right now; retry shortly' }
    }
    seen.set(digest, Math.max(t, timestamp) + skewMs)
    return { ok: true, strip: auth.forwardCredential === true ? [] : [SIGNATURE_HEADER], caller: signer }
  }

  function apiKey (auth: FunctionAuth, req: AuthRequest): AuthVerdict {
    const header = req.headers.get('authorization')
    if (header === null) return { ok: false, code: 'UNAUTHORIZED', message: 'this function takes API keys; expected the header authorization: Bearer <key> (peerhost keys create)' }
    const m = BEARER.exec(header.trim())
    if (m === null) return { ok: false, code: 'UNAUTHORIZED', message: 'the authorization header is malformed; expected authorization: Bearer <key>' }
    if (components.keys === undefined) return { ok: false, code: 'UNAUTHORIZED', message: 'this gateway holds no API keys; put the project\'s keys to it with peerhost keys create --gateway <its url>' }
    const found = components.keys.lookup(req.wallet, req.project, m[1])
    if (!found.ok) {
      log.info({ project: `${req.wallet.toLowerCase()}/${req.project}`, reason: found.reason }, 'api key refused')
      return { ok: false, code: 'UNAUTHORIZED', message: found.reason === 'revoked' ? 'this API key was revoked' : `this API key is not a key of ${req.wallet.toLowerCase()}/${req.project} on this gateway` }
    }
    return { ok: true, strip: auth.forwardCredential === true ? [] : ['authorization'] }
  }

  return {
    async check (auth, req) {
      if (auth === undefined) return { ok: true, strip: [] }
      return auth.mode === 'wallet' ? await wallet(auth, req) : apiKey(auth, req)
    }
  }
}
