/**
 * `peerhost.json`: per-project and per-function options, validated with a schema that reports
 * every problem at once with the path of the bad field. Function options use the one schema of
 * protocol/options.ts, so their bounds are the manifest's and the wire's.
 */
import { existsSync, readFileSync } from 'node:fs'
import { basename, join, resolve } from 'node:path'
import { parseEther } from 'viem'
import { z } from 'zod'
import { functionOptionsProblems, quorumOf, quorumProblem, type ChainPathMode, type FunctionOptions, type SessionLimits, type VerifyMode } from '#protocol'
import { NODE_DEFAULTS } from '../constants.ts'
import { ConfigError } from '../errors.ts'
import { resolveAuth, type FunctionAuth } from '../auth/policy.ts'

const NAME = /^[a-z0-9][a-z0-9-]{0,62}$/

/**
 * A function's entry (or `defaults`): the one options schema of protocol/options.ts in its
 * `config` scope — `memoryMb`, `timeoutMs`, `network`, `isolation` (bounds FUNCTION_OPTION_BOUNDS),
 * `deterministic` (the output depends only on the input: recorded in the manifest and on chain,
 * it makes disagreement provable; @default false), `verify` (`"single"`, @default, or `{ "quorum": n }`:
 * n distinct workers per request, the majority answers; deterministic functions only), `chainPath` (may clients force the paid chain path; @default "fallback": no), and `auth` / `allow` / `forwardCredential` (node/auth, docs/auth.md).
 */
export interface FunctionConfig {
  memoryMb?: number
  timeoutMs?: number
  network?: string[]
  isolation?: 'function' | 'execution'
  deterministic?: boolean
  /** the most the project pays a worker per request, native currency ("0.0001"); @default no cap */
  maxFee?: string
  /** `"single"` or `{ quorum: n }` (n distinct workers, the majority answers); @default "single" */
  verify?: VerifyMode
  /**
   * `"client"`: a client may force the chain path (`x-peerhost-mode: onchain`, paid per request);
   * `"fallback"`: only the gateway asks the chain, when the mesh cannot serve. Set it in `defaults`
   * for the whole project. @default "fallback"
   */
  chainPath?: ChainPathMode
  /** who may call the function; @default "public" (node/auth) */
  auth?: 'public' | 'api-key' | 'wallet'
  /** with `"auth": "wallet"`: the addresses that may call (signRequest) */
  allow?: string[]
  /** hand the credential header to the function instead of stripping it at the gateway; @default false */
  forwardCredential?: boolean
  /**
   * WebSocket session limits (each at most the gateway's own; protocol/options.ts SessionLimits);
   * an entry's fields override those in `defaults` one by one. @default the gateway's limits
   */
  websocket?: SessionLimits
}

/** requests per window, per project, counted by each gateway (429 above it) */
export const rateLimitSchema = z.object({
  /** requests allowed per window (also the largest burst) */
  requests: z.number().int().min(1).max(1_000_000),
  /** the window in seconds */
  perSeconds: z.number().int().min(1).max(86_400)
}).strict()

export const projectConfigSchema = z.object({
  $schema: z.string().optional(),
  /** project name; @default the folder name */
  name: z.string().regex(NAME, 'expected lower-case letters, digits and dashes').optional(),
  /** public configuration handed to every function as `env` (not secret) */
  env: z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'expected an environment variable name'), z.string().max(4096)).optional(),
  /** defaults for every function (checked by protocol/options.ts) */
  defaults: z.unknown().optional(),
  /** per-function options, by function name (checked by protocol/options.ts) */
  functions: z.record(z.string().regex(NAME, 'expected a function name'), z.unknown()).optional(),
  /** the project's request rate limit at each gateway; @default none */
  rateLimit: rateLimitSchema.optional()
}).strict()

export type ProjectConfig = Omit<z.infer<typeof projectConfigSchema>, 'defaults' | 'functions'> & {
  defaults?: FunctionConfig
  functions?: Record<string, FunctionConfig>
}

export interface ResolvedProject {
  root: string
  name: string
  env: Record<string, string>
  rateLimit?: { requests: number, perSeconds: number }
  optionsFor: (fn: string) => FunctionOptions
  /** `deterministic` of the function (its entry, else `defaults`); @default false */
  deterministicFor: (fn: string) => boolean
  /** `chainPath` of the function (its entry, else `defaults`); @default "fallback" */
  chainPathFor: (fn: string) => ChainPathMode
  /** `maxFee` of the function (its entry, else `defaults`) in wei; undefined: no cap */
  maxFeeFor: (fn: string) => bigint | undefined
  /** the quorum size of `verify` (its entry, else `defaults`); undefined: `"single"` */
  quorumFor: (fn: string) => number | undefined
  /** the function's `websocket` limits (`defaults` merged field by field); undefined: none set */
  websocketFor: (fn: string) => SessionLimits | undefined
  /** who may call the function (`auth`, `allow`, `forwardCredential`); undefined = public */
  authFor: (fn: string) => FunctionAuth | undefined
}

/** Formats zod issues as `functions.hello.timeoutMs: expected …` lines. */
function describe (issues: z.core.$ZodIssue[]): string[] {
  return issues.map(i => `${i.path.length > 0 ? i.path.join('.') : '(top level)'}: ${i.message}`)
}

export function loadProjectConfig (root: string): ResolvedProject {
  const dir = resolve(root)
  const path = join(dir, 'peerhost.json')
  let raw: unknown = {}
  if (existsSync(path)) {
    try {
      raw = JSON.parse(readFileSync(path, 'utf8'))
    } catch (err: any) {
      throw new ConfigError('BAD_PROJECT_CONFIG', `${path} is not valid JSON: ${err.message}`)
    }
  }
  const parsed = projectConfigSchema.safeParse(raw)
  // every problem at once: the top level's, then each function entry's (the protocol schema)
  const problems = parsed.success ? [] : describe(parsed.error.issues)
  const top = (typeof raw === 'object' && raw !== null ? raw : {}) as { defaults?: unknown, functions?: unknown }
  const entries: Array<[string, unknown]> = top.defaults === undefined ? [] : [['defaults', top.defaults]]
  if (typeof top.functions === 'object' && top.functions !== null && !Array.isArray(top.functions)) {
    for (const [n, f] of Object.entries(top.functions)) entries.push([`functions.${n}`, f])
  }
  for (const [where, entry] of entries) {
    const own = functionOptionsProblems(entry, where, 'config')
    problems.push(...own.map(p => `${p.path}: ${p.message}`))
    // quorum needs deterministic, with `defaults` applied: either may come from `defaults`
    if (own.length > 0 || typeof entry !== 'object' || entry === null) continue
    const merged = where === 'defaults' ? entry as Record<string, unknown> : { ...(top.defaults as object | undefined), ...entry as object } as Record<string, unknown>
    const q = quorumProblem(merged, where)
    if (q !== undefined) problems.push(`${q.path}: ${q.message}`)
  }
  if (!parsed.success || problems.length > 0) {
    throw new ConfigError('BAD_PROJECT_CONFIG', `${path} has ${problems.length} problem${problems.length === 1 ? '' : 's'}:\n  - ${problems.join('\n  - ')}`, { details: { problems } })
  }
  const config = parsed.data as ProjectConfig
  const name = config.name ?? basename(dir).toLowerCase().replace(/[^a-z0-9-]/g, '-')
  if (!NAME.test(name)) throw new ConfigError('BAD_PROJECT_NAME', `project name "${name}" must be lower-case letters, digits and dashes; set "name" in peerhost.json`)
  const authFor = (fn: string | undefined): FunctionAuth | undefined => {
    const o = { ...config.defaults, ...(fn === undefined ? {} : config.functions?.[fn]) }
    try {
      return resolveAuth(o)
    } catch (err) {
      throw new ConfigError('BAD_PROJECT_CONFIG', `${path}: ${fn === undefined ? 'defaults' : `functions.${fn}`}: ${(err as Error).message}`)
    }
  }
  // every combination the file states is checked now, not when a function is first built
  authFor(undefined)
  for (const fn of Object.keys(config.functions ?? {})) authFor(fn)
  return {
    root: dir,
    name,
    authFor,
    env: config.env ?? {},
    rateLimit: config.rateLimit,
    optionsFor (fn) {
      const o = { ...config.defaults, ...config.functions?.[fn] }
      return {
        memoryMb: o.memoryMb ?? NODE_DEFAULTS.functionMemoryMb,
        timeoutMs: o.timeoutMs ?? NODE_DEFAULTS.functionTimeoutMs,
        network: o.network ?? [],
        isolation: o.isolation ?? 'function'
      }
    },
    deterministicFor (fn) {
      return config.functions?.[fn]?.deterministic ?? config.defaults?.deterministic ?? false
    },
    chainPathFor (fn) {
      return config.functions?.[fn]?.chainPath ?? config.defaults?.chainPath ?? 'fallback'
    },
    maxFeeFor (fn) {
      const fee = config.functions?.[fn]?.maxFee ?? config.defaults?.maxFee
      return fee === undefined ? undefined : parseEther(fee)
    },
    quorumFor (fn) {
      return quorumOf(config.functions?.[fn]?.verify ?? config.defaults?.verify)
    },
    websocketFor (fn) {
      const d = config.defaults?.websocket
      const f = config.functions?.[fn]?.websocket
      return d === undefined && f === undefined ? undefined : { ...d, ...f }
    }
  }
}
