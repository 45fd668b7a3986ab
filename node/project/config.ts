/**
 * `peerhost.json`: per-project and per-function options, validated with a schema that reports
 * every problem at once with the path of the bad field.
 */
import { existsSync, readFileSync } from 'node:fs'
import { basename, join, resolve } from 'node:path'
import { z } from 'zod'
import type { FunctionOptions } from '#protocol'
import { NODE_DEFAULTS } from '../constants.ts'
import { ConfigError } from '../errors.ts'
import { MAX_ALLOW, resolveAuth, type FunctionAuth } from '../auth/policy.ts'

const NAME = /^[a-z0-9][a-z0-9-]{0,62}$/
const HOST = /^(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*(:\d{1,5})?$/

export const functionOptionsSchema = z.object({
  /** MB of memory for the sandbox; @default 128 */
  memoryMb: z.number().int().min(16).max(2048).optional(),
  /** wall-clock limit per execution; @default 10000 */
  timeoutMs: z.number().int().min(10).max(300_000).optional(),
  /** hosts `fetch()` may reach (`api.example.com`, `*.example.com`, `host:port`); @default [] */
  network: z.array(z.string().regex(HOST, 'expected a host name such as "api.example.com" or "*.example.com"')).max(64).optional(),
  /** `single` (one worker) or `quorum` (a majority of `size` workers agree); @default "single" */
  verify: z.union([z.literal('single'), z.object({ quorum: z.number().int().min(2).max(15) })]).optional(),
  /** who may call the function; @default "public" */
  auth: z.enum(['public', 'api-key', 'wallet']).optional(),
  /** with `"auth": "wallet"`: the addresses that may call (signRequest); @default none */
  allow: z.array(z.string().regex(/^0x[0-9a-fA-F]{40}$/, 'expected a 0x-prefixed 20-byte address')).min(1).max(MAX_ALLOW).optional(),
  /** hand the credential header to the function instead of stripping it at the gateway; @default false */
  forwardCredential: z.boolean().optional(),
  /** `function`: one sandbox per function version, fresh realm per execution; `execution`: a sandbox per execution; @default "function" */
  isolation: z.enum(['function', 'execution']).optional()
}).strict()

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
  /** defaults for every function */
  defaults: functionOptionsSchema.optional(),
  /** per-function options, by function name */
  functions: z.record(z.string().regex(NAME, 'expected a function name'), functionOptionsSchema).optional(),
  /** the project's request rate limit at each gateway; @default none */
  rateLimit: rateLimitSchema.optional()
}).strict()

export type ProjectConfig = z.infer<typeof projectConfigSchema>

export interface ResolvedProject {
  root: string
  name: string
  env: Record<string, string>
  rateLimit?: { requests: number, perSeconds: number }
  optionsFor: (fn: string) => FunctionOptions
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
  if (!parsed.success) {
    const problems = describe(parsed.error.issues)
    throw new ConfigError('BAD_PROJECT_CONFIG', `${path} has ${problems.length} problem${problems.length === 1 ? '' : 's'}:\n  - ${problems.join('\n  - ')}`, { details: { problems } })
  }
  const config = parsed.data
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
    }
  }
}
