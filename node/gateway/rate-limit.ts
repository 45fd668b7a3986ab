/**
 * Token buckets by key (a client IP, a project): `requests` per `perSeconds`, refilled smoothly,
 * so a client that keeps to the rate is never refused and a burst gets at most `requests` through.
 * The map of keys is bounded (least recently seen forgotten first): a flood from many spoofed or
 * rotating sources costs bounded memory, at worst forgetting a quiet key's used tokens.
 */
import { NODE_DEFAULTS } from '../constants.ts'

export interface RateLimit {
  /** requests allowed per window (the burst size) */
  requests: number
  /** the window, in seconds */
  perSeconds: number
}

export type RateVerdict = { ok: true } | { ok: false, retryAfterSec: number }

export interface RateLimiter {
  /** Takes one token for `key`; refused with the whole seconds until the next token. */
  take: (key: string, now?: number) => RateVerdict
  /** keys remembered (for tests and metrics) */
  readonly size: number
}

export interface RateLimiterInit {
  /** @default NODE_DEFAULTS.rateLimiterMaxKeys */
  maxKeys?: number
}

/** Buckets whose limit is given per call: one limiter serves every project with its own limit. */
export function rateLimiter (init: RateLimiterInit = {}): { take: (key: string, limit: RateLimit, now?: number) => RateVerdict, readonly size: number } {
  const maxKeys = init.maxKeys ?? NODE_DEFAULTS.rateLimiterMaxKeys
  const buckets = new Map<string, { tokens: number, at: number }>()
  return {
    get size () { return buckets.size },
    take (key, limit, now = Date.now()) {
      const perMs = limit.requests / (limit.perSeconds * 1000)
      let b = buckets.get(key)
      if (b === undefined) {
        b = { tokens: limit.requests, at: now }
        if (buckets.size >= maxKeys) buckets.delete(buckets.keys().next().value!)
      } else {
        buckets.delete(key)
        b.tokens = Math.min(limit.requests, b.tokens + (now - b.at) * perMs)
        b.at = now
      }
      buckets.set(key, b)
      if (b.tokens >= 1) {
        b.tokens -= 1
        return { ok: true }
      }
      return { ok: false, retryAfterSec: Math.max(1, Math.ceil((1 - b.tokens) / perMs / 1000)) }
    }
  }
}

/** One limit for every key (the per-IP limit). */
export function fixedRateLimiter (limit: RateLimit, init: RateLimiterInit = {}): RateLimiter {
  const inner = rateLimiter(init)
  return {
    get size () { return inner.size },
    take: (key, now) => inner.take(key, limit, now)
  }
}
