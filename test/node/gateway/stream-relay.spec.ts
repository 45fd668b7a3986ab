/**
 * The gateway's stream relay facing a lying worker (ST-S3): the relay hashes the body it actually
 * relayed and accepts `stream-end` only when the worker signed exactly that. The worker here is an
 * adversary writing the job-stream frames by hand (a stand-in for the one component this unit test
 * is not about); the client is a real HTTP client asking for trailers.
 */
import assert from 'node:assert/strict'
import { createServer, get, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { generatePrivateKey } from 'viem/accounts'
import { fastSigner, type FrameStream } from '#node'
import { bodyHasher, DEV_DOMAIN, PROTOCOL_VERSION, receiptDigest, receiptOf, streamOutputHash, type Message } from '#protocol'
import { receiptBook, relayStream, type StreamReceipt } from '../../../node/gateway/stream-relay.ts'
import type { StreamedAnswer } from '../../../node/gateway/dispatch.ts'
import { job } from '../../protocol/fixtures.ts'

const workerSigner = fastSigner(generatePrivateKey())
const request = job()

/** What the worker's frames say: the body it sends, and what its stream-end claims and signs. */
interface Script { sent: string, claimed?: string, outputHashOf?: string }

function frames (s: Script): Message[] {
  const body = new TextEncoder().encode(s.sent)
  const claimed = bodyHasher()
  claimed.add(new TextEncoder().encode(s.claimed ?? s.sent))
  const signedFor = bodyHasher()
  signedFor.add(new TextEncoder().encode(s.outputHashOf ?? s.claimed ?? s.sent))
  const outputHash = streamOutputHash({ status: 200, bodyHash: signedFor.digest(), bytes: signedFor.bytes })
  const receiptSig = workerSigner.signDigest(receiptDigest(DEV_DOMAIN, receiptOf(request, outputHash)))
  return [
    { v: PROTOCOL_VERSION, type: 'stream-chunk', data: body },
    { v: PROTOCOL_VERSION, type: 'stream-end', jobId: request.jobId, attempt: request.attempt, bytes: claimed.bytes, bodyHash: claimed.digest(), outputHash, receiptSig, logs: '', logsTruncated: false, timings: { queueMs: 0, execMs: 0, sandboxMs: 0 } }
  ] as Message[]
}

describe('gateway stream relay: a worker whose stream receipt does not match the bytes relayed', function () {
  this.timeout(30_000)
  let server: Server
  let url: string
  const book = receiptBook()
  const logged: Array<{ fields: Record<string, unknown>, msg: string }> = []
  const log = { info: (fields: Record<string, unknown>, msg: string) => { logged.push({ fields, msg }) }, debug () {}, warn () {}, error () {} }
  let script: Script
  let done: boolean | undefined

  before(async () => {
    server = createServer((req, res) => {
      const queue = frames(script)
      const f = { readAny: async () => queue.shift() ?? await new Promise(() => {}) } as unknown as FrameStream
      const answer = { head: {}, stream: { pause () {}, resume () {} }, f, done: (ok: boolean) => { done = ok } } as unknown as StreamedAnswer
      void relayStream({ res, answer, request, worker: { peerId: 'worker-peer', address: workerSigner.address }, domain: DEV_DOMAIN, status: 200, headers: [['content-type', 'text/plain']], nullBody: false, trailers: req.headers.te === 'trailers', deadline: Date.now() + 10_000, book, log: log as any })
    })
    await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`
  })
  after(async () => { await new Promise(resolve => server.close(resolve)) })

  async function fetchRaw (): Promise<{ body: string, complete: boolean, trailer?: string }> {
    return await new Promise(resolve => {
      get(url, { headers: { te: 'trailers' } }, res => {
        let body = ''
        res.on('data', d => { body += String(d) })
        res.on('end', () => resolve({ body, complete: res.complete, trailer: res.trailers['x-peerhost-receipt'] }))
        res.on('error', () => resolve({ body, complete: false }))
        res.on('aborted', () => resolve({ body, complete: false }))
      })
    })
  }

  function kept (): StreamReceipt { return book.get(request.jobId)! }

  it('passes an honest worker\'s body with a verified receipt as a trailer', async () => {
    script = { sent: 'hello' }
    const r = await fetchRaw()
    assert.deepEqual([r.body, r.complete], ['hello', true])
    assert.ok(r.trailer !== undefined, 'the receipt trailer arrives')
    assert.equal(kept().verified, true)
    assert.equal(done, true)
  })

  it('attack: a stream-end claiming (and signing) a body other than the bytes relayed cuts the client\'s response, keeps no valid receipt, and logs why', async () => {
    script = { sent: 'hello', claimed: 'HELLO' }
    logged.length = 0
    const r = await fetchRaw()
    assert.equal(r.complete, false, 'the response is cut: a truncated or false body never looks complete')
    assert.equal(r.trailer, undefined, 'no receipt reaches the client')
    assert.equal(kept().verified, false)
    assert.equal(kept().receipt, undefined)
    assert.match(kept().problem ?? '', /signed a body that differs from what the gateway relayed/)
    assert.equal(done, false)
    assert.ok(logged.some(l => l.msg === 'streamed response cut' && /differs/.test(String(l.fields.problem))), JSON.stringify(logged))
  })

  it('attack: a stream-end with the right body hash but an outputHash of another body is cut the same way', async () => {
    script = { sent: 'hello', outputHashOf: 'HELLO' }
    const r = await fetchRaw()
    assert.equal(r.complete, false)
    assert.equal(r.trailer, undefined)
    assert.equal(kept().verified, false)
    assert.match(kept().problem ?? '', /outputHash does not match the relayed body/)
  })
})
