/**
 * The request path through the mesh, with real processes: a bootstrap node, a gateway and three
 * workers started through the CLI on 127.0.0.1 (dev executor; the gVisor path has its own suite).
 */
import assert from 'node:assert/strict'
import { connect } from 'node:net'
import { join, resolve } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { lpStream } from '@libp2p/utils'
import { multiaddr } from '@multiformats/multiaddr'
import { pack } from 'msgpackr'
import type { Hex } from 'viem'
import { advertSigningBytes, encodeMessage, JOB_PROTOCOL, PROTOCOL_VERSION, recoverReceiptSigner, workersTopic, type WorkerAdvert } from '#protocol'
import { createMeshNode, loadEvmAccount, type PeerHostLibp2p } from '#node'
import { startTestNetwork, status, waitFor, type TestNetwork } from '../helpers/network.ts'

const root = resolve(import.meta.dirname, '..', '..')

describe('mesh: bootstrap, gateway and three workers as separate processes', function () {
  this.timeout(120_000)
  let net: TestNetwork
  let hello: string
  let slow: string

  before(async () => {
    net = await startTestNetwork({ workers: 3, projects: [join(root, 'examples/hello'), join(root, 'test/fixtures/slow')] })
    hello = net.functions.find(u => u.endsWith('/hello/hello'))!
    slow = net.functions.find(u => u.endsWith('/slow/slow'))!
    assert.ok(hello !== undefined && slow !== undefined, `functions served: ${net.functions.join(', ')}`)
  })
  after(async () => { await net?.stop() })

  it('learns all three workers through gossip within a few seconds', async () => {
    const started = Date.now()
    const s = await waitFor('three workers in the gateway view', async () => {
      const st = await status(net)
      return st.workers.length === 3 ? st : undefined
    }, 10_000)
    const expected = net.workerInfo.map(w => w.peerId).sort()
    assert.deepEqual(s.workers.map((w: any) => w.peerId).sort(), expected)
    assert.ok(Date.now() - started < 10_000)
    const ready = await fetch(`${net.gatewayUrl}/_peerhost/ready`)
    assert.equal(ready.status, 200)
  })

  it('answers an HTTP request with the function response and a receipt signed by the worker key', async () => {
    const res = await fetch(`${hello}?name=Ada`)
    assert.equal(res.status, 200)
    assert.equal(await res.text(), 'Hello, Ada!\n')
    const workerPeer = res.headers.get('x-peerhost-worker')
    const index = net.workerInfo.findIndex(w => w.peerId === workerPeer)
    assert.ok(index >= 0, `x-peerhost-worker ${workerPeer} is one of the workers`)
    const receipt = JSON.parse(Buffer.from(res.headers.get('x-peerhost-receipt')!, 'base64url').toString())
    assert.equal(receipt.jobId, res.headers.get('x-peerhost-job'))
    const signer = await recoverReceiptSigner(receipt.domain, {
      ...receipt, fee: BigInt(receipt.fee), epoch: BigInt(receipt.epoch)
    }, receipt.signature as Hex)
    // the worker's signing key, read from its data dir
    const key = loadEvmAccount(join(net.dir, `worker-${index + 1}`))
    assert.equal(signer, key.address)
    assert.equal(receipt.worker, key.address)
    // a tampered receipt recovers someone else
    const tampered = await recoverReceiptSigner(receipt.domain, { ...receipt, fee: 1n, epoch: BigInt(receipt.epoch) }, receipt.signature as Hex)
    assert.notEqual(tampered, key.address)
    assert.match(res.headers.get('server-timing') ?? '', /dispatch;dur=[\d.]+, queue;dur=[\d.]+, sandbox;dur=[\d.]+, exec;dur=[\d.]+, total;dur=[\d.]+/)
  })

  it('hashes the same request to the same inputHash whichever worker runs it', async () => {
    const hashes = new Set<string>()
    const jobs = new Set<string>()
    for (let i = 0; i < 4; i++) {
      const res = await fetch(`${hello}?name=Same`, { headers: { accept: 'text/plain' } })
      await res.arrayBuffer()
      const receipt = JSON.parse(Buffer.from(res.headers.get('x-peerhost-receipt')!, 'base64url').toString())
      hashes.add(receipt.inputHash)
      jobs.add(receipt.jobId)
    }
    assert.equal(hashes.size, 1)
    assert.equal(jobs.size, 4)
  })

  it('still answers correctly when the worker running the request is killed mid-execution', async () => {
    const pending = fetch(`${slow}?ms=2000`)
    // find the worker that is running it, through each worker's admin status
    const victim = await waitFor('a worker running the slow job', async () => {
      for (let i = 0; i < net.workers.length; i++) {
        const st = await (await fetch(`${net.workerInfo[i].admin}/_peerhost/status`)).json() as any
        if (st.running > 0) return i
      }
      return undefined
    }, 5_000, 20)
    net.workers[victim].proc.kill('SIGKILL')
    const res = await pending
    assert.equal(res.status, 200)
    assert.deepEqual(await res.json(), { slept: 2000 })
    assert.notEqual(res.headers.get('x-peerhost-worker'), net.workerInfo[victim].peerId)
    assert.ok(Number(res.headers.get('x-peerhost-attempts')) >= 2, `attempts: ${res.headers.get('x-peerhost-attempts')}`)
    // bring the worker back for the tests that follow; it keeps its identity
    await net.workers[victim].stop()
    const again = await net.startWorker(victim)
    assert.equal(again.peerId, net.workerInfo[victim].peerId)
  })

  describe('bad input', () => {
    let probe: PeerHostLibp2p

    before(async () => {
      probe = await createMeshNode({ privateKey: await generateKeyPair('Ed25519') })
      await probe.start()
    })
    after(async () => { await probe?.stop() })

    async function sendRaw (frame: (lp: ReturnType<typeof lpStream>) => Promise<void>): Promise<unknown> {
      const worker = net.workerInfo[0]
      const stream = await probe.dialProtocol(multiaddr(worker.addrs[0]), JOB_PROTOCOL)
      const lp = lpStream(stream, { maxDataLength: 1024 * 1024 })
      await frame(lp)
      // the worker resets the stream instead of answering
      return await lp.read({ signal: AbortSignal.timeout(5_000) }).then(() => 'answered', (err: Error) => err)
    }

    async function workerRejections (): Promise<string> {
      const res = await fetch(`${net.workerInfo[0].admin}/_peerhost/metrics`)
      return (await res.text()).split('\n').filter(l => l.startsWith('peerhost_worker_rejected_frames_total')).join('\n')
    }

    it('resets the stream on a malformed frame, an oversize frame and a wrong version', async () => {
      const malformed = await sendRaw(async lp => { await lp.write(Uint8Array.from([0xc1, 0xc1, 0xc1])) })
      assert.ok(malformed instanceof Error, 'malformed frame gets no answer')
      const wrongVersion = await sendRaw(async lp => { await lp.write(pack({ v: PROTOCOL_VERSION + 1, type: 'job' })) })
      assert.ok(wrongVersion instanceof Error, 'wrong version gets no answer')
      const oversize = await sendRaw(async lp => {
        // a length prefix claiming 64 MiB, far over the frame limit, followed by a little data
        const stream = lp.unwrap()
        stream.send(Uint8Array.from([0x80, 0x80, 0x80, 0x20, 1, 2, 3]))
      })
      assert.ok(oversize instanceof Error, 'oversize frame gets no answer')
      const metrics = await workerRejections()
      assert.match(metrics, /code="MALFORMED"\} [1-9]/)
      assert.match(metrics, /code="UNSUPPORTED_VERSION"\} [1-9]/)
      assert.match(metrics, /code="FRAME_TOO_LARGE"\} [1-9]/)
      // and the network keeps serving
      const res = await fetch(`${hello}?name=After`)
      assert.equal(await res.text(), 'Hello, After!\n')
    })

    it('rejects forged adverts on gossip and keeps serving', async () => {
      const st = await status(net)
      await probe.dial(multiaddr(st.addrs[0]))
      const topic = workersTopic()
      probe.services.pubsub.subscribe(topic)
      await waitFor('the gateway in the probe topic peers', () => probe.services.pubsub.getSubscribers(topic).some(p => p.toString() === st.peerId))
      const base: Omit<WorkerAdvert, 'sig'> = {
        v: PROTOCOL_VERSION, type: 'advert', peerId: probe.peerId.toString(), address: '0x000000000000000000000000000000000000dEaD',
        addrs: ['/ip4/127.0.0.1/tcp/9'], capacity: 64, load: 0, warm: [], ts: Date.now(), seq: 1
      }
      // signed by someone else's key
      const stranger = await generateKeyPair('Ed25519')
      await probe.services.pubsub.publish(topic, encodeMessage({ ...base, sig: await stranger.sign(advertSigningBytes(base)) }))
      // claims to be another worker
      const other = { ...base, peerId: net.workerInfo[1].peerId, seq: 2 }
      await probe.services.pubsub.publish(topic, encodeMessage({ ...other, sig: await stranger.sign(advertSigningBytes(other)) }))
      const metricsText = await waitFor('gateway rejections', async () => {
        const text = await (await fetch(`${net.gatewayUrl}/_peerhost/metrics`)).text()
        return /peerhost_gateway_adverts_total\{check="BAD_SIGNATURE"\} [1-9]/.test(text) && /peerhost_gateway_adverts_total\{check="PEER_MISMATCH"\} [1-9]/.test(text) ? text : undefined
      }, 10_000)
      assert.ok(metricsText.length > 0)
      const after = await status(net)
      assert.ok(!after.workers.some((w: any) => w.peerId === probe.peerId.toString()), 'the forger is not in the view')
      const res = await fetch(`${hello}?name=Still`)
      assert.equal(await res.text(), 'Hello, Still!\n')
    })

    it('answers 413 to an oversize body, 404 to an unknown function, 431 to huge headers, all as JSON with a code', async () => {
      const echo = net.functions.find(u => u.endsWith('/hello/echo'))!
      // a raw client that declares 7 MiB and reads the answer: the gateway answers 413 before the body
      // and closes (a client that insists on writing the whole body sees a reset instead)
      const big = await rawPost(echo, 7 * 1024 * 1024)
      assert.match(big.head, /^HTTP\/1\.1 413 /)
      assert.equal(JSON.parse(big.body).error.code, 'PAYLOAD_TOO_LARGE')
      const wallet = new URL(hello).pathname.split('/')[1]
      const missing = await fetch(`${net.gatewayUrl}/${wallet}/hello/nope`)
      assert.equal(missing.status, 404)
      assert.equal(((await missing.json()) as any).error.code, 'NOT_FOUND')
      const badPath = await fetch(`${net.gatewayUrl}/not-a-wallet/x/y`)
      assert.equal(badPath.status, 404)
      assert.equal(((await badPath.json()) as any).error.code, 'NOT_FOUND')
      const huge = await fetch(hello, { headers: { 'x-big': 'a'.repeat(20_000) } })
      assert.equal(huge.status, 431)
      assert.equal(((await huge.json()) as any).error.code, 'HEADERS_TOO_LARGE')
      const ok = await fetch(echo, { method: 'POST', body: 'small' })
      assert.equal(ok.status, 200)
      assert.equal(((await ok.json()) as any).body, 'small')
    })
  })

  it('keeps its peer id across a restart', async () => {
    const before = net.workerInfo[2].peerId
    await net.workers[2].stop()
    const again = await net.startWorker(2)
    assert.equal(again.peerId, before)
    await waitFor('the restarted worker back in the view', async () => (await status(net)).workers.some((w: any) => w.peerId === before))
  })
})

/** POST declaring `length` bytes, sending only the headers; resolves with what arrived before the close. */
async function rawPost (url: string, length: number): Promise<{ head: string, body: string }> {
  const u = new URL(url)
  return await new Promise((resolve, reject) => {
    const socket = connect(Number(u.port), u.hostname)
    const chunks: Buffer[] = []
    socket.on('connect', () => socket.write(`POST ${u.pathname} HTTP/1.1\r\nHost: ${u.host}\r\nContent-Length: ${length}\r\nContent-Type: application/octet-stream\r\n\r\n`))
    socket.on('data', c => chunks.push(c))
    socket.on('error', reject)
    socket.on('close', () => {
      const text = Buffer.concat(chunks).toString()
      const i = text.indexOf('\r\n\r\n')
      resolve({ head: i < 0 ? text : text.slice(0, i), body: i < 0 ? '' : text.slice(i + 4) })
    })
    socket.setTimeout(30_000, () => socket.destroy(new Error('no answer within 30 s')))
  })
}
