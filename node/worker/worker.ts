/**
 * The worker role: joins the mesh through bootstrap nodes, gossips signed adverts, and serves
 * `/peerhost/job/1.0.0`: checks the gateway's ticket, fetches the bundle if it lacks it, runs the
 * job in its executor, and answers with the response and an EIP-712 receipt signed by its key.
 *
 * Before any work a job must pass, in order: the ticket (names this worker, signed by the gateway
 * it names over the job's `jobHash`, deadline ahead, input hash right) → the gateway is staked
 * (`checkGateway`, with a chain) → the ticket key (gateway, jobId, attempt) was never answered
 * (the receipt log, node/worker/receipt-log.ts: `DUPLICATE_TICKET`) → a free slot → the job
 * matches the registry (`checkJob`: active bundle, and options and env exactly the manifest's:
 * `OPTIONS_MISMATCH`). The receipt is committed to the log before it leaves, so the worker
 * signs at most one output per ticket key, ever, across restarts and `kill -9`.
 */
import type { Connection, PeerId, Stream } from '@libp2p/interface'
import { join } from 'node:path'
import { Counter, Histogram, Gauge, type Registry } from 'prom-client'
import {
  advertSigningBytes, assertInputHash, BUNDLE_PROTOCOL, isRawCid, encodeMessage, DEV_DOMAIN, JOB_PROTOCOL, jobHashOf, LIMITS, outputHash, TICKET_HORIZON_MS, projectId, PROTOCOL_VERSION,
  ProtocolError, receiptDigest, receiptOf, ticketDigest, ticketOf, workersTopic, decodeMessage, transcript, transcriptOutputHash, bodyHasher, streamOutputHash,
  atFee, atSegment, segmentJobId, sessionOwed, type SegmentFrame, type SessionPrice, type SessionTicket,
  type FunctionOptions, type JobRequest, type JobResult, type Message, type PeerHostDomain, type SessionEnd, type SessionLimits, type StreamEnd, type WireError, type WireResponse, type WorkerAdvert
} from '#protocol'
import type { ExecuteOptions, ExecutionResult, Executor, SessionControl, StreamHooks } from '#sandbox'
import { bundleStore, type BundleStore } from '../bundle-store.ts'
import { NODE_DEFAULTS, WS_CLOSE } from '../constants.ts'
import { errorFrame, frames, type FrameStream } from '../frames.ts'
import { createMeshNode, dialableAddrs, type PeerHostLibp2p } from '../libp2p.ts'
import type { Logger } from '../logger.ts'
import { recoverDigestSigner, sameAddress, type FastSigner } from '../signing.ts'
import { NodeError } from '../errors.ts'
import { executeWithSecrets } from '../secrets/redact.ts'
import { admission } from './admission.ts'
import { sessionGuard, type SessionGuard } from './session-guard.ts'
import { receiptLog, type ReceiptKey, type ReceiptLog, type ReceiptLogInit } from './receipt-log.ts'
import { deadline } from '../deadline.ts'

export interface WorkerInit {
  dataDir: string
  /** @default ['/ip4/127.0.0.1/tcp/0'] */
  listen?: string[]
  bootstrap: string[]
  /** jobs at once; @default NODE_DEFAULTS.workerCapacity */
  capacity?: number
  /**
   * The price per request in wei, advertised and enforced: a ticket with a lower fee is refused
   * (TICKET_INVALID, reason `fee-below-price`). @default 0n (works for free; no price advertised)
   */
  price?: bigint
  /**
   * The metered price of a WebSocket session on top of `price` (which its opening ticket pays): wei
   * per message either way and per minute, advertised and paid by the gateway's cumulative tickets
   * during the session (protocol session-fees.ts). @default both 0n (sessions cost `price`; not advertised)
   */
  sessionPrice?: { perMessage: bigint, perMinute: bigint }
  /**
   * The credit extended to a priced session's gateway: past what it owes beyond its highest
   * cumulative ticket by more than `perMessage × messages + perMinute × ms / 60 000` of these, the
   * session is closed with 4402. @default NODE_DEFAULTS.sessionCreditMessages / sessionCreditMs
   */
  sessionCredit?: { messages?: number, ms?: number }
  /** @default NODE_DEFAULTS.advertIntervalMs */
  advertIntervalMs?: number
  /** @default 'global' */
  region?: string
  /** EIP-712 domain receipts are signed in; @default DEV_DOMAIN (no chain) */
  domain?: PeerHostDomain
  /** WebSocket sessions held at once; @default NODE_DEFAULTS.workerMaxSessions */
  maxSessions?: number
  /** longest a session lasts; @default NODE_DEFAULTS.sessionMaxMs */
  sessionMaxMs?: number
  /**
   * A session with no message either way for this long is closed (4408) by the worker itself,
   * whatever its gateway does; a function's lower `websocket.idleTimeoutMs` applies where set.
   * @default NODE_DEFAULTS.sessionIdleMs
   */
  sessionIdleMs?: number
  /**
   * Sustained client messages per second a session may bring the worker (4429 beyond, checked by
   * the worker itself); a function's lower `websocket.messagesPerSecond` applies where set.
   * @default NODE_DEFAULTS.sessionMessagesPerSec
   */
  sessionMessagesPerSec?: number
  /**
   * Most body bytes one streamed response may carry; past it the stream is cut with
   * LIMIT_RESPONSE_SIZE (and the receipt says so). @default LIMITS.maxStreamBytes
   */
  maxStreamBytes?: number
  /** the receipt log in `<dataDir>/receipts.sqlite` (durability, retention); @default its defaults */
  receipts?: Omit<ReceiptLogInit, 'dataDir'>
}

/** What the registry says a job must run with: the manifest's options and env. */
export interface JobCheckPass {
  options: FunctionOptions
  env: Record<string, string>
  /** the function's WebSocket session limits from its manifest (peerhost.json `websocket`) */
  websocket?: SessionLimits
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
   * Checked before a job's bundle is fetched or run (mesh jobs and `execute`): `refused` refuses
   * the job (node/worker/registry-check.ts: the bundle is not the registry's active one, or the
   * options or env are not the manifest's); `run`, when given, is what the job runs with (the
   * manifest's options and env). `from` is the dispatching peer. @default none: every bundle runs
   * with the frame's options (no chain)
   */
  checkJob?: (job: Pick<JobRequest, 'fn' | 'options' | 'env'>, from: PeerId | undefined, signal: AbortSignal) => Promise<{ refused: WireError } | { refused?: undefined, run?: JobCheckPass }>
  /**
   * Checked after the ticket signature and before any work: a reason string refuses the job with
   * TICKET_INVALID (node/worker/gateway-stake.ts: the gateway is not staked now).
   * @default none: any gateway key may sign tickets (no chain: dev mesh)
   */
  checkGateway?: (gateway: string) => Promise<string | undefined>
  /**
   * Why a ticket's settlement epoch is refused (node/settlement `ticketEpochCheck`: in the future,
   * or too old for its batch to be committed), else undefined. @default none: any epoch (no chain)
   */
  checkEpoch?: (epoch: bigint) => string | undefined
  /**
   * Settlement's epochs as the worker sees them, for sessions that outlive their epoch (node/settlement
   * `sessionEpochs`): `current()` is the epoch a gateway's `segment` frame must open, and
   * `segmentDue(e)` tells when a segment of epoch `e` must be closed by the worker itself (no
   * `segment` came by the epoch's end plus half the settler's grace). @default none: a `segment`
   * frame's epoch must only be later than the closing segment's, and the worker never closes one itself
   */
  sessionEpochs?: { current: () => bigint, segmentDue: (epoch: bigint) => boolean }
  /** the durable receipt log; @default receiptLog({ dataDir, ...init.receipts }) */
  receipts?: ReceiptLog
  /** a mesh node made by the caller (e.g. to share it with block storage); @default a new one */
  libp2p?: PeerHostLibp2p
}

export interface WorkerNode {
  readonly peerId: PeerId
  readonly address: `0x${string}`
  readonly libp2p: PeerHostLibp2p
  /** jobs running now (sessions included) */
  readonly running: number
  /** WebSocket sessions open now */
  readonly sessions: number
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

type Refusal = ReturnType<typeof errorFrame>

/** A job past every admission check (worker.ts `admitted`). */
interface Admission {
  /** what runs: the registry's options (the frame's without a registry) */
  options: FunctionOptions
  /** the function's session limits from the registry's manifest (none without a registry) */
  websocket?: SessionLimits
  /** milliseconds since the frame arrived */
  queueMs: () => number
  /**
   * Runs what was admitted (the job's request, these options and env, its secrets) until
   * `deadline`, timed in the execution metric; from its start the ticket key stays reserved
   * whatever happens. `session` hooks make it a WebSocket session; `stream` hooks relay a streamed body.
   */
  execute: (deadline: number, session?: ExecuteOptions['session'], stream?: StreamHooks) => Promise<ExecutionResult>
  /** the ticket's jobHash (of what runs) */
  jobHash: `0x${string}`
  /** the ticket key in the receipt log */
  key: ReceiptKey
  /**
   * signs the receipt for `output` and records it durably; undefined (withheld) when it could not
   * be recorded. `fee`: a session's highest cumulative ticket fee, already in the log (@default the ticket's)
   */
  sign: (output: `0x${string}`, fee?: string) => Promise<`0x${string}` | undefined>
}

export async function createWorker (init: WorkerInit, components: WorkerComponents): Promise<WorkerNode> {
  const { signer, executor, registry } = components
  const log = components.logger.child({ component: 'peerhost:worker' })
  const capacity = init.capacity ?? NODE_DEFAULTS.workerCapacity
  const price = init.price ?? 0n
  if (price < 0n || price >= 1n << 256n) throw new NodeError('BAD_CONFIG', `the worker price must be a uint256 in wei; got ${price}`)
  const sessionPrice: SessionPrice = { perMessage: (init.sessionPrice?.perMessage ?? 0n).toString(), perMinute: (init.sessionPrice?.perMinute ?? 0n).toString() }
  for (const [name, v] of Object.entries(sessionPrice)) {
    if (BigInt(v) < 0n || BigInt(v) >= 1n << 256n) throw new NodeError('BAD_CONFIG', `the worker's session price ${name} must be a uint256 in wei; got ${v}`)
  }
  const sessionPriced = sessionPrice.perMessage !== '0' || sessionPrice.perMinute !== '0'
  const creditMessages = init.sessionCredit?.messages ?? NODE_DEFAULTS.sessionCreditMessages
  const creditMs = init.sessionCredit?.ms ?? NODE_DEFAULTS.sessionCreditMs
  if (!Number.isSafeInteger(creditMessages) || creditMessages < 0 || !Number.isSafeInteger(creditMs) || creditMs < 0) {
    throw new NodeError('BAD_CONFIG', `the worker's session credit must be non-negative integers of messages and milliseconds; got ${creditMessages} messages, ${creditMs} ms`)
  }
  /** what a priced session may owe beyond its highest cumulative ticket before it is closed (4402) */
  const sessionCredit = sessionOwed(0n, sessionPrice, creditMessages, creditMs)
  const domain = init.domain ?? DEV_DOMAIN
  const topic = workersTopic(init.region)
  const bundles: BundleStore = bundleStore(join(init.dataDir, 'bundles'))
  const receipts = components.receipts ?? receiptLog({ ...init.receipts, dataDir: init.dataDir })({ logger: components.logger })
  const libp2p = components.libp2p ?? await createMeshNode({ privateKey: components.privateKey, listen: init.listen, bootstrap: init.bootstrap, registry, region: init.region })

  const jobsTotal = new Counter({ name: 'peerhost_worker_jobs_total', help: 'jobs answered, by outcome', labelNames: ['outcome'], registers: [registry] })
  const rejected = new Counter({ name: 'peerhost_worker_rejected_frames_total', help: 'job frames rejected before execution, by code', labelNames: ['code'], registers: [registry] })
  const execSeconds = new Histogram({ name: 'peerhost_worker_execution_seconds', help: 'time inside the executor', buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30], registers: [registry] })
  const sessionTickets = new Counter({ name: 'peerhost_worker_session_tickets_total', help: 'cumulative session tickets received, by outcome (accepted, not-higher, bad-signature, other-job, not-recorded)', labelNames: ['outcome'], registers: [registry] })
  const sessionSegments = new Counter({ name: 'peerhost_worker_session_segments_total', help: 'session segment events: closed on the gateway\'s segment frame (segment) or by the worker (epoch-ended), opened, or an ignored segment frame by reason', labelNames: ['outcome'], registers: [registry] })
  const sessionLimitCloses = new Counter({ name: 'peerhost_worker_session_limit_closes_total', help: 'sessions the worker itself closed at a limit (its gateway did not), by close code', labelNames: ['code'], registers: [registry] })
  const runningGauge = new Gauge({ name: 'peerhost_worker_running_jobs', help: 'jobs running now', registers: [registry] })
  if (executor.stats !== undefined) {
    const stats = executor.stats.bind(executor)
    // read at scrape time: boots under load are what an overloaded worker must never do
    new Gauge({ name: 'peerhost_worker_sandboxes', help: 'sandboxes alive now, idle and busy', registers: [registry], collect () { this.set(stats().sandboxes) } })
    new Gauge({ name: 'peerhost_worker_sandboxes_booted', help: 'sandboxes booted since the worker started', registers: [registry], collect () { this.set(stats().booted) } })
    new Gauge({ name: 'peerhost_worker_sandboxes_booting', help: 'sandbox boots in flight now', registers: [registry], collect () { this.set(stats().booting) } })
    new Gauge({ name: 'peerhost_worker_sandbox_slot_waits', help: 'executions that waited for a sandbox slot since the worker started', registers: [registry], collect () { this.set(stats().waitedForSlot) } })
    new Gauge({ name: 'peerhost_worker_sandbox_boots_wanted', help: 'sandboxes the pool targets want now that are neither there nor booting (put off until no execution runs)', registers: [registry], collect () { this.set(stats().bootsWanted ?? 0) } })
    new Gauge({ name: 'peerhost_worker_sandbox_boots_deferred', help: 'times background sandbox boots were put off until no execution ran', registers: [registry], collect () { this.set(stats().bootsDeferred ?? 0) } })
  }

  let seq = 0
  let stopping = false
  /** aborted when stop() begins: idle reused job streams end at once instead of at their idle timeout */
  const stopped = new AbortController()
  let sessionsOpen = 0
  const maxSessions = init.maxSessions ?? NODE_DEFAULTS.workerMaxSessions
  const sessionMaxMs = init.sessionMaxMs ?? NODE_DEFAULTS.sessionMaxMs
  const sessionIdleMs = init.sessionIdleMs ?? NODE_DEFAULTS.sessionIdleMs
  const sessionPerSec = init.sessionMessagesPerSec ?? NODE_DEFAULTS.sessionMessagesPerSec
  const maxStreamBytes = Math.min(init.maxStreamBytes ?? LIMITS.maxStreamBytes, LIMITS.maxStreamBytes)
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
        sessions: Math.min(sessionsOpen, LIMITS.maxWorkerSessions),
        maxSessions: Math.min(maxSessions, LIMITS.maxWorkerSessions),
        ...(slots.full ? { full: true } : {}),
        ...(price > 0n ? { price: price.toString() } : {}),
        ...(sessionPriced ? { sessionPrice } : {}),
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

  /** Why the ticket is refused, or the jobHash the gateway signed (computed from the frame). */
  function verifyTicket (job: JobRequest): { problem: string, reason?: string } | { hash: `0x${string}` } {
    if (!sameAddress(job.ticket.worker, signer.address)) return { problem: 'the ticket names another worker' }
    if (job.deadline <= Date.now()) return { problem: 'the job deadline has passed' }
    // a deadline beyond any a gateway may set would outlive the receipt log's memory of the ticket
    // (retention, the reboot guard): the same ticket could then be answered a second time
    if (job.deadline > Date.now() + TICKET_HORIZON_MS) return { problem: `the job deadline is ${Math.round((job.deadline - Date.now()) / 1000)} s away; a worker accepts at most ${TICKET_HORIZON_MS / 1000} s (the longest job deadline plus clock skew)`, reason: 'deadline-too-far' }
    try {
      assertInputHash(job)
    } catch {
      return { problem: 'the inputHash does not match the request' }
    }
    // the receipt log keeps epochs and deadlines as signed 64-bit integers
    if (BigInt(job.ticket.epoch) >= 1n << 63n || BigInt(job.ticket.deadline) >= 1n << 63n) return { problem: 'the ticket epoch or deadline is out of range' }
    const hash = jobHashOf(job)
    const gateway = recoverDigestSigner(ticketDigest(domain, ticketOf(job, hash)), job.ticketSig)
    if (gateway === undefined) return { problem: 'the ticket signature is malformed' }
    if (!sameAddress(gateway, job.ticket.gateway)) return { problem: 'the ticket is not signed by the gateway it names' }
    const epochProblem = components.checkEpoch?.(BigInt(job.ticket.epoch))
    if (epochProblem !== undefined) return { problem: epochProblem, reason: 'bad-epoch' }
    // checked after the signature: the fee is what the gateway's signature commits it to pay
    if (BigInt(job.ticket.fee) < price) return { problem: `the ticket fee ${job.ticket.fee} is below this worker's price ${price} wei`, reason: 'fee-below-price' }
    return { hash }
  }

  /**
   * The one admission path of every ticketed job, request or session (issue 9 item 1, issue 12):
   * the ticket, the gateway's stake, for a session this worker's session room, the receipt-log
   * reservation (one receipt per (gateway, jobId, attempt), ever), a capacity slot, the registry's
   * check (the manifest's options and env), the jobHash of what will run, and the bundle. `body`
   * runs only when all of them pass; it runs the function with `a.execute(deadline)` and calls
   * `a.sign(out)` to sign a receipt, which is durable before it returns.
   */
  async function admitted<T> (job: JobRequest, connection: Connection, signal: AbortSignal, kind: 'job' | 'session', body: (a: Admission) => Promise<T | Refusal>): Promise<T | Refusal> {
    const arrived = performance.now()
    const ticket = verifyTicket(job)
    if ('problem' in ticket) return fail(job, 'TICKET_INVALID', ticket.problem, ticket.reason === undefined ? undefined : { reason: ticket.reason, price: price.toString() })
    if (stopping) return fail(job, 'SHUTTING_DOWN', 'the worker is shutting down')
    if (components.checkGateway !== undefined) {
      const problem = await components.checkGateway(job.ticket.gateway)
      if (problem !== undefined) return fail(job, 'TICKET_INVALID', problem, { reason: 'gateway-not-staked', gateway: job.ticket.gateway })
    }
    // the receipt log's reboot guard: a ticket that may predate a power loss may have been answered
    const guard = receipts.refusesBefore
    if (guard !== undefined && Number(job.ticket.deadline) * 1000 < guard) {
      return fail(job, 'TICKET_INVALID', 'the worker restarted after its machine went down uncleanly and refuses tickets that may predate that', { reason: 'reboot-guard', refusesBefore: guard })
    }
    if (kind === 'session') {
      if (executor.sessions !== true) return fail(job, 'BAD_REQUEST', `this worker's ${executor.kind} executor cannot hold WebSocket sessions`)
      if (sessionsOpen >= maxSessions) return fail(job, 'OVERLOADED', `the worker holds ${sessionsOpen} WebSocket sessions, its limit`, { sessions: sessionsOpen, limit: maxSessions })
    }
    // one answer per ticket key, ever: a replay (same key, any other job) is refused before any work
    const key: ReceiptKey = { gateway: job.ticket.gateway, jobId: job.jobId, attempt: job.attempt }
    const reservation = receipts.reserve({
      ...key,
      projectId: projectId(job.fn.wallet, job.fn.project),
      functionId: job.fn.id,
      jobHash: ticket.hash,
      inputHash: job.inputHash,
      worker: job.ticket.worker,
      fee: job.ticket.fee,
      epoch: job.ticket.epoch,
      deadline: job.ticket.deadline,
      ticketSig: job.ticketSig
    })
    if (!reservation.ok) {
      const e = reservation.existing
      const details: Record<string, string | number | boolean> = { state: e.state, jobHash: e.jobHash, sameJob: e.jobHash === ticket.hash }
      if (e.outputHash !== undefined) details.outputHash = e.outputHash
      if (e.receiptSig !== undefined) details.receiptSig = e.receiptSig
      log.warn({ gateway: key.gateway, jobId: key.jobId, attempt: key.attempt, state: e.state, sameJob: e.jobHash === ticket.hash, kind }, 'repeated ticket refused')
      return fail(job, 'DUPLICATE_TICKET', e.state === 'signed'
        ? `this worker already answered ticket (${key.gateway}, ${key.jobId}, attempt ${key.attempt}); it signs one receipt per ticket`
        : `this worker is answering ticket (${key.gateway}, ${key.jobId}, attempt ${key.attempt}), or was when it stopped; it signs one receipt per ticket`, details)
    }
    if (kind === 'session') sessionsOpen++
    // until the executor starts, a refusal signed nothing: the key is freed for a later answer
    let started = false
    try {
      // a session takes no job slot: it waits for messages far longer than a job runs, and its
      // room is its own (maxSessions, and the sandbox pool's session room); it is advertised apart
      const admittedSlot = kind === 'session' ? { ok: true as const } : await slots.acquire(job.deadline)
      if (!admittedSlot.ok) return fail(job, 'OVERLOADED', `the worker has no free capacity: ${admittedSlot.reason}`, admittedSlot.details)
      runningGauge.set(slots.running)
      const admittedAt = performance.now()
      let served = false
      try {
        const checked = await components.checkJob?.(job, connection.remotePeer, signal)
        if (checked?.refused !== undefined) return fail(job, checked.refused.code, checked.refused.message, checked.refused.details)
        // what runs: the registry's options and env when there is a registry, else the frame's
        const run = { fn: job.fn, options: checked?.run?.options ?? job.options, env: checked?.run?.env ?? job.env, secrets: job.secrets, inputHash: job.inputHash, deadline: job.deadline }
        // the ticket binds the job: the hash of what will run must be the hash the gateway signed
        const runHash = jobHashOf(run)
        if (runHash !== ticket.hash) return fail(job, 'TICKET_INVALID', 'the ticket\'s jobHash is not the hash of the job this worker would run', { reason: 'job-hash', expected: runHash, given: ticket.hash })
        let bytes: Uint8Array | undefined
        try {
          bytes = await fetchBundle(connection.remotePeer, job.fn.bundleCid, AbortSignal.any([signal, AbortSignal.timeout(NODE_DEFAULTS.bundleFetchTimeoutMs)]))
        } catch (err: any) {
          if (err?.code === 'BUNDLE_MISMATCH') return fail(job, 'BUNDLE_MISMATCH', 'the bundle bytes do not match the CID')
          log.warn({ err, cid: job.fn.bundleCid }, 'bundle fetch failed')
        }
        if (bytes === undefined) return fail(job, 'BUNDLE_UNAVAILABLE', 'the bundle could not be fetched from the gateway')
        const out = await body({
          jobHash: runHash,
          key,
          options: run.options,
          websocket: checked?.run?.websocket,
          queueMs: () => performance.now() - arrived,
          execute: async (deadline, session, stream) => {
            started = true
            const endTimer = execSeconds.startTimer()
            try {
              return await executeWithSecrets(executor, {
                jobId: job.jobId,
                bundle: { cid: job.fn.bundleCid, bytes },
                request: job.request,
                env: run.env,
                options: run.options,
                deadline
              }, job.secrets, { signal, session, stream })
            } finally {
              endTimer()
            }
          },
          sign: async (output, fee) => {
            const receiptSig = signer.signDigest(receiptDigest(domain, receiptOf(fee === undefined ? job : atFee(job, fee), output, runHash)))
            try {
              // durable before it leaves: after a crash the key is still answered
              await receipts.commit(key, output, receiptSig)
              return receiptSig
            } catch (err) {
              log.error({ err, jobId: job.jobId }, 'receipt not recorded; the receipt is withheld')
              return undefined
            }
          }
        })
        served = started && kind === 'job'
        return out
      } finally {
        // only executed requests teach the expected wait (a refused bundle took no slot time worth
        // counting, and a session's length says nothing about how long a queued job waits)
        if (kind !== 'session') slots.release(served ? performance.now() - admittedAt : undefined)
        runningGauge.set(slots.running)
      }
    } finally {
      if (kind === 'session') sessionsOpen--
      if (!started) receipts.release(key)
    }
  }

  /**
   * The frames of a streamed body, in order on the job stream: `stream-head`, then a `stream-chunk`
   * per piece, each write awaited before the executor acknowledges the piece to the sandbox, so a
   * gateway (and behind it a client) that stops reading stops the function within the sandbox's
   * window. The running SHA-256 and count are what the receipt signs.
   */
  function streamSender (job: JobRequest, f: FrameStream, signal: AbortSignal): { hooks: StreamHooks, hash: ReturnType<typeof bodyHasher>, flushed: () => Promise<boolean> } {
    const hash = bodyHasher()
    let chain: Promise<void> = Promise.resolve()
    let broken = false
    const write = (msg: Message): Promise<void> => {
      const p = chain.then(async () => { await f.write(msg, signal) })
      // a failed write (the gateway went away) rejects this piece and every later one: the
      // executor then cancels the stream in the sandbox, so the function stops at once
      chain = p.catch(() => { broken = true })
      return p
    }
    return {
      hash,
      hooks: {
        maxBytes: maxStreamBytes,
        onHead: (status, headers) => {
          void write({ v: PROTOCOL_VERSION, type: 'stream-head', jobId: job.jobId, attempt: job.attempt, status, headers: headers.slice(0, LIMITS.maxHeaders) }).catch(() => {})
        },
        onChunk: async (data) => {
          hash.add(data)
          await write({ v: PROTOCOL_VERSION, type: 'stream-chunk', data })
        }
      },
      flushed: async () => { await chain; return !broken }
    }
  }

  async function runJob (job: JobRequest, connection: Connection, f: FrameStream, signal: AbortSignal): Promise<JobResult | StreamEnd | Refusal> {
    return await admitted(job, connection, signal, 'job', async (a) => {
      const queueMs = a.queueMs()
      const sender = streamSender(job, f, signal)
      const result = await a.execute(job.deadline, undefined, sender.hooks)
      if (result.streamed !== undefined) {
        // the head went out: the answer is the stream's end, whose receipt signs what was sent
        await sender.flushed()
        const summary = { status: result.streamed.status, bodyHash: sender.hash.digest(), bytes: sender.hash.bytes, ...(result.error !== undefined ? { error: result.error.code } : {}) }
        const out = streamOutputHash(summary)
        const receiptSig = await a.sign(out)
        if (receiptSig === undefined) return fail(job, 'INTERNAL', 'the worker could not record the receipt')
        jobsTotal.inc({ outcome: result.error?.code ?? 'stream' })
        const end: StreamEnd = {
          v: PROTOCOL_VERSION,
          type: 'stream-end',
          jobId: job.jobId,
          attempt: job.attempt,
          bytes: summary.bytes,
          bodyHash: summary.bodyHash,
          outputHash: out,
          receiptSig,
          logs: result.logs,
          logsTruncated: result.logsTruncated,
          timings: { ...result.timings, queueMs: Math.round((queueMs + result.timings.queueMs) * 1000) / 1000 }
        }
        if (result.error !== undefined) end.error = result.error
        return end
      }
      const outcome = result.response !== undefined ? { response: result.response } : { error: result.error ?? { code: 'INTERNAL' as const, message: 'no result' } }
      return await signedResult(job, a, outcome, result, { ...result.timings, queueMs: Math.round((queueMs + result.timings.queueMs) * 1000) / 1000 })
    })
  }

  /**
   * The `result` frame of an execution that answered with a response or an error: its output
   * hash, the receipt signed over it (durable before it leaves), the metric.
   */
  async function signedResult (job: JobRequest, a: Admission, outcome: { response: WireResponse } | { error: WireError }, result: ExecutionResult, timings: JobResult['timings']): Promise<JobResult | Refusal> {
    const out = outputHash(outcome)
    const receiptSig = await a.sign(out)
    if (receiptSig === undefined) return fail(job, 'INTERNAL', 'the worker could not record the receipt')
    jobsTotal.inc({ outcome: 'error' in outcome ? outcome.error.code : 'ok' })
    return { v: PROTOCOL_VERSION, type: 'result', jobId: job.jobId, attempt: job.attempt, logs: result.logs, logsTruncated: result.logsTruncated, timings, outputHash: out, receiptSig, ...outcome }
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
        // a reused stream between jobs also ends when the worker stops: it holds no job, and
        // stop() waits for every stream (a gateway keeps its idle streams open for jobStreamIdleMs).
        // Cleared once the frame is in (a timer per job that fired seconds later cost CPU per request).
        const wait = served === 0
          ? deadline(NODE_DEFAULTS.firstFrameWaitMs, controller.signal)
          : deadline(NODE_DEFAULTS.jobStreamIdleMs, controller.signal, stopped.signal)
        try {
          request = await f.read('job', wait.signal)
        } catch (err: any) {
          if (!(err instanceof ProtocolError) && (served > 0 || err?.name === 'UnexpectedEOFError' || controller.signal.aborted)) {
            // the gateway closed its idle stream, it idled out, or the gateway abandoned a new
            // stream before its first frame (its attempt ran out of time, its client left):
            // nothing malformed, nothing to count against the peer
            log.debug({ peer: connection.remotePeer.toString(), served, err: err?.name }, 'job stream ended without a frame')
            await stream.close().catch(() => stream.abort(new Error('close failed')))
            return
          }
          // malformed, oversize, wrong version: reset the stream and count it against the peer
          rejected.inc({ code: err instanceof ProtocolError ? err.code : 'READ_FAILED' })
          log.info({ peer: connection.remotePeer.toString(), code: err?.code ?? err?.name }, 'job frame rejected; stream reset')
          stream.abort(err instanceof Error ? err : new Error(String(err)))
          return
        } finally {
          wait.clear()
        }
        if (request.type !== 'job') {
          stream.abort(new Error('unexpected error frame'))
          return
        }
        if (request.session === true) {
          // a session owns its stream until it ends; the stream is not reused afterwards
          await runSession(request, connection, f, controller.signal)
          await stream.close().catch(() => stream.abort(new Error('close failed')))
          return
        }
        const jobDeadline = Math.min(request.deadline, Date.now() + LIMITS.maxDeadlineMs)
        const limit = deadline(Math.max(0, jobDeadline - Date.now()) + 1_000, controller.signal)
        try {
          const answer = await runJob(request, connection, f, limit.signal)
          await f.write(answer, limit.signal)
        } finally {
          limit.clear()
        }
      }
    } catch (err) {
      log.debug({ err }, 'job stream ended with an error')
      stream.abort(err instanceof Error ? err : new Error(String(err)))
    } finally {
      stream.removeEventListener('close', onClose)
    }
  }

  /**
   * A WebSocket session on its job stream, admitted exactly as a request is (`admitted`): the
   * function runs in one execution that stays alive while frames are relayed both ways; it ends
   * with `session-end`, whose receipt signs the transcript (both directions' running hashes and
   * counts) and is in the receipt log before it leaves. A function that answers without a
   * WebSocket gets an ordinary `result`. Sessions take no job slot; they count against
   * `maxSessions` and are advertised (`sessions` / `maxSessions`) so gateways spread them.
   */
  async function runSession (job: JobRequest, connection: Connection, f: FrameStream, streamSignal: AbortSignal): Promise<void> {
    const writeLast = async (frame: Message): Promise<void> => { await f.write(frame, AbortSignal.timeout(NODE_DEFAULTS.dialTimeoutMs)).catch(() => {}) }
    const done = new AbortController()
    const signal = AbortSignal.any([streamSignal, done.signal])
    const admitSignal = AbortSignal.any([signal, AbortSignal.timeout(Math.max(0, job.deadline - Date.now()) + 1_000)])
    try {
      const answer = await admitted(job, connection, admitSignal, 'session', async (a) => await session(job, a, f, streamSignal, signal, done))
      await writeLast(answer)
    } finally {
      done.abort()
    }
  }

  /** The admitted session: runs it and returns its last frame (session-end, result or error). */
  async function session (job: JobRequest, a: Admission, f: FrameStream, streamSignal: AbortSignal, signal: AbortSignal, done: AbortController): Promise<Message> {
    // rewindable: a gateway may have delivered fewer of the function's messages than it sent (a
    // client's Close on its way): the receipt signs the delivered ones (WsClose.delivered)
    const tr = transcript({ rewindable: NODE_DEFAULTS.sessionRewindableMessages })
    let control: SessionControl | undefined
    let opened = false
    let closed = false
    // the function's limits under the worker's own, enforced here whatever the gateway does
    const limits = {
      idleMs: Math.min(sessionIdleMs, a.websocket?.idleTimeoutMs ?? Infinity),
      maxMs: Math.min(sessionMaxMs, a.websocket?.maxSessionMs ?? Infinity),
      messagesPerSec: Math.min(sessionPerSec, a.websocket?.messagesPerSecond ?? Infinity),
      maxMessageBytes: Math.min(LIMITS.maxWsMessageBytes, a.websocket?.maxMessageBytes ?? Infinity)
    }
    let guard: SessionGuard | undefined
    // writes go out in order; what waits for the gateway is bounded: past the high-water mark
    // the sandbox's output is no longer read (the function's sends wait in its own memory)
    let chain: Promise<void> = Promise.resolve()
    let pending = 0
    let paused = false
    const send = (msg: Message, size: number): void => {
      pending += size
      if (!paused && pending > NODE_DEFAULTS.sessionHighWaterBytes) { paused = true; control?.pause() }
      chain = chain.then(async () => { await f.write(msg, streamSignal) }).catch(() => {
        // the gateway is gone (it may have given up on this session before it opened): the
        // function sees its client leave, so the session ends now instead of at its maximum length
        done.abort()
        if (!closed) { closed = true; control?.close(WS_CLOSE.goingAway, 'the gateway went away') }
      }).finally(() => {
        pending -= size
        if (paused && pending <= NODE_DEFAULTS.sessionHighWaterBytes / 2) { paused = false; control?.resume() }
      })
    }
    /** the worker ends the session at a limit: the function sees its client leave, the gateway the close */
    const endAtLimit = (code: number, reason: string): void => {
      if (closed) return
      closed = true
      sessionLimitCloses.inc({ code: String(code) })
      log.info({ jobId: job.jobId, gateway: job.ticket.gateway, code, reason }, 'session closed by the worker at a limit')
      control?.close(code, reason)
      send({ v: PROTOCOL_VERSION, type: 'ws-close', code, reason }, 128)
    }
    // Metered fees (issue 12): what the session owes (its opening fee, then per message either way
    // and per minute since it opened) against the highest cumulative ticket the gateway signed,
    // which is durable in the receipt log before it counts; past the credit the session is closed
    const opening = BigInt(job.ticket.fee)
    // Segments (docs/chain.md "Sessions that outlive their epoch"): the segment being paid now. Its
    // `key` is undefined while it has no ticket of its own (the worker closed the previous one
    // itself, or is closing it): then no ticket is counted and the session runs on its credit.
    interface Segment { index: number, jobId: `0x${string}`, epoch: bigint, key: ReceiptKey | undefined, base: bigint, paid: bigint, ticketSig: `0x${string}` }
    let seg: Segment = { index: 0, jobId: job.jobId, epoch: BigInt(job.ticket.epoch), key: a.key, base: 0n, paid: opening, ticketSig: job.ticketSig }
    /** segments closed (their receipts in the log): index → what they were paid, for a late `segment`'s closing ticket */
    const closedSegments = new Map<number, Segment>()
    // segment 0 is the session's own job: its job id and epoch are the job's (atSegment then equals atFee)
    const segmentRequest = (s: Pick<Segment, 'jobId' | 'epoch'>, fee: string): JobRequest => atSegment(job, s.jobId, s.epoch.toString(), fee)
    /** segment closes and openings run one after another */
    let segChain: Promise<void> = Promise.resolve()
    let messages = 0
    let openedAt = 0
    let ticketFrames = 0
    let creditTimer: NodeJS.Timeout | undefined
    let segmentTimer: NodeJS.Timeout | undefined
    /** resolved by the gateway's ws-close (its answer to the worker's close, after its final ticket) */
    let gatewayAnswered: (() => void) | undefined
    let gatewayAnswer = false
    const checkCredit = (): void => {
      if (!sessionPriced || closed || openedAt === 0) return
      const owed = sessionOwed(opening, sessionPrice, messages, Date.now() - openedAt)
      const paid = seg.base + seg.paid
      if (owed - paid > sessionCredit) {
        log.info({ jobId: job.jobId, gateway: job.ticket.gateway, owed: owed.toString(), paid: paid.toString(), credit: sessionCredit.toString() }, 'session gateway fell behind its payments')
        endAtLimit(WS_CLOSE.paymentRequired, 'payment required: the gateway fell behind its cumulative tickets by more than the worker\'s credit')
      }
    }
    const onTicket = (t: SessionTicket): void => {
      // a ticket flood is not free for the worker (a signature recovery each): at most one per
      // message and per second of the session, plus a few
      if (++ticketFrames > 16 + messages + (Date.now() - (openedAt || Date.now())) / 1000) {
        sessionTickets.inc({ outcome: 'flood' })
        endAtLimit(WS_CLOSE.rateLimited, 'too many ticket frames')
        return
      }
      // a cumulative ticket pays the current segment (its own job id), never a closed one
      const current = seg
      if (t.jobId !== current.jobId || t.attempt !== job.attempt || current.key === undefined) { sessionTickets.inc({ outcome: 'other-job' }); return }
      const by = recoverDigestSigner(ticketDigest(domain, ticketOf(segmentRequest(current, t.fee), a.jobHash)), t.ticketSig)
      if (by === undefined || !sameAddress(by, job.ticket.gateway)) { sessionTickets.inc({ outcome: 'bad-signature' }); return }
      if (BigInt(t.fee) <= current.paid) { sessionTickets.inc({ outcome: 'not-higher' }); return }
      let recorded = false
      try {
        recorded = receipts.raiseFee(current.key, t.fee, t.ticketSig)
      } catch (err) {
        log.error({ err, jobId: job.jobId }, 'cumulative ticket not recorded; not counted as paid')
      }
      if (!recorded) { sessionTickets.inc({ outcome: 'not-recorded' }); return }
      // durable: from now on the segment's receipt signs, and settlement pays, this fee
      current.paid = BigInt(t.fee)
      current.ticketSig = t.ticketSig
      sessionTickets.inc({ outcome: 'accepted' })
    }
    /**
     * Closes the current segment at the highest ticket it holds: its receipt (the transcript so far,
     * whose hashes run on) is durable in the receipt log, then `segment-end` tells the gateway. From
     * the moment it starts the segment counts no more tickets (`seg` is the next one, unticketed).
     */
    const closeSegment = async (why: 'segment' | 'epoch-ended'): Promise<boolean> => {
      const closing = seg
      if (closing.key === undefined) return false
      seg = { index: closing.index + 1, jobId: segmentJobId(job.jobId, closing.index + 1), epoch: closing.epoch, key: undefined, base: closing.base + closing.paid, paid: 0n, ticketSig: closing.ticketSig }
      const summary = tr.summary()
      const out = transcriptOutputHash(summary)
      const fee = closing.paid.toString()
      const receiptSig = signer.signDigest(receiptDigest(domain, receiptOf(segmentRequest(closing, fee), out, a.jobHash)))
      try {
        await receipts.commit(closing.key, out, receiptSig)
      } catch (err) {
        // not durable: no receipt leaves, and the segment is not paid (the key stays reserved)
        log.error({ err, jobId: job.jobId, segment: closing.index }, 'segment receipt not recorded; withheld')
        return false
      }
      closedSegments.set(closing.index, closing)
      sessionSegments.inc({ outcome: why })
      log.info({ jobId: job.jobId, gateway: job.ticket.gateway, segment: closing.index, epoch: closing.epoch.toString(), fee, why }, 'session segment closed')
      send({ v: PROTOCOL_VERSION, type: 'segment-end', jobId: job.jobId, attempt: job.attempt, segment: closing.index, fee, transcript: summary, outputHash: out, receiptSig }, 512)
      return true
    }
    /** Why a `segment` frame is ignored, else undefined. */
    const segmentProblem = (m: SegmentFrame): string | undefined => {
      if (m.jobId !== job.jobId || m.attempt !== job.attempt) return 'other-job'
      // the next segment after the one open, or the one the worker opened unticketed itself
      const expected = seg.key !== undefined ? seg.index + 1 : seg.index
      if (m.segment !== expected) return 'wrong-segment'
      if (m.segmentJobId !== segmentJobId(job.jobId, m.segment)) return 'wrong-job-id'
      const closing = seg.key !== undefined ? seg : closedSegments.get(m.segment - 1)
      if (closing === undefined) return 'wrong-segment'
      const epoch = BigInt(m.epoch)
      if (epoch <= closing.epoch) return 'wrong-epoch'
      if (components.sessionEpochs !== undefined && epoch !== components.sessionEpochs.current()) return 'wrong-epoch'
      if (components.checkEpoch?.(epoch) !== undefined) return 'wrong-epoch'
      // the closing ticket: the closing segment's, at no less than the worker holds
      if (BigInt(m.closeFee) < closing.paid) return 'lower-fee'
      const closer = recoverDigestSigner(ticketDigest(domain, ticketOf(segmentRequest(closing, m.closeFee), a.jobHash)), m.closeSig)
      if (closer === undefined || !sameAddress(closer, job.ticket.gateway)) return 'bad-signature'
      const opener = recoverDigestSigner(ticketDigest(domain, ticketOf(atSegment(job, m.segmentJobId, m.epoch, m.fee), a.jobHash)), m.ticketSig)
      if (opener === undefined || !sameAddress(opener, job.ticket.gateway)) return 'bad-signature'
      return undefined
    }
    /**
     * A valid `segment`: the closing segment's final ticket is made durable (`raiseFee`), its receipt
     * committed, and only then the new segment's key reserved as a session's opening and counted.
     */
    const onSegment = async (m: SegmentFrame): Promise<void> => {
      const problem = segmentProblem(m)
      if (problem !== undefined) {
        sessionSegments.inc({ outcome: problem })
        log.info({ jobId: job.jobId, gateway: job.ticket.gateway, segment: m.segment, problem }, 'segment frame ignored')
        return
      }
      if (seg.key !== undefined) {
        if (BigInt(m.closeFee) > seg.paid) {
          let recorded = false
          try {
            recorded = receipts.raiseFee(seg.key, m.closeFee, m.closeSig)
          } catch (err) {
            log.error({ err, jobId: job.jobId }, 'closing ticket not recorded')
          }
          if (!recorded) { sessionSegments.inc({ outcome: 'not-recorded' }); return }
          seg.paid = BigInt(m.closeFee)
          seg.ticketSig = m.closeSig
        }
        if (!await closeSegment('segment')) return
      }
      const key: ReceiptKey = { gateway: job.ticket.gateway, jobId: m.segmentJobId, attempt: job.attempt }
      let reserved = false
      try {
        reserved = receipts.reserve({
          ...key,
          projectId: projectId(job.fn.wallet, job.fn.project),
          functionId: job.fn.id,
          jobHash: a.jobHash,
          inputHash: job.inputHash,
          worker: job.ticket.worker,
          fee: m.fee,
          epoch: m.epoch,
          deadline: job.ticket.deadline,
          ticketSig: m.ticketSig
        }).ok
      } catch (err) {
        log.error({ err, jobId: job.jobId }, 'segment ticket not recorded')
      }
      if (!reserved) { sessionSegments.inc({ outcome: 'not-recorded' }); return }
      // the base is what the closed segments were paid as the worker holds them
      seg = { index: m.segment, jobId: m.segmentJobId, epoch: BigInt(m.epoch), key, base: seg.base, paid: BigInt(m.fee), ticketSig: m.ticketSig }
      sessionSegments.inc({ outcome: 'opened' })
    }
    const readFromGateway = async (): Promise<void> => {
      try {
        while (!signal.aborted) {
          const list = await f.lp.read({ signal })
          const msg = decodeMessage(list.subarray())
          if (msg.type === 'ticket') {
            onTicket(msg)
          } else if (msg.type === 'segment') {
            // a flood of segment frames costs signature recoveries: they count as ticket frames
            if (++ticketFrames > 16 + messages + (Date.now() - (openedAt || Date.now())) / 1000) {
              sessionTickets.inc({ outcome: 'flood' })
              endAtLimit(WS_CLOSE.rateLimited, 'too many ticket frames')
              continue
            }
            const p = segChain.then(async () => { await onSegment(msg) })
            segChain = p.catch(() => {})
            await p
          } else if (msg.type === 'ws') {
            // the transcript holds what crossed the stream, as the gateway's does (it relays until
            // its client's close completes); only what passes the limits reaches the function
            tr.add('in', msg.binary, msg.data)
            messages++
            checkCredit()
            // size and rate, enforced here too: a gateway that skipped them gets the session closed
            const refused = guard?.inbound(msg.data.byteLength)
            if (refused !== undefined) { endAtLimit(refused.code, refused.reason); continue }
            if (!closed) control?.send(msg.data, msg.binary)
          } else if (msg.type === 'ws-close') {
            // the gateway's close: the client's or its own, or its answer to the worker's (then
            // after its final ticket). It names how many of the function's messages reached the
            // client; those are what the receipt signs (a message further back than the kept
            // states: the transcript stays whole, and the gateway keeps the receipt unverified)
            if (msg.delivered !== undefined && !tr.rewindOut(msg.delivered)) log.debug({ jobId: job.jobId, delivered: msg.delivered }, 'session: cannot rewind the transcript to the delivered messages')
            closed = true
            control?.close(msg.code, msg.reason)
            gatewayAnswer = true
            gatewayAnswered?.()
            return
          } else {
            throw new ProtocolError('INVALID_FIELD', `a "${msg.type}" frame in a session; expected ws, ticket, segment or ws-close`)
          }
        }
      } catch (err) {
        if (finished) return
        // the gateway went away or sent garbage: the function sees its client leave
        log.info({ jobId: job.jobId, err: (err as Error)?.message }, 'session stream ended without a close')
        if (!closed) { closed = true; control?.close(WS_CLOSE.goingAway, 'the gateway went away') }
      }
    }
    // set once the execution has ended: a read cut short after that is the session's own teardown
    let finished = false
    const result = await a.execute(Date.now() + a.options.timeoutMs, {
      // the shim's own backstop, after the guard's (which closes with 4410)
      maxSessionMs: limits.maxMs + 2 * NODE_DEFAULTS.workerSessionGraceMs,
      bind: (c) => { control = c },
      onOpen: (headers) => {
        opened = true
        openedAt = Date.now()
        guard = sessionGuard(limits, endAtLimit)
        if (sessionPriced && sessionPrice.perMinute !== '0') {
          creditTimer = setInterval(checkCredit, NODE_DEFAULTS.sessionCreditCheckMs)
          creditTimer.unref()
        }
        const epochs = components.sessionEpochs
        if (epochs !== undefined && (sessionPriced || opening > 0n)) {
          // no `segment` by the epoch's end plus half the grace: the worker closes the segment
          // itself at the last ticket it holds, so it is in the epoch's batch; the session goes on
          // under its credit (past it, 4402 as ever)
          segmentTimer = setInterval(() => {
            if (closed || seg.key === undefined || !epochs.segmentDue(seg.epoch)) return
            segChain = segChain.then(async () => {
              if (seg.key !== undefined && epochs.segmentDue(seg.epoch)) await closeSegment('epoch-ended')
            }).catch(() => {})
          }, NODE_DEFAULTS.sessionSegmentCheckMs)
          segmentTimer.unref()
        }
        send({ v: PROTOCOL_VERSION, type: 'session-open', jobId: job.jobId, attempt: job.attempt, headers: headers.map(([k, v]) => [k.toLowerCase(), v] as [string, string]).slice(0, LIMITS.maxHeaders) }, 256)
        void readFromGateway()
      },
      onMessage: (payload, binary) => {
        if (closed) return
        if (payload.byteLength > LIMITS.maxWsMessageBytes) {
          // the function's message is too big for the mesh: the session ends as the client's would
          closed = true
          control?.close(WS_CLOSE.tooBig, 'message too big')
          send({ v: PROTOCOL_VERSION, type: 'ws-close', code: WS_CLOSE.tooBig, reason: 'the function sent a message over the size limit' }, 128)
          return
        }
        guard?.outbound()
        tr.add('out', binary, payload)
        messages++
        checkCredit()
        send({ v: PROTOCOL_VERSION, type: 'ws', binary, data: payload }, payload.byteLength)
      },
      onClose: (code, reason) => {
        if (closed) return
        closed = true
        send({ v: PROTOCOL_VERSION, type: 'ws-close', code, reason }, 128)
      }
    }).finally(() => { finished = true; clearInterval(creditTimer); clearInterval(segmentTimer) })
    guard?.stop()
    await chain
    if (!opened) {
      // no WebSocket: an ordinary answer with its receipt
      const outcome = result.response !== undefined && result.response.status !== 101
        ? { response: result.response }
        : { error: result.error ?? { code: 'RESULT_INVALID' as const, message: 'the function returned no usable response' } }
      return await signedResult(job, a, outcome, result, result.timings)
    }
    // the function's execution ended (it closed, or the client did, or a limit): tell the
    // gateway how, then sign the transcript
    if (!closed) {
      closed = true
      const code = result.error !== undefined ? WS_CLOSE.internalError : 1000
      await f.write({ v: PROTOCOL_VERSION, type: 'ws-close', code, reason: result.error !== undefined ? result.error.code : '' }, AbortSignal.timeout(NODE_DEFAULTS.dialTimeoutMs)).catch(() => {})
    }
    if (!gatewayAnswer && !streamSignal.aborted) {
      // the worker (its function, or a limit) ended the session: an honest gateway answers the
      // close with its final cumulative ticket (a priced session) and its own ws-close naming the
      // messages it delivered; the receipt waits a bounded moment for them
      await new Promise<void>(resolve => {
        const timer = setTimeout(resolve, NODE_DEFAULTS.sessionFinalTicketWaitMs)
        gatewayAnswered = () => { clearTimeout(timer); resolve() }
        streamSignal.addEventListener('abort', () => { clearTimeout(timer); resolve() }, { once: true })
      })
    }
    // a segment closing or opening now finishes first
    await segChain
    const last = seg
    const summary = tr.summary()
    const out = transcriptOutputHash(summary)
    // the last segment has no ticket of its own (the worker closed the one before and no `segment`
    // came): there is nothing to sign; every closed segment's receipt is in the log already
    if (last.key === undefined) return fail(job, 'PAYMENT_REQUIRED', `the session's segment ${last.index} has no ticket from the gateway: no receipt for it`, { segment: last.index })
    // the highest cumulative ticket on record, when one raised the opening fee (a later segment's always)
    const paidFee = last.index > 0 || last.paid > opening ? last.paid.toString() : undefined
    let receiptSig: `0x${string}` | undefined
    if (last.index === 0) {
      receiptSig = await a.sign(out, paidFee)
    } else {
      const sig = signer.signDigest(receiptDigest(domain, receiptOf(segmentRequest(last, last.paid.toString()), out, a.jobHash)))
      receiptSig = await receipts.commit(last.key, out, sig).then(() => sig, (err) => { log.error({ err, jobId: job.jobId }, 'receipt not recorded; the receipt is withheld'); return undefined })
    }
    if (receiptSig === undefined) return fail(job, 'INTERNAL', 'the worker could not record the session receipt')
    const end: SessionEnd = {
      v: PROTOCOL_VERSION,
      type: 'session-end',
      jobId: job.jobId,
      attempt: job.attempt,
      transcript: summary,
      outputHash: out,
      receiptSig,
      ...(paidFee !== undefined ? { fee: paidFee } : {}),
      ...(last.index > 0 ? { segment: last.index } : {}),
      logs: result.logs,
      logsTruncated: result.logsTruncated
    }
    if (result.error !== undefined) end.error = result.error
    jobsTotal.inc({ outcome: result.error?.code ?? 'session' })
    return end
  }

  async function executeLocal (job: LocalJob, options: { from?: PeerId, signal?: AbortSignal }): Promise<LocalJobResult> {
    if (stopping) throw new NodeError('SHUTTING_DOWN', 'the worker is shutting down')
    const signal = AbortSignal.any([options.signal ?? new AbortController().signal, AbortSignal.timeout(Math.max(0, job.deadline - Date.now()) + 1_000)])
    slots.enter()
    runningGauge.set(slots.running)
    try {
      const checked = await components.checkJob?.(job, options.from, signal)
      if (checked?.refused !== undefined) throw new NodeError(checked.refused.code, checked.refused.message, { details: checked.refused.details })
      let bytes = bundles.get(job.fn.bundleCid)
      if (bytes === undefined && (options.from !== undefined || components.fetchBundle !== undefined)) {
        bytes = await fetchBundle(options.from ?? libp2p.peerId, job.fn.bundleCid, AbortSignal.any([signal, AbortSignal.timeout(NODE_DEFAULTS.bundleFetchTimeoutMs)]))
      }
      if (bytes === undefined) throw new NodeError('BUNDLE_UNAVAILABLE', `bundle ${job.fn.bundleCid} could not be fetched`)
      const result = await executeWithSecrets(executor, { jobId: job.jobId, bundle: { cid: job.fn.bundleCid, bytes }, request: job.request, env: checked?.run?.env ?? job.env, options: checked?.run?.options ?? job.options, deadline: job.deadline }, job.secrets, { signal })
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
    get sessions () { return sessionsOpen },
    addrs: () => dialableAddrs(libp2p),
    async start () {
      await executor.start()
      await libp2p.start()
      await libp2p.handle(JOB_PROTOCOL, (stream, connection) => {
        const p = handleJobStream(stream, connection)
        inflight.add(p)
        void p.finally(() => inflight.delete(p))
        // a session holds its stream for its whole life: room for every session beside the jobs,
        // and for a burst of session opens beyond them. A stream over this limit is reset by libp2p
        // before the worker sees it, which its gateway can only count as a failure of the worker
        // (and then piles the burst onto the other workers); one that gets through is answered by
        // admission, OVERLOADED when the worker holds maxSessions, a refusal gateways understand.
        // 500 sessions opened at once on three workers reset streams at 64 + 256 (bench:ws).
      }, { maxInboundStreams: Math.max(NODE_DEFAULTS.maxInboundJobStreams + maxSessions, NODE_DEFAULTS.maxOutboundJobStreams) })
      libp2p.services.pubsub.subscribe(topic)
      await publishAdvert()
      advertTimer = setInterval(() => { void publishAdvert() }, init.advertIntervalMs ?? NODE_DEFAULTS.advertIntervalMs)
      log.info({ peerId: libp2p.peerId.toString(), address: signer.address, addrs: dialableAddrs(libp2p), executor: executor.kind }, 'worker started')
    },
    async stop () {
      if (stopping) return
      stopping = true
      stopped.abort()
      clearInterval(advertTimer)
      await Promise.race([
        Promise.allSettled([...inflight]),
        new Promise(resolve => setTimeout(resolve, NODE_DEFAULTS.drainTimeoutMs).unref())
      ])
      // graceful closes first: an answer written just now may still be on its way out, and
      // libp2p.stop() aborts what is left; bounded, as a peer may never answer the close
      await Promise.allSettled(libp2p.getConnections().map(async c => { await c.close({ signal: AbortSignal.timeout(NODE_DEFAULTS.dialTimeoutMs) }) }))
      await libp2p.stop()
      await executor.stop()
      if (components.receipts === undefined) receipts.close()
      log.info('worker stopped')
    }
  }
}
