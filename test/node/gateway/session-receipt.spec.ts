/**
 * A client's own check of a session receipt (node/gateway/session-receipt.ts, `peerhost ws`):
 * the gateway that serves /_peerhost/receipts/<jobId> is the attacker here. It may hand out a
 * receipt over another transcript, one signed by a key other than the worker it names, another
 * job's receipt, or garbage; only a receipt the named worker signed over exactly what this client
 * saw passes.
 */
import assert from 'node:assert/strict'
import { generatePrivateKey } from 'viem/accounts'
import { DEV_DOMAIN, receiptDigest, segmentJobId, transcript, transcriptOutputHash, type Receipt, type TranscriptSummary } from '#protocol'
import { checkSessionReceipt } from '../../../node/gateway/session-receipt.ts'
import { fastSigner } from '../../../node/signing.ts'

const worker = fastSigner(generatePrivateKey())
const stranger = fastSigner(generatePrivateKey())
const JOB = `0x${'ab'.repeat(32)}` as const

function session (messages: string[]): TranscriptSummary {
  const t = transcript()
  for (const m of messages) { t.add('in', false, Buffer.from(m)); t.add('out', false, Buffer.from(`echo: ${m}`)) }
  return t.summary()
}

/** The record /_peerhost/receipts answers, signed by `by` over `summary` for `jobId`. */
function record (summary: TranscriptSummary, opts: { by?: typeof worker, jobId?: `0x${string}`, receiptJob?: `0x${string}`, segments?: number } = {}): Record<string, unknown> {
  const jobId = opts.jobId ?? JOB
  const receipt: Receipt = {
    jobId: opts.receiptJob ?? jobId,
    attempt: 0,
    functionId: `0x${'01'.repeat(32)}`,
    jobHash: `0x${'02'.repeat(32)}`,
    inputHash: `0x${'03'.repeat(32)}`,
    outputHash: transcriptOutputHash(summary),
    worker: worker.address,
    gateway: stranger.address,
    fee: 10n ** 13n,
    epoch: 7n,
    deadline: 1_900_000_000n
  }
  const signature = (opts.by ?? worker).signDigest(receiptDigest(DEV_DOMAIN, receipt))
  const json = JSON.parse(JSON.stringify({ domain: DEV_DOMAIN, ...receipt, signature }, (_k, v) => typeof v === 'bigint' ? v.toString() : v))
  return {
    jobId,
    worker: '12D3KooWorker',
    transcript: summary,
    verified: true,
    receipt: json,
    ...(opts.segments !== undefined ? { segments: Array.from({ length: opts.segments }, (_, i) => ({ segment: i })) } : {})
  }
}

describe('node/gateway/session-receipt: a client checks a session receipt itself', () => {
  const mine = session(['one', 'two'])

  it('accepts the named worker\'s signature over exactly this client\'s transcript', () => {
    const c = checkSessionReceipt(record(mine), mine, JOB)
    assert.equal(c.verified, true, c.verified ? '' : c.problem)
    assert.equal(c.verified && c.signer, worker.address)
  })

  it('attack: a receipt over another transcript (a message dropped, altered or added) is refused, even though the gateway says verified', () => {
    for (const other of [session(['one']), session(['one', 'TWO']), session(['one', 'two', 'three'])]) {
      const c = checkSessionReceipt(record(other), mine, JOB)
      assert.equal(c.verified, false)
      assert.match(c.verified ? '' : c.problem, /transcript differs from what this client saw/)
    }
    // the gateway's transcript copied from the client's view, the signature over another one
    const forged = record(session(['one']))
    forged.transcript = mine
    const c = checkSessionReceipt(forged, mine, JOB)
    assert.match(c.verified ? '' : c.problem, /outputHash is not the hash of this client's transcript/)
  })

  it('attack: a receipt signed by a key other than the worker it names is refused', () => {
    const c = checkSessionReceipt(record(mine, { by: stranger }), mine, JOB)
    assert.match(c.verified ? '' : c.problem, new RegExp(`signed by ${stranger.address}, not by the worker it names`))
  })

  it('attack: another job\'s receipt, or a signed receipt of another job, is refused', () => {
    const other = `0x${'cd'.repeat(32)}` as const
    assert.match((checkSessionReceipt(record(mine, { jobId: other }), mine, JOB) as { problem: string }).problem, /is for job 0xcdcd/)
    assert.match((checkSessionReceipt(record(mine, { receiptJob: other }), mine, JOB) as { problem: string }).problem, /signed receipt is for job 0xcdcd/)
  })

  it('a session in segments ends in its last segment\'s receipt, whose job id is derived from the session\'s', () => {
    const c = checkSessionReceipt(record(mine, { receiptJob: segmentJobId(JOB, 2), segments: 3 }), mine, JOB)
    assert.equal(c.verified, true, c.verified ? '' : c.problem)
    assert.equal(c.verified && c.segments, 3)
    // the session's own job id signed as if it were a later segment's: refused
    assert.equal(checkSessionReceipt(record(mine, { segments: 3 }), mine, JOB).verified, false)
  })

  it('malformed records are problems named, never exceptions', () => {
    const good = record(mine)
    const cases: unknown[] = [null, 'x', [], { ...good, receipt: undefined, problem: 'the worker ended the session without a receipt' },
      { ...good, receipt: { ...(good.receipt as object), signature: '0x1234' } },
      { ...good, receipt: { ...(good.receipt as object), fee: '-1' } },
      { ...good, receipt: { ...(good.receipt as object), domain: { chainId: 'x' } } },
      { ...good, transcript: { inHash: { toString: () => { throw new Error('boom') } } } }]
    for (const bad of cases) {
      const c = checkSessionReceipt(bad, mine, JOB)
      assert.equal(c.verified, false, JSON.stringify(bad)?.slice(0, 100))
      assert.equal(typeof (c as { problem: string }).problem, 'string')
    }
    assert.match((checkSessionReceipt(cases[3], mine, JOB) as { problem: string }).problem, /no signed receipt: the worker ended the session without a receipt/)
  })
})
