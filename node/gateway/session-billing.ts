/**
 * A WebSocket session's metered fee at the gateway (issue 12): the worker's advertised session
 * price (per message either way, per minute) paid with cumulative tickets — the job's EIP-712
 * Ticket re-signed with a higher fee, everything owed so far (protocol session-fees.ts). Each
 * increase is reserved against the project's allowance for the ticket's epoch and recorded in the
 * ticket log (the latest cumulative fee per (jobId, attempt, worker)) before the ticket leaves.
 *
 * Segments (docs/chain.md "Sessions that outlive their epoch"): a session's tickets carry the epoch
 * of its current segment. Once the gateway's Settlement epoch has moved past it, `segment` closes
 * the segment at what the session owes beyond the earlier segments and opens the next one as a job
 * of its own (`segmentJobId(jobId, k)`, the new epoch, a fee of what is owed beyond every earlier
 * segment): each is reserved against its own epoch's allowance and logged before it leaves, and a
 * worker settles each segment as its own leaf in its own epoch's batch.
 */
import type { Address, Hex } from 'viem'
import {
  atSegment, PROTOCOL_VERSION, segmentJobId, sessionFeeCap, sessionOwed, ticketDigest, ticketOf,
  type JobRequest, type PeerHostDomain, type SegmentFrame, type SessionTicket, type WorkerAdvert
} from '#protocol'
import { NODE_DEFAULTS } from '../constants.ts'
import type { FastSigner } from '../signing.ts'
import type { AllowanceTracker } from '../settlement/allowance.ts'
import type { TicketLog } from '../settlement/checker.ts'

/** One segment of a session as the gateway signed it. */
export interface BilledSegment {
  /** 0 = the opening one */
  index: number
  jobId: Hex
  epoch: bigint
  /** what the earlier segments were paid (their final cumulative fees) */
  base: bigint
  /** this segment's latest cumulative fee */
  fee: bigint
}

export interface SessionBilling {
  /** whether the worker asks a session price (else no ticket is ever sent) */
  readonly priced: boolean
  /** whether the session pays anything (an opening fee or a session price): only then is it segmented */
  readonly paid: boolean
  /** Date.now() when the session opened: its time is counted from here */
  readonly openedAt: number
  /** the latest cumulative fee of the current segment (the opening ticket's at first) */
  readonly fee: bigint
  /** the current segment (the last one opened) */
  readonly current: BilledSegment
  /**
   * The next cumulative ticket for what the session owes after `messages` (both ways) and `ms`,
   * capped by the project's maxFee per billing unit: `undefined` when nothing more is owed (and
   * `final` is false); `{ refused }` when the allowance or the chain cannot pay more. A `final`
   * bill is a ticket even when nothing more is owed: the worker waits for it before it signs.
   */
  bill: (messages: number, ms: number, final: boolean) => Promise<SessionTicket | { refused: string } | undefined>
  /**
   * The `segment` frame that closes the current segment and opens the next, when the gateway's
   * Settlement epoch has moved past the current segment's; undefined when it has not (or the
   * session pays nothing); `{ refused }` when the allowance cannot pay the new segment's opening.
   */
  segment: (messages: number, ms: number) => Promise<SegmentFrame | { refused: string } | undefined>
  /** whether this gateway signed segment `segment`'s ticket (the opening one or a cumulative one) at exactly `fee` */
  signed: (fee: string, segment?: number) => boolean
  /** segment `segment` as signed, undefined for one never opened */
  segmentOf: (segment: number) => BilledSegment | undefined
  /** the job as segment `segment`'s ticket at `fee` names it (what its receipt signs) */
  requestOf: (segment: number, fee: string) => JobRequest
}

export interface SessionBillingParts {
  domain: PeerHostDomain
  signer: Pick<FastSigner, 'signDigest'>
  spend?: Pick<AllowanceTracker, 'reserve'>
  tickets?: Pick<TicketLog, 'record'>
  /** the project's maxFee (peerhost.json), wei; none = no cap */
  maxFee?: bigint
  project: string
  projectId: Hex
  /** Settlement's epoch at unix ms `nowMs`, as the gateway's tickets carry it; none = the session is never segmented */
  epochOf?: (nowMs: number) => bigint
}

/** Billing for the session `request` (its opening ticket signed, `hash` its jobHash) on `worker`. */
export function sessionBilling (parts: SessionBillingParts, request: JobRequest, hash: Hex, worker: Pick<WorkerAdvert, 'address' | 'sessionPrice'>, now: () => number = Date.now): SessionBilling {
  const price = worker.sessionPrice
  const opening = BigInt(request.ticket.fee)
  const priced = price !== undefined && (price.perMessage !== '0' || price.perMinute !== '0')
  const paid = priced || opening > 0n
  const segments: BilledSegment[] = [{ index: 0, jobId: request.jobId, epoch: BigInt(request.ticket.epoch), base: 0n, fee: opening }]
  /** fees signed per segment */
  const signedFees: Array<Set<string>> = [new Set([request.ticket.fee])]
  const cur = (): BilledSegment => segments[segments.length - 1]
  /** segment `index`'s ticket at `fee` (segment 0 is the session's own job: its job id and epoch) */
  const requestOf = (index: number, fee: string): JobRequest => {
    const s = segments[index]
    return atSegment(request, s.jobId, s.epoch.toString(), fee)
  }
  const sign = (index: number, fee: bigint): Hex => parts.signer.signDigest(ticketDigest(parts.domain, ticketOf(requestOf(index, fee.toString()), hash)))
  /** what the whole session owes, capped by the project's maxFee per billing unit */
  const owedNow = (messages: number, ms: number): bigint => {
    let owed = price === undefined ? opening : sessionOwed(opening, price, messages, ms)
    // never above the project's cap (a worker whose prices fit it never reaches it)
    if (parts.maxFee !== undefined) {
      const cap = sessionFeeCap(parts.maxFee, messages, ms)
      if (owed > cap) owed = cap
    }
    return owed
  }
  /** reserves `more` against the segment's epoch and logs its ticket at `fee`; a refusal's reason when it cannot */
  const raise = async (s: BilledSegment, fee: bigint): Promise<string | undefined> => {
    const more = fee - s.fee
    if (more > 0n && parts.spend !== undefined) {
      let verdict
      try {
        verdict = await parts.spend.reserve(parts.projectId, parts.project, s.epoch, more)
      } catch {
        return 'the gateway could not check the project\'s escrow on the chain'
      }
      if (!verdict.ok) return verdict.message
    }
    // bills are awaited one after another (the relay chains them), so a segment's fee only grows
    s.fee = fee
    signedFees[s.index].add(fee.toString())
    parts.tickets?.record({ jobId: s.jobId, attempt: request.attempt, worker: worker.address as Address, projectId: parts.projectId, epoch: s.epoch, fee, session: true })
    return undefined
  }
  return {
    priced,
    paid,
    openedAt: now(),
    get fee () { return cur().fee },
    get current () { return { ...cur() } },
    signed: (f, segment = 0) => signedFees[segment]?.has(f) === true,
    segmentOf: (i) => segments[i] === undefined ? undefined : { ...segments[i] },
    requestOf,
    async bill (messages, ms, final) {
      if (price === undefined) return undefined
      const s = cur()
      const owed = owedNow(messages, ms) - s.base
      if (owed <= s.fee && !final) return undefined
      if (owed > s.fee) {
        const refused = await raise(s, owed)
        if (refused !== undefined) return { refused }
      }
      return { v: PROTOCOL_VERSION, type: 'ticket', jobId: s.jobId, attempt: request.attempt, fee: s.fee.toString(), ticketSig: sign(s.index, s.fee) }
    },
    async segment (messages, ms) {
      if (parts.epochOf === undefined || !paid) return undefined
      const s = cur()
      // a moment after the epoch's end, so a worker whose clock is a little behind sees the new epoch too
      const at = now()
      if (parts.epochOf(at - NODE_DEFAULTS.sessionSegmentLagMs) <= s.epoch) return undefined
      const epoch = parts.epochOf(at)
      // the closing segment's final cumulative ticket: everything owed beyond the earlier segments
      const owed = owedNow(messages, ms)
      const closeFee = owed - s.base > s.fee ? owed - s.base : s.fee
      const refusedClose = await raise(s, closeFee)
      if (refusedClose !== undefined) return { refused: refusedClose }
      const next: BilledSegment = { index: s.index + 1, jobId: segmentJobId(request.jobId, s.index + 1), epoch, base: s.base + s.fee, fee: 0n }
      const fee = owed > next.base ? owed - next.base : 0n
      segments.push(next)
      signedFees.push(new Set())
      const refused = await raise(next, fee)
      if (refused !== undefined) {
        segments.pop()
        signedFees.pop()
        return { refused }
      }
      return {
        v: PROTOCOL_VERSION,
        type: 'segment',
        jobId: request.jobId,
        attempt: request.attempt,
        segment: next.index,
        closeFee: s.fee.toString(),
        closeSig: sign(s.index, s.fee),
        segmentJobId: next.jobId,
        epoch: epoch.toString(),
        fee: next.fee.toString(),
        ticketSig: sign(next.index, next.fee)
      }
    }
  }
}
