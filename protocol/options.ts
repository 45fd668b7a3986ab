/**
 * The one `FunctionOptions` schema: peerhost.json (node/project/config.ts), the deploy manifest
 * (node/deploy/manifest.ts) and the wire validator (validate.ts) all check options here, with the
 * bounds of FUNCTION_OPTION_BOUNDS, so what a builder cannot configure never reaches a worker, and
 * a worker can compare a job's options with its manifest's exactly (`sameFunctionOptions`).
 *
 * Two scopes:
 * - `strict` (wire and manifest): exactly `memoryMb`, `timeoutMs`, `network`, `isolation`, all required;
 * - `config` (a function's entry in peerhost.json, or `defaults`): each of those optional, plus
 *   `deterministic` (boolean), `verify`, and `auth` / `allow` / `forwardCredential` (checked in
 *   detail by node/auth). Options no part of PeerHost enforces yet are refused, naming the issue
 *   that builds them, instead of being silently ignored: `verify: { quorum }` (issue 11).
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
const CONFIG_KEYS = [...OPTION_KEYS, 'deterministic', 'verify', 'auth', 'allow', 'forwardCredential'] as const

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
    if (has('verify')) {
      const v = x.verify
      if (isPlainObject(v) && Object.hasOwn(v, 'quorum')) {
        out.push({ path: `${path}.verify`, message: '"quorum" verification is not built yet (issue 11, live settlement): no worker would check it, so it is refused rather than ignored; remove it or use "single"' })
      } else if (v !== 'single') {
        out.push({ path: `${path}.verify`, message: 'expected "single"' })
      }
    }
    if (has('auth') && x.auth !== 'public' && x.auth !== 'api-key' && x.auth !== 'wallet') {
      out.push({ path: `${path}.auth`, message: 'expected "public", "api-key" or "wallet"' })
    }
    if (has('allow') && (!Array.isArray(x.allow) || x.allow.some((a: unknown) => typeof a !== 'string' || !/^0x[0-9a-fA-F]{40}$/.test(a)))) {
      out.push({ path: `${path}.allow`, message: 'expected an array of 0x-prefixed 20-byte addresses' })
    }
    if (has('forwardCredential') && typeof x.forwardCredential !== 'boolean') out.push({ path: `${path}.forwardCredential`, message: 'expected true or false' })
  }
  return out
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
