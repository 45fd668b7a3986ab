/**
 * The gateway's session relay facing a lying worker: the relay hashes what it actually relayed
 * each way and keeps a session receipt as verified only when the worker signed exactly that. The
 * worker here is an adversary speaking the job-stream frames by hand (a stand-in for the one
 * component this unit test is not about); the client is a real `ws` client over real HTTP.
 */
import assert from 'node:assert/strict'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { generatePrivateKey } from 'viem/accounts'
import { WebSocket } from 'ws'
import { fastSigner, silentLogger, type FrameStream } from '#node'
import { DEV_DOMAIN, encodeMessage, PROTOCOL_VERSION, receiptDigest, receiptOf, transcript, transcriptOutputHash, type Message, type TranscriptSummary } from '#protocol'
import { sessionRelay, type SessionReceipt, type SessionRelay } from '../../../node/gateway/sessions.ts'
import { job } from '../../protocol/fixtures.ts'
import { waitFor } from '../../helpers/network.ts'

/** A worker's side of a job stream, scripted by the test. */
function scriptedWorker (): { f: FrameStream, stream: any, send: (m: Message) => void, received: Message[], aborted: () => Error | undefined } {
  const inbox: Uint8Array[] = []
  const waiting: Array<(b: Uint8Array) => void> = []
  const received: Message[] = []
  let abortedWith: Error | undefined
  const f = {
    lp: {
      async read () {
        const bytes = inbox.shift() ?? await new Promise<Uint8Array>(resolve => waiting.push(resolve))
        return { subarray: () => bytes }
      }
    },
    async write (msg: Message) { received.push(msg) },
    async read () { throw new Error('not used by the relay') }
  } as unknown as FrameStream
  return {
    f,
    stream: { abort (err: Error) { abortedWith = err }, async close () {} },
    send (m) { const b = encodeMessage(m); const w = waiting.shift(); if (w !== undefined) w(b); else inbox.push(b) },
    received,
    aborted: () => abortedWith
  }
}

describe('gateway session relay: a worker that lies about the session', function () {
  this.timeout(30_000)
  let server: Server
  let relay: SessionRelay
  let url: string
  const ended: SessionReceipt[] = []
  const workerKey = generatePrivateKey()
  const workerSigner = fastSigner(workerKey)
  let next: ReturnType<typeof scriptedWorker> & { jobId: `0x${string}`, request: ReturnType<typeof job> }

  before(async () => {
    relay = sessionRelay({ domain: DEV_DOMAIN }, { logger: silentLogger(), onEnd: r => ended.push(r) })
    server = createServer()
    server.on('upgrade', (req, socket, head) => {
      const w = next
      relay.accept(req, socket, head, {
        jobId: w.jobId,
        request: w.request,
        worker: { peerId: 'worker-peer', advert: { address: workerSigner.address } } as any,
        open: { headers: [], stream: w.stream, f: w.f, release: () => {} }
      })
    })
    await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
    url = `ws://127.0.0.1:${(server.address() as AddressInfo).port}/s`
  })
  after(async () => {
    await relay?.shutdown()
    await new Promise(resolve => server?.close(resolve))
  })

  /** One session: the client sends "hi", the worker answers "hello", then the worker ends it with `end`. */
  async function session (n: number, end: (own: TranscriptSummary, request: ReturnType<typeof job>) => Message): Promise<SessionReceipt> {
    const request = { ...job(), jobId: `0x${n.toString(16).padStart(64, '0')}` as `0x${string}`, ticket: { ...job().ticket, worker: workerSigner.address } }
    next = { ...scriptedWorker(), jobId: request.jobId, request }
    const w = next
    const ws = new WebSocket(url)
    await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject) })
    const got = new Promise<string>(resolve => ws.once('message', d => resolve(String(d))))
    ws.send('hi')
    await waitFor('the client message at the worker', () => w.received.some(m => m.type === 'ws'))
    w.send({ v: PROTOCOL_VERSION, type: 'ws', binary: false, data: new TextEncoder().encode('hello') })
    assert.equal(await got, 'hello')
    // what an honest worker would have seen: the same two messages
    const own = transcript()
    own.add('in', false, new TextEncoder().encode('hi'))
    own.add('out', false, new TextEncoder().encode('hello'))
    const closed = new Promise<number>(resolve => ws.once('close', code => resolve(code)))
    ws.close(1000)
    await waitFor('the client close at the worker', () => w.received.some(m => m.type === 'ws-close'))
    w.send(end(own.summary(), request))
    await closed
    return await waitFor('the session receipt', () => relay.receipt(request.jobId))
  }

  const signed = (t: TranscriptSummary, request: ReturnType<typeof job>, key = workerKey): Message => {
    const outputHash = transcriptOutputHash(t)
    return { v: PROTOCOL_VERSION, type: 'session-end', jobId: request.jobId, attempt: request.attempt, transcript: t, outputHash, receiptSig: fastSigner(key).signDigest(receiptDigest(DEV_DOMAIN, receiptOf(request, outputHash))), logs: '', logsTruncated: false }
  }

  it('keeps an honest worker\'s session receipt as verified, signed by that worker', async () => {
    const r = await session(1, (own, request) => signed(own, request))
    assert.equal(r.verified, true, r.problem)
    assert.equal((r.receipt as any).worker.toLowerCase(), workerSigner.address.toLowerCase())
  })

  it('attack: a worker signing a transcript with a message the client never sent is not verified, and the stream is cut', async () => {
    let w!: ReturnType<typeof scriptedWorker>
    const r = await session(2, (own, request) => {
      w = next
      // claims one more inbound message than the client sent (e.g. to bill more, or to blame the client)
      return signed({ ...own, messagesIn: own.messagesIn + 1, bytesIn: own.bytesIn + 3 }, request)
    })
    assert.equal(r.verified, false)
    assert.match(r.problem ?? '', /transcript that differs from what the gateway relayed/)
    assert.equal(r.receipt, undefined)
    assert.match(w.aborted()?.message ?? '', /differs/)
  })

  it('attack: a session-end signed by another key is not verified', async () => {
    const r = await session(3, (own, request) => signed(own, request, generatePrivateKey()))
    assert.equal(r.verified, false)
    assert.match(r.problem ?? '', /not signed by the worker/)
  })

  it('attack: an outputHash that is not the transcript\'s hash is not verified', async () => {
    const r = await session(4, (own, request) => ({ ...signed(own, request) as any, outputHash: `0x${'ab'.repeat(32)}` }))
    assert.equal(r.verified, false)
    assert.match(r.problem ?? '', /not signed by the worker/)
  })

  it('every ended session was reported once', () => {
    assert.deepEqual(ended.map(r => r.verified), [true, false, false, false])
  })
})
