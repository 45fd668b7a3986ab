/**
 * Dispatch of one job through the mesh: pick a worker, sign a ticket, open a job stream, and
 * verify the signed result. A worker that fails, stalls past its share of the deadline, or drops
 * the stream is replaced by the next one (attempt + 1); the old attempt's stream is aborted, so a
 * late answer from it can never be taken.
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
  /** TEST ONLY: every job stream fails as if the workers were unreachable (see GatewayInit) */
  unsafeTestPartition?: boolean
}

export interface DispatchComponents {
  libp2p: PeerHostLibp2p
  view: WorkerView
  /** signs tickets: the gateway's secp256k1 key */
  signer: FastSigner
  logger: Logger
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
  constructor (code: string, message: string, unsent = false) { super(message); this.code = code; this.unsent = unsent }
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
      if (init.unsafeTestPartition === true) throw new Error('job streams are cut (test partition)')
      const options = {
        signal: AbortSignal.any([signal, AbortSignal.timeout(NODE_DEFAULTS.dialTimeoutMs)]),
        // optimistic protocol selection: the job frame travels with the negotiation (saves a round trip)
        negotiateFully: false
      }
      const peer = peerIdOf(worker.peerId)
      // an open connection is reused directly: the dial path consults the peer store on every call
      const open = libp2p.getConnections(peer).find(c => c.status === 'open')
      const stream = open !== undefined
        ? await open.newStream(JOB_PROTOCOL, options)
        : await libp2p.dialProtocol(peer, JOB_PROTOCOL, options)
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
      if (answer.type === 'error') throw new AttemptFailed(answer.error.code, `worker refused: ${answer.error.message}`)
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
    let dispatchMs = 0
    let lastError: WireError | undefined
    for (let attempt = 1; attempt <= maxAttempts; attempt++) {
      const remaining = job.deadline - Date.now()
      if (remaining <= 0 || job.signal?.aborted === true) {
        lastError = { code: 'DEADLINE_EXCEEDED', message: WIRE_ERROR_CODES.DEADLINE_EXCEEDED.message }
        break
      }
      const worker = view.pick(job.entry.ref.bundleCid, exclude)
      if (worker === undefined) break
      exclude.add(worker.peerId)
      const others = view.list().some(w => !exclude.has(w.peerId))
      const last = attempt === maxAttempts || !others
      const budget = last ? remaining : Math.min(remaining, Math.max(NODE_DEFAULTS.minAttemptMs, remaining * NODE_DEFAULTS.attemptShare))
      const t0 = performance.now()
      view.begin(worker.peerId)
      try {
        const request = buildJob(job, jobId, attempt, worker)
        dispatchMs = performance.now() - started
        const result = await attemptOn(worker, request, budget, job.signal)
        const ms = performance.now() - t0
        const infraError = result.error !== undefined && WIRE_ERROR_CODES[result.error.code].kind === 'infra'
        view.end(worker.peerId, { ok: !infraError, latencyMs: ms })
        attempts.push({ attempt, worker: worker.peerId, ok: !infraError, code: result.error?.code, ms })
        if (infraError && !last) {
          lastError = result.error
          continue
        }
        return { jobId, attempts, result, request, worker, dispatchMs }
      } catch (err: any) {
        const ms = performance.now() - t0
        view.end(worker.peerId, { ok: false })
        const code = err instanceof AttemptFailed ? err.code : 'INTERNAL'
        attempts.push({ attempt, worker: worker.peerId, ok: false, code, ms })
        log.info({ jobId, attempt, worker: worker.peerId, code, err: err?.message }, 'attempt failed; trying the next worker')
        lastError = { code: code === 'DEADLINE_EXCEEDED' ? 'DEADLINE_EXCEEDED' : 'WORKER_FAILED', message: WIRE_ERROR_CODES.WORKER_FAILED.message }
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
