/**
 * Metered WebSocket session fees (issue 11 pricing, issue 12): what a session owes its worker, and
 * what a project's `maxFee` allows a session to cost. Gateway and worker compute both with these
 * functions, so they agree to the wei on the same counts.
 *
 * A session's fee is cumulative, as in a payment channel: the opening ticket pays the worker's
 * request `price`; `ticket` frames during the session carry everything owed so far,
 *
 *     owed = price + perMessage × messages + ⌊perMinute × ms / 60 000⌋
 *
 * where `messages` counts WebSocket messages both ways and `ms` the time since the session opened.
 * A project's `maxFee` caps a request; a session is capped at `maxFee` per **billing unit**:
 *
 *     cap = maxFee × (1 + ⌈messages / 100⌉ + ⌈ms / 60 000⌉)
 *
 * so a worker whose price per 100 messages or per minute exceeds `maxFee` is never chosen, and a
 * cumulative ticket never exceeds the cap.
 */
import { encodeAbiParameters, type Hex } from 'viem'
import { keccak256 } from './keccak.ts'
import type { JobRequest, SessionPrice } from './messages.ts'

/** Messages per billing unit of a session (and per cumulative ticket a gateway sends, at most). */
export const SESSION_UNIT_MESSAGES = 100
/** Milliseconds per billing unit of a session (one minute). */
export const SESSION_UNIT_MS = 60_000

/** A free session price (what a worker without `sessionPrice` asks). */
export const FREE_SESSION_PRICE: SessionPrice = { perMessage: '0', perMinute: '0' }

/** What a session owes after `messages` messages (both ways) and `ms` milliseconds. */
export function sessionOwed (price: bigint, session: SessionPrice, messages: number, ms: number): bigint {
  const elapsed = BigInt(Math.max(0, Math.floor(ms)))
  return price + BigInt(session.perMessage) * BigInt(Math.max(0, messages)) + BigInt(session.perMinute) * elapsed / BigInt(SESSION_UNIT_MS)
}

/** The most a session may cost a project whose `maxFee` is `maxFee`, after `messages` and `ms`. */
export function sessionFeeCap (maxFee: bigint, messages: number, ms: number): bigint {
  const units = 1 + Math.ceil(Math.max(0, messages) / SESSION_UNIT_MESSAGES) + Math.ceil(Math.max(0, ms) / SESSION_UNIT_MS)
  return maxFee * BigInt(units)
}

/** Whether a worker's prices fit a project's `maxFee` for sessions (each billing unit costs at most maxFee). */
export function sessionPriceFits (maxFee: bigint, price: bigint, session: SessionPrice | undefined): boolean {
  const s = session ?? FREE_SESSION_PRICE
  return price <= maxFee && BigInt(s.perMessage) * BigInt(SESSION_UNIT_MESSAGES) <= maxFee && BigInt(s.perMinute) <= maxFee
}

/** The job as its cumulative ticket of `fee` names it (the EIP-712 Ticket differs only in `fee`). */
export function atFee (job: JobRequest, fee: string): JobRequest {
  return { ...job, ticket: { ...job.ticket, fee } }
}

/**
 * The job id of segment `segment` (1 and up) of the session whose opening job id is `jobId`:
 * keccak256(abi.encode(jobId, segment)). Settlement counts one (gateway, project, jobId) once, so
 * each segment of a session that outlives its epoch is a leaf of its own (docs/chain.md). Segment 0
 * is the session's own job id.
 */
export function segmentJobId (jobId: Hex, segment: number): Hex {
  if (segment === 0) return jobId
  return keccak256(encodeAbiParameters([{ type: 'bytes32' }, { type: 'uint256' }], [jobId, BigInt(segment)]))
}

/** The job as segment `jobId` of its session names it: the EIP-712 Ticket differs in jobId, epoch and fee. */
export function atSegment (job: JobRequest, jobId: Hex, epoch: string, fee: string): JobRequest {
  return { ...job, jobId, ticket: { ...job.ticket, epoch, fee } }
}
