/**
 * Streamed response bodies at the gateway (issue 12): after a worker's `stream-head`, the body's
 * `stream-chunk` frames are written to the client's HTTP response as they arrive, never gathered
 * whole. While the client's socket is full the job stream is paused (yamux grants the worker no
 * more window, so the worker's writes wait, and behind them the function's), so a client that
 * stops reading costs the gateway at most the stream's window, not the body.
 *
 * The `stream-end` frame carries the worker's receipt over `streamOutputHash` (status, SHA-256 of
 * every body byte, the byte count, the error code). The gateway recomputes the hash from what it
 * relayed and accepts the receipt only when it matches and the worker signed it; the verified
 * receipt is kept for `/_peerhost/receipts/<jobId>` (LRU) and sent as the `x-peerhost-receipt`
 * trailer to a client that sent `TE: trailers`. A stream that is cut (a limit, the function
 * failed, the worker died, a bad receipt) ends the client's response abnormally (the connection
 * is reset mid-body), so a truncated body is never taken for a whole one.
 */
import type { ServerResponse } from 'node:http'
import {
  bodyHasher, LIMITS, receiptDigest, receiptOf, streamOutputHash,
  type JobRequest, type PeerHostDomain, type WireError
} from '#protocol'
import { NODE_DEFAULTS } from '../constants.ts'
import type { Logger } from '../logger.ts'
import { recoverDigestSigner, sameAddress } from '../signing.ts'
import type { StreamedAnswer } from './dispatch.ts'

/** What /_peerhost/receipts/<jobId> answers for a streamed response. */
export interface StreamReceipt {
  kind: 'stream'
  jobId: string
  worker: string
  status: number
  /** body bytes the gateway relayed */
  bytes: number
  /** SHA-256 of those bytes */
  bodyHash: string
  /** whether the worker's signed stream-end matched what the gateway relayed */
  verified: boolean
  /** why not, when not */
  problem?: string
  /** the wire error the stream was cut with, when it was */
  error?: Pick<WireError, 'code' | 'message'>
  /** EIP-712 receipt fields, the domain and the worker's signature (as x-peerhost-receipt) */
  receipt?: Record<string, unknown>
  endedAt: string
}

/** Recent stream receipts, least recently used dropped first. */
export interface ReceiptBook {
  keep: (r: StreamReceipt) => void
  get: (jobId: string) => StreamReceipt | undefined
  readonly size: number
}

export function receiptBook (max: number = NODE_DEFAULTS.streamReceiptsKept): ReceiptBook {
  const book = new Map<string, StreamReceipt>()
  return {
    keep (r) {
      book.delete(r.jobId)
      book.set(r.jobId, r)
      while (book.size > max) book.delete(book.keys().next().value as string)
    },
    get (jobId) {
      const r = book.get(jobId)
      if (r !== undefined) { book.delete(jobId); book.set(jobId, r) }
      return r
    },
    get size () { return book.size }
  }
}

export interface StreamRelayInput {
  res: ServerResponse
  answer: StreamedAnswer
  request: JobRequest
  worker: { peerId: string, address: string }
  domain: PeerHostDomain
  /** the response's status and header list (already filtered by the caller) */
  status: number
  headers: Array<[string, string]>
  /** no body goes to the client (HEAD, 204, 304), though the frames are still read and checked */
  nullBody: boolean
  /** the client sent `TE: trailers` */
  trailers: boolean
  /** unix ms: no frame after this (+ grace) cuts the response */
  deadline: number
  book: ReceiptBook
  log: Logger
}

/** `x-peerhost-receipt`'s encoding: base64url JSON of the domain, the receipt fields and the signature. */
export function encodeReceipt (receipt: Record<string, unknown>): string {
  return Buffer.from(JSON.stringify(receipt)).toString('base64url')
}

/** The receipt object for `request` and `outputHash`, signed by `signature` (uint fields as decimal strings). */
export function receiptRecord (domain: PeerHostDomain, request: JobRequest, outputHash: `0x${string}`, signature: string): Record<string, unknown> {
  const r = receiptOf(request, outputHash)
  return JSON.parse(JSON.stringify({ domain: { ...domain }, ...r, signature }, (_k, v) => typeof v === 'bigint' ? v.toString() : v))
}

/**
 * Relays a streamed body to `res` until `stream-end` (or a failure); resolves when the response
 * has ended either way. Never throws.
 */
export async function relayStream (x: StreamRelayInput): Promise<{ receipt: StreamReceipt, logs: string, logsTruncated: boolean }> {
  const { res, answer } = x
  const { stream, f } = answer
  const hash = bodyHasher()
  // what the worker was granted before a pause must fit (see NODE_DEFAULTS.streamReadBufferBytes)
  try { stream.maxReadBufferLength = NODE_DEFAULTS.streamReadBufferBytes } catch {}
  const gone = new AbortController()
  res.once('close', () => { if (!res.writableFinished) gone.abort() })
  const headers: Array<[string, string]> = [...x.headers]
  if (x.trailers) headers.push(['trailer', 'x-peerhost-receipt'])
  res.writeHead(x.status, headers.flat())
  // the client learns status and headers now, not with the first chunk
  res.flushHeaders()

  let logs = ''
  let logsTruncated = false
  const finish = (r: Omit<StreamReceipt, 'kind' | 'jobId' | 'worker' | 'status' | 'bytes' | 'bodyHash' | 'endedAt'>): { receipt: StreamReceipt, logs: string, logsTruncated: boolean } => {
    const kept: StreamReceipt = { kind: 'stream', jobId: x.request.jobId, worker: x.worker.peerId, status: x.status, bytes: hash.bytes, bodyHash: hash.digest(), ...r, endedAt: new Date().toISOString() }
    x.book.keep(kept)
    return { receipt: kept, logs, logsTruncated }
  }
  const cut = (problem: string, error?: WireError): ReturnType<typeof finish> => {
    answer.done(false)
    if (!res.destroyed) res.destroy()
    x.log.info({ jobId: x.request.jobId, worker: x.worker.peerId, problem, code: error?.code, bytes: hash.bytes }, 'streamed response cut')
    return finish({ verified: false, problem, ...(error !== undefined ? { error: { code: error.code, message: error.message } } : {}) })
  }

  const until = AbortSignal.timeout(Math.max(1, x.deadline - Date.now()) + NODE_DEFAULTS.streamGraceMs)
  const signal = AbortSignal.any([gone.signal, until])
  try {
    for (;;) {
      const msg = await f.readAny(signal)
      if (msg.type === 'stream-chunk') {
        hash.add(msg.data)
        if (hash.bytes > LIMITS.maxStreamBytes) return cut('the worker sent more than the stream limit', { code: 'LIMIT_RESPONSE_SIZE', message: 'the function response exceeded its size limit' })
        if (x.nullBody || res.write(msg.data)) continue
        // the client's socket is full: stop granting the worker window until it drains
        try { stream.pause() } catch {}
        await new Promise<void>(resolve => {
          const wake = (): void => { res.off('drain', wake); res.off('close', wake); signal.removeEventListener('abort', wake); resolve() }
          res.on('drain', wake)
          res.on('close', wake)
          signal.addEventListener('abort', wake)
        })
        if (signal.aborted || res.destroyed) throw new Error(gone.signal.aborted ? 'the client went away' : 'the stream passed its deadline')
        try { stream.resume() } catch {}
      } else if (msg.type === 'stream-end') {
        if (msg.jobId !== x.request.jobId || msg.attempt !== x.request.attempt) return cut('stream-end for another job or attempt')
        const own = { status: x.status, bodyHash: hash.digest(), bytes: hash.bytes, ...(msg.error !== undefined ? { error: msg.error.code } : {}) }
        if (msg.bytes !== own.bytes || msg.bodyHash !== own.bodyHash) return cut('the worker signed a body that differs from what the gateway relayed')
        const expected = streamOutputHash(own)
        if (msg.outputHash !== expected) return cut('the stream receipt\'s outputHash does not match the relayed body')
        const signer = recoverDigestSigner(receiptDigest(x.domain, receiptOf(x.request, expected)), msg.receiptSig)
        if (signer === undefined || !sameAddress(signer, x.worker.address)) return cut('the stream receipt is not signed by the worker')
        const receipt = receiptRecord(x.domain, x.request, expected, msg.receiptSig)
        logs = msg.logs
        logsTruncated = msg.logsTruncated
        if (msg.error !== undefined) {
          // cut by a limit or a failure: the receipt (verified) says so; the client's body is incomplete
          answer.done(true)
          // what was relayed reaches the client first; then the connection closes without the
          // body's terminating chunk
          if (res.writableNeedDrain && !res.destroyed) await new Promise<void>(resolve => { res.once('drain', resolve); res.once('close', resolve); setTimeout(resolve, NODE_DEFAULTS.streamGraceMs).unref() })
          if (!res.destroyed) res.destroy()
          return finish({ verified: true, error: { code: msg.error.code, message: msg.error.message }, receipt })
        }
        answer.done(true)
        if (x.trailers) res.addTrailers({ 'x-peerhost-receipt': encodeReceipt(receipt) })
        res.end()
        return finish({ verified: true, receipt })
      } else if (msg.type === 'error') {
        return cut(`the worker ended the stream with ${msg.error.code}`, msg.error)
      } else {
        return cut(`unexpected "${msg.type}" frame in a streamed body`)
      }
    }
  } catch (err) {
    return cut(gone.signal.aborted ? 'the client went away' : `the worker stream ended before stream-end: ${(err as Error)?.message ?? err}`)
  }
}
