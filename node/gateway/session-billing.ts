/**
 * A WebSocket session's metered fee at the gateway (issue 12): the worker's advertised session
 * price (per message either way, per minute) paid with cumulative tickets — the job's EIP-712
 * Ticket re-signed with a higher fee, everything owed so far (protocol session-fees.ts). Each
 * increase is reserved against the project's allowance for the ticket's epoch and recorded in the
 * ticket log (the latest cumulative fee per (jobId, attempt, worker)) before the ticket leaves.
 */
import type { Address, Hex } from 'viem'
import {
  atFee, PROTOCOL_VERSION, sessionFeeCap, sessionOwed, ticketDigest, ticketOf,
  type JobRequest, type PeerHostDomain, type SessionTicket, type WorkerAdvert
} from '#protocol'
import type { FastSigner } from '../signing.ts'
import type { AllowanceTracker } from '../settlement/allowance.ts'
import type { TicketLog } from '../settlement/checker.ts'

export interface SessionBilling {
  /** whether the worker asks a session price (else no ticket is ever sent) */
  readonly priced: boolean
  /** Date.now() when the session opened: its time is counted from here */
  readonly openedAt: number
  /** the latest cumulative fee signed (the opening ticket's at first) */
  readonly fee: bigint
  /**
   * The next cumulative ticket for what the session owes after `messages` (both ways) and `ms`,
   * capped by the project's maxFee per billing unit: `undefined` when nothing more is owed (and
   * `final` is false); `{ refused }` when the allowance or the chain cannot pay more. A `final`
   * bill is a ticket even when nothing more is owed: the worker waits for it before it signs.
   */
  bill: (messages: number, ms: number, final: boolean) => Promise<SessionTicket | { refused: string } | undefined>
  /** whether this gateway signed the session's ticket at exactly `fee` (the opening one or a cumulative one) */
  signed: (fee: string) => boolean
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
}

/** Billing for the session `request` (its opening ticket signed, `hash` its jobHash) on `worker`. */
export function sessionBilling (parts: SessionBillingParts, request: JobRequest, hash: Hex, worker: Pick<WorkerAdvert, 'address' | 'sessionPrice'>, now: () => number = Date.now): SessionBilling {
  const price = worker.sessionPrice
  const opening = BigInt(request.ticket.fee)
  const epoch = BigInt(request.ticket.epoch)
  const signedFees = new Set<string>([request.ticket.fee])
  let fee = opening
  return {
    priced: price !== undefined && (price.perMessage !== '0' || price.perMinute !== '0'),
    openedAt: now(),
    get fee () { return fee },
    signed: (f) => signedFees.has(f),
    async bill (messages, ms, final) {
      if (price === undefined) return undefined
      let owed = sessionOwed(opening, price, messages, ms)
      // never above the project's cap (a worker whose prices fit it never reaches it)
      if (parts.maxFee !== undefined) {
        const cap = sessionFeeCap(parts.maxFee, messages, ms)
        if (owed > cap) owed = cap
      }
      if (owed <= fee && !final) return undefined
      if (owed > fee) {
        if (parts.spend !== undefined) {
          let verdict
          try {
            verdict = await parts.spend.reserve(parts.projectId, parts.project, epoch, owed - fee)
          } catch {
            return { refused: 'the gateway could not check the project\'s escrow on the chain' }
          }
          if (!verdict.ok) return { refused: verdict.message }
        }
        // bills are awaited one after another (the relay chains them), so `fee` only grows
        fee = owed
        signedFees.add(fee.toString())
        parts.tickets?.record({ jobId: request.jobId, attempt: request.attempt, worker: worker.address as Address, projectId: parts.projectId, epoch, fee, session: true })
      }
      const ticketSig = parts.signer.signDigest(ticketDigest(parts.domain, ticketOf(atFee(request, fee.toString()), hash)))
      return { v: PROTOCOL_VERSION, type: 'ticket', jobId: request.jobId, attempt: request.attempt, fee: fee.toString(), ticketSig }
    }
  }
}
