/**
 * `verify: { quorum: n }` (issue 11): a request to a quorum function runs as n jobs in parallel, on
 * n distinct workers, each with its own job id and its own paid ticket (the builder pays n
 * tickets), all for the same job (same function, bundle, options, env, input and deadline: the same
 * `jobHash`). The client gets the majority output as soon as ⌈(n+1)/2⌉ equal outputs are in (the
 * latency is the majority's, not the slowest worker's), never a minority output; when no output can
 * reach the majority any more it gets a 502 QUORUM_DISAGREEMENT naming the disagreement.
 *
 * Distinct job ids, not one job id for n workers: Settlement treats one (gateway, project, jobId)
 * as one client request, and two batches claiming it as a double claim.
 *
 * A quorum whose majority is more than the live workers is refused before any ticket is signed
 * (503 NO_WORKER naming both numbers). When the request fails without a majority (disagreement, too
 * few answers), the copies still running are stopped: they can neither change the answer nor prove
 * anything. A disagreement's answer carries every vote's receipt; nobody is outvoted by it.
 *
 * The copies still running when the majority is decided run on (bounded by the deadline): a
 * worker whose output differs from a decided majority is outvoted, and the evidence (its receipt,
 * and the majority's receipts with their ticket signatures) goes to the ticket log, so the
 * gateway's batch checker proves the disagreement against that worker's batch once it is
 * committed (node/settlement/checker.ts `findOutvoted`).
 *
 * What votes: a verified result carrying a response, or the function's own deterministic failure
 * (FUNCTION_ERROR, RESULT_INVALID). A limit error (LIMIT_*: time, memory, CPU depend on the
 * worker's load) or an infrastructure error is a failed copy: it never votes and is never proven
 * against, so an honest worker that ran out of time under load is not slashed.
 */
import type { Hex } from 'viem'
import { newJobId, projectId, receiptOf, WIRE_ERROR_CODES, type JobRequest, type JobResult, type WireErrorCode } from '#protocol'
import type { Logger } from '../logger.ts'
import type { HeldReceipt, TicketLog } from '../settlement/checker.ts'
import type { DispatchOutcome, Dispatcher, DispatchJob } from './dispatch.ts'

/** A quorum request's votes, beside the majority's outcome (for the response's headers). */
export interface QuorumReport {
  /** workers asked */
  n: number
  /** equal outputs needed: ⌈(n+1)/2⌉ */
  needed: number
  /** the majority's outputHash, once decided */
  outputHash?: Hex
  /** the majority's (request, result) when the answer was decided, the answering one first */
  majority: Array<{ request: JobRequest, result: JobResult, worker: string }>
  /** every copy's job id */
  jobIds: Hex[]
  /**
   * on a QUORUM_DISAGREEMENT: every vote that came in (each distinct output's receipts), so the
   * client sees who answered what; none of them is evidence against anyone (no majority)
   */
  received?: Array<{ request: JobRequest, result: JobResult, worker: string }>
}

export interface QuorumOutcome extends DispatchOutcome {
  quorum?: QuorumReport
}

export interface QuorumDispatchComponents {
  /** the one-worker dispatcher (dispatch.ts) each copy runs through */
  dispatch: Dispatcher
  /** where evidence against an outvoted worker goes (the gateway's ticket log); @default none (nothing proven) */
  tickets?: Pick<TicketLog, 'recordDisagreement'>
  /**
   * How many workers the gateway can send this function to now (its live view): a quorum whose
   * majority exceeds it is refused at once (503 NO_WORKER naming both numbers) instead of paying
   * tickets for copies that cannot decide anything. @default unknown (the copies find out)
   */
  liveWorkers?: (entry: DispatchJob['entry']) => number
  logger: Logger
}

/** Equal outputs a quorum of `n` needs: a strict majority. */
export function quorumMajority (n: number): number {
  return Math.floor(n / 2) + 1
}

/**
 * Whether a result is a vote: a response, or the function's own deterministic failure. Shared with
 * `peerhost dev` (node/dev/dev-server.ts), which runs a quorum function n times locally.
 */
export function votes (result: { error?: { code: WireErrorCode } }): boolean {
  return result.error === undefined || result.error.code === 'FUNCTION_ERROR' || result.error.code === 'RESULT_INVALID'
}

/** Why copies failed that the client should see as such (pay, come back later, or wait less), not as a generic failure. */
const PASSED_ON = new Set<WireErrorCode>(['OVERLOADED', 'NO_WORKER', 'PAYMENT_REQUIRED', 'DEADLINE_EXCEEDED'])

interface Vote { outcome: DispatchOutcome, request: JobRequest, result: JobResult, worker: string }

/** A copy whose worker began streaming its body: the stream ends here, the copy is a failure. */
function unstreamed (outcome: DispatchOutcome): DispatchOutcome {
  outcome.stream?.done(false)
  const { stream: _stream, ...rest } = outcome
  return {
    ...rest,
    error: {
      code: 'LIMIT_RESPONSE_SIZE',
      message: 'a quorum function\'s answer is compared across workers before it is sent, so it cannot be a streamed body; return a complete body (at most 1 MiB), or use "verify": "single"'
    }
  }
}

function held (v: Vote): HeldReceipt {
  return { receipt: receiptOf(v.request, v.result.outputHash), signature: v.result.receiptSig, ticketSignature: v.request.ticketSig }
}

/**
 * A dispatcher that runs functions with `entry.quorum` on that many distinct workers (and every
 * other function through `dispatch` unchanged). WebSocket sessions of a quorum function are
 * refused: a session's transcript has no single output to vote on.
 */
export function quorumDispatcher (components: QuorumDispatchComponents): Dispatcher {
  const single = components.dispatch
  const log = components.logger.child({ component: 'peerhost:gateway:quorum' })

  async function run (job: DispatchJob, n: number): Promise<QuorumOutcome> {
    const needed = quorumMajority(n)
    const started = performance.now()
    const live = components.liveWorkers?.(job.entry)
    if (live !== undefined && live < needed) {
      const { project, name } = job.entry.ref
      log.warn({ fn: `${project}/${name}`, quorum: n, needed, live }, 'quorum: fewer live workers than the majority needs; refused without dispatch')
      return {
        jobId: newJobId(),
        attempts: [],
        dispatchMs: performance.now() - started,
        quorum: { n, needed, majority: [], jobIds: [] },
        error: {
          code: 'NO_WORKER',
          message: `${project}/${name} runs on ${n} distinct workers ("verify": { "quorum": ${n} }) and needs ${needed} equal outputs, but this gateway can reach only ${live} live worker${live === 1 ? '' : 's'}; retry when more workers are up, or lower the quorum`,
          details: { quorum: n, needed, live }
        }
      }
    }
    // the copies outlive the answer (their outputs are compared with the majority), so the
    // client's signal stops them only before the majority is decided; the deadline bounds them
    const stop = new AbortController()
    let decided = false
    const onAbort = (): void => { if (!decided) stop.abort() }
    job.signal?.addEventListener('abort', onAbort, { once: true })
    const exclude = new Set<string>()
    const copies = Array.from({ length: n }, () => single({ ...job, exclude, signal: stop.signal }))
    const jobIds: Hex[] = []
    const groups = new Map<Hex, Vote[]>()
    const failed: DispatchOutcome[] = []
    let majorityHash: Hex | undefined
    const outvoted: Vote[] = []
    const pid = projectId(job.entry.ref.wallet, job.entry.ref.project)

    /** Evidence against every outvoted worker, with every majority receipt known now. */
    function recordEvidence (): void {
      if (components.tickets === undefined || majorityHash === undefined || outvoted.length === 0) return
      const majority = groups.get(majorityHash)!.map(held)
      for (const v of outvoted) {
        try {
          components.tickets.recordDisagreement({ minority: held(v), projectId: pid, majority })
        } catch (err) {
          log.error({ jobId: v.request.jobId, err: (err as Error).message }, 'evidence against an outvoted worker could not be stored')
        }
      }
    }

    return await new Promise<QuorumOutcome>((resolve) => {
      let pending = n
      const finish = (outcome: QuorumOutcome): void => {
        if (decided) return
        decided = true
        job.signal?.removeEventListener('abort', onAbort)
        // without a majority the copies still running cannot change the answer or prove anything:
        // they stop instead of running (and being paid) for nobody
        if (majorityHash === undefined) stop.abort()
        resolve(outcome)
      }
      const attempts = (): DispatchOutcome['attempts'] => [...groups.values()].flat().map(v => v.outcome).concat(failed).flatMap(o => o.attempts)

      function settle (): void {
        if (decided) return
        for (const [hash, group] of groups) {
          if (group.length < needed) continue
          majorityHash = hash
          const first = group[0]
          for (const [other, g] of groups) if (other !== hash) outvoted.push(...g)
          recordEvidence()
          if (outvoted.length > 0) log.warn({ jobIds, outvoted: outvoted.map(v => v.outcome.worker?.advert.address), majority: hash }, 'quorum: outvoted workers; their batches will be proven faulty')
          finish({
            ...first.outcome,
            attempts: attempts(),
            quorum: { n, needed, outputHash: hash, majority: group.map(v => ({ request: v.request, result: v.result, worker: v.worker })), jobIds }
          })
          return
        }
        // can any output still reach the majority?
        const best = Math.max(0, ...[...groups.values()].map(g => g.length))
        if (best + pending >= needed) return
        const report: QuorumReport = { n, needed, majority: [], jobIds }
        if (groups.size >= 2) {
          const ranked = [...groups.entries()].sort((a, b) => b[1].length - a[1].length)
          const counts = ranked.map(([, g]) => g.length)
          report.received = ranked.flatMap(([, g]) => g.map(v => ({ request: v.request, result: v.result, worker: v.worker })))
          const { project, name } = job.entry.ref
          log.warn({ jobIds, fn: `${project}/${name}`, outputs: ranked.map(([hash, g]) => ({ outputHash: hash, workers: g.map(v => v.outcome.worker?.advert.address) })), failed: failed.length },
            'quorum: workers disagree, no majority: nobody is outvoted and no evidence is kept (is the function really deterministic?)')
          finish({
            jobId: jobIds[0],
            attempts: attempts(),
            dispatchMs: performance.now() - started,
            quorum: report,
            error: {
              code: 'QUORUM_DISAGREEMENT',
              message: `the ${n} workers of this quorum function disagree: ${groups.size} different outputs (${counts.join(', ')} equal), ${failed.length} failed, and an answer needs ${needed} equal outputs; a function declared "deterministic" must answer the same request with the same output`,
              details: { quorum: n, needed, outputs: groups.size, agreeing: counts[0], failed: failed.length }
            }
          })
          return
        }
        // too few answers: the copies' own failure (a limit error, no worker, overload) speaks for the request
        const answered = [...groups.values()].flat().length
        const failure = failed[0]
        if (answered === 0 && failure !== undefined) { finish({ ...failure, attempts: attempts(), quorum: report }); return }
        const code = failure?.error?.code
        finish({
          jobId: jobIds[0],
          attempts: attempts(),
          dispatchMs: performance.now() - started,
          quorum: report,
          retryAfterMs: failure?.retryAfterMs,
          error: {
            code: code !== undefined && PASSED_ON.has(code) ? code : 'WORKER_FAILED',
            message: `only ${answered} of the ${n} workers of this quorum function answered; an answer needs ${needed} equal outputs${failure?.error === undefined ? '' : ` (${failure.error.message})`}`,
            details: { quorum: n, needed, answered, failed: failed.length }
          }
        })
      }

      for (const copy of copies) {
        copy.then((streamed) => {
          pending--
          // a streamed body cannot be compared before it is answered: the copy fails (its stream
          // closed, not left open on the worker) and never answers for the quorum
          const outcome: DispatchOutcome = streamed.stream === undefined ? streamed : unstreamed(streamed)
          jobIds.push(outcome.jobId)
          const result = outcome.result
          if (result !== undefined && outcome.request !== undefined && votes(result)) {
            const vote: Vote = { outcome, request: outcome.request, result, worker: outcome.worker?.peerId ?? '' }
            const group = groups.get(result.outputHash) ?? []
            group.push(vote)
            groups.set(result.outputHash, group)
            if (decided && majorityHash !== undefined) {
              // after the answer: a late vote either joins the majority (more evidence) or is outvoted
              if (result.outputHash !== majorityHash) {
                outvoted.push(vote)
                log.warn({ jobId: outcome.jobId, worker: outcome.worker?.advert.address, majority: majorityHash }, 'quorum: a late answer was outvoted; its batch will be proven faulty')
              }
              recordEvidence()
            }
          } else {
            failed.push(outcome)
          }
          settle()
        }, (err: unknown) => {
          pending--
          log.error({ err: (err as Error)?.message }, 'a quorum copy failed unexpectedly')
          failed.push({ jobId: newJobId(), attempts: [], dispatchMs: 0, error: { code: 'INTERNAL', message: WIRE_ERROR_CODES.INTERNAL.message } })
          settle()
        })
      }
    })
  }

  const dispatch: Dispatcher = async (job) => {
    const n = job.entry.quorum
    return n === undefined || n < 2 ? await single(job) : await run(job, n)
  }
  if (single.session !== undefined) {
    const session = single.session
    dispatch.session = async (job) => job.entry.quorum === undefined
      ? await session(job)
      : { jobId: newJobId(), attempts: [], error: { code: 'BAD_REQUEST', message: `${job.entry.ref.project}/${job.entry.ref.name} is a quorum function ("verify": { "quorum": ${job.entry.quorum} }): it answers requests, not WebSocket sessions (a session has no single output to vote on)` } }
  }
  return dispatch
}
