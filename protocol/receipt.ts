/**
 * From wire messages to the things that get signed: the EIP-712 Ticket and Receipt of a job
 * (eip712.ts), and the bytes a worker's Ed25519 peer key signs in an advert.
 */
import { bytesToHex, hexToBytes, type Hex } from 'viem'
import { ProtocolError } from './errors.ts'
import type { Receipt, Ticket } from './eip712.ts'
import type { JobRequest, WorkerAdvert } from './messages.ts'
import { inputHash, jobHash } from './canonical.ts'
import { isHex32, validateWorkerAdvert } from './validate.ts'
import { BinaryWriter } from './binary.ts'

function bigintField (value: string, field: string): bigint {
  if (typeof value !== 'string' || !/^(0|[1-9][0-9]{0,77})$/.test(value)) {
    throw new ProtocolError('INVALID_FIELD', `${field}: expected an unsigned integer as a decimal string`, { details: { field } })
  }
  return BigInt(value)
}

/** The job's `jobHash` (canonical.ts): secrets are covered by their names only. */
export function jobHashOf (job: Pick<JobRequest, 'fn' | 'options' | 'env' | 'secrets' | 'inputHash' | 'deadline'>): Hex {
  return jobHash({
    fn: job.fn,
    options: job.options,
    env: job.env,
    secretNames: job.secrets === undefined ? [] : Object.keys(job.secrets),
    inputHash: job.inputHash,
    deadline: job.deadline
  })
}

/**
 * The EIP-712 Ticket the gateway signed for `job` (`job.ticketSig`). `hash` is `jobHashOf(job)`,
 * passed in when the caller already has it (it is a keccak over the whole job).
 */
export function ticketOf (job: JobRequest, hash: Hex = jobHashOf(job)): Ticket {
  return {
    jobId: job.jobId,
    attempt: job.attempt,
    functionId: job.fn.id,
    jobHash: hash,
    inputHash: job.inputHash,
    worker: job.ticket.worker,
    gateway: job.ticket.gateway,
    fee: bigintField(job.ticket.fee, 'job.ticket.fee'),
    epoch: bigintField(job.ticket.epoch, 'job.ticket.epoch'),
    deadline: bigintField(job.ticket.deadline, 'job.ticket.deadline')
  }
}

/** The EIP-712 Receipt a worker signs for `job` once it has `outputHash` (see canonical.ts). */
export function receiptOf (job: JobRequest, outputHash: Hex, hash: Hex = jobHashOf(job)): Receipt {
  if (!isHex32(outputHash)) {
    throw new ProtocolError('INVALID_FIELD', 'outputHash: expected a bytes32 as lower-case 0x hex', { details: { field: 'outputHash' } })
  }
  return {
    jobId: job.jobId,
    attempt: job.attempt,
    functionId: job.fn.id,
    jobHash: hash,
    inputHash: job.inputHash,
    outputHash,
    worker: job.ticket.worker,
    gateway: job.ticket.gateway,
    fee: bigintField(job.ticket.fee, 'job.ticket.fee'),
    epoch: bigintField(job.ticket.epoch, 'job.ticket.epoch'),
    deadline: bigintField(job.ticket.deadline, 'job.ticket.deadline')
  }
}

/**
 * Throws ProtocolError INVALID_FIELD unless `job.inputHash` is the hash of `job.request`: a worker
 * checks this before signing anything that names the input.
 */
export function assertInputHash (job: Pick<JobRequest, 'inputHash' | 'request'>): void {
  const actual = inputHash(job.request)
  if (actual !== job.inputHash) {
    throw new ProtocolError('INVALID_FIELD', `job.inputHash: expected ${actual}, the hash of the canonical request`, { details: { field: 'job.inputHash' } })
  }
}

export const ADVERT_SIGNING_TAG = 'peerhost-advert-v1'

/**
 * The bytes a worker's Ed25519 peer key signs for an advert (everything but `sig`), independent of
 * key order or address case. Layout (u32/u64 big-endian, field = u32 length || UTF-8 bytes):
 *
 *     field("peerhost-advert-v1") || u32(v) || field(peerId) || address (20 bytes)
 *     || u32(count) || count × field(multiaddr)
 *     || u32(capacity) || u32(load) || u32(count) || count × field(warm cid) || u64(ts) || u64(seq)
 *     [|| u8(full ? 1 : 0), only when `full` is present]
 *     [|| u8(2) || field(price), only when `price` is present: the tag 2 can never be read as `full`]
 *     [|| u8(3) || field(perMessage) || field(perMinute), only when `sessionPrice` is present]
 *
 * Throws ProtocolError INVALID_FIELD when the advert is not valid.
 */
export function advertSigningBytes (advert: Omit<WorkerAdvert, 'sig'> | WorkerAdvert): Uint8Array {
  const a = validateWorkerAdvert({ ...advert, sig: new Uint8Array(64) })
  const w = new BinaryWriter()
    .field(ADVERT_SIGNING_TAG)
    .u32(a.v)
    .field(a.peerId)
    .raw(hexToBytes(a.address))
    .u32(a.addrs.length)
  for (const addr of a.addrs) w.field(addr)
  w.u32(a.capacity).u32(a.load).u32(a.warm.length)
  for (const cid of a.warm) w.field(cid)
  w.u64(a.ts).u64(a.seq)
  // appended only when present, so adverts without the flag sign the same bytes as before
  if (a.full !== undefined) w.raw(Uint8Array.of(a.full ? 1 : 0))
  if (a.price !== undefined) w.raw(Uint8Array.of(2)).field(a.price)
  if (a.sessionPrice !== undefined) w.raw(Uint8Array.of(3)).field(a.sessionPrice.perMessage).field(a.sessionPrice.perMinute)
  return w.finish()
}

/** A fresh job id: 32 random bytes as lower-case hex. */
export function newJobId (): Hex {
  const bytes = new Uint8Array(32)
  globalThis.crypto.getRandomValues(bytes)
  return bytesToHex(bytes)
}
