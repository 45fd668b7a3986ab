/**
 * The worker role: joins the mesh through bootstrap nodes, gossips signed adverts, and serves
 * `/peerhost/job/1.0.0`: checks the gateway's ticket, fetches the bundle if it lacks it, runs the
 * job in its executor, and answers with the response and an EIP-712 receipt signed by its key.
 */
import type { Connection, PeerId, Stream } from '@libp2p/interface'
import { join } from 'node:path'
import { Counter, Histogram, Gauge, type Registry } from 'prom-client'
import {
  advertSigningBytes, assertInputHash, BUNDLE_PROTOCOL, isRawCid, encodeMessage, DEV_DOMAIN, JOB_PROTOCOL, LIMITS, outputHash, PROTOCOL_VERSION,
  ProtocolError, receiptDigest, receiptOf, ticketDigest, ticketOf, workersTopic,
  type JobRequest, type JobResult, type PeerHostDomain, type WireError, type WorkerAdvert
} from '#protocol'
import type { ExecutionResult, Executor } from '#sandbox'
import { bundleStore, type BundleStore } from '../bundle-store.ts'
import { NODE_DEFAULTS } from '../constants.ts'
import { errorFrame, frames } from '../frames.ts'
import { createMeshNode, dialableAddrs, type PeerHostLibp2p } from '../libp2p.ts'
import type { Logger } from '../logger.ts'
import { recoverDigestSigner, sameAddress, type FastSigner } from '../signing.ts'
import { NodeError } from '../errors.ts'
import { executeWithSecrets } from '../secrets/redact.ts'
import { admission } from './admission.ts'

export interface WorkerInit {
  dataDir: string
  /** @default ['/ip4/127.0.0.1/tcp/0'] */
  listen?: string[]
  bootstrap: string[]
  /** jobs at once; @default NODE_DEFAULTS.workerCapacity */
  capacity?: number
  /** @default NODE_DEFAULTS.advertIntervalMs */
  advertIntervalMs?: number
  /** @default 'global' */
  region?: string
  /** EIP-712 domain receipts are signed in; @default DEV_DOMAIN (no chain) */
  domain?: PeerHostDomain
}

export interface WorkerComponents {
  privateKey: import('@libp2p/interface').PrivateKey
  /** signs receipts: the worker's secp256k1 key (the chain binds it to stake) */
  signer: FastSigner
  executor: Executor
  logger: Logger
  registry: Registry
  /**
   * Where bundles come from when the local cache lacks them (e.g. bitswap). The default asks the
   * dispatching gateway over BUNDLE_PROTOCOL. Whatever it returns is verified against the CID.
   */
  fetchBundle?: (cid: string, from: PeerId, signal: AbortSignal) => Promise<Uint8Array | undefined>
  /**
   * Checked before a job's bundle is fetched or run (mesh jobs and `execute`): a wire error refuses
   * the job (e.g. node/worker/registry-check.ts: the bundle is not the registry's active one);
   * `from` is the dispatching peer. @default none: every bundle may run (no chain)
   */
  checkBundle?: (fn: JobRequest['fn'], from: PeerId | undefined, signal: AbortSignal) => Promise<WireError | undefined>
  /** a mesh node made by the caller (e.g. to share it with block storage); @default a new one */
  libp2p?: PeerHostLibp2p
}

export interface WorkerNode {
  readonly peerId: PeerId
  readonly address: `0x${string}`
  readonly libp2p: PeerHostLibp2p
  /** jobs running now */
  readonly running: number
  start: () => Promise<void>
  /** Stops taking jobs, waits for running ones (up to drainTimeoutMs), then stops. */
  stop: () => Promise<void>
  addrs: () => string[]
  /**
   * Runs one job outside the job protocol (the chain fallback, node/worker/chain-watcher.ts): the
   * same bundle cache, bundle source and executor; `from` is the peer asked for an uncached bundle.
   */
  execute: (job: LocalJob, options: { from?: PeerId, signal?: AbortSignal }) => Promise<LocalJobResult>
}

/** A job that did not come over the job protocol (no ticket). */
export type LocalJob = Pick<JobRequest, 'jobId' | 'fn' | 'options' | 'env' | 'secrets' | 'request' | 'deadline'>

export interface LocalJobResult {
  response?: JobResult['response']
  error?: WireError
  outputHash: `0x${string}`
}

export async function createWorker (init: WorkerInit, components: WorkerComponents): Promise<WorkerNode> {
  const { signer, executor, registry } = components
  const log = components.logger.child({ component: 'peerhost:worker' })
  const capacity = init.capacity ?? NODE_DEFAULTS.workerCapacity
  const domain = init.domain ?? DEV_DOMAIN
  const topic = workersTopic(init.region)
  const bundles: BundleStore = bundleStore(join(init.dataDir, 'bundles'))
  const libp2p = components.libp2p ?? await createMeshNode({ privateKey: components.privateKey, listen: init.listen, bootstrap: init.bootstrap, registry, region: init.region })

  const jobsTotal = new Counter({ name: 'peerhost_worker_jobs_total', help: 'jobs answered, by outcome', labelNames: ['outcome'], registers: [registry] })
  const rejected = new Counter({ name: 'peerhost_worker_rejected_frames_total', help: 'job frames rejected before execution, by code', labelNames: ['code'], registers: [registry] })
  const execSeconds = new Histogram({ name: 'peerhost_worker_execution_seconds', help: 'time inside the executor', buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30], registers: [registry] })
  const runningGauge = new Gauge({ name: 'peerhost_worker_running_jobs', help: 'jobs running now', registers: [registry] })

  let seq = 0
  let stopping = false
  let advertTimer: NodeJS.Timeout | undefined
  const inflight = new Set<Promise<void>>()
  const slots = admitQueue()

  /**
   * The admission queue (node/worker/admission.ts): bounded by length and by time. When it fills or
   * drains the worker re-adverts at once (throttled), so gateways stop or resume sending.
   */
  function admitQueue (): ReturnType<typeof admission> {
    let lastFullAdvert = 0
    let pending: NodeJS.Timeout | undefined
    return admission({
      capacity,
      onFullChange () {
        runningGauge.set(slots.running)
        if (pending !== undefined || advertTimer === undefined) return
        const wait = Math.max(0, lastFullAdvert + NODE_DEFAULTS.fullAdvertMinIntervalMs - Date.now())
        pending = setTimeout(() => {
          pending = undefined
          lastFullAdvert = Date.now()
          void publishAdvert()
        }, wait)
        pending.unref()
      }
    })
  }

  async function publishAdvert (): Promise<void> {
    // an advert that cannot be built or sent is logged and skipped: the timer must never throw
    try {
      const unsigned: Omit<WorkerAdvert, 'sig'> = {
        v: PROTOCOL_VERSION,
        type: 'advert',
        peerId: libp2p.peerId.toString(),
        address: signer.address,
        addrs: libp2p.getMultiaddrs().map(ma => ma.toString().replace(/\/p2p\/[^/]+$/, '')).slice(0, LIMITS.maxAdvertAddrs),
        capacity,
        load: Math.min(slots.running, LIMITS.maxWorkerCapacity),
        ...(slots.full ? { full: true } : {}),
        warm: executor.warm().filter(isRawCid).slice(0, LIMITS.maxWarmFunctions),
        ts: Date.now(),
        seq: ++seq
      }
      const sig = await components.privateKey.sign(advertSigningBytes(unsigned))
      await libp2p.services.pubsub.publish(topic, encodeMessage({ ...unsigned, sig }))
    } catch (err) {
      log.warn({ err }, 'advert not published')
    }
  }

  function fail (job: Pick<JobRequest, 'jobId'> | undefined, code: WireError['code'], message: string, details?: WireError['details']): ReturnType<typeof errorFrame> {
    rejected.inc({ code })
    return errorFrame(details === undefined ? { code, message } : { code, message, details }, job?.jobId)
  }

  async function fetchBundle (peer: PeerId, cid: string, signal: AbortSignal): Promise<Uint8Array | undefined> {
    const cached = bundles.get(cid)
    if (cached !== undefined) return cached
    if (components.fetchBundle !== undefined) {
      const bytes = await components.fetchBundle(cid, peer, signal)
      if (bytes === undefined) return undefined
      bundles.put(cid, bytes)
      return bytes
    }
    return await fetchFromGateway(peer, cid, signal)
  }

  async function fetchFromGateway (peer: PeerId, cid: string, signal: AbortSignal): Promise<Uint8Array | undefined> {
    const stream = await libp2p.dialProtocol(peer, BUNDLE_PROTOCOL, { signal })
    try {
      const f = frames(stream, LIMITS.maxBundleBytes + 1024)
      await f.write({ v: PROTOCOL_VERSION, type: 'bundle-request', cid }, signal)
      const answer = await f.read('bundle', signal)
      if (answer.type === 'error') return undefined
      if (answer.cid !== cid) throw new ProtocolError('INVALID_FIELD', `asked for bundle ${cid}, got ${answer.cid}`)
      bundles.put(cid, answer.bytes)
      return answer.bytes
    } finally {
      await stream.close().catch(() => stream.abort(new Error('close failed')))
    }
  }

  function verifyTicket (job: JobRequest): string | undefined {
    if (!sameAddress(job.ticket.worker, signer.address)) return 'the ticket names another worker'
    if (job.deadline <= Date.now()) return 'the job deadline has passed'
    try {
      assertInputHash(job)
    } catch {
      return 'the inputHash does not match the request'
    }
    const gateway = recoverDigestSigner(ticketDigest(domain, ticketOf(job)), job.ticketSig)
    if (gateway === undefined) return 'the ticket signature is malformed'
    if (!sameAddress(gateway, job.ticket.gateway)) return 'the ticket is not signed by the gateway it names'
    return undefined
  }

  async function runJob (job: JobRequest, connection: Connection, signal: AbortSignal): Promise<JobResult | ReturnType<typeof errorFrame>> {
    const arrived = performance.now()
    const ticketProblem = verifyTicket(job)
    if (ticketProblem !== undefined) return fail(job, 'TICKET_INVALID', ticketProblem)
    if (stopping) return fail(job, 'SHUTTING_DOWN', 'the worker is shutting down')
    const admitted = await slots.acquire(job.deadline)
    if (!admitted.ok) return fail(job, 'OVERLOADED', `the worker has no free capacity: ${admitted.reason}`, admitted.details)
    runningGauge.set(slots.running)
    const admittedAt = performance.now()
    let served = false
    try {
      const refused = await components.checkBundle?.(job.fn, connection.remotePeer, signal)
      if (refused !== undefined) return fail(job, refused.code, refused.message, refused.details)
      let bytes: Uint8Array | undefined
      try {
        bytes = await fetchBundle(connection.remotePeer, job.fn.bundleCid, AbortSignal.any([signal, AbortSignal.timeout(NODE_DEFAULTS.bundleFetchTimeoutMs)]))
      } catch (err: any) {
        if (err?.code === 'BUNDLE_MISMATCH') return fail(job, 'BUNDLE_MISMATCH', 'the bundle bytes do not match the CID')
        log.warn({ err, cid: job.fn.bundleCid }, 'bundle fetch failed')
      }
      if (bytes === undefined) return fail(job, 'BUNDLE_UNAVAILABLE', 'the bundle could not be fetched from the gateway')

      const queueMs = performance.now() - arrived
      const endTimer = execSeconds.startTimer()
      let result: ExecutionResult
      try {
        result = await executeWithSecrets(executor, {
          jobId: job.jobId,
          bundle: { cid: job.fn.bundleCid, bytes },
          request: job.request,
          env: job.env,
          options: job.options,
          deadline: job.deadline
        }, job.secrets, { signal })
      } finally {
        endTimer()
      }
      const hash = result.response !== undefined
        ? outputHash({ response: result.response })
        : outputHash({ error: result.error ?? { code: 'INTERNAL', message: 'no result' } })
      const receiptSig = signer.signDigest(receiptDigest(domain, receiptOf(job, hash)))
      jobsTotal.inc({ outcome: result.error?.code ?? 'ok' })
      const out: JobResult = {
        v: PROTOCOL_VERSION,
        type: 'result',
        jobId: job.jobId,
        attempt: job.attempt,
        logs: result.logs,
        logsTruncated: result.logsTruncated,
        timings: { ...result.timings, queueMs: Math.round((queueMs + result.timings.queueMs) * 1000) / 1000 },
        outputHash: hash,
        receiptSig
      }
      if (result.response !== undefined) out.response = result.response
      else out.error = result.error ?? { code: 'INTERNAL', message: 'no result' }
      served = true
      return out
    } finally {
      // only executed jobs teach the expected wait (a refused bundle took no slot time worth counting)
      slots.release(served ? performance.now() - admittedAt : undefined)
      runningGauge.set(slots.running)
    }
  }

  /**
   * One job stream serves jobs one after another (the gateway keeps idle streams for reuse: opening
   * a stream costs more than a small job). The first frame must arrive promptly; later ones may
   * come after an idle pause, and a stream left idle too long, or closed by the gateway, just ends.
   */
  async function handleJobStream (stream: Stream, connection: Connection): Promise<void> {
    const f = frames(stream)
    const controller = new AbortController()
    const onClose = (): void => controller.abort()
    stream.addEventListener('close', onClose)
    try {
      for (let served = 0; ; served++) {
        let request
        try {
          request = await f.read('job', AbortSignal.any([controller.signal, AbortSignal.timeout(served === 0 ? NODE_DEFAULTS.dialTimeoutMs * 2 : NODE_DEFAULTS.jobStreamIdleMs)]))
        } catch (err: any) {
          if (served > 0 && !(err instanceof ProtocolError)) {
            // the gateway closed its idle stream, or it idled out: nothing wrong
            await stream.close().catch(() => stream.abort(new Error('close failed')))
            return
          }
          // malformed, oversize, wrong version: reset the stream and count it against the peer
          rejected.inc({ code: err instanceof ProtocolError ? err.code : 'READ_FAILED' })
          log.info({ peer: connection.remotePeer.toString(), code: err?.code ?? err?.name }, 'job frame rejected; stream reset')
          stream.abort(err instanceof Error ? err : new Error(String(err)))
          return
        }
        if (request.type !== 'job') {
          stream.abort(new Error('unexpected error frame'))
          return
        }
        const deadline = Math.min(request.deadline, Date.now() + LIMITS.maxDeadlineMs)
        const signal = AbortSignal.any([controller.signal, AbortSignal.timeout(Math.max(0, deadline - Date.now()) + 1_000)])
        const answer = await runJob(request, connection, signal)
        await f.write(answer, signal)
      }
    } catch (err) {
      log.debug({ err }, 'job stream ended with an error')
      stream.abort(err instanceof Error ? err : new Error(String(err)))
    } finally {
      stream.removeEventListener('close', onClose)
    }
  }

  async function executeLocal (job: LocalJob, options: { from?: PeerId, signal?: AbortSignal }): Promise<LocalJobResult> {
    if (stopping) throw new NodeError('SHUTTING_DOWN', 'the worker is shutting down')
    const signal = AbortSignal.any([options.signal ?? new AbortController().signal, AbortSignal.timeout(Math.max(0, job.deadline - Date.now()) + 1_000)])
    slots.enter()
    runningGauge.set(slots.running)
    try {
      const refused = await components.checkBundle?.(job.fn, options.from, signal)
      if (refused !== undefined) throw new NodeError(refused.code, refused.message, { details: refused.details })
      let bytes = bundles.get(job.fn.bundleCid)
      if (bytes === undefined && (options.from !== undefined || components.fetchBundle !== undefined)) {
        bytes = await fetchBundle(options.from ?? libp2p.peerId, job.fn.bundleCid, AbortSignal.any([signal, AbortSignal.timeout(NODE_DEFAULTS.bundleFetchTimeoutMs)]))
      }
      if (bytes === undefined) throw new NodeError('BUNDLE_UNAVAILABLE', `bundle ${job.fn.bundleCid} could not be fetched`)
      const result = await executeWithSecrets(executor, { jobId: job.jobId, bundle: { cid: job.fn.bundleCid, bytes }, request: job.request, env: job.env, options: job.options, deadline: job.deadline }, job.secrets, { signal })
      jobsTotal.inc({ outcome: result.error?.code ?? 'ok' })
      if (result.response !== undefined) return { response: result.response, outputHash: outputHash({ response: result.response }) }
      const error = result.error ?? { code: 'INTERNAL' as const, message: 'no result' }
      return { error, outputHash: outputHash({ error }) }
    } finally {
      slots.release()
      runningGauge.set(slots.running)
    }
  }

  return {
    execute: executeLocal,
    get peerId () { return libp2p.peerId },
    address: signer.address,
    libp2p,
    get running () { return slots.running },
    addrs: () => dialableAddrs(libp2p),
    async start () {
      await executor.start()
      await libp2p.start()
      await libp2p.handle(JOB_PROTOCOL, (stream, connection) => {
        const p = handleJobStream(stream, connection)
        inflight.add(p)
        void p.finally(() => inflight.delete(p))
      }, { maxInboundStreams: NODE_DEFAULTS.maxInboundJobStreams })
      libp2p.services.pubsub.subscribe(topic)
      await publishAdvert()
      advertTimer = setInterval(() => { void publishAdvert() }, init.advertIntervalMs ?? NODE_DEFAULTS.advertIntervalMs)
      log.info({ peerId: libp2p.peerId.toString(), address: signer.address, addrs: dialableAddrs(libp2p), executor: executor.kind }, 'worker started')
    },
    async stop () {
      if (stopping) return
      stopping = true
      clearInterval(advertTimer)
      await Promise.race([
        Promise.allSettled([...inflight]),
        new Promise(resolve => setTimeout(resolve, NODE_DEFAULTS.drainTimeoutMs).unref())
      ])
      await libp2p.stop()
      await executor.stop()
      log.info('worker stopped')
    }
  }
}
