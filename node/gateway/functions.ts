/**
 * The functions a gateway serves, by `<wallet>/<project>/<function>`, with their bundles.
 * Today the table is filled from project folders (`--project`); the deploy issue fills it from
 * FunctionRegistry events behind the same interface.
 */
import type { Address } from 'viem'
import { functionId, type ChainPathMode, type FunctionOptions, type FunctionRef, type SessionLimits } from '#protocol'
import { bundleProject } from '../build/bundle.ts'
import { loadProjectConfig } from '../project/config.ts'
import type { RateLimit } from './rate-limit.ts'
import type { FunctionAuth } from '../auth/policy.ts'

export interface FunctionEntry {
  ref: FunctionRef
  options: FunctionOptions
  env: Record<string, string>
  /** the project's `rateLimit` (peerhost.json, in the manifest), enforced by each gateway; none = unlimited */
  rateLimit?: RateLimit
  /** the most the project pays per request, wei (peerhost.json `maxFee`); none = any worker's price */
  maxFee?: bigint
  /** who may call it (peerhost.json `auth`, in the manifest), checked before dispatch; none = public */
  auth?: FunctionAuth
  /** may a client force the chain path (peerhost.json `chainPath`, in the manifest); none = "fallback" (no) */
  chainPath?: ChainPathMode
  /**
   * peerhost.json `verify: { quorum: n }` (in the manifest): each request runs on n distinct
   * workers and the majority output answers (dispatch.ts `quorumDispatcher`); none = one worker
   */
  quorum?: number
  /** the function's WebSocket session limits (peerhost.json `websocket`, in the manifest); none = the gateway's */
  websocket?: SessionLimits
}

export interface FunctionTable {
  resolve: (wallet: string, project: string, fn: string) => FunctionEntry | undefined
  bundle: (cid: string) => Uint8Array | undefined
  list: () => FunctionEntry[]
}

export interface MutableFunctionTable extends FunctionTable {
  add: (entry: FunctionEntry, bytes: Uint8Array) => void
}

export function functionTable (): MutableFunctionTable {
  const entries = new Map<string, FunctionEntry>()
  const bundles = new Map<string, Uint8Array>()
  const key = (wallet: string, project: string, fn: string): string => `${wallet.toLowerCase()}/${project}/${fn}`
  return {
    resolve: (wallet, project, fn) => entries.get(key(wallet, project, fn)),
    bundle: cid => bundles.get(cid),
    list: () => [...entries.values()],
    add (entry, bytes) {
      entries.set(key(entry.ref.wallet, entry.ref.project, entry.ref.name), entry)
      bundles.set(entry.ref.bundleCid, bytes)
    }
  }
}

/** Bundles a project folder and adds its functions, owned by `owner`. */
export async function addProject (table: MutableFunctionTable, owner: Address, dir: string): Promise<FunctionEntry[]> {
  const project = loadProjectConfig(dir)
  const built = await bundleProject(project.root)
  const added: FunctionEntry[] = []
  for (const fn of built) {
    const entry: FunctionEntry = {
      ref: { wallet: owner, project: project.name, name: fn.name, id: functionId(owner, project.name, fn.name), bundleCid: fn.cid },
      options: project.optionsFor(fn.name),
      env: project.env,
      rateLimit: project.rateLimit,
      auth: project.authFor(fn.name),
      chainPath: project.chainPathFor(fn.name)
    }
    const maxFee = project.maxFeeFor(fn.name)
    if (maxFee !== undefined) entry.maxFee = maxFee
    const quorum = project.quorumFor(fn.name)
    if (quorum !== undefined) entry.quorum = quorum
    const websocket = project.websocketFor(fn.name)
    if (websocket !== undefined) entry.websocket = websocket
    table.add(entry, fn.bytes)
    added.push(entry)
  }
  return added
}
