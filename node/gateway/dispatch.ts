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
 * chain may be asked: never for overload, never without time for the chain path.
 */
import type { PeerId, Stream } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import type { Hex } from 'viem'
import {
  JOB_PROTOCOL, newJobId, outputHash, PROTOCOL_VERSION, receiptDigest, receiptOf, ticketDigest,
  ticketOf, WIRE_ERROR_CODES, type JobRequest, type JobResult, type PeerHostDomain, type WireError, type WireRequest
} from '#protocol'
import { NODE_DEFAULTS } from '../constants.ts'
import { frames, type FrameStream } from '../frames.ts'
import type { PeerHostLibp2p } from '../libp2p.ts'
import type { Logger } from '../logger.ts'
import { recoverDigestSigner, sameAddress, type FastSigner } from '../signing.ts'
import type { FunctionEntry } from './functions.ts'
import type { WorkerEntry, WorkerView } from './worker-view.ts'

export interface AttemptRecord {
  attempt: number
  worker: string
  ok: boolean
  /** wire code when the attempt failed */
  code?: string
  ms: number
}

export interface DispatchOutcome {
  jobId: Hex
  /** the mesh had no room (every worker full, or refusing with OVERLOADED): a hint for `Retry-After`, ms */
  retryAfterMs?: number
  attempts: AttemptRecord[]
  /** the verified result (which may itself carry a user error such as FUNCTION_ERROR) */
  result?: JobResult
  /** the job frame of the attempt that produced `result` */
  request?: JobRequest
  worker?: WorkerEntry
  /** set when no verified result was obtained */
  error?: WireError
  /** ms spent before the final attempt's frame was written (picking, signing, dialing, failed attempts) */
  dispatchMs: number
}

export interface DispatchInit {
  /** @default NODE_DEFAULTS.maxAttempts */
  maxAttempts?: number
  domain: PeerHostDomain
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
/** Mesh outcomes that may go to the chain: the mesh was unreachable or a worker misbehaved. */
const CHAIN_CODES = new Set(['NO_WORKER', 'WORKER_FAILED', 'DEADLINE_EXCEEDED'])

/**
 * Whether the chain fallback may answer a request the mesh did not: only when the mesh could not
 * be reached or a worker misbehaved (never when workers had no room: overload on the mesh is not
 * solved by paying the chain), and only when `remainingMs` of the request's deadline fits the chain
 * path (NODE_DEFAULTS.chainPathMinMs).
 */
export function chainFallbackAllowed (outcome: Pick<DispatchOutcome, 'result' | 'error' | 'attempts'>, remainingMs: number): boolean {
  if (outcome.result !== undefined || outcome.error === undefined) return false
  if (!CHAIN_CODES.has(outcome.error.code)) return false
  if (outcome.attempts.some(a => a.code !== undefined && NO_ROOM.has(a.code))) return false
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
}

export type Dispatcher = (job: DispatchJob) => Promise<DispatchOutcome>

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

export function dispatcher (init: DispatchInit, components: DispatchComponents): Dispatcher {
  const { libp2p, view, signer } = components
  const log = components.logger.child({ component: 'peerhost:gateway:dispatch' })
  const maxAttempts = init.maxAttempts ?? NODE_DEFAULTS.maxAttempts
  const budget = components.retryBudget ?? retryBudget()
  const dial: JobDialer = components.dial ?? (async (peer, signal) => {
    const options = {
      signal,
      // optimistic protocol selection: the job frame travels with the negotiation (saves a round trip)
      negotiateFully: false
    }
    // an open connection is reused directly: the dial path consults the peer store on every call
    const open = libp2p.getConnections(peer).find(c => c.status === 'open')
    return open !== undefined
      ? await open.newStream(JOB_PROTOCOL, options)
      : await libp2p.dialProtocol(peer, JOB_PROTOCOL, options)
  })

  function buildJob (job: DispatchJob, jobId: Hex, attempt: number, worker: WorkerEntry): JobRequest {
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
        fee: '0',
        // hourly settlement epochs (ARCHITECTURE §12)
        epoch: String(Math.floor(Date.now() / 3_600_000)),
        deadline: String(Math.ceil(job.deadline / 1000))
      },
      ticketSig: '0x'
    }
    if (job.secrets !== undefined) request.secrets = job.secrets
    request.ticketSig = signer.signDigest(ticketDigest(init.domain, ticketOf(request)))
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
    try {
      const stream = await dial(peerIdOf(worker.peerId), AbortSignal.any([signal, AbortSignal.timeout(NODE_DEFAULTS.dialTimeoutMs)]))
      return { stream, f: frames(stream), since: Date.now() }
    } catch (err: any) {
      throw new AttemptFailed(signal.aborted ? 'DEADLINE_EXCEEDED' : 'WORKER_FAILED', `dial failed: ${err?.message ?? err}`)
    }
  }

  async function exchange (worker: WorkerEntry, js: JobStream, request: JobRequest, signal: AbortSignal): Promise<JobResult> {
    let clean = false
    try {
      try {
        await js.f.write(request, signal)
      } catch (err: any) {
        throw new AttemptFailed(signal.aborted ? 'DEADLINE_EXCEEDED' : 'WORKER_FAILED', `write failed: ${err?.message ?? err}`, true)
      }
      let answer
      try {
        answer = await js.f.read('result', signal)
      } catch (err: any) {
        throw new AttemptFailed(signal.aborted ? 'DEADLINE_EXCEEDED' : (err?.code === undefined ? 'WORKER_FAILED' : 'PROTOCOL'), `no result: ${err?.message ?? err}`)
      }
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
      const receiptSigner = recoverDigestSigner(receiptDigest(init.domain, receiptOf(request, answer.outputHash)), answer.receiptSig)
      if (receiptSigner === undefined) throw new AttemptFailed('PROTOCOL', 'malformed receipt signature')
      if (!sameAddress(receiptSigner, worker.advert.address)) throw new AttemptFailed('PROTOCOL', 'receipt not signed by the worker')
      clean = true
      return answer
    } finally {
      if (clean) putIdle(worker.peerId, js)
      // abandoning an attempt aborts its stream: a late answer has nowhere to go
      else js.stream.abort(new Error('attempt abandoned'))
    }
  }

  async function attemptOn (worker: WorkerEntry, request: JobRequest, budgetMs: number, outer?: AbortSignal): Promise<JobResult> {
    const signals = [AbortSignal.timeout(Math.max(1, Math.ceil(budgetMs)))]
    if (outer !== undefined) signals.push(outer)
    const signal = AbortSignal.any(signals)
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
  }

  return async function dispatch (job) {
    const jobId = newJobId()
    const attempts: AttemptRecord[] = []
    const exclude = new Set<string>()
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
      const worker = view.pick(job.entry.ref.bundleCid, exclude)
      if (worker === undefined) {
        // live workers left untried but none with room: the mesh is overloaded, not unreachable
        if (view.list().some(w => !exclude.has(w.peerId) && view.isFull(w))) noRoom = true
        break
      }
      if (attempt === 1) budget.deposit()
      else if (!budget.withdraw()) {
        log.debug({ jobId, attempt }, 'retry budget spent; no retry')
        break
      }
      exclude.add(worker.peerId)
      const others = view.list().some(w => !exclude.has(w.peerId) && !view.isFull(w))
      const last = attempt === maxAttempts || !others
      const attemptMs = last ? remaining : Math.min(remaining, Math.max(NODE_DEFAULTS.minAttemptMs, remaining * NODE_DEFAULTS.attemptShare, limitMs))
      const t0 = performance.now()
      view.begin(worker.peerId)
      try {
        const request = buildJob(job, jobId, attempt, worker)
        dispatchMs = performance.now() - started
        const result = await attemptOn(worker, request, attemptMs, job.signal)
        const ms = performance.now() - t0
        const infraError = result.error !== undefined && WIRE_ERROR_CODES[result.error.code].kind === 'infra'
        view.end(worker.peerId, { ok: !infraError, latencyMs: ms })
        attempts.push({ attempt, worker: worker.peerId, ok: !infraError, code: result.error?.code, ms })
        if (infraError && !last) {
          lastError = result.error
          continue
        }
        // a verified result, including FUNCTION_ERROR and LIMIT_*: final, never tried elsewhere
        return { jobId, attempts, result, request, worker, dispatchMs }
      } catch (err: any) {
        const ms = performance.now() - t0
        const code = err instanceof AttemptFailed ? err.code : 'INTERNAL'
        const full = NO_ROOM.has(code)
        view.end(worker.peerId, { ok: false, overloaded: full })
        attempts.push({ attempt, worker: worker.peerId, ok: false, code, ms })
        if (full) {
          noRoom = true
          const hint = Number(err.details?.retryAfterMs)
          if (Number.isFinite(hint) && hint > 0) retryAfterMs = Math.min(retryAfterMs ?? Infinity, hint)
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
}
