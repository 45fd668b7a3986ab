/**
 * A FunctionTable that follows FunctionRegistry: it reads ProjectCreated, VersionDeployed and
 * VersionActivated logs from the deployment block on, then polls for new ones every
 * `pollIntervalMs` (a local chain mines a block per transaction, so a new version or a rollback
 * is served within one block plus one poll). For each project's active version it loads the
 * manifest and bundles from the block storage (local blockstore, else bitswap), pins them, and
 * swaps the project's functions atomically, so requests never see half a version.
 *
 * **Start block and cursor.** Logs are read from `fromBlock` (the deployment block of
 * contracts.json, so a gateway on Amoy/Polygon does not scan from genesis). With `cursorFile`, the
 * table writes what it has applied — the chain it belongs to (chain id, genesis block hash,
 * registry address), the last applied block, and every project's state (namespace, name, active version, versions with their
 * manifest CID and source commit) — atomically (temp file + rename) after each poll that moved
 * it, and on start resumes from it instead of rescanning. A cursor for another registry or chain
 * (a local chain restarted from block 0 has the same id and addresses but another genesis hash),
 * one ahead of the chain's head, or one that does not parse, is discarded with a warning (the
 * table then starts at `fromBlock`); while the genesis cannot be read, no cursor is trusted;
 * `resume: false` ignores it on purpose (`peerhost gateway --registry-from-block`).
 *
 * **Retention.** The blocks (manifest and bundles) of each project's active version and of its
 * `keepVersions` most recent other versions are kept pinned, so a rollback to a recent version is
 * instant; blocks referenced only by older versions are unpinned and deleted from the blockstore.
 * A rollback to such a version fetches them again (bitswap from the mesh), or leaves the project
 * on its previous version with the reason in its `error`. `retains(cid)` tells the upload route
 * which blocks a registered version references (those are no longer uploads on a lease).
 */
import { readFile } from 'node:fs/promises'
import { writeFileAtomicAsync } from '../files.ts'
import type { Address, Hex, PublicClient } from 'viem'
import { getAddress, isAddress, isHex } from 'viem'
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
  /** the chain the registry is on: a cursor written for another chain is ignored */
  chainId?: number
  /** first block to read logs from when there is no cursor (contracts.json `deployBlock`); @default 0n */
  fromBlock?: bigint
  /** where the cursor is kept (`<dataDir>/registry.json`); no cursor when absent */
  cursorFile?: string
  /** resume from the cursor when it is valid; false starts at `fromBlock` and rewrites it; @default true */
  resume?: boolean
  /** versions kept pinned besides the active one; @default STORAGE_LIMITS.keepVersions */
  keepVersions?: number
  /** @default 200 */
  pollIntervalMs?: number
  /** most blocks per getLogs call; @default 5000n */
  maxLogRange?: bigint
}

export interface RegistryTableComponents {
  client: PublicClient
  storage: Pick<BlockStorage, 'fetch' | 'put' | 'getLocal' | 'remove'>
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
  /** true when a registered version this gateway keeps references the block (manifest or bundle) */
  retains: (cid: string) => boolean
}

/** The cursor file's format version (2: keyed by the genesis block hash too; a v1 cursor is discarded). */
const CURSOR_VERSION = 2

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
  const superseded = new Map<Hex, AbortController>()
  const keepVersions = init.keepVersions ?? STORAGE_LIMITS.keepVersions
  const fromBlock = init.fromBlock ?? 0n
  let next = fromBlock
  /** the block the cursor file was last written at */
  let saved = -1n
  let saving: Promise<void> = Promise.resolve()
  /** CIDs referenced by retained versions */
  let retained = new Set<string>()
  /** manifest CID → the CIDs its version references (itself and its bundles), once parsed */
  const refsOf = new Map<string, string[]>()
  /** manifests whose version left retention and whose blocks are gone */
  const collected = new Set<string>()
  let collecting: Promise<void> = Promise.resolve()
  let timer: NodeJS.Timeout | undefined
  let running = false
  let polling: Promise<void> | undefined
  /** hash of the chain's block 0: with the chain id and registry address, what a cursor belongs to */
  let genesis: Hex | undefined
  async function genesisHash (): Promise<Hex> {
    genesis ??= (await client.getBlock({ blockNumber: 0n })).hash as Hex
    return genesis
  }
  const key = (wallet: string, project: string, fn: string): string => `${wallet.toLowerCase()}/${project}/${fn}`

  async function loadManifest (cid: string, signal?: AbortSignal): Promise<Manifest> {
    const hit = manifests.get(cid)
    if (hit !== undefined) return hit
    const bytes = await storage.fetch(cid, { maxBytes: STORAGE_LIMITS.maxManifestBytes, signal })
    const manifest = parseManifest(bytes)
    await storage.put(cid, bytes)
    manifests.set(cid, manifest)
    refsOf.set(cid, [cid, ...Object.values(manifest.functions).map(f => f.bundle)])
    return manifest
  }

  /** The blocks a version references, from what this gateway holds (no network). */
  async function references (manifestCid: string): Promise<string[]> {
    const hit = refsOf.get(manifestCid)
    if (hit !== undefined) return hit
    try {
      const bytes = await storage.getLocal(manifestCid)
      if (bytes === undefined) return [manifestCid]
      const refs = [manifestCid, ...Object.values(parseManifest(bytes).functions).map(f => f.bundle)]
      refsOf.set(manifestCid, refs)
      return refs
    } catch {
      // a malformed manifest references nothing but itself
      return [manifestCid]
    }
  }

  /** The version numbers of `p` whose blocks stay: the active one and the `keepVersions` newest others. */
  function keptVersions (p: ProjectState): Set<number> {
    const others = [...p.versions.keys()].filter(n => n !== p.active).sort((a, b) => b - a)
    return new Set([p.active, ...others.slice(0, keepVersions)])
  }

  /** Whether a version with this manifest is retained in the current state. */
  function keptNow (manifestCid: string): boolean {
    for (const p of projects.values()) {
      const kept = keptVersions(p)
      for (const [n, v] of p.versions) if (v.manifestCid === manifestCid && kept.has(n)) return true
    }
    return false
  }

  async function collectOnce (): Promise<void> {
    const keep = new Set<string>()
    const drop = new Map<string, string[]>()
    // a snapshot taken before any await: the poller adds versions and moves `active` meanwhile, and
    // a version added after `kept` was computed must not look like one that left retention
    const plan = [...projects.values()].map(p => ({ kept: keptVersions(p), versions: [...p.versions] }))
    for (const { kept, versions } of plan) {
      for (const [n, v] of versions) {
        if (kept.has(n)) {
          collected.delete(v.manifestCid)
          for (const cid of await references(v.manifestCid)) keep.add(cid)
        } else if (!collected.has(v.manifestCid)) {
          drop.set(v.manifestCid, await references(v.manifestCid))
        }
      }
    }
    // what the current state retains (versions added or re-activated meanwhile) stays too; when
    // such a version's blocks are not known yet, nothing is deleted this round (it may share them)
    let unknown = false
    for (const p of projects.values()) {
      const kept = keptVersions(p)
      for (const [n, v] of p.versions) {
        if (!kept.has(n)) continue
        const refs = refsOf.get(v.manifestCid)
        if (refs === undefined) unknown = true
        for (const cid of refs ?? [v.manifestCid]) keep.add(cid)
      }
    }
    retained = keep
    if (unknown) return
    for (const [manifestCid, refs] of drop) {
      if (keptNow(manifestCid)) continue
      try {
        for (const cid of refs) if (!keep.has(cid)) await storage.remove(cid)
        collected.add(manifestCid)
        manifests.delete(manifestCid)
        log.info({ manifest: manifestCid, blocks: refs.filter(c => !keep.has(c)).length }, 'version out of retention: blocks deleted')
      } catch (err: any) {
        log.warn({ err: err?.message, manifest: manifestCid }, 'cannot delete the blocks of an old version; retrying later')
      }
    }
  }

  function collect (): Promise<void> {
    collecting = collecting.then(collectOnce).catch((err: any) => { log.warn({ err: err?.message }, 'block collection failed') })
    return collecting
  }

  /** Reads the cursor; undefined (with a warning) when it is absent, corrupt or belongs elsewhere. */
  async function readCursor (file: string): Promise<{ block: bigint, projects: ProjectState[] } | undefined> {
    let chain: { genesis: Hex, head: bigint }
    try {
      chain = { genesis: await genesisHash(), head: await client.getBlockNumber({ cacheTime: 0 }) }
    } catch (err: any) {
      log.warn({ file, err: err?.shortMessage ?? err?.message }, 'cannot read the chain\'s genesis block to check the registry cursor; not resuming, reading logs from the start block')
      return undefined
    }
    let text: string
    try {
      text = await readFile(file, 'utf8')
    } catch (err: any) {
      if (err?.code !== 'ENOENT') log.warn({ file, err: err?.message }, 'cannot read the registry cursor; reading logs from the start block')
      return undefined
    }
    try {
      const raw = JSON.parse(text)
      if (raw?.v === 1) {
        log.warn({ file }, 'the registry cursor does not say which chain (genesis) it belongs to; discarded, reading logs from the start block')
        return undefined
      }
      if (raw?.v !== CURSOR_VERSION) throw new Error(`unknown cursor version ${String(raw?.v)}`)
      if (typeof raw.registry !== 'string' || !isAddress(raw.registry)) throw new Error('no registry address')
      if (getAddress(raw.registry) !== getAddress(init.registry) || (init.chainId !== undefined && raw.chainId !== init.chainId)) {
        log.warn({ file, cursor: { registry: raw.registry, chainId: raw.chainId }, following: { registry: init.registry, chainId: init.chainId } }, 'the registry cursor belongs to another registry or chain; ignored')
        return undefined
      }
      if (raw.genesisHash !== chain.genesis) {
        log.warn({ file, cursor: { genesisHash: raw.genesisHash, block: raw.block }, following: { genesisHash: chain.genesis, head: String(chain.head) } }, 'the registry cursor belongs to another chain (another genesis block, e.g. a restarted local chain); discarded, reading logs from the start block')
        return undefined
      }
      if (typeof raw.block !== 'string' || !/^\d+$/.test(raw.block)) throw new Error('no block')
      if (BigInt(raw.block) > chain.head) {
        log.warn({ file, cursor: raw.block, head: String(chain.head) }, 'the registry cursor is ahead of the chain\'s head (the chain lost blocks); discarded, reading logs from the start block')
        return undefined
      }
      if (!Array.isArray(raw.projects)) throw new Error('no projects')
      const out: ProjectState[] = []
      for (const r of raw.projects) {
        if (!isHex(r?.projectId) || typeof r.namespace !== 'string' || !isAddress(r.namespace) || typeof r.name !== 'string' || !Number.isSafeInteger(r.active) || !Array.isArray(r.versions)) throw new Error('a malformed project')
        const versions = new Map<number, { manifestCid: string, sourceCommit: Hex }>()
        for (const v of r.versions) {
          if (!Number.isSafeInteger(v?.version) || typeof v.manifestCid !== 'string' || !isHex(v.sourceCommit)) throw new Error('a malformed version')
          versions.set(v.version, { manifestCid: v.manifestCid, sourceCommit: v.sourceCommit })
        }
        out.push({ projectId: r.projectId, namespace: getAddress(r.namespace), name: r.name, active: r.active, versions, served: 0 })
      }
      return { block: BigInt(raw.block), projects: out }
    } catch (err: any) {
      log.warn({ file, err: err?.message }, 'the registry cursor is corrupt; ignored, reading logs from the start block')
      return undefined
    }
  }

  function saveCursor (): Promise<void> {
    const file = init.cursorFile
    // a cursor that cannot say which chain it belongs to is not written
    if (file === undefined || next - 1n === saved || genesis === undefined) return saving
    const block = next - 1n
    const json = JSON.stringify({
      v: CURSOR_VERSION,
      registry: init.registry,
      chainId: init.chainId ?? null,
      genesisHash: genesis,
      block: block.toString(),
      projects: [...projects.values()].map(p => ({
        projectId: p.projectId,
        namespace: p.namespace,
        name: p.name,
        active: p.active,
        versions: [...p.versions].map(([version, v]) => ({ version, manifestCid: v.manifestCid, sourceCommit: v.sourceCommit }))
      }))
    }) + '\n'
    saved = block
    saving = saving.then(async () => {
      // a crash mid-write leaves the previous cursor, never half of one
      await writeFileAtomicAsync(file, json)
    }).catch((err: any) => { saved = -1n; log.warn({ file, err: err?.message }, 'cannot write the registry cursor') })
    return saving
  }

  /** Serves the project's active version once its manifest and bundles are here. */
  async function activate (p: ProjectState): Promise<void> {
    for (;;) {
      const version = p.active
      const v = p.versions.get(version)
      if (v === undefined || (p.served === version && p.servedManifest === v.manifestCid)) return
      // a newer VersionActivated abandons this load (a rollback need not wait for a fetch timeout)
      const abort = new AbortController()
      superseded.set(p.projectId, abort)
      try {
        const manifest = await loadManifest(v.manifestCid, abort.signal)
        const list: FunctionEntry[] = []
        const loaded = new Map<string, Uint8Array>()
        for (const [name, fn] of Object.entries(manifest.functions).sort(([a], [b]) => a < b ? -1 : 1)) {
          const bytes = bundles.get(fn.bundle) ?? await storage.fetch(fn.bundle, { signal: abort.signal })
          await storage.put(fn.bundle, bytes)
          loaded.set(fn.bundle, bytes)
          list.push({
            ref: { wallet: p.namespace, project: p.name, name, id: functionId(p.namespace, p.name, name), bundleCid: fn.bundle },
            options: fn.options,
            env: manifest.env,
            rateLimit: manifest.rateLimit,
            auth: fn.auth,
            chainPath: fn.chainPath,
            ...(fn.maxFee === undefined ? {} : { maxFee: BigInt(fn.maxFee) }),
            ...(fn.quorum === undefined ? {} : { quorum: fn.quorum }),
            ...(fn.websocket === undefined ? {} : { websocket: fn.websocket })
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
        void collect()
        log.info({ project: `${p.namespace}/${p.name}`, version, manifest: v.manifestCid, functions: list.map(e => e.ref.name) }, 'serving version')
      } catch (err: any) {
        if (p.active !== version) continue
        p.error = `version ${version} cannot be served: ${String(err?.message ?? err)}`
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
    await genesisHash()
    const latest = await client.getBlockNumber({ cacheTime: 0 })
    let changed = false
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
          superseded.get(p.projectId)?.abort()
          touched.add(p)
        }
      }
      next = to + 1n
      if (logs.length > 0) changed = true
      for (const p of touched) schedule(p)
    }
    if (changed) void collect()
    await saveCursor()
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
    retains: cid => retained.has(cid),
    async start () {
      if (running) return
      running = true
      const cursor = init.cursorFile !== undefined && init.resume !== false ? await readCursor(init.cursorFile) : undefined
      if (cursor !== undefined && cursor.block + 1n > fromBlock) {
        for (const p of cursor.projects) {
          projects.set(p.projectId, p)
          byName.set(`${p.namespace.toLowerCase()}/${p.name}`, p)
        }
        next = cursor.block + 1n
        saved = cursor.block
        log.info({ block: String(cursor.block), projects: cursor.projects.length }, 'resuming FunctionRegistry from the cursor')
        for (const p of projects.values()) if (p.active !== 0) schedule(p)
        void collect()
      }
      try {
        await poll()
      } catch (err: any) {
        // an unreachable RPC at start is retried by the poll loop rather than failing the gateway
        log.warn({ err: err?.shortMessage ?? err?.message }, 'cannot read FunctionRegistry yet; retrying')
      }
      await Promise.allSettled([...loading.values()])
      // `retains` is complete before anyone (the upload sweeper) asks
      await collect()
      timer = setTimeout(loop, pollMs)
      log.info({ registry: init.registry, block: String(next - 1n), projects: projects.size }, 'following FunctionRegistry')
    },
    async stop () {
      running = false
      clearTimeout(timer)
      await polling
      await Promise.allSettled([...loading.values()])
      await collecting
      await saving
    }
  }
}
