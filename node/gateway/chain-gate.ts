/**
 * Who may make a gateway spend money on the chain path (issue 9, threat R9).
 *
 * Every chain request costs a fee and gas (from the project's escrow or the gateway's balance)
 * and occupies staked workers for a commit and a reveal. So:
 *
 * - a client may force the chain (`x-peerhost-mode: onchain`) only for functions whose
 *   peerhost.json opts in with `"chainPath": "client"` (recorded in the manifest); otherwise
 *   `403 FORBIDDEN` naming the setting, before any dispatch;
 * - every chain request a client's request would cause — forced, or the gateway's own fallback
 *   after a failed mesh — takes one token from that client IP's budget (`--chain-rate-limit`,
 *   NODE_DEFAULTS.gatewayChainRate*); past it `429 RATE_LIMITED` with `Retry-After`, and no chain
 *   request is made.
 *
 * Client IP: as ingress.ts sees it (the socket's peer, IPv6 by its /64; no forwarding header).
 */
import type { ChainPathMode } from '#protocol'
import { NODE_DEFAULTS } from '../constants.ts'
import { fixedRateLimiter, type RateLimit } from './rate-limit.ts'

/** The request header a client forces the chain path with, and its value. */
export const CHAIN_MODE_HEADER = 'x-peerhost-mode'

export interface ChainGateInit {
  /** chain-path requests per client IP per window; @default NODE_DEFAULTS.gatewayChainRateRequests / gatewayChainRatePerSeconds */
  perIp?: RateLimit
  /** @default NODE_DEFAULTS.rateLimiterMaxKeys */
  maxKeys?: number
}

export type ChainGateVerdict =
  | { ok: true }
  | { ok: false, code: 'FORBIDDEN' | 'RATE_LIMITED', message: string, details: Record<string, string | number> }

export interface ChainGate {
  /** the per-IP limit in force */
  readonly perIp: RateLimit
  /** True when the request asks for the chain path (`x-peerhost-mode: onchain`, any case). */
  asked: (headers: Headers) => boolean
  /**
   * Whether a chain request may be made for this client and function: `forced` when the client
   * asked for it. A refusal takes nothing from the budget; an answer `ok` took one token.
   */
  check: (fn: { project: string, name: string, chainPath?: ChainPathMode }, client: string, forced: boolean, now?: number) => ChainGateVerdict
}

export function chainGate (init: ChainGateInit = {}): ChainGate {
  const perIp = init.perIp ?? { requests: NODE_DEFAULTS.gatewayChainRateRequests, perSeconds: NODE_DEFAULTS.gatewayChainRatePerSeconds }
  const budget = fixedRateLimiter(perIp, { maxKeys: init.maxKeys })
  return {
    perIp,
    asked: headers => headers.get(CHAIN_MODE_HEADER)?.trim().toLowerCase() === 'onchain',
    check (fn, client, forced, now): ChainGateVerdict {
      if (forced && fn.chainPath !== 'client') {
        return {
          ok: false,
          code: 'FORBIDDEN',
          message: `${fn.project}/${fn.name} does not let clients choose the paid chain path: x-peerhost-mode: onchain needs "chainPath": "client" in the project's peerhost.json (in "defaults" or for this function); send the request without the header to use the mesh`,
          details: { setting: 'chainPath', expected: 'client', actual: fn.chainPath ?? 'fallback' }
        }
      }
      const verdict = budget.take(client, now)
      if (verdict.ok) return verdict
      const why = forced ? 'you asked for the chain path' : 'the mesh gave no result'
      return {
        ok: false,
        code: 'RATE_LIMITED',
        message: `${why}, but your address used its ${perIp.requests} chain-path requests per ${perIp.perSeconds} s at this gateway (chainRateLimit); retry in ${verdict.retryAfterSec} s`,
        details: { limit: 'chainRateLimit', requests: perIp.requests, perSeconds: perIp.perSeconds, retryAfterSec: verdict.retryAfterSec }
      }
    }
  }
}
