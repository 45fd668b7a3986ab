/**
 * The deploy manifest: one raw IPFS block (CIDv1, raw codec, sha2-256) holding canonical JSON —
 * UTF-8, object keys sorted at every level, no insignificant whitespace — so the same project at
 * the same commit always gives the same bytes and the same CID.
 *
 * ```json
 * {"env":{"GREETING":"hi"},"functions":{"hello":{"bundle":"bafkrei…","entry":"functions/hello.ts",
 *  "deterministic":false,"options":{"isolation":"function","memoryMb":128,"network":[],"timeoutMs":5000}}},
 *  "sourceCommit":"0x<git sha-1 left-aligned in 32 bytes, or zero>","type":"peerhost-manifest","v":1}
 * ```
 *
 * The project name and the owner wallet are not in it: they are the registry key
 * (`FunctionRegistry.deploy(namespace, name, manifestCid, …)`), so one manifest can serve any
 * project name. Gateways parse manifests from the network with `parseManifest` (a closed schema).
 */
import { z } from 'zod'
import { CHAIN_PATH_MODES, FUNCTION_OPTION_BOUNDS, functionOptionsProblems, rawCid, sessionLimitsProblems, type ChainPathMode, type FunctionOptions, type SessionLimits } from '#protocol'
import { NodeError } from '../errors.ts'
import { functionAuthSchema, type FunctionAuth } from '../auth/policy.ts'
import { STORAGE_LIMITS } from '../storage/limits.ts'

export const MANIFEST_TYPE = 'peerhost-manifest'
export const MANIFEST_VERSION = 1

export interface ManifestFunction {
  /** CIDv1 raw of the bundle bytes */
  bundle: string
  /** entry file relative to the project root, `/` separators */
  entry: string
  options: FunctionOptions
  /**
   * The builder declares the output depends only on the input (peerhost.json `deterministic`):
   * only such functions can be proven wrong by disagreement. Absent in manifests written before
   * it existed: parsed as false.
   */
  deterministic: boolean
  /** peerhost.json `maxFee` in wei (decimal string); absent: no cap (and the manifest bytes of before) */
  maxFee?: string
  /**
   * peerhost.json `verify: { quorum: n }`: gateways run each request on n distinct workers and
   * answer with the majority output; only with `deterministic: true`. Absent: `"single"` (and the
   * manifest bytes of before).
   */
  quorum?: number
  /** who may call it (peerhost.json `auth`); absent = public (older manifests have none) */
  auth?: FunctionAuth
  /**
   * peerhost.json `chainPath`: written only when `"client"` (clients may force the chain path);
   * absent = `"fallback"`, so manifests of projects that never opted in keep their bytes and CID
   */
  chainPath?: ChainPathMode
  /** peerhost.json `websocket` session limits; absent when none are set (and the manifest bytes of before) */
  websocket?: SessionLimits
}

export interface Manifest {
  type: typeof MANIFEST_TYPE
  v: typeof MANIFEST_VERSION
  /** bytes32 hex: git SHA-1 left-aligned (zero-padded on the right), or zero when not from git */
  sourceCommit: `0x${string}`
  /** public configuration handed to every function */
  env: Record<string, string>
  functions: Record<string, ManifestFunction>
  /** peerhost.json `rateLimit`, absent when none (older manifests have none) */
  rateLimit?: { requests: number, perSeconds: number }
}

const NAME = /^[a-z0-9][a-z0-9-]{0,62}$/
const RAW_CID = /^bafkrei[a-z2-7]{52}$/

const manifestSchema = z.object({
  type: z.literal(MANIFEST_TYPE),
  v: z.literal(MANIFEST_VERSION),
  sourceCommit: z.string().regex(/^0x[0-9a-f]{64}$/),
  env: z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/), z.string().max(4096)),
  functions: z.record(z.string().regex(NAME), z.object({
    bundle: z.string().regex(RAW_CID),
    entry: z.string().max(1024),
    // the one options schema (protocol/options.ts): the bounds of peerhost.json and of the wire
    options: z.unknown().superRefine((value, ctx) => {
      for (const p of functionOptionsProblems(value, 'options', 'strict')) ctx.addIssue({ code: 'custom', message: `${p.path}: ${p.message}` })
    }),
    deterministic: z.boolean().default(false),
    maxFee: z.string().regex(/^(0|[1-9][0-9]{0,77})$/).refine(v => BigInt(v) < 1n << 256n, 'a uint256').optional(),
    quorum: z.number().int().min(FUNCTION_OPTION_BOUNDS.quorum.min).max(FUNCTION_OPTION_BOUNDS.quorum.max).optional(),
    auth: functionAuthSchema.optional(),
    chainPath: z.enum(CHAIN_PATH_MODES).optional(),
    // the same bounds as peerhost.json (protocol/options.ts)
    websocket: z.unknown().superRefine((value, ctx) => {
      if (value === undefined) return
      for (const p of sessionLimitsProblems(value, 'websocket')) ctx.addIssue({ code: 'custom', message: `${p.path}: ${p.message}` })
    }).transform(v => v as SessionLimits | undefined).optional()
  }).strict().refine(f => f.quorum === undefined || f.deterministic, 'a quorum function must be deterministic (only deterministic outputs can be outvoted)')),
  rateLimit: z.object({
    requests: z.number().int().min(1).max(1_000_000),
    perSeconds: z.number().int().min(1).max(86_400)
  }).strict().optional()
}).strict().refine(m => Object.keys(m.functions).length >= 1 && Object.keys(m.functions).length <= 64, 'a manifest lists 1–64 functions')

/** JSON with keys sorted at every level and no whitespace. */
export function canonicalJson (value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>).filter(([, v]) => v !== undefined).sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0)
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`
  }
  return JSON.stringify(value)
}

export function encodeManifest (manifest: Manifest): { bytes: Uint8Array, cid: string } {
  const bytes = new TextEncoder().encode(canonicalJson(manifest))
  return { bytes, cid: rawCid(bytes) }
}

/** Parses and validates manifest bytes from the network; throws NodeError BAD_MANIFEST. */
export function parseManifest (bytes: Uint8Array): Manifest {
  if (bytes.byteLength > STORAGE_LIMITS.maxManifestBytes) throw new NodeError('BAD_MANIFEST', `the manifest is ${bytes.byteLength} bytes; the limit is ${STORAGE_LIMITS.maxManifestBytes}`)
  let raw: unknown
  try {
    raw = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes))
  } catch (err) {
    throw new NodeError('BAD_MANIFEST', 'the manifest is not UTF-8 JSON', { cause: err })
  }
  const parsed = manifestSchema.safeParse(raw)
  if (!parsed.success) {
    throw new NodeError('BAD_MANIFEST', `the manifest is malformed: ${parsed.error.issues.map(i => `${i.path.join('.') || '(top level)'}: ${i.message}`).join('; ')}`)
  }
  return parsed.data as Manifest
}
