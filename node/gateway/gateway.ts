/**
 * The gateway role: HTTP ingress, the live worker view (from validated gossip adverts), dispatch
 * with retries, and the bundle protocol that lets workers fetch the code of the jobs it sends.
 */
import type { Connection, PrivateKey, Stream } from '@libp2p/interface'
import { multiaddr } from '@multiformats/multiaddr'
import { peerIdFromString } from '@libp2p/peer-id'
import { Counter, Gauge, type Registry } from 'prom-client'
import type { AllowanceTracker } from '../settlement/allowance.ts'
import type { FastSigner } from '../signing.ts'
import { BUNDLE_PROTOCOL, DEV_DOMAIN, LIMITS, PROTOCOL_VERSION, SECRETS_PROTOCOL, workersTopic, type PeerHostDomain, type WorkerAdvert } from '#protocol'
import type { Hono } from 'hono'
import { NODE_DEFAULTS } from '../constants.ts'
import { errorFrame, frames } from '../frames.ts'
import { createMeshNode, dialableAddrs, type PeerHostLibp2p } from '../libp2p.ts'
import type { Logger } from '../logger.ts'
import { dispatcher, withinMaxFee, type DispatchComponents, type JobDialer, type RetryBudget } from './dispatch.ts'
import { quorumDispatcher } from './quorum.ts'
import { waitQueue } from './wait-queue.ts'
import type { FunctionTable } from './functions.ts'
import { ADVERT_VERDICTS, workerView, type WorkerView } from './worker-view.ts'
import { gatewayHttp, type GatewayHttp, type GatewayHttpComponents, type GatewayHttpInit, type RecentJob } from './http.ts'
import { statusPage } from '../status/index.ts'
import { logBook, logRoutes } from './logs.ts'
import type { ProjectOwners } from './owners.ts'

export interface GatewayInit {
  /** HTTP port; @default 8080 */
  port?: number
  /** HTTP host; @default '127.0.0.1' */
  host?: string
  listen?: string[]
  bootstrap: string[]
  region?: string
  domain?: PeerHostDomain
  /** serve `<wallet>.<walletDomain>/<project>/<function>`, one origin per wallet (http.ts); @default none */
  walletDomain?: string
  /** HTTP connection and request caps, per-IP rate limit (ingress.ts) */
  ingress?: GatewayHttpInit['ingress']
  /** chain-path requests per client IP per window (chain-gate.ts); @default NODE_DEFAULTS.gatewayChainRate* */
  chainRateLimit?: GatewayHttpInit['chainRateLimit']
  /** @default NODE_DEFAULTS.httpHeadersTimeoutMs */
  headersTimeoutMs?: number
  /** @default NODE_DEFAULTS.httpRequestTimeoutMs */
  requestTimeoutMs?: number
  /** @default NODE_DEFAULTS.maxAttempts */
  maxAttempts?: number
  /** WebSocket session limits (sessions.ts); @default NODE_DEFAULTS.session* */
  sessions?: GatewayHttpInit['sessions']
  /** the settlement epoch of a ticket issued at unix ms (Settlement's clock with a chain); @default unix hours (dispatch.ts) */
  epochOf?: (nowMs: number) => bigint
}

export interface GatewayComponents {
  /** the projects' escrow and allowances (node/settlement `allowanceTracker`); @default none: fees unchecked (no chain) */
  spend?: AllowanceTracker
  /** the gateway's ticket log, checked against batches naming it (node/settlement `ticketLog`); @default none (no chain) */
  tickets?: DispatchComponents['tickets']
  /** the settlement section of /_peerhost/status (node/settlement `batchChecker().status`); @default none */
  settlementStatus?: () => Record<string, unknown>
  privateKey: PrivateKey
  /** signs tickets */
  signer: FastSigner
  functions: FunctionTable
  logger: Logger
  registry: Registry
  /** admission of workers beyond advert signatures (stake); @default everyone */
  admit?: (advert: WorkerAdvert) => Promise<boolean>
  /** extra HTTP routes under /_peerhost/ */
  routes?: (app: Hono) => void
  /** who may read a project's logs (owners.ts); @default the namespace wallet (no chain) */
  owners?: ProjectOwners
  /** a mesh node made by the caller (e.g. to share it with block storage); @default a new one */
  libp2p?: PeerHostLibp2p
  /** the chain fallback (node/fallback); none = mesh only */
  fallback?: GatewayHttpComponents['fallback']
  /** project secrets for jobs (node/secrets); none = no project has secrets */
  secrets?: GatewayHttpComponents['secrets']
  /**
   * Secrets of a pending chain fallback request by its input CID (ChainFallback.secretsFor):
   * served over SECRETS_PROTOCOL to workers in the view (staked and bound, with a chain) only.
   */
  chainSecrets?: (inputCid: string) => Record<string, string> | undefined
  /** opens job streams to workers; @default libp2p (see DispatchComponents.dial) */
  dial?: JobDialer
  /** @default retryBudget() with NODE_DEFAULTS */
  retryBudget?: RetryBudget
  /** the check of functions' `auth` before dispatch (node/auth authGuard); @default wallet auth only, no API keys */
  auth?: GatewayHttpComponents['auth']
}

export interface GatewayNode {
  readonly libp2p: PeerHostLibp2p
  readonly view: WorkerView
  readonly http: GatewayHttp
  readonly url: string
  start: () => Promise<void>
  stop: () => Promise<void>
}

export async function createGateway (init: GatewayInit, components: GatewayComponents): Promise<GatewayNode> {
  const { signer, functions, registry } = components
  const log = components.logger.child({ component: 'peerhost:gateway' })
  const domain = init.domain ?? DEV_DOMAIN
  const topic = workersTopic(init.region)
  const libp2p = components.libp2p ?? await createMeshNode({ privateKey: components.privateKey, listen: init.listen, bootstrap: init.bootstrap, registry, region: init.region })
  const recent: RecentJob[] = []
  const adverts = new Counter({ name: 'peerhost_gateway_adverts_total', help: 'adverts validated, by verdict', labelNames: ['check'], registers: [registry] })

  const view = workerView({
    admit: components.admit,
    onAccepted (advert, previous) {
      // the signed advert is the authority for where a worker listens
      if (previous !== undefined && previous.addrs.join() === advert.addrs.join()) return
      const peer = peerIdFromString(advert.peerId)
      const addrs = advert.addrs.flatMap(a => { try { return [multiaddr(a)] } catch { return [] } })
      void libp2p.peerStore.merge(peer, { multiaddrs: addrs }).catch(() => {})
    }
  })
  new Gauge({ name: 'peerhost_gateway_known_workers', help: 'workers in the live view', registers: [registry], collect () { this.set(view.size()) } })

  // past saturation requests wait here a bounded time for a worker with room (issue 10)
  const queue = waitQueue()
  new Gauge({ name: 'peerhost_gateway_queue_waiting', help: 'requests waiting for a worker with room', registers: [registry], collect () { this.set(queue.waiting) } })
  new Gauge({ name: 'peerhost_gateway_queue_total', help: 'requests that met a full mesh, by outcome: queued, refused at once, timed out waiting, served after waiting', labelNames: ['outcome'], registers: [registry], collect () { for (const [k, v] of Object.entries(queue.stats)) this.set({ outcome: k }, v) } })

  // quorum functions (verify: { quorum }) run as n copies through the one-worker dispatcher
  const dispatch = quorumDispatcher({
    dispatch: dispatcher({ domain, maxAttempts: init.maxAttempts, epochOf: init.epochOf }, { libp2p, view, signer, logger: components.logger, dial: components.dial, retryBudget: components.retryBudget, spend: components.spend, tickets: components.tickets, waitQueue: queue }),
    tickets: components.tickets,
    // the workers a copy may go to: every live one the project's maxFee does not price out
    liveWorkers: (entry) => entry.maxFee === undefined ? view.size() : view.list().filter(w => withinMaxFee(w.advert, entry.maxFee)).length,
    logger: components.logger
  })

  // recent function logs per project, for its builder (peerhost logs)
  const logs = logBook()
  const page = statusPage({ role: 'gateway' }, { status: () => statusJson(), logger: components.logger })
  const http = gatewayHttp({ port: init.port, host: init.host, domain, walletDomain: init.walletDomain, ingress: init.ingress, chainRateLimit: init.chainRateLimit, headersTimeoutMs: init.headersTimeoutMs, requestTimeoutMs: init.requestTimeoutMs, sessions: init.sessions }, {
    routes: (app) => {
      app.get('/_peerhost/*', (c, next) => page.owns(c.req.path) ? page.handle(c.req.raw) : next())
      app.get('/_peerhost', c => page.handle(c.req.raw))
      logRoutes(logs, signer.address, components.owners)(app)
      components.routes?.(app)
    },
    logs,
    fallback: components.fallback,
    secrets: components.secrets,
    auth: components.auth,
    functions,
    dispatch,
    registry,
    logger: components.logger,
    // "can serve a deployed function", not "knows a worker": a gateway following a chain whose
    // registry it has not loaded yet (or where nothing is deployed) is not ready
    ready: () => view.size() === 0
      ? { code: 'NO_WORKER', message: 'no worker is known yet' }
      : functions.list().length === 0
        ? { code: 'NO_FUNCTION', message: 'no deployed function is loaded yet' }
        : true,
    recordJob (job) {
      recent.unshift(job)
      if (recent.length > NODE_DEFAULTS.recentJobs) recent.pop()
      page.observe(job.ms)
    },
    status: () => statusJson()
  })

  function statusJson (): Record<string, unknown> {
    return {
      role: 'gateway',
      peerId: libp2p.peerId.toString(),
      address: signer.address,
      addrs: dialableAddrs(libp2p),
      connections: libp2p.getConnections().length,
      peers: libp2p.getPeers().map(p => p.toString()),
      workers: view.list().map(w => ({
        peerId: w.peerId,
        address: w.advert.address,
        capacity: w.advert.capacity,
        load: w.advert.load,
        inflight: w.inflight,
        latencyMs: w.latencyMs === undefined ? null : Math.round(w.latencyMs * 100) / 100,
        warm: w.advert.warm,
        advertAgeMs: Date.now() - w.seenAt
      })),
      functions: functions.list().map(f => ({ path: `/${f.ref.wallet}/${f.ref.project}/${f.ref.name}`, bundleCid: f.ref.bundleCid, options: f.options })),
      recentJobs: recent,
      ...(components.settlementStatus === undefined ? {} : { settlement: components.settlementStatus() })
    }
  }

  async function serveBundle (stream: Stream, connection: Connection): Promise<void> {
    const f = frames(stream, 4096)
    try {
      const req = await f.read('bundle-request', AbortSignal.timeout(NODE_DEFAULTS.bundleFetchTimeoutMs))
      if (req.type !== 'bundle-request') { stream.abort(new Error('unexpected frame')); return }
      const bytes = functions.bundle(req.cid)
      const out = frames(stream, LIMITS.maxBundleBytes + 1024)
      await out.write(bytes === undefined
        ? errorFrame({ code: 'BUNDLE_UNAVAILABLE', message: 'this gateway does not hold that bundle' })
        : { v: PROTOCOL_VERSION, type: 'bundle', cid: req.cid, bytes })
      await stream.close()
    } catch (err) {
      log.info({ peer: connection.remotePeer.toString(), err: (err as Error)?.message }, 'bundle request rejected; stream reset')
      stream.abort(err instanceof Error ? err : new Error(String(err)))
    }
  }

  async function serveSecrets (stream: Stream, connection: Connection): Promise<void> {
    const peer = connection.remotePeer.toString()
    const f = frames(stream, 4096)
    try {
      const req = await f.read('secrets-request', AbortSignal.timeout(NODE_DEFAULTS.bundleFetchTimeoutMs))
      if (req.type !== 'secrets-request') { stream.abort(new Error('unexpected frame')); return }
      // only a worker this gateway admitted (staked and bound) gets them, only for a pending request
      const secrets = view.get(peer) === undefined ? undefined : components.chainSecrets?.(req.inputCid)
      const out = frames(stream, LIMITS.maxFrameBytes)
      await out.write(secrets === undefined
        ? errorFrame({ code: 'UNAUTHORIZED', message: 'no pending chain request with secrets for this worker' })
        : { v: PROTOCOL_VERSION, type: 'secrets', inputCid: req.inputCid, secrets })
      await stream.close()
      log.info({ peer, inputCid: req.inputCid, names: secrets === undefined ? null : Object.keys(secrets) }, secrets === undefined ? 'secrets refused' : 'secrets handed to a worker for a chain request')
    } catch (err) {
      log.info({ peer, err: (err as Error)?.message }, 'secrets request rejected; stream reset')
      stream.abort(err instanceof Error ? err : new Error(String(err)))
    }
  }

  return {
    libp2p,
    view,
    http,
    get url () { return http.url },
    async start () {
      await libp2p.start()
      libp2p.services.pubsub.topicValidators.set(topic, async (_peer, message) => {
        const check = await view.validate(message)
        adverts.inc({ check })
        if (check !== 'OK') log.debug({ check }, 'advert not accepted')
        return ADVERT_VERDICTS[check]
      })
      libp2p.services.pubsub.subscribe(topic)
      await libp2p.handle(BUNDLE_PROTOCOL, (stream, connection) => { void serveBundle(stream, connection) }, { maxInboundStreams: 64 })
      if (components.chainSecrets !== undefined) await libp2p.handle(SECRETS_PROTOCOL, (stream, connection) => { void serveSecrets(stream, connection) }, { maxInboundStreams: 64 })
      await http.start()
      log.info({ peerId: libp2p.peerId.toString(), url: http.url, address: signer.address }, 'gateway started')
    },
    async stop () {
      // open event streams would keep the HTTP server from closing
      page.close()
      // requests waiting for a worker leave at once (503) rather than hold the HTTP server open
      queue.stop()
      await http.stop()
      await libp2p.stop()
      log.info('gateway stopped')
    }
  }
}
