/**
 * A FunctionTable that follows FunctionRegistry: it reads ProjectCreated, VersionDeployed and
 * VersionActivated logs from the deployment block on, then polls for new ones every
 * `pollIntervalMs` (a local chain mines a block per transaction, so a new version or a rollback
 * is served within one block plus one poll). For each project's active version it loads the
 * manifest and bundles from the block storage (local blockstore, else bitswap), pins them, and
 * swaps the project's functions atomically, so requests never see half a version.
 */
import type { Address, Hex, PublicClient } from 'viem'
import { getAddress } from 'viem'
import { functionRegistryAbi } from '#contracts'
import { functionId } from '#protocol'
import type { FunctionEntry, FunctionTable } from '../gateway/functions.ts'
import type { Logger } from '../logger.ts'
import { parseManifest, type Manifest } from '../deploy/manifest.ts'
import type { BlockStorage } from '../storage/storage.ts'
import { STORAGE_LIMITS } from '../storage/limits.ts'
import { cidFromBytes } from './chain.ts'

export interface RegistryTableInit {
  registry: Address
  /** first block to read logs from; @default 0n */
  fromBlock?: bigint
  /** @default 200 */
  pollIntervalMs?: number
  /** most blocks per getLogs call; @default 5000n */
  maxLogRange?: bigint
}

export interface RegistryTableComponents {
  client: PublicClient
  storage: Pick<BlockStorage, 'fetch' | 'put'>
  logger: Logger
}

export interface ProjectState {
  projectId: Hex
  namespace: Address
  name: string
  active: number
  versions: Map<number, { manifestCid: string, sourceCommit: Hex }>
  /** the version whose functions are served now (0 = none yet) */
  served: number
  servedManifest?: string
  error?: string
}

export interface RegistryTable extends FunctionTable {
  start: () => Promise<void>
  stop: () => Promise<void>
  /** the project's on-chain state and what this gateway serves of it */
  project: (wallet: string, project: string) => ProjectState | undefined
  /** the last block whose logs are applied */
  readonly block: bigint
}

const EVENTS = functionRegistryAbi.filter(x => x.type === 'event' && ['ProjectCreated', 'VersionDeployed', 'VersionActivated'].includes(x.name))

export function registryTable (init: RegistryTableInit, components: RegistryTableComponents): RegistryTable {
  const log = components.logger.child({ component: 'peerhost:registry' })
  const { client, storage } = components
  const pollMs = init.pollIntervalMs ?? 200
  const maxRange = init.maxLogRange ?? 5000n
  const projects = new Map<Hex, ProjectState>()
  const byName = new Map<string, ProjectState>()
  const entries = new Map<string, FunctionEntry>()
  const served = new Map<Hex, FunctionEntry[]>()
  const bundles = new Map<string, Uint8Array>()
  const manifests = new Map<string, Manifest>()
  const loading = new Map<Hex, Promise<void>>()
  let next = init.fromBlock ?? 0n
  let timer: NodeJS.Timeout | undefined
  let running = false
  let polling: Promise<void> | undefined
  const key = (wallet: string, project: string, fn: string): string => `${wallet.toLowerCase()}/${project}/${fn}`

  async function loadManifest (cid: string): Promise<Manifest> {
    const hit = manifests.get(cid)
    if (hit !== undefined) return hit
    const bytes = await storage.fetch(cid, { maxBytes: STORAGE_LIMITS.maxManifestBytes })
    const manifest = parseManifest(bytes)
    await storage.put(cid, bytes)
    manifests.set(cid, manifest)
    return manifest
  }

  /** Serves the project's active version once its manifest and bundles are here. */
  async function activate (p: ProjectState): Promise<void> {
    for (;;) {
      const version = p.active
      const v = p.versions.get(version)
      if (v === undefined || (p.served === version && p.servedManifest === v.manifestCid)) return
      try {
        const manifest = await loadManifest(v.manifestCid)
        const list: FunctionEntry[] = []
        const loaded = new Map<string, Uint8Array>()
        for (const [name, fn] of Object.entries(manifest.functions).sort(([a], [b]) => a < b ? -1 : 1)) {
          const bytes = bundles.get(fn.bundle) ?? await storage.fetch(fn.bundle)
          await storage.put(fn.bundle, bytes)
          loaded.set(fn.bundle, bytes)
          list.push({
            ref: { wallet: p.namespace, project: p.name, name, id: functionId(p.namespace, p.name, name), bundleCid: fn.bundle },
            options: fn.options,
            env: manifest.env
          })
        }
        if (p.active !== version) continue
        // swap: drop the old version's functions, then add the new ones
        for (const old of served.get(p.projectId) ?? []) {
          entries.delete(key(old.ref.wallet, old.ref.project, old.ref.name))
        }
        for (const e of list) entries.set(key(e.ref.wallet, e.ref.project, e.ref.name), e)
        for (const [cid, bytes] of loaded) bundles.set(cid, bytes)
        served.set(p.projectId, list)
        p.served = version
        p.servedManifest = v.manifestCid
        p.error = undefined
        pruneBundles()
        log.info({ project: `${p.namespace}/${p.name}`, version, manifest: v.manifestCid, functions: list.map(e => e.ref.name) }, 'serving version')
      } catch (err: any) {
        p.error = err?.message
        log.warn({ err, project: `${p.namespace}/${p.name}`, version, manifest: v.manifestCid }, 'cannot load version; retrying on the next poll')
        return
      }
    }
  }

  function pruneBundles (): void {
    const live = new Set([...entries.values()].map(e => e.ref.bundleCid))
    for (const cid of bundles.keys()) if (!live.has(cid)) bundles.delete(cid)
  }

  function schedule (p: ProjectState): void {
    if (loading.has(p.projectId)) return
    const job = activate(p).finally(() => {
      loading.delete(p.projectId)
      // the active version changed while loading: go again
      const v = p.versions.get(p.active)
      if (running && p.error === undefined && v !== undefined && p.servedManifest !== v.manifestCid) schedule(p)
    })
    loading.set(p.projectId, job)
  }

  async function poll (): Promise<void> {
    const latest = await client.getBlockNumber({ cacheTime: 0 })
    while (next <= latest) {
      const to = next + maxRange - 1n < latest ? next + maxRange - 1n : latest
      const logs = await client.getLogs({ address: init.registry, events: EVENTS as any, fromBlock: next, toBlock: to, strict: true }) as any[]
      const touched = new Set<ProjectState>()
      for (const l of logs) {
        const a = l.args
        if (l.eventName === 'ProjectCreated') {
          const p: ProjectState = { projectId: a.projectId, namespace: getAddress(a.namespace), name: a.name, active: 0, versions: new Map(), served: 0 }
          projects.set(a.projectId, p)
          byName.set(`${p.namespace.toLowerCase()}/${p.name}`, p)
        } else if (l.eventName === 'VersionDeployed') {
          const p = projects.get(a.projectId)
          if (p === undefined) continue
          try {
            p.versions.set(Number(a.version), { manifestCid: cidFromBytes(a.manifestCid), sourceCommit: a.sourceCommit })
          } catch {
            log.warn({ projectId: a.projectId, version: Number(a.version) }, 'version with an unparseable manifest CID ignored')
          }
        } else if (l.eventName === 'VersionActivated') {
          const p = projects.get(a.projectId)
          if (p === undefined) continue
          p.active = Number(a.version)
          touched.add(p)
        }
      }
      next = to + 1n
      for (const p of touched) schedule(p)
    }
    // retry projects whose last load failed
    for (const p of projects.values()) if (p.error !== undefined) schedule(p)
  }

  function loop (): void {
    if (!running) return
    polling = poll().catch(err => { log.warn({ err: err?.shortMessage ?? err?.message }, 'registry poll failed') })
    void polling.finally(() => { if (running) timer = setTimeout(loop, pollMs) })
  }

  return {
    resolve: (wallet, project, fn) => entries.get(key(wallet, project, fn)),
    bundle: cid => bundles.get(cid),
    list: () => [...entries.values()],
    project: (wallet, project) => byName.get(`${wallet.toLowerCase()}/${project}`),
    get block () { return next - 1n },
    async start () {
      if (running) return
      running = true
      try {
        await poll()
      } catch (err: any) {
        // an unreachable RPC at start is retried by the poll loop rather than failing the gateway
        log.warn({ err: err?.shortMessage ?? err?.message }, 'cannot read FunctionRegistry yet; retrying')
      }
      await Promise.allSettled([...loading.values()])
      timer = setTimeout(loop, pollMs)
      log.info({ registry: init.registry, block: String(next - 1n), projects: projects.size }, 'following FunctionRegistry')
    },
    async stop () {
      running = false
      clearTimeout(timer)
      await polling
      await Promise.allSettled([...loading.values()])
    }
  }
}
