/**
 * The worker's registry check: before a worker fetches or runs a job's bundle, it asks "is bundle
 * CID X the active bundle of `<wallet>/<project>/<function>` in FunctionRegistry?", so a malicious
 * or buggy gateway cannot run other code under a builder's name and have the worker sign a receipt
 * for it. The answer comes from the chain (`activeVersion`, then `getVersion` → manifest CID) and
 * the manifest (fetched by CID from the worker's block storage — local blockstore, else bitswap,
 * first from the dispatching gateway — capped at `STORAGE_LIMITS.maxManifestBytes`).
 *
 * * Per project the worker caches the active version and its function → bundle map, re-read
 *   after `ttlMs` (in the background once half of it passed; while that re-read has not answered,
 *   a matching entry serves up to `staleMs` past its TTL, so no matching job waits on a slow
 *   chain). A job that does not match is never refused from the cache alone: the project is
 *   re-read at the latest block first (at most once per new block, concurrent reads shared), so a
 *   deploy one block old is accepted and a flood of bad CIDs costs at most one read per block.
 * * When the worker sees a project's active version change, the bundles of the version active just
 *   before stay acceptable for `graceMs` (default 30 s): jobs in flight across a deploy or a
 *   rollback do not fail. A worker that never saw the earlier version grants no grace.
 * * A job's `fn.id` must be `functionId(wallet, project, name)`: the receipt signs that id.
 * * `checkJob` (the worker's hook) also requires the job's options and env to be exactly the
 *   manifest's (the allow-list compared as a set) and hands them back as what the job runs with,
 *   so a gateway can neither raise memory nor open the network nor change the env: refused with
 *   `OPTIONS_MISMATCH` naming the fields that differ.
 * * A job that fails the check is answered with the wire error `BUNDLE_NOT_ACTIVE` (naming the
 *   function and the expected and given CIDs), logged at warn and counted in
 *   `peerhost_worker_registry_checks_total{verdict}`; when the chain or the manifest cannot be
 *   read the job is refused too (fail closed) with `BUNDLE_UNAVAILABLE`, so the gateway tries
 *   another worker.
 *
 * Workers started without `--contracts` (no chain: dev networks, `peerhost dev`) skip the check,
 * as do workers started with `--unsafe-skip-registry-check` (for gateways that serve `--project`
 * folders which are not registered on the chain, in development).
 */
import type { PeerId } from '@libp2p/interface'
import { Counter, type Registry } from 'prom-client'
import type { Hex } from 'viem'
import { functionId, optionDifferences, projectId, type FunctionOptions, type FunctionRef, type JobRequest, type SessionLimits, type WireError } from '#protocol'
import type { ChainClient } from '../chain/index.ts'
import { parseManifest } from '../deploy/manifest.ts'
import { NodeError } from '../errors.ts'
import { NODE_DEFAULTS } from '../constants.ts'
import type { Logger } from '../logger.ts'
import { readActiveVersion } from '../registry/index.ts'
import type { BlockStorage } from '../storage/index.ts'
import { STORAGE_LIMITS } from '../storage/index.ts'

export interface RegistryCheckInit {
  /** re-read a project after this long even when jobs match; @default NODE_DEFAULTS.registryCheckTtlMs */
  ttlMs?: number
  /**
   * a job that matches an entry older than this (and younger than `ttlMs`) starts a re-read in the
   * background instead of waiting for one later; @default ttlMs / 2
   */
  refreshMs?: number
  /**
   * past `ttlMs`, a matching entry still admits jobs for this long while its re-read has not
   * answered (they never wait on a slow chain); past `ttlMs + staleMs` a job waits for the read.
   * @default NODE_DEFAULTS.registryCheckStaleMs
   */
  staleMs?: number
  /** how long the previous active version stays acceptable after a change; @default NODE_DEFAULTS.registryCheckGraceMs */
  graceMs?: number
  /**
   * how long the latest block number, read on a miss, is reused; @default the chain client's
   * polling interval (viem's cache): a flood of refused jobs costs one RPC per interval
   */
  blockNumberCacheMs?: number
  /** @default NODE_DEFAULTS.registryCheckMaxProjects */
  maxProjects?: number
  /** @default NODE_DEFAULTS.registryCheckMaxManifests */
  maxManifests?: number
}

export interface RegistryCheckComponents {
  chain: Pick<ChainClient, 'publicClient' | 'contracts'>
  storage: Pick<BlockStorage, 'fetch'>
  logger: Logger
  /** the node's metrics registry; none = no metric */
  registry?: Registry
}

/** Why a bundle is accepted or refused. */
export type RegistryVerdict =
  | { ok: true, via: 'active' | 'grace', version: number, options: FunctionOptions, env: Record<string, string>, websocket?: SessionLimits }
  | { ok: false, reason: 'function-id' | 'unknown-project' | 'unknown-function' | 'not-active', version: number, expected?: string }

export interface CheckOptions {
  /** a peer likely to hold the manifest (the dispatching gateway) */
  from?: PeerId
  signal?: AbortSignal
}

export interface RegistryCheck {
  /**
   * The verdict for `fn.bundleCid`. Throws NodeError REGISTRY_UNAVAILABLE when the chain or the
   * manifest cannot be read.
   */
  check: (fn: FunctionRef, options?: CheckOptions) => Promise<RegistryVerdict>
  /**
   * The wire error to answer a job with, or undefined when its bundle may run: the worker's
   * `checkBundle` hook. Logs refusals at warn and counts every verdict.
   */
  refusal: (fn: FunctionRef, options?: CheckOptions) => Promise<WireError | undefined>
  /**
   * The worker's `checkJob` hook: `refusal`, then the job's options and env must equal the
   * manifest's (OPTIONS_MISMATCH otherwise); on success, what the job runs with.
   */
  checkJob: (job: Pick<JobRequest, 'fn' | 'options' | 'env'>, options?: CheckOptions) => Promise<{ refused: WireError } | { refused?: undefined, run: { options: FunctionOptions, env: Record<string, string>, websocket?: SessionLimits } }>
}

/** One manifest as the check needs it. */
interface ManifestView {
  functions: ReadonlyMap<string, { bundle: string, options: FunctionOptions, websocket?: SessionLimits }>
  env: Readonly<Record<string, string>>
}

const NO_MANIFEST: ManifestView = { functions: new Map(), env: {} }

interface ProjectEntry {
  /** the block the version was read at */
  block: bigint
  readAt: number
  /** 0 = the project has no active version */
  version: number
  manifestCid?: string
  manifest: ManifestView
  previous?: { version: number, manifest: ManifestView, until: number }
}

/** A Map that forgets its least recently used keys past `max`. */
function touch<K, V> (map: Map<K, V>, key: K, value: V, max: number): void {
  map.delete(key)
  map.set(key, value)
  while (map.size > max) map.delete(map.keys().next().value as K)
}

export function registryCheck (init: RegistryCheckInit = {}): (components: RegistryCheckComponents) => RegistryCheck {
  return (components) => {
    const log = components.logger.child({ component: 'peerhost:worker:registry' })
    const client = components.chain.publicClient
    const registryAddress = components.chain.contracts.addresses.FunctionRegistry
    const ttlMs = init.ttlMs ?? NODE_DEFAULTS.registryCheckTtlMs
    const refreshMs = init.refreshMs ?? ttlMs / 2
    const staleMs = init.staleMs ?? NODE_DEFAULTS.registryCheckStaleMs
    const graceMs = init.graceMs ?? NODE_DEFAULTS.registryCheckGraceMs
    const maxProjects = init.maxProjects ?? NODE_DEFAULTS.registryCheckMaxProjects
    const maxManifests = init.maxManifests ?? NODE_DEFAULTS.registryCheckMaxManifests
    const projects = new Map<Hex, ProjectEntry>()
    const manifests = new Map<string, ManifestView>()
    const reading = new Map<Hex, Promise<ProjectEntry>>()
    const checks = components.registry === undefined
      ? undefined
      : new Counter({ name: 'peerhost_worker_registry_checks_total', help: 'bundle checks against FunctionRegistry, by verdict (active, grace, refused, unavailable)', labelNames: ['verdict'], registers: [components.registry] })

    async function functionsOf (manifestCid: string, options: CheckOptions): Promise<ManifestView> {
      const hit = manifests.get(manifestCid)
      if (hit !== undefined) {
        touch(manifests, manifestCid, hit, maxManifests)
        return hit
      }
      // no caller's signal here: the read is shared by every job waiting on it (storage bounds its time)
      const bytes = await components.storage.fetch(manifestCid, { maxBytes: STORAGE_LIMITS.maxManifestBytes, from: options.from })
      const manifest = parseManifest(bytes)
      const view: ManifestView = { functions: new Map(Object.entries(manifest.functions).map(([name, f]) => [name, { bundle: f.bundle, options: f.options, websocket: f.websocket }])), env: manifest.env }
      touch(manifests, manifestCid, view, maxManifests)
      return view
    }

    /**
     * Reads the project at the latest block, unless the cached read is of that block and fresh
     * (`force`: read anyway, for the background refresh that keeps the cache fresh).
     */
    async function read (id: Hex, label: string, options: CheckOptions, force = false): Promise<ProjectEntry> {
      const pending = reading.get(id)
      if (pending !== undefined) return await pending
      const job = (async () => {
        // viem caches the block number for one polling interval: a flood of jobs costs no extra RPC
        const block = await client.getBlockNumber(init.blockNumberCacheMs === undefined ? undefined : { cacheTime: init.blockNumberCacheMs })
        const cached = projects.get(id)
        if (!force && cached !== undefined && cached.block >= block && Date.now() - cached.readAt < ttlMs) return cached
        const head = await readActiveVersion(client, registryAddress, id, { blockNumber: block })
        const manifest = head === undefined ? NO_MANIFEST : await functionsOf(head.manifestCid, options)
        const now = Date.now()
        const entry: ProjectEntry = { block, readAt: now, version: head?.version ?? 0, manifestCid: head?.manifestCid, manifest, previous: cached?.previous }
        if (cached !== undefined && cached.version !== entry.version && cached.version !== 0) {
          entry.previous = { version: cached.version, manifest: cached.manifest, until: now + graceMs }
          log.info({ project: label, from: cached.version, to: entry.version, graceMs }, 'active version changed; the previous one stays runnable for the grace period')
        }
        touch(projects, id, entry, maxProjects)
        return entry
      })().finally(() => reading.delete(id))
      reading.set(id, job)
      return await job
    }

    function judge (e: ProjectEntry, fn: FunctionRef): RegistryVerdict {
      if (e.version === 0) return { ok: false, reason: 'unknown-project', version: 0 }
      const current = e.manifest.functions.get(fn.name)
      const expected = current?.bundle
      if (current !== undefined && expected === fn.bundleCid) return { ok: true, via: 'active', version: e.version, options: current.options, env: e.manifest.env, ...(current.websocket === undefined ? {} : { websocket: current.websocket }) }
      const before = e.previous === undefined || Date.now() >= e.previous.until ? undefined : e.previous.manifest.functions.get(fn.name)
      if (e.previous !== undefined && before !== undefined && before.bundle === fn.bundleCid) {
        return { ok: true, via: 'grace', version: e.previous.version, options: before.options, env: e.previous.manifest.env, ...(before.websocket === undefined ? {} : { websocket: before.websocket }) }
      }
      return expected === undefined
        ? { ok: false, reason: 'unknown-function', version: e.version }
        : { ok: false, reason: 'not-active', version: e.version, expected }
    }

    async function check (fn: FunctionRef, options: CheckOptions = {}): Promise<RegistryVerdict> {
      if (fn.id.toLowerCase() !== functionId(fn.wallet, fn.project, fn.name)) return { ok: false, reason: 'function-id', version: 0 }
      const id = projectId(fn.wallet, fn.project)
      const label = `${fn.wallet}/${fn.project}`
      options.signal?.throwIfAborted()
      try {
        const cached = projects.get(id)
        const age = cached === undefined ? Infinity : Date.now() - cached.readAt
        if (cached !== undefined && age < ttlMs + staleMs) {
          const verdict = judge(cached, fn)
          if (verdict.ok) {
            // past half its TTL the entry is re-read in the background: under steady traffic no job
            // waits on the chain, and the TTL bounds how long a rolled-back bundle runs; while
            // that re-read has not answered (a slow chain) the entry serves up to staleMs longer
            if (age >= refreshMs && !reading.has(id)) {
              void read(id, label, { from: options.from }, true).catch((err: any) => log.debug({ project: label, err: err?.message }, 'background registry refresh failed'))
            }
            return verdict
          }
        }
        // a miss is never final from the cache: the chain may have moved on since
        return judge(await read(id, label, options), fn)
      } catch (err: any) {
        throw new NodeError('REGISTRY_UNAVAILABLE', `cannot read the active version of ${label} from FunctionRegistry: ${String(err?.shortMessage ?? err?.message ?? err).split('\n')[0]}`, { cause: err })
      }
    }

    async function refusal (fn: FunctionRef, options: CheckOptions = {}): Promise<WireError | undefined> {
      const name = `${fn.wallet}/${fn.project}/${fn.name}`
      let verdict: RegistryVerdict
      try {
        verdict = await check(fn, options)
      } catch (err: any) {
        checks?.inc({ verdict: 'unavailable' })
        log.warn({ fn: name, bundle: fn.bundleCid, err: err?.message }, 'bundle not checked against the registry; job refused')
        return { code: 'BUNDLE_UNAVAILABLE', message: `the worker could not read the active version of ${name} from FunctionRegistry` }
      }
      if (verdict.ok) {
        checks?.inc({ verdict: verdict.via })
        return undefined
      }
      checks?.inc({ verdict: 'refused' })
      const message = refusalMessage(name, fn.bundleCid, verdict)
      log.warn({ fn: name, given: fn.bundleCid, expected: verdict.expected, version: verdict.version, reason: verdict.reason }, 'job refused: its bundle is not the active one in FunctionRegistry')
      const details: Record<string, string | number> = { reason: verdict.reason, given: fn.bundleCid, version: verdict.version }
      if (verdict.expected !== undefined) details.expected = verdict.expected
      return { code: 'BUNDLE_NOT_ACTIVE', message, details }
    }

    async function checkJob (job: Pick<JobRequest, 'fn' | 'options' | 'env'>, options: CheckOptions = {}): ReturnType<RegistryCheck['checkJob']> {
      const name = `${job.fn.wallet}/${job.fn.project}/${job.fn.name}`
      const refused = await refusal(job.fn, options)
      if (refused !== undefined) return { refused }
      // cached by `refusal` just now: no second read
      let verdict: RegistryVerdict
      try {
        verdict = await check(job.fn, options)
      } catch {
        return { refused: { code: 'BUNDLE_UNAVAILABLE', message: `the worker could not read the active version of ${name} from FunctionRegistry` } }
      }
      if (!verdict.ok) return { refused: { code: 'BUNDLE_NOT_ACTIVE', message: refusalMessage(name, job.fn.bundleCid, verdict) } }
      const fields = optionDifferences(verdict.options, job.options)
      if (!sameEnv(verdict.env, job.env)) fields.push('env')
      if (fields.length > 0) {
        checks?.inc({ verdict: 'options' })
        log.warn({ fn: name, fields, version: verdict.version }, 'job refused: its options or env are not the registered manifest\'s')
        return {
          refused: {
            code: 'OPTIONS_MISMATCH',
            message: `the job's ${fields.join(', ')} differ${fields.length === 1 ? 's' : ''} from version ${verdict.version} of ${name} in FunctionRegistry; a worker runs a function only as its builder registered it`,
            details: { fields: fields.join(','), version: verdict.version, memoryMb: verdict.options.memoryMb, timeoutMs: verdict.options.timeoutMs, isolation: verdict.options.isolation, network: verdict.options.network.join(',') }
          }
        }
      }
      return { run: { options: verdict.options, env: { ...verdict.env }, ...(verdict.websocket === undefined ? {} : { websocket: verdict.websocket }) } }
    }

    return { check, refusal, checkJob }
  }
}

function refusalMessage (name: string, given: string, v: Extract<RegistryVerdict, { ok: false }>): string {
  switch (v.reason) {
    case 'function-id': return `the job's function id is not the id of ${name}`
    case 'unknown-project': return `${name} is not registered in FunctionRegistry, so bundle ${given} cannot be its active bundle`
    case 'unknown-function': return `version ${v.version} of ${name.split('/').slice(0, 2).join('/')}, the active one in FunctionRegistry, has no function ${name.split('/')[2]} (given bundle ${given})`
    case 'not-active': return `bundle ${given} is not the active bundle of ${name}: FunctionRegistry's active version ${v.version} runs ${v.expected}`
  }
}

function sameEnv (a: Readonly<Record<string, string>>, b: Readonly<Record<string, string>>): boolean {
  const ka = Object.keys(a)
  return ka.length === Object.keys(b).length && ka.every(k => Object.hasOwn(b, k) && a[k] === b[k])
}
