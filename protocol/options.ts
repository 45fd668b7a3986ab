/**
 * The one `FunctionOptions` schema: peerhost.json (node/project/config.ts), the deploy manifest
 * (node/deploy/manifest.ts) and the wire validator (validate.ts) all check options here, with the
 * bounds of FUNCTION_OPTION_BOUNDS, so what a builder cannot configure never reaches a worker, and
 * a worker can compare a job's options with its manifest's exactly (`sameFunctionOptions`).
 *
 * Two scopes:
 * - `strict` (wire and manifest): exactly `memoryMb`, `timeoutMs`, `network`, `isolation`, all required;
 * - `config` (a function's entry in peerhost.json, or `defaults`): each of those optional, plus
 *   `deterministic` (boolean), `maxFee` (the most the project pays a worker per request, in the
 *   native currency as a decimal string such as "0.0001"), `verify`, `chainPath` (`"fallback"` or
 *   `"client"`: whether a client may force the paid chain path with `x-peerhost-mode: onchain`), and
 *   `auth` / `allow` / `forwardCredential` (checked in detail by node/auth). `verify` is `"single"`
 *   (@default) or `{ "quorum": n }` (n distinct workers run each request; bounds
 *   FUNCTION_OPTION_BOUNDS.quorum); quorum needs `deterministic: true`, a rule across fields checked
 *   by `quorumProblem` once an entry is merged with `defaults`.
 */
import { FUNCTION_OPTION_BOUNDS as B } from './constants.ts'
import { ProtocolError } from './errors.ts'
import type { FunctionOptions } from './messages.ts'

/** One problem: the path of the field and what was expected there. */
export interface OptionProblem {
  path: string
  message: string
}

export type OptionsScope = 'strict' | 'config'

const HOST_LABEL = '[a-z0-9](?:[a-z0-9-]*[a-z0-9])?'
/** `example.com`, `*.example.com`, `api.example.com:8443`, `[::1]:8080` */
export const NETWORK_HOST = new RegExp(`^(?:(?:\\*\\.)?${HOST_LABEL}(?:\\.${HOST_LABEL})*|\\[[0-9a-f:.]+\\])(?::[0-9]{1,5})?$`)

const OPTION_KEYS = ['memoryMb', 'timeoutMs', 'network', 'isolation'] as const
const CONFIG_KEYS = [...OPTION_KEYS, 'deterministic', 'maxFee', 'verify', 'chainPath', 'auth', 'allow', 'forwardCredential', 'websocket'] as const

/**
 * A function's WebSocket session limits (peerhost.json `websocket`, in the manifest): each field
 * optional, bounded by FUNCTION_OPTION_BOUNDS.websocket; the gateway applies the lower of each and
 * its own operator limit. Close codes: 1009 (message size), 4408 (idle), 4410 (length), 4429
 * (rate); sessions past `maxSessions` are refused 429 RATE_LIMITED before any worker is asked.
 */
export interface SessionLimits {
  /** largest client message, bytes (close 1009 beyond) */
  maxMessageBytes?: number
  /** no message either way for this long closes the session (4408) */
  idleTimeoutMs?: number
  /** longest a session lasts (4410) */
  maxSessionMs?: number
  /** client messages per second (4429 beyond) */
  messagesPerSecond?: number
  /** sessions of this function open at once on one gateway (429 beyond) */
  maxSessions?: number
}

export const SESSION_LIMIT_KEYS = ['maxMessageBytes', 'idleTimeoutMs', 'maxSessionMs', 'messagesPerSecond', 'maxSessions'] as const satisfies ReadonlyArray<keyof SessionLimits>

/** Every problem of `x` as a `websocket` limits object (empty: valid). */
export function sessionLimitsProblems (x: unknown, path: string): OptionProblem[] {
  if (!isPlainObject(x)) return [{ path, message: `expected a map of WebSocket session limits (${SESSION_LIMIT_KEYS.join(', ')})` }]
  const out: OptionProblem[] = []
  for (const key of Object.keys(x)) {
    if (!(SESSION_LIMIT_KEYS as readonly string[]).includes(key)) out.push({ path: `${path}.${JSON.stringify(key.slice(0, 64))}`, message: `unexpected field; expected one of ${SESSION_LIMIT_KEYS.join(', ')}` })
  }
  for (const k of SESSION_LIMIT_KEYS) {
    if (!Object.hasOwn(x, k) || x[k] === undefined) continue
    const p = intProblem(x[k], `${path}.${k}`, B.websocket[k])
    if (p !== undefined) out.push(p)
  }
  return out
}

/**
 * `chainPath` values: `fallback` (@default) — the gateway asks the chain only when the mesh cannot
 * serve; `client` — a client may also ask for it (`x-peerhost-mode: onchain`), each such request
 * paid from the project's escrow or the gateway's balance.
 */
export const CHAIN_PATH_MODES = ['fallback', 'client'] as const
export type ChainPathMode = typeof CHAIN_PATH_MODES[number]
/** `maxFee`: an amount of the native currency with at most 18 decimals (wei precision). */
export const MAX_FEE = /^(0|[1-9][0-9]{0,40})(\.[0-9]{1,18})?$/

function isPlainObject (x: unknown): x is Record<string, unknown> {
  if (typeof x !== 'object' || x === null || Array.isArray(x)) return false
  const proto = Object.getPrototypeOf(x)
  return proto === Object.prototype || proto === null
}

function intProblem (x: unknown, path: string, bounds: { min: number, max: number }): OptionProblem | undefined {
  if (typeof x !== 'number' || !Number.isSafeInteger(x) || x < bounds.min || x > bounds.max) return { path, message: `expected an integer from ${bounds.min} to ${bounds.max}` }
  return undefined
}

/** Every problem of `x` as function options in `scope` (empty: valid). */
export function functionOptionsProblems (x: unknown, path: string, scope: OptionsScope): OptionProblem[] {
  if (!isPlainObject(x)) return [{ path, message: 'expected a map of function options' }]
  const out: OptionProblem[] = []
  const allowed: readonly string[] = scope === 'strict' ? OPTION_KEYS : CONFIG_KEYS
  for (const key of Object.keys(x)) {
    if (!allowed.includes(key)) out.push({ path: `${path}.${JSON.stringify(key.slice(0, 64))}`, message: `unexpected field; expected one of ${allowed.join(', ')}` })
  }
  const has = (k: string): boolean => Object.hasOwn(x, k) && x[k] !== undefined
  if (scope === 'strict') {
    for (const k of OPTION_KEYS) if (!has(k)) out.push({ path: `${path}.${k}`, message: 'expected a value (the field is missing)' })
  }
  if (has('memoryMb')) { const p = intProblem(x.memoryMb, `${path}.memoryMb`, B.memoryMb); if (p !== undefined) out.push(p) }
  if (has('timeoutMs')) { const p = intProblem(x.timeoutMs, `${path}.timeoutMs`, B.timeoutMs); if (p !== undefined) out.push(p) }
  if (has('network')) {
    const n = x.network
    if (!Array.isArray(n) || n.length > B.maxNetworkHosts) {
      out.push({ path: `${path}.network`, message: `expected an array of at most ${B.maxNetworkHosts} host names` })
    } else {
      for (let i = 0; i < n.length; i++) {
        const h = n[i]
        if (typeof h !== 'string' || h.length > B.maxHostBytes || !NETWORK_HOST.test(h)) {
          out.push({ path: `${path}.network[${i}]`, message: 'expected a lower-case host name such as "api.example.com", "*.example.com" or "api.example.com:8443"' })
        }
      }
    }
  }
  if (has('isolation') && x.isolation !== 'function' && x.isolation !== 'execution') out.push({ path: `${path}.isolation`, message: 'expected "function" or "execution"' })
  if (scope === 'config') {
    if (has('deterministic') && typeof x.deterministic !== 'boolean') out.push({ path: `${path}.deterministic`, message: 'expected true or false' })
    if (has('maxFee') && (typeof x.maxFee !== 'string' || !MAX_FEE.test(x.maxFee))) {
      out.push({ path: `${path}.maxFee`, message: 'expected an amount of the native currency as a string, such as "0.0001" (at most 18 decimals)' })
    }
    if (has('verify')) {
      const v = x.verify
      if (isPlainObject(v)) {
        const extra = Object.keys(v).filter(k => k !== 'quorum')
        if (extra.length > 0 || !Object.hasOwn(v, 'quorum')) {
          out.push({ path: `${path}.verify`, message: 'expected "single" or { "quorum": n } (no other fields)' })
        } else {
          const p = intProblem(v.quorum, `${path}.verify.quorum`, B.quorum)
          if (p !== undefined) out.push({ path: p.path, message: `${p.message} (the number of distinct workers that run each request)` })
        }
      } else if (v !== 'single') {
        out.push({ path: `${path}.verify`, message: 'expected "single" or { "quorum": n }' })
      }
    }
    if (has('chainPath') && !CHAIN_PATH_MODES.includes(x.chainPath as ChainPathMode)) {
      out.push({ path: `${path}.chainPath`, message: 'expected "fallback" (the default: the chain only when the mesh cannot serve) or "client" (clients may also force it with x-peerhost-mode: onchain)' })
    }
    if (has('auth') && x.auth !== 'public' && x.auth !== 'api-key' && x.auth !== 'wallet') {
      out.push({ path: `${path}.auth`, message: 'expected "public", "api-key" or "wallet"' })
    }
    if (has('allow') && (!Array.isArray(x.allow) || x.allow.some((a: unknown) => typeof a !== 'string' || !/^0x[0-9a-fA-F]{40}$/.test(a)))) {
      out.push({ path: `${path}.allow`, message: 'expected an array of 0x-prefixed 20-byte addresses' })
    }
    if (has('forwardCredential') && typeof x.forwardCredential !== 'boolean') out.push({ path: `${path}.forwardCredential`, message: 'expected true or false' })
    if (has('websocket')) out.push(...sessionLimitsProblems(x.websocket, `${path}.websocket`))
  }
  return out
}

/** `verify` as data: `"single"` (one worker) or `{ quorum: n }`. */
export type VerifyMode = 'single' | { quorum: number }

/**
 * The quorum size of a `verify` value, or undefined for `"single"`/absent. Only for values that
 * passed `functionOptionsProblems`.
 */
export function quorumOf (verify: unknown): number | undefined {
  return isPlainObject(verify) && typeof verify.quorum === 'number' ? verify.quorum : undefined
}

/**
 * The cross-field rule of quorum: only a deterministic function can be outvoted, because two honest
 * runs of a function that reads the clock or Math.random differ, and a disagreement proof against a
 * worker is only accepted on chain for a function declared deterministic. `merged` is the entry
 * with `defaults` applied.
 */
export function quorumProblem (merged: { verify?: unknown, deterministic?: unknown }, path: string): OptionProblem | undefined {
  const n = quorumOf(merged.verify)
  if (n === undefined || merged.deterministic === true) return undefined
  return { path: `${path}.verify`, message: `{ "quorum": ${n} } needs "deterministic": true (workers are outvoted by comparing outputs, and only a deterministic function's outputs must agree); declare the function deterministic or use "single"` }
}

/**
 * Strict options (wire, manifest) as a fresh copy with keys in type order; throws ProtocolError
 * INVALID_FIELD naming the first bad field.
 */
export function parseFunctionOptions (x: unknown, path: string = 'options'): FunctionOptions {
  const problems = functionOptionsProblems(x, path, 'strict')
  if (problems.length > 0) {
    const p = problems[0]
    throw new ProtocolError('INVALID_FIELD', `${p.path}: ${p.message}`, { details: { field: p.path } })
  }
  const o = x as FunctionOptions
  return { memoryMb: o.memoryMb + 0, timeoutMs: o.timeoutMs + 0, network: [...o.network], isolation: o.isolation }
}

/** True when two option sets run a job the same way (the allow-list compared as a set, as jobHash does). */
export function sameFunctionOptions (a: FunctionOptions, b: FunctionOptions): boolean {
  if (a.memoryMb !== b.memoryMb || a.timeoutMs !== b.timeoutMs || a.isolation !== b.isolation) return false
  const x = [...a.network].sort()
  const y = [...b.network].sort()
  return x.length === y.length && x.every((h, i) => h === y[i])
}

/** The fields where `given` differs from `expected` (for error details), in type order. */
export function optionDifferences (expected: FunctionOptions, given: FunctionOptions): string[] {
  const out: string[] = []
  if (expected.memoryMb !== given.memoryMb) out.push('memoryMb')
  if (expected.timeoutMs !== given.timeoutMs) out.push('timeoutMs')
  if (!sameFunctionOptions({ ...expected, memoryMb: 0, timeoutMs: 0, isolation: 'function' }, { ...given, memoryMb: 0, timeoutMs: 0, isolation: 'function' })) out.push('network')
  if (expected.isolation !== given.isolation) out.push('isolation')
  return out
}
