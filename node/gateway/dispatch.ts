/**
 * Dispatch of one job through the mesh: pick a worker, sign a ticket, open a job stream, and
 * verify the signed result. A worker that fails, stalls past its share of the deadline, or drops
 * the stream is replaced by the next one (attempt + 1); the old attempt's stream is aborted, so a
 * late answer from it can never be taken.
 *
 * Load policy (issue 10): retries are bounded by a retry budget (≤ 10 % of first attempts over a
 * sliding window), never go to a worker with no room (advertised `full` or just answered
 * OVERLOADED), and when no worker has room the answer is OVERLOADED at once. Errors of the
 * function or its limits (`kind: 'user'`) are final: one attempt, and the attempt's budget covers
 * the function's own limit so the worker can report it. `chainFallbackAllowed` decides when the
 * chain may be asked: never for overload or a deadline running out on a live mesh, never without
 * time for the chain path.
 */
import type { PeerId, Stream } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import type { Hex } from 'viem'
import {
  decodeMessage, JOB_PROTOCOL, jobHashOf, newJobId, outputHash, projectId, PROTOCOL_VERSION, receiptDigest, receiptOf, ticketDigest,
  ticketOf, WIRE_ERROR_CODES, sessionPriceFits, type JobRequest, type JobResult, type PeerHostDomain, type StreamHead, type WireError, type WireRequest, type WorkerAdvert
} from '#protocol'
import { NODE_DEFAULTS } from '../constants.ts'
import { frames, type FrameStream } from '../frames.ts'
import type { PeerHostLibp2p } from '../libp2p.ts'
import type { Logger } from '../logger.ts'
import { recoverDigestSigner, sameAddress, type FastSigner } from '../signing.ts'
import type { AllowanceTracker } from '../settlement/allowance.ts'
import type { TicketLog } from '../settlement/checker.ts'
import type { FunctionEntry } from './functions.ts'
import { sessionBilling, type SessionBilling } from './session-billing.ts'
import { waitQueue, type WaitQueue, type WaitTicket } from './wait-queue.ts'

/** The jobHash of each job frame this gateway built: its ticket and the worker's receipt both sign it (one keccak over the job instead of two). */
const jobHashes = new WeakMap<JobRequest, Hex>()
import type { WorkerEntry, WorkerView } from './worker-view.ts'
import { deadline } from '../deadline.ts'
import { streamOpener, StreamOpenQueued } from '../stream-opener.ts'

export interface AttemptRecord {
  attempt: number
  worker: string
  ok: boolean
  /** wire code when the attempt failed */
  code?: string
  /** the worker's `details.reason` when it refused (`TICKET_INVALID`: `deadline-too-far`, `fee-below-price`, …) */
  reason?: string
  ms: number
}

/** The reason a worker gave with its refusal, for the attempt's record. */
function refusalReason (err: unknown): { reason?: string } {
  const reason = err instanceof AttemptFailed ? err.details?.reason : undefined
  return typeof reason === 'string' ? { reason } : {}
}

export interface DispatchOutcome {
  jobId: Hex
  /** the mesh had no room (every worker full, or refusing with OVERLOADED): a hint for `Retry-After`, ms */
  retryAfterMs?: number
  attempts: AttemptRecord[]
  /** the verified result (which may itself carry a user error such as FUNCTION_ERROR) */
  result?: JobResult
  /**
   * The worker answered with a streamed body: its head, and the job stream to read the chunks and
   * the `stream-end` from (the caller owns it now and must call `done`). Final: never retried.
   */
  stream?: StreamedAnswer
  /** the job frame of the attempt that produced `result` */
  request?: JobRequest
  worker?: WorkerEntry
  /** set when no verified result was obtained */
  error?: WireError
  /** ms spent before the final attempt's frame was written (picking, signing, dialing, failed attempts) */
  dispatchMs: number
}

/** A streamed answer's job stream, handed to the caller (http.ts relays it). */
export interface StreamedAnswer {
  head: StreamHead
  stream: Stream
  f: FrameStream
  /** the stream ended with its `stream-end` read (`clean`: back to the idle pool), else aborted */
  done: (clean: boolean) => void
}

export interface DispatchInit {
  /** @default NODE_DEFAULTS.maxAttempts */
  maxAttempts?: number
  domain: PeerHostDomain
  /**
   * The settlement epoch a ticket issued at unix ms `nowMs` carries: Settlement's own
   * (node/settlement `settlementClock(...).epochAtMs`) when the gateway has a chain.
   * @default unix hours (no chain: tickets are never settled)
   */
  epochOf?: (nowMs: number) => bigint
}

/** Opens a job stream to a worker (dial, or a new stream on an open connection). */
export type JobDialer = (peer: PeerId, signal: AbortSignal) => Promise<Stream>

export interface DispatchComponents {
  libp2p: PeerHostLibp2p
  view: WorkerView
  /** signs tickets: the gateway's secp256k1 key */
  signer: FastSigner
  logger: Logger
  /** @default a new stream on an open connection to the worker, else a dial (libp2p) */
  dial?: JobDialer
  /** @default retryBudget() with NODE_DEFAULTS */
  retryBudget?: RetryBudget
  /**
   * The project's budget (node/settlement `allowanceTracker`): a ticket with a fee is signed only
   * when its escrow and this gateway's allowance cover it, else PAYMENT_REQUIRED (402).
   * @default none (no chain: fees are not checked)
   */
  spend?: AllowanceTracker
  /**
   * The gateway's ticket log (node/settlement `ticketLog`): every ticket is recorded before it
   * leaves, so batches naming this gateway can be checked against it. @default none (no chain)
   */
  tickets?: TicketLog
  /**
   * Where a request waits for a slot when every worker is full (node/gateway/wait-queue.ts).
   * @default waitQueue() with NODE_DEFAULTS
   */
  waitQueue?: WaitQueue
}

export interface RetryBudgetInit {
  /** @default NODE_DEFAULTS.retryBudgetRatio */
  ratio?: number
  /** @default NODE_DEFAULTS.retryBudgetWindowMs */
  windowMs?: number
  /** @default NODE_DEFAULTS.retryBudgetMinRetries */
  minRetries?: number
  now?: () => number
}

export interface RetryBudget {
  /** a first attempt was made: earns `ratio` of a retry */
  deposit: () => void
  /** asks for one retry: false when the window's budget is spent */
  withdraw: () => boolean
  /** first attempts and retries in the current window */
  stats: () => { requests: number, retries: number }
}

/**
 * A retry budget over a sliding window of ten slices: retries in the window may not exceed
 * `minRetries + ratio × first attempts` in the same window. Under a storm of failures, attempts
 * stay within (1 + ratio)× the requests instead of maxAttempts×.
 */
export function retryBudget (init: RetryBudgetInit = {}): RetryBudget {
  const ratio = init.ratio ?? NODE_DEFAULTS.retryBudgetRatio
  const windowMs = init.windowMs ?? NODE_DEFAULTS.retryBudgetWindowMs
  const minRetries = init.minRetries ?? NODE_DEFAULTS.retryBudgetMinRetries
  const now = init.now ?? Date.now
  const slices = 10
  const sliceMs = windowMs / slices
  const requests = new Array<number>(slices).fill(0)
  const retries = new Array<number>(slices).fill(0)
  let current = Math.floor(now() / sliceMs)

  function advance (): number {
    const slice = Math.floor(now() / sliceMs)
    // slices that fell out of the window are emptied before reuse
    for (let s = current + 1; s <= slice && s - current <= slices; s++) { requests[s % slices] = 0; retries[s % slices] = 0 }
    current = Math.max(current, slice)
    return current % slices
  }
  const sum = (a: number[]): number => a.reduce((x, y) => x + y, 0)

  return {
    deposit () { requests[advance()]++ },
    withdraw () {
      const i = advance()
      if (sum(retries) + 1 > minRetries + ratio * sum(requests)) return false
      retries[i]++
      return true
    },
    stats () { advance(); return { requests: sum(requests), retries: sum(retries) } }
  }
}

/** Codes by which a worker says it has no room: not a fault, never a reason to ask the chain. */
const NO_ROOM = new Set(['OVERLOADED', 'SHUTTING_DOWN'])
/**
 * Mesh outcomes that may go to the chain: the mesh was unreachable or a worker misbehaved (a
 * refused dial, a reset stream, a broken frame or receipt). Not DEADLINE_EXCEEDED: a job that
 * found no answer in time on a live mesh is what overload looks like from here (queues, CPU
 * contention), and asking the chain then spends money to add load; the slow worker's latency and
 * failure count steer later jobs away from it instead.
 */
const CHAIN_CODES = new Set(['NO_WORKER', 'WORKER_FAILED'])

/**
 * Whether the chain fallback may answer a request the mesh did not: only when the mesh could not
 * be reached or a worker misbehaved (never when workers had no room: overload on the mesh is not
 * solved by paying the chain), and only when `remainingMs` of the request's deadline fits the chain
 * path (NODE_DEFAULTS.chainPathMinMs).
 */
export function chainFallbackAllowed (outcome: Pick<DispatchOutcome, 'result' | 'error' | 'attempts'>, remainingMs: number): boolean {
  if (outcome.result !== undefined || outcome.error === undefined) return false
  if (!CHAIN_CODES.has(outcome.error.code)) return false
  // any sign of load in this request's attempts (no room, or an attempt that ran out of time) rules the chain out
  if (outcome.attempts.some(a => a.code !== undefined && (NO_ROOM.has(a.code) || a.code === 'DEADLINE_EXCEEDED'))) return false
  return remainingMs >= NODE_DEFAULTS.chainPathMinMs
}

/**
 * The deadline the mesh gets when a chain fallback waits behind it: `meshShare` of what is left,
 * but never less than the function's own limit plus NODE_DEFAULTS.limitGraceMs, so a limit error
 * (LIMIT_TIMEOUT after timeoutMs) reaches the client from the worker instead of turning into a
 * mesh timeout that the chain then repeats.
 */
export function meshDeadline (now: number, deadline: number, timeoutMs: number, meshShare: number): number {
  const share = now + Math.max(0, deadline - now) * meshShare
  return Math.floor(Math.min(deadline, Math.max(share, now + timeoutMs + NODE_DEFAULTS.limitGraceMs)))
}

export interface DispatchJob {
  entry: FunctionEntry
  request: WireRequest
  inputHash: Hex
  /** the project's opened secrets, sent in this job's frames only (JobRequest.secrets) */
  secrets?: Record<string, string>
  /** unix ms */
  deadline: number
  signal?: AbortSignal
  /**
   * Workers this job may not go to, shared by the parallel copies of one quorum request
   * (quorum.ts): each copy adds the worker it picks before any await, so copies run on distinct
   * workers, retries included. @default a fresh set
   */
  exclude?: Set<string>
}

export type Dispatcher = ((job: DispatchJob) => Promise<DispatchOutcome>) & {
  /** Opens a WebSocket session job (see SessionDispatch); absent in dispatchers that cannot. */
  session?: (job: DispatchJob) => Promise<SessionDispatch>
  /** the wait queue requests use when every worker is full (metrics read it) */
  queue?: WaitQueue
}

/**
 * A session job's opening: the worker's stream, open for the session (`open` set: the function
 * accepted), or a verified ordinary `result` (the function answered without a WebSocket), or an
 * `error` when no worker took it.
 */
export interface SessionDispatch {
  jobId: Hex
  attempts: AttemptRecord[]
  request?: JobRequest
  worker?: WorkerEntry
  /** `release` once the session ended (the worker view counts this gateway's sessions per worker) */
  open?: { headers: Array<[string, string]>, stream: Stream, f: FrameStream, release: () => void, billing?: SessionBilling }
  result?: JobResult
  error?: WireError
}

export type { SessionBilling }

interface JobStream {
  stream: Stream
  f: FrameStream
  /** when it was opened or last went idle */
  since: number
}

class AttemptFailed extends Error {
  readonly code: string
  /** the job frame never left: the worker cannot have seen this attempt */
  readonly unsent: boolean
  readonly details: WireError['details']
  constructor (code: string, message: string, unsent = false, details?: WireError['details']) { super(message); this.code = code; this.unsent = unsent; this.details = details }
}

const peerIds = new Map<string, PeerId>()
function peerIdOf (id: string): PeerId {
  let peer = peerIds.get(id)
  if (peer === undefined) {
    peer = peerIdFromString(id)
    if (peerIds.size > 10_000) peerIds.clear()
    peerIds.set(id, peer)
  }
  return peer
}

/** Whether a worker's advertised request price is within a project's `maxFee` (none: no cap). */
export function withinMaxFee (advert: Pick<WorkerAdvert, 'price'>, maxFee: bigint | undefined): boolean {
  return maxFee === undefined || BigInt(advert.price ?? '0') <= maxFee
}

/** The client's request signal has aborted (its connection closed): read at the moment of asking. */
function clientGone (signal: AbortSignal | undefined): boolean {
  return signal?.aborted === true
}

export function dispatcher (init: DispatchInit, components: DispatchComponents): Dispatcher {
  const { libp2p, view, signer } = components
  const log = components.logger.child({ component: 'peerhost:gateway:dispatch' })
  const maxAttempts = init.maxAttempts ?? NODE_DEFAULTS.maxAttempts
  const epochOf = init.epochOf ?? ((ms: number) => BigInt(Math.floor(ms / 3_600_000)))
  const budget = components.retryBudget ?? retryBudget()
  const queue = components.waitQueue ?? waitQueue()
  /** One of this gateway's jobs on a worker ended: its slot is free for the first waiter. */
  function ended (peerId: string, outcome: Parameters<WorkerView['end']>[1]): void {
    view.end(peerId, outcome)
    // only jobs that ran count toward the completion rate the queue's estimates use
    if (outcome.latencyMs !== undefined) queue.completed()
    else queue.poke()
  }

  /**
   * A worker for this job, waiting in the queue while every worker is full (FIFO: a request
   * arriving while others wait goes behind them). `full` when the mesh had no room and the wait
   * was refused or ran out: the caller answers OVERLOADED. The worker comes claimed, in the same
   * turn as it was picked: added to `exclude` (shared by a quorum's copies, which must land on
   * distinct workers) and counted in flight, so no concurrent pick can take the same slot.
   */
  async function pickOrWait (job: DispatchJob, exclude: Set<string>): Promise<{ worker?: WorkerEntry, full: boolean }> {
    const cid = job.entry.ref.bundleCid
    let ticket: WaitTicket | undefined
    let worker = queue.waiting > 0 ? undefined : view.pick(cid, exclude)
    while (worker === undefined) {
      const full = view.list().some(w => !exclude.has(w.peerId) && view.isFull(w))
      if (!full) {
        // nobody is full: either a worker has room (take it, whoever waits) or none is left
        worker = view.pick(cid, exclude)
        break
      }
      ticket ??= queue.join(job.deadline)
      if (ticket === undefined) return { full: true }
      const verdict = await ticket.wait(job.signal)
      if (verdict !== 'retry') { ticket.leave(false); return { full: true } }
      worker = view.pick(cid, exclude)
    }
    if (worker !== undefined) {
      exclude.add(worker.peerId)
      view.begin(worker.peerId)
    }
    ticket?.leave(worker !== undefined)
    return { worker, full: false }
  }
  // at most a few opens at once on a connection the worker has not finished setting up (past its
  // early-stream limit it aborts the connection, every session on it included: node/stream-opener.ts)
  const openJobStream = streamOpener(libp2p)
  const dial: JobDialer = components.dial ?? (async (peer, signal) => await openJobStream(peer, JOB_PROTOCOL, {
    signal,
    // asks for optimistic protocol selection (the job frame with the negotiation), which the
    // installed @libp2p/multistream-select (7.0.x) does not implement: every new job stream waits
    // for the worker's answer to its protocol selection, a turn of the worker's event loop (pooled
    // streams skip it; node/deadline.ts on why a loaded loop no longer loses that answer)
    negotiateFully: false,
    // sessions hold a stream each for their whole life (libp2p's default allows 64 per
    // protocol and connection); the worker bounds what it accepts (max(maxInboundJobStreams + maxSessions, maxOutboundJobStreams))
    maxOutboundStreams: NODE_DEFAULTS.maxOutboundJobStreams
  }))

  function buildJob (job: DispatchJob, jobId: Hex, attempt: number, worker: WorkerEntry, epoch: bigint): JobRequest {
    const request: JobRequest = {
      v: PROTOCOL_VERSION,
      type: 'job',
      jobId,
      attempt,
      fn: job.entry.ref,
      options: job.entry.options,
      request: job.request,
      inputHash: job.inputHash,
      env: job.entry.env,
      deadline: job.deadline,
      ticket: {
        worker: worker.advert.address,
        gateway: signer.address,
        // the worker's advertised price: it refuses less, and the project's maxFee excluded dearer workers
        fee: worker.advert.price ?? '0',
        epoch: epoch.toString(),
        deadline: String(Math.ceil(job.deadline / 1000))
      },
      ticketSig: '0x'
    }
    if (job.secrets !== undefined) request.secrets = job.secrets
    const hash = jobHashOf(request)
    jobHashes.set(request, hash)
    request.ticketSig = signer.signDigest(ticketDigest(init.domain, ticketOf(request, hash)))
    return request
  }

  /*
   * Idle job streams per worker, reused for later jobs: opening a stream costs a peer-store write
   * on both ends, more than a small job. Only streams whose exchange completed cleanly go back;
   * an abandoned attempt's stream is aborted, so a late answer can never be read by another job.
   */
  const idle = new Map<string, JobStream[]>()

  function takeIdle (peerId: string): JobStream | undefined {
    const list = idle.get(peerId)
    while (list !== undefined && list.length > 0) {
      const s = list.pop()!
      if (s.stream.status === 'open' && Date.now() - s.since < NODE_DEFAULTS.jobStreamReuseMs) return s
      void s.stream.close().catch(() => s.stream.abort(new Error('idle stream expired')))
    }
    return undefined
  }

  function putIdle (peerId: string, s: JobStream): void {
    let list = idle.get(peerId)
    if (list === undefined) idle.set(peerId, list = [])
    s.since = Date.now()
    list.push(s)
    while (list.length > NODE_DEFAULTS.jobStreamPoolSize) {
      const old = list.shift()!
      void old.stream.close().catch(() => old.stream.abort(new Error('pool full')))
    }
  }

  async function openStream (worker: WorkerEntry, signal: AbortSignal): Promise<JobStream> {
    const peer = peerIdOf(worker.peerId)
    // a stream that times out on a connection that is up says the ends are busy (load), not that
    // the worker is unreachable: it must not count as a worker failure (which may go to the chain)
    const connected = libp2p.getConnections(peer).some(c => c.status === 'open')
    const dialTimeout = deadline(NODE_DEFAULTS.dialTimeoutMs, signal)
    try {
      const stream = await dial(peer, dialTimeout.signal)
      return { stream, f: frames(stream), since: Date.now() }
    } catch (err: any) {
      // queued behind a burst of opens on a connection still being set up: the worker is busy, not failing
      if (err instanceof StreamOpenQueued && !signal.aborted) throw new AttemptFailed('OVERLOADED', `dial queued: ${err.message}`, true)
      const slow = signal.aborted || (connected && dialTimeout.signal.aborted)
      throw new AttemptFailed(slow ? 'DEADLINE_EXCEEDED' : 'WORKER_FAILED', `dial failed: ${err?.message ?? err}`)
    } finally {
      dialTimeout.clear()
    }
  }

  async function exchange (worker: WorkerEntry, js: JobStream, request: JobRequest, signal: AbortSignal): Promise<JobResult | StreamedAnswer> {
    let clean = false
    let handedOver = false
    try {
      try {
        await js.f.write(request, signal)
      } catch (err: any) {
        throw new AttemptFailed(signal.aborted ? 'DEADLINE_EXCEEDED' : 'WORKER_FAILED', `write failed: ${err?.message ?? err}`, true)
      }
      let answer
      try {
        answer = await js.f.readAny(signal)
      } catch (err: any) {
        throw new AttemptFailed(signal.aborted ? 'DEADLINE_EXCEEDED' : (err?.code === undefined ? 'WORKER_FAILED' : 'PROTOCOL'), `no result: ${err?.message ?? err}`)
      }
      if (answer.type === 'stream-head') {
        if (answer.jobId !== request.jobId || answer.attempt !== request.attempt) throw new AttemptFailed('PROTOCOL', 'stream-head for another job or attempt')
        // the body follows on this stream; whoever relays it decides the stream's fate
        handedOver = true
        return {
          head: answer,
          stream: js.stream,
          f: js.f,
          done: (ok) => {
            if (ok) putIdle(worker.peerId, { ...js, since: Date.now() })
            else js.stream.abort(new Error('stream relay ended early'))
          }
        }
      }
      if (answer.type !== 'result' && answer.type !== 'error') throw new AttemptFailed('PROTOCOL', `expected a result, got "${answer.type}"`)
      if (answer.type === 'error') {
        // a refusal is a complete exchange: the stream stays usable
        clean = true
        throw new AttemptFailed(answer.error.code, `worker refused: ${answer.error.message}`, false, answer.error.details)
      }
      if (answer.jobId !== request.jobId || answer.attempt !== request.attempt) {
        throw new AttemptFailed('PROTOCOL', 'result for another job or attempt')
      }
      const expected = answer.response !== undefined
        ? outputHash({ response: answer.response })
        : answer.error !== undefined ? outputHash({ error: answer.error }) : undefined
      if (expected === undefined || expected !== answer.outputHash) throw new AttemptFailed('PROTOCOL', 'output hash does not match the result')
      const receiptSigner = recoverDigestSigner(receiptDigest(init.domain, receiptOf(request, answer.outputHash, jobHashes.get(request))), answer.receiptSig)
      if (receiptSigner === undefined) throw new AttemptFailed('PROTOCOL', 'malformed receipt signature')
      if (!sameAddress(receiptSigner, worker.advert.address)) throw new AttemptFailed('PROTOCOL', 'receipt not signed by the worker')
      clean = true
      return answer
    } finally {
      if (clean) putIdle(worker.peerId, js)
      // abandoning an attempt aborts its stream: a late answer has nowhere to go
      else if (!handedOver) js.stream.abort(new Error('attempt abandoned'))
    }
  }

  async function attemptOn (worker: WorkerEntry, request: JobRequest, budgetMs: number, outer?: AbortSignal): Promise<JobResult | StreamedAnswer> {
    // cleared when the attempt ends (an AbortSignal.timeout would fire seconds later, per request)
    const limit = deadline(Math.max(1, Math.ceil(budgetMs)), outer)
    const signal = limit.signal
    try {
      const reused = takeIdle(worker.peerId)
      if (reused !== undefined) {
        try {
          return await exchange(worker, reused, request, signal)
        } catch (err) {
          // a kept stream that could not take the frame is not the worker failing: try a fresh one.
          // Once the frame may have arrived, the attempt stands (a resend under the same attempt
          // number could make an honest worker sign twice for it).
          if (!(err instanceof AttemptFailed) || !err.unsent || signal.aborted) throw err
        }
      }
      return await exchange(worker, await openStream(worker, signal), request, signal)
    } finally {
      limit.clear()
    }
  }

  /**
   * A session job: a fresh stream (never pooled: the session owns it), the job frame with
   * `session: true`, then the first answer. Refusals (no room, shutting down, infra) move on to
   * the next worker, as for requests; once a worker opened the session it is final.
   */
  async function dispatchSession (job: DispatchJob): Promise<SessionDispatch> {
    const jobId = newJobId()
    const attempts: AttemptRecord[] = []
    const exclude = new Set<string>()
    // as for requests: workers dearer than the project's cap are never asked (for sessions, per
    // billing unit: the opening, 100 messages, a minute; protocol session-fees.ts)
    if (job.entry.maxFee !== undefined) {
      for (const w of view.list()) if (!sessionPriceFits(job.entry.maxFee, BigInt(w.advert.price ?? '0'), w.advert.sessionPrice)) exclude.add(w.peerId)
    }
    let lastError: WireError | undefined
    for (let attempt = 1; attempt <= maxAttempts; attempt++) {
      if (job.deadline <= Date.now() || job.signal?.aborted === true) { lastError = { code: 'DEADLINE_EXCEEDED', message: WIRE_ERROR_CODES.DEADLINE_EXCEEDED.message }; break }
      const worker = view.pickForSession(job.entry.ref.bundleCid, exclude)
      if (worker === undefined) break
      if (attempt === 1) budget.deposit()
      else if (!budget.withdraw()) break
      exclude.add(worker.peerId)
      const t0 = performance.now()
      // a session's ticket is paid and logged like a request's (its fee: the worker's price per request)
      const fee = BigInt(worker.advert.price ?? '0')
      const epoch = epochOf(Date.now())
      const pid = projectId(job.entry.ref.wallet, job.entry.ref.project)
      if (components.spend !== undefined && fee > 0n) {
        const verdict = await components.spend.reserve(pid, job.entry.ref.project, epoch, fee).catch(() => undefined)
        if (verdict === undefined) return { jobId, attempts, error: { code: 'WORKER_FAILED', message: 'the gateway could not check the project\'s escrow on the chain' } }
        if (!verdict.ok) return { jobId, attempts, error: { code: 'PAYMENT_REQUIRED', message: verdict.message, details: { reason: verdict.reason, ...verdict.details } } }
      }
      // buildJob signed the ticket already (`session` is not part of it)
      const built = buildJob(job, jobId, attempt, worker, epoch)
      const hash = jobHashes.get(built) ?? jobHashOf(built)
      const request = { ...built, session: true as const }
      components.tickets?.record({ jobId, attempt, worker: worker.advert.address, projectId: pid, epoch, fee, session: true })
      // the session's deadline for this attempt; a clearable one (node/deadline.ts): its timer
      // gives a session-open that arrived during an event-loop stall a poll first
      const limit = deadline(Math.max(1, job.deadline - Date.now()), job.signal)
      const signal = limit.signal
      view.begin(worker.peerId)
      let js: JobStream | undefined
      try {
        js = await openStream(worker, signal)
        await js.f.write(request, signal)
        const list = await js.f.lp.read({ signal })
        const answer = decodeMessage(list.subarray())
        const ms = performance.now() - t0
        if (answer.type === 'session-open') {
          if (answer.jobId !== jobId || answer.attempt !== attempt) throw new AttemptFailed('PROTOCOL', 'session-open for another job or attempt')
          ended(worker.peerId, { ok: true, latencyMs: ms })
          attempts.push({ attempt, worker: worker.peerId, ok: true, ms })
          view.sessionDelta(worker.peerId, 1)
          let released = false
          const release = (): void => { if (!released) { released = true; view.sessionDelta(worker.peerId, -1) } }
          const billing = sessionBilling({ domain: init.domain, signer, spend: components.spend, tickets: components.tickets, maxFee: job.entry.maxFee, project: job.entry.ref.project, projectId: pid, epochOf }, request, hash, worker.advert)
          return { jobId, attempts, request, worker, open: { headers: answer.headers, stream: js.stream, f: js.f, release, billing } }
        }
        if (answer.type === 'error') throw new AttemptFailed(answer.error.code, `worker refused: ${answer.error.message}`, false, answer.error.details)
        if (answer.type !== 'result' || answer.jobId !== jobId || answer.attempt !== attempt) throw new AttemptFailed('PROTOCOL', `unexpected "${answer.type}" frame opening a session`)
        const expected = answer.response !== undefined ? outputHash({ response: answer.response }) : answer.error !== undefined ? outputHash({ error: answer.error }) : undefined
        if (expected !== answer.outputHash) throw new AttemptFailed('PROTOCOL', 'output hash does not match the result')
        const signerOf = recoverDigestSigner(receiptDigest(init.domain, receiptOf(request, answer.outputHash)), answer.receiptSig)
        if (signerOf === undefined || !sameAddress(signerOf, worker.advert.address)) throw new AttemptFailed('PROTOCOL', 'receipt not signed by the worker')
        ended(worker.peerId, { ok: true, latencyMs: ms })
        attempts.push({ attempt, worker: worker.peerId, ok: true, code: answer.error?.code, ms })
        void js.stream.close().catch(() => js?.stream.abort(new Error('close failed')))
        return { jobId, attempts, request, worker, result: answer }
      } catch (err: any) {
        js?.stream.abort(new Error('session attempt abandoned'))
        const gone = clientGone(job.signal)
        const code = gone ? 'CLIENT_GONE' : err instanceof AttemptFailed ? err.code : (signal.aborted ? 'DEADLINE_EXCEEDED' : 'WORKER_FAILED')
        const full = NO_ROOM.has(code)
        ended(worker.peerId, gone ? { ok: false, abandoned: true } : { ok: false, overloaded: full })
        attempts.push({ attempt, worker: worker.peerId, ok: false, code, ...refusalReason(err), ms: performance.now() - t0 })
        log.info({ jobId, attempt, worker: worker.peerId, code, err: err?.message }, 'session attempt failed')
        lastError = full
          ? { code: 'OVERLOADED', message: 'no worker has room for this session now; retry later' }
          : { code: code === 'DEADLINE_EXCEEDED' ? 'DEADLINE_EXCEEDED' : 'WORKER_FAILED', message: err?.message ?? WIRE_ERROR_CODES.WORKER_FAILED.message }
      } finally {
        limit.clear()
      }
    }
    return { jobId, attempts, error: lastError ?? { code: 'NO_WORKER', message: WIRE_ERROR_CODES.NO_WORKER.message } }
  }

  const dispatch: Dispatcher = async function dispatch (job) {
    const jobId = newJobId()
    const attempts: AttemptRecord[] = []
    const exclude = job.exclude ?? new Set<string>()
    // workers dearer than the project's cap (peerhost.json `maxFee`) are never asked
    let pricedOut = 0
    if (job.entry.maxFee !== undefined) {
      for (const w of view.list()) {
        if (!withinMaxFee(w.advert, job.entry.maxFee)) { exclude.add(w.peerId); pricedOut++ }
      }
    }
    const started = performance.now()
    // the worker must have time to report the function's own limit error (issue 14): see meshDeadline
    const limitMs = job.entry.options.timeoutMs + NODE_DEFAULTS.limitGraceMs
    let dispatchMs = 0
    let lastError: WireError | undefined
    let retryAfterMs: number | undefined
    let noRoom = false
    for (let attempt = 1; attempt <= maxAttempts; attempt++) {
      const remaining = job.deadline - Date.now()
      if (remaining <= 0 || job.signal?.aborted === true) {
        lastError = { code: 'DEADLINE_EXCEEDED', message: WIRE_ERROR_CODES.DEADLINE_EXCEEDED.message }
        break
      }
      const { worker, full } = await pickOrWait(job, exclude)
      if (worker === undefined) {
        // live workers left untried but none with room (and no slot within the wait the queue
        // allows): the mesh is overloaded, not unreachable
        if (full) noRoom = true
        break
      }
      // pickOrWait has claimed the worker (excluded for later attempts and copies, and counted in flight)
      if (attempt === 1) budget.deposit()
      else if (!budget.withdraw()) {
        ended(worker.peerId, { ok: true })
        log.debug({ jobId, attempt }, 'retry budget spent; no retry')
        break
      }
      const others = view.list().some(w => !exclude.has(w.peerId) && !view.isFull(w))
      const last = attempt === maxAttempts || !others
      const attemptMs = last ? remaining : Math.min(remaining, Math.max(NODE_DEFAULTS.minAttemptMs, remaining * NODE_DEFAULTS.attemptShare, limitMs))
      const t0 = performance.now()
      const fee = BigInt(worker.advert.price ?? '0')
      const epoch = epochOf(Date.now())
      const pid = projectId(job.entry.ref.wallet, job.entry.ref.project)
      if (components.spend !== undefined && fee > 0n) {
        let verdict
        try {
          verdict = await components.spend.reserve(pid, job.entry.ref.project, epoch, fee)
        } catch (err: any) {
          ended(worker.peerId, { ok: true })
          log.warn({ jobId, err: err?.message }, 'the project\'s escrow could not be read; no paid ticket without it')
          return { jobId, attempts, error: { code: 'WORKER_FAILED', message: 'the gateway could not check the project\'s escrow on the chain' }, dispatchMs: performance.now() - started }
        }
        if (!verdict.ok) {
          ended(worker.peerId, { ok: true })
          return { jobId, attempts, error: { code: 'PAYMENT_REQUIRED', message: verdict.message, details: { reason: verdict.reason, ...verdict.details } }, dispatchMs: performance.now() - started }
        }
      }
      try {
        const request = buildJob(job, jobId, attempt, worker, epoch)
        components.tickets?.record({ jobId, attempt, worker: worker.advert.address, projectId: pid, epoch, fee })
        dispatchMs = performance.now() - started
        const answer = await attemptOn(worker, request, attemptMs, job.signal)
        const ms = performance.now() - t0
        if ('head' in answer) {
          ended(worker.peerId, { ok: true, latencyMs: ms })
          attempts.push({ attempt, worker: worker.peerId, ok: true, ms })
          return { jobId, attempts, stream: answer, request, worker, dispatchMs }
        }
        const result = answer
        const infraError = result.error !== undefined && WIRE_ERROR_CODES[result.error.code].kind === 'infra'
        ended(worker.peerId, { ok: !infraError, latencyMs: ms })
        attempts.push({ attempt, worker: worker.peerId, ok: !infraError, code: result.error?.code, ms })
        if (infraError && !last) {
          lastError = result.error
          continue
        }
        // a verified result, including FUNCTION_ERROR and LIMIT_*: final, never tried elsewhere
        return { jobId, attempts, result, request, worker, dispatchMs }
      } catch (err: any) {
        const ms = performance.now() - t0
        // a ticket that never left commits the project to nothing
        if (err instanceof AttemptFailed && err.unsent && fee > 0n) components.spend?.release(pid, epoch, fee)
        // the client left mid-attempt (its connection closed): that abort says nothing about the
        // worker; it is counted as CLIENT_GONE, not as the worker's DEADLINE_EXCEEDED or failure
        const gone = clientGone(job.signal)
        const code = gone ? 'CLIENT_GONE' : err instanceof AttemptFailed ? err.code : 'INTERNAL'
        const full = NO_ROOM.has(code)
        ended(worker.peerId, gone ? { ok: false, abandoned: true } : { ok: false, overloaded: full })
        attempts.push({ attempt, worker: worker.peerId, ok: false, code, ...refusalReason(err), ms })
        if (full) {
          noRoom = true
          const hint = Number(err.details?.retryAfterMs)
          if (Number.isFinite(hint) && hint > 0) retryAfterMs = Math.min(retryAfterMs ?? Infinity, hint)
        } else if (gone) {
          log.debug({ jobId, attempt, worker: worker.peerId }, 'the client left during the attempt')
        } else {
          log.info({ jobId, attempt, worker: worker.peerId, code, err: err?.message }, 'attempt failed; trying the next worker')
        }
        lastError = { code: code === 'DEADLINE_EXCEEDED' ? 'DEADLINE_EXCEEDED' : 'WORKER_FAILED', message: WIRE_ERROR_CODES.WORKER_FAILED.message }
      }
    }
    if (noRoom && job.deadline > Date.now()) {
      const hint = retryAfterMs ?? NODE_DEFAULTS.overloadRetryAfterSec * 1000
      return {
        jobId,
        attempts,
        retryAfterMs: hint,
        error: { code: 'OVERLOADED', message: 'no worker has room for this request now; retry later', details: { attempts: attempts.length, retryAfterMs: hint } },
        dispatchMs
      }
    }
    if (attempts.length === 0 && lastError === undefined) {
      if (pricedOut > 0) {
        return {
          jobId,
          attempts,
          error: { code: 'NO_WORKER', message: `no worker serves this function within its maxFee of ${job.entry.maxFee} wei (${pricedOut} charge more); raise "maxFee" in peerhost.json`, details: { pricedOut, maxFee: String(job.entry.maxFee) } },
          dispatchMs
        }
      }
      return { jobId, attempts, error: { code: 'NO_WORKER', message: WIRE_ERROR_CODES.NO_WORKER.message }, dispatchMs }
    }
    if (job.deadline <= Date.now()) lastError = { code: 'DEADLINE_EXCEEDED', message: WIRE_ERROR_CODES.DEADLINE_EXCEEDED.message }
    return {
      jobId,
      attempts,
      error: lastError?.code === 'DEADLINE_EXCEEDED'
        ? lastError
        : { code: 'WORKER_FAILED', message: `${WIRE_ERROR_CODES.WORKER_FAILED.message} (${attempts.length} attempt${attempts.length === 1 ? '' : 's'})`, details: { attempts: attempts.length } },
      dispatchMs
    }
  }
  dispatch.session = dispatchSession
  dispatch.queue = queue
  return dispatch
}
