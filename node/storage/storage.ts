/**
 * Content-addressed block storage on the node's own libp2p: helia with a persistent FsBlockstore
 * and FsDatastore under `<dataDir>/ipfs`, and bitswap as its only block broker (no public IPFS
 * network, no routers: bitswap asks the peers the node is connected to).
 *
 * PeerHost blocks are CIDv1 raw sha2-256 single blocks (bundles and manifests, see
 * docs/deploy.md), so every fetch is one block with a byte cap and a time cap (SBX-15): a peer can
 * neither make us walk an endless DAG nor stream an oversize block (bitswap bounds a message at
 * 4 MiB; we refuse anything above `maxBlockBytes` and verify the hash before anyone uses it).
 */
import { join } from 'node:path'
import { mkdirSync } from 'node:fs'
import { withBitswap } from '@helia/bitswap'
import type { Libp2p, PeerId } from '@libp2p/interface'
import { peerIdFromCID } from '@libp2p/peer-id'
import { FsBlockstore } from 'blockstore-fs'
import { FsDatastore } from 'datastore-fs'
import type { createHeliaLight, Helia } from 'helia'
import { CID } from 'multiformats/cid'
import { verifyRawCid } from '#protocol'
import { NodeError } from '../errors.ts'
import type { Logger } from '../logger.ts'
import { STORAGE_LIMITS } from './limits.ts'

/**
 * helia's `createHeliaLight`, without loading the package's entry point: that module also holds
 * `createHelia`, whose default libp2p (WebRTC, UPnP, AutoTLS with an ACME client, HTTP) is 1,100
 * modules and about 1.4 s of CPU on every gateway, worker and bootstrap start, none of it used
 * here (the node brings its own libp2p). Same class, same name and version, from the file next to
 * the entry point; a helia that moved it fails the start loudly.
 */
const heliaLight: typeof createHeliaLight = await (async () => {
  const entry = import.meta.resolve('helia')
  const [{ Helia: HeliaClass }, { name, version }] = await Promise.all([import(new URL('helia.js', entry).href), import(new URL('version.js', entry).href)])
  return (init = {}) => new HeliaClass({ name, version, ...init })
})()

export interface BlockStorageInit {
  /** blocks go to `<dataDir>/ipfs/blocks`, helia's datastore (pins) to `<dataDir>/ipfs/data` */
  dataDir: string
  /** @default STORAGE_LIMITS.maxBlockBytes */
  maxBlockBytes?: number
  /** @default STORAGE_LIMITS.fetchTimeoutMs */
  fetchTimeoutMs?: number
}

export interface BlockStorageComponents {
  /** the node's mesh libp2p (started by its role); bitswap registers its protocol on it */
  libp2p: Libp2p
  logger: Logger
}

export interface FetchOptions {
  signal?: AbortSignal
  /** refuse blocks larger than this; @default init.maxBlockBytes */
  maxBytes?: number
  /** @default init.fetchTimeoutMs */
  timeoutMs?: number
  /** a peer likely to hold the block (e.g. the dispatching gateway): dialled first */
  from?: PeerId
}

export interface BlockStorage {
  readonly helia: Helia
  start: () => Promise<void>
  stop: () => Promise<void>
  /** Verifies `bytes` against `cid` (raw CIDv1 sha2-256), stores and pins them. */
  put: (cid: string, bytes: Uint8Array, options?: { signal?: AbortSignal }) => Promise<void>
  /** Unpins the block and deletes it from the local blockstore; a block that is not here is fine. */
  remove: (cid: string, options?: { signal?: AbortSignal }) => Promise<void>
  /** True when the block is in the local blockstore (no network). */
  has: (cid: string) => Promise<boolean>
  /** The block from the local blockstore only; undefined when absent. */
  getLocal: (cid: string, options?: { signal?: AbortSignal }) => Promise<Uint8Array | undefined>
  /**
   * The block from the local blockstore, else over bitswap from connected peers, verified and
   * bounded by bytes and time. Throws NodeError BLOCK_TOO_LARGE, BLOCK_MISMATCH or BLOCK_FETCH_TIMEOUT.
   */
  fetch: (cid: string, options?: FetchOptions) => Promise<Uint8Array>
}

function parseRawCid (cid: string): CID {
  let parsed: CID
  try {
    parsed = CID.parse(cid)
  } catch (err) {
    throw new NodeError('BAD_CID', `"${cid.slice(0, 80)}" is not a CID`, { cause: err })
  }
  if (parsed.version !== 1 || parsed.code !== 0x55 || parsed.multihash.code !== 0x12) {
    throw new NodeError('BAD_CID', `${cid} is not a CIDv1 raw sha2-256 CID`)
  }
  return parsed
}

export function blockStorage (init: BlockStorageInit): (components: BlockStorageComponents) => BlockStorage {
  return (components) => {
    const log = components.logger.child({ component: 'peerhost:storage' })
    const maxBlockBytes = init.maxBlockBytes ?? STORAGE_LIMITS.maxBlockBytes
    const fetchTimeoutMs = init.fetchTimeoutMs ?? STORAGE_LIMITS.fetchTimeoutMs
    const root = join(init.dataDir, 'ipfs')
    mkdirSync(root, { recursive: true })
    const blockstore = new FsBlockstore(join(root, 'blocks'))
    const datastore = new FsDatastore(join(root, 'data'))
    const helia = heliaLight({ blockstore, datastore, start: false } as any) as Helia
    // helia's bitswap broker reads `helia.libp2p`; ours is the node's mesh libp2p, already set up
    // with identify (bitswap's topology needs the peer's protocols) and owned by the role
    Object.defineProperty(helia, 'libp2p', { value: components.libp2p, enumerable: true })
    // content routing through the mesh's kad-dht: a node that holds a block announces it, so a
    // peer that is not connected to the holder (a second gateway) can still find it
    helia.addRouter(dhtRouter(components.libp2p) as any)
    withBitswap(helia as Helia & { libp2p: Libp2p }, {
      // one PeerHost block per message, plus framing; above this a peer is misbehaving
      maxIncomingMessageSize: maxBlockBytes + 64 * 1024,
      maxOutgoingMessageSize: maxBlockBytes + 64 * 1024
    })
    let started = false
    let starting: Promise<void> | undefined

    async function ready (): Promise<void> {
      if (started) return
      if (starting === undefined) throw new NodeError('STORAGE_NOT_STARTED', 'block storage is not started')
      await starting
    }

    /** Announces a block on the DHT in the background (a small network may have no DHT server yet). */
    function provide (cid: CID): void {
      void components.libp2p.contentRouting.provide(cid, { signal: AbortSignal.timeout(STORAGE_LIMITS.provideTimeoutMs) })
        .catch((err: any) => { log.debug({ cid: cid.toString(), err: err?.message }, 'provide failed') })
    }

    async function getLocal (cid: string, options: { signal?: AbortSignal } = {}): Promise<Uint8Array | undefined> {
      const parsed = parseRawCid(cid)
      await ready()
      if (!(await blockstore.has(parsed))) return undefined
      const bytes = await collect(blockstore.get(parsed, options))
      // a block changed on disk since it was written is not trusted
      return verifyRawCid(cid, bytes) ? bytes : undefined
    }

    return {
      helia,
      async start () {
        if (started) return
        starting ??= (async () => {
          await blockstore.open?.()
          await datastore.open?.()
          await helia.start()
          started = true
          log.debug({ dir: root }, 'block storage started')
        })()
        await starting
      },
      async stop () {
        if (!started) return
        started = false
        starting = undefined
        // the mixin would stop libp2p; the role owns it, so only the brokers and stores stop here
        await helia.stop()
        await blockstore.close?.()
        await datastore.close?.()
      },
      async put (cid, bytes, options = {}) {
        const parsed = parseRawCid(cid)
        if (bytes.byteLength > maxBlockBytes) {
          throw new NodeError('BLOCK_TOO_LARGE', `block ${cid} is ${bytes.byteLength} bytes; the limit is ${maxBlockBytes}`)
        }
        if (!verifyRawCid(cid, bytes)) throw new NodeError('BLOCK_MISMATCH', `the bytes do not match CID ${cid}`)
        await ready()
        await helia.blockstore.put(parsed, bytes, options)
        if (!(await helia.pins.isPinned(parsed, options))) {
          await drain(helia.pins.add(parsed, { ...options, depth: 0 }))
        }
        provide(parsed)
      },
      async remove (cid, options = {}) {
        const parsed = parseRawCid(cid)
        await ready()
        if (await helia.pins.isPinned(parsed, options)) await drain(helia.pins.rm(parsed, options))
        await blockstore.delete(parsed, options)
        await components.libp2p.contentRouting.cancelReprovide(parsed, options).catch(() => {})
      },
      async has (cid) {
        await ready()
        return await blockstore.has(parseRawCid(cid))
      },
      getLocal,
      async fetch (cid, options = {}) {
        const parsed = parseRawCid(cid)
        const local = await getLocal(cid, options)
        if (local !== undefined) return local
        const maxBytes = Math.min(options.maxBytes ?? maxBlockBytes, maxBlockBytes)
        const timeout = AbortSignal.timeout(options.timeoutMs ?? fetchTimeoutMs)
        const signal = options.signal === undefined ? timeout : AbortSignal.any([options.signal, timeout])
        const started = performance.now()
        try {
          if (options.from !== undefined && components.libp2p.getConnections(options.from).length === 0) {
            await components.libp2p.dial(options.from, { signal }).catch(err => { log.debug({ err }, 'dial to block holder failed') })
          }
          // helia verifies a block from a broker against its multihash before storing it
          const bytes = await collect(helia.blockstore.get(parsed, { signal }))
          if (bytes.byteLength > maxBytes) {
            await Promise.resolve(helia.blockstore.delete(parsed)).catch(() => {})
            throw new NodeError('BLOCK_TOO_LARGE', `block ${cid} is ${bytes.byteLength} bytes; the limit is ${maxBytes}`)
          }
          if (!verifyRawCid(cid, bytes)) throw new NodeError('BLOCK_MISMATCH', `the bytes received do not match CID ${cid}`)
          log.debug({ cid, bytes: bytes.byteLength, ms: Math.round(performance.now() - started) }, 'block fetched')
          provide(parsed)
          return bytes
        } catch (err: any) {
          if (err instanceof NodeError) throw err
          if (timeout.aborted) throw new NodeError('BLOCK_FETCH_TIMEOUT', `block ${cid} was not found within ${options.timeoutMs ?? fetchTimeoutMs} ms`, { cause: err })
          if (options.signal?.aborted === true) throw err
          if (/hash|digest|mismatch/i.test(String(err?.message))) throw new NodeError('BLOCK_MISMATCH', `a peer sent bytes that do not match CID ${cid}`, { cause: err })
          throw new NodeError('BLOCK_FETCH_FAILED', `block ${cid} could not be fetched: ${err?.message ?? String(err)}`, { cause: err })
        }
      }
    }
  }
}

/** A helia router over libp2p's content routing (the mesh's kad-dht), like @helia/libp2p's. */
function dhtRouter (libp2p: Libp2p): Record<string, unknown> {
  return {
    name: 'libp2p-router',
    async provide (cid: CID, options?: { signal?: AbortSignal }) { await libp2p.contentRouting.provide(cid, options) },
    async cancelReprovide (cid: CID, options?: { signal?: AbortSignal }) { await libp2p.contentRouting.cancelReprovide(cid, options) },
    async * findProviders (cid: CID, options?: { signal?: AbortSignal }) {
      for await (const p of libp2p.contentRouting.findProviders(cid, options)) {
        yield { ...p, id: p.id.toCID(), router: 'libp2p-router', fallback: false }
      }
    },
    async findPeer (id: CID, options?: { signal?: AbortSignal }) {
      const info = await libp2p.peerRouting.findPeer(peerIdFromCID(id), options)
      return { ...info, id: info.id.toCID(), router: 'libp2p-router' }
    },
    toString: () => 'PeerHostDhtRouter()'
  }
}

async function collect (source: Uint8Array | AsyncIterable<Uint8Array> | Iterable<Uint8Array> | Promise<Uint8Array>): Promise<Uint8Array> {
  const value = await source
  if (value instanceof Uint8Array) return value
  const chunks: Uint8Array[] = []
  for await (const chunk of value as AsyncIterable<Uint8Array>) chunks.push(chunk)
  return chunks.length === 1 ? chunks[0] : new Uint8Array(Buffer.concat(chunks))
}

async function drain (source: AsyncIterable<unknown>): Promise<void> {
  for await (const _ of source) { /* consume */ }
}
