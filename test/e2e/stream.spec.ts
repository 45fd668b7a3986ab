/**
 * Streamed response bodies through the mesh with real processes: a bootstrap node, a gateway and
 * one gVisor worker started through the CLI, and real HTTP clients (fetch and node:http). The worker is SIGKILLed last.
 */
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { get, type IncomingMessage } from 'node:http'
import { join, resolve } from 'node:path'
import type { Hex } from 'viem'
import { recoverReceiptSigner, streamOutputHash } from '#protocol'
import { startTestNetwork, waitFor, type TestNetwork } from '../helpers/network.ts'
import { sseArrivals } from '../helpers/sse.ts'

const root = resolve(import.meta.dirname, '..', '..')
const MiB = 1024 * 1024

/** Resident memory of a process, bytes (Linux). */
function rss (pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  assert.ok(m !== null, `VmRSS of ${pid}`)
  return Number(m[1]) * 1024
}

/** Samples the resident memory of `pids` every 100 ms until stopped; returns each one's peak. */
function sampleRss (pids: number[]): () => number[] {
  const peaks = pids.map(rss)
  const timer = setInterval(() => { pids.forEach((p, i) => { try { peaks[i] = Math.max(peaks[i], rss(p)) } catch {} }) }, 100)
  return () => { clearInterval(timer); return peaks }
}

function request (url: string, headers: Record<string, string> = {}, fresh = false): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => { get(url, { headers, ...(fresh ? { agent: false } : {}) }, resolve).once('error', reject) })
}

/**
 * Bytes the kernel holds for the TCP connection whose client side is `port` on 127.0.0.1: unread
 * at the client (rx_queue) and unsent or unacknowledged at the gateway (tx_queue), both ends
 * (/proc/net/tcp). Loopback autotuning may let these reach tens of MiB (tcp_rmem's maximum is
 * 32 MiB on this machine), which is the kernel's memory, not the gateway's or the worker's.
 */
function kernelQueued (port: number): number {
  let bytes = 0
  for (const line of readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/)
    if (f.length < 5) continue
    const local = parseInt(f[1].split(':')[1], 16)
    const remote = parseInt(f[2].split(':')[1], 16)
    if (local !== port && remote !== port) continue
    const [tx, rx] = f[4].split(':').map(h => parseInt(h, 16))
    bytes += tx + rx
  }
  return bytes
}

/** Reads a node:http response to its end; rejects when the response is cut mid-body. */
async function drain (res: IncomingMessage, onChunk?: (c: Buffer) => void): Promise<{ bytes: number, sha256: string }> {
  const h = createHash('sha256')
  let bytes = 0
  await new Promise<void>((resolve, reject) => {
    res.on('data', (c: Buffer) => { h.update(c); bytes += c.byteLength; onChunk?.(c) })
    res.once('end', () => { res.complete ? resolve() : reject(new Error('response ended incomplete')) })
    res.once('aborted', () => reject(new Error('response aborted')))
    res.once('close', () => { if (!res.complete) reject(new Error('response aborted')) })
    res.once('error', reject)
  })
  return { bytes, sha256: `0x${h.digest('hex')}` }
}

async function receiptOf (net: TestNetwork, jobId: string): Promise<any> {
  return await waitFor('the stream receipt', async () => {
    const r = await fetch(`${net.gatewayUrl}/_peerhost/receipts/${jobId}`)
    return r.status === 200 ? await r.json() : undefined
  }, 10_000)
}

describe('streamed response bodies across processes (gVisor worker)', function () {
  this.timeout(240_000)
  let net: TestNetwork
  let base: string
  let workerAddress: string

  before(async () => {
    net = await startTestNetwork({ workers: 1, workerArgs: [], projects: [join(root, 'test/fixtures/stream')] })
    base = net.functions.find(u => u.endsWith('/stream/sse'))!.replace(/\/sse$/, '')
    workerAddress = net.workerInfo[0].address
    await waitFor('the worker in the view', async () => {
      const st = await (await fetch(`${net.gatewayUrl}/_peerhost/status`)).json() as any
      return st.workers.length === 1
    }, 30_000)
    // a warm sandbox: the first test measures streaming, not a boot
    await waitFor('a warm sandbox', async () => await (await fetch(`${base}/hello`)).text() === 'hello', 60_000, 500)
  })
  after(async () => { await net?.stop() })

  it('delivers SSE events as they are produced: the first arrives before the last is made', async () => {
    const t0 = Date.now()
    const res = await fetch(`${base}/sse`)
    assert.equal(res.status, 200)
    assert.equal(res.headers.get('content-type'), 'text/event-stream')
    assert.equal(res.headers.get('x-peerhost-stream'), '1')
    const arrivals = await sseArrivals(res)
    assert.deepEqual(arrivals.map(a => a.i), [0, 1, 2, 3, 4])
    // the client had event 0 before the function produced event 4 (≥ 800 ms later): not buffered
    assert.ok(arrivals[0].arrivedAt < arrivals[4].producedAt, `event 0 arrived at +${arrivals[0].arrivedAt - t0} ms, event 4 was produced at +${arrivals[4].producedAt - t0} ms`)
    assert.ok(arrivals[4].producedAt - arrivals[0].producedAt >= 700, 'the events were produced ~200 ms apart')
  })

  it('passes a 100 MB stream with gateway and worker memory bounded; the receipt verifies', async () => {
    const pids = [net.gateway.proc.pid!, net.workers[0].proc.pid!]
    // a first stream settles what any relaying costs (allocator arenas, V8's external-memory GC
    // trigger at +64 MiB of garbage); then 100 MiB more must not need more memory
    await drain(await request(`${base}/bytes?mb=16`))
    const before = pids.map(rss)
    const stop = sampleRss(pids)
    const res = await request(`${base}/bytes?mb=100`)
    assert.equal(res.statusCode, 200)
    const got = await drain(res)
    const peaks = stop()
    assert.equal(got.bytes, 100 * MiB)
    const growth = peaks.map((p, i) => p - before[i])
    // a buffering relay would hold the whole 100 MiB (or several copies); the windows are a few MiB
    const shown = `gateway +${(growth[0] / MiB).toFixed(1)} MiB, worker +${(growth[1] / MiB).toFixed(1)} MiB`
    // bounded below the 100 MiB a buffering relay holds: the garbage of relayed chunks is only
    // collected past V8's external-memory trigger (+64 MiB), so peaks of 50–60 MiB are normal
    assert.ok(growth[0] < 80 * MiB, shown)
    assert.ok(growth[1] < 80 * MiB, shown)
    // the receipt the gateway kept: the worker signed the body's hash and length
    const kept = await receiptOf(net, String(res.headers['x-peerhost-job']))
    assert.equal(kept.verified, true)
    assert.equal(kept.bytes, 100 * MiB)
    assert.equal(kept.bodyHash, got.sha256)
    const r = kept.receipt
    assert.equal(r.outputHash, streamOutputHash({ status: 200, bodyHash: got.sha256 as Hex, bytes: got.bytes }))
    const signer = await recoverReceiptSigner(r.domain, { ...r, fee: BigInt(r.fee), epoch: BigInt(r.epoch), deadline: BigInt(r.deadline) }, r.signature as Hex)
    assert.equal(signer, workerAddress)
  })

  it('sends the receipt as a trailer to a client that sent TE: trailers', async () => {
    const res = await request(`${base}/bytes?mb=2`, { te: 'trailers' })
    assert.equal(res.statusCode, 200)
    assert.equal(res.headers['x-peerhost-stream'], '1')
    assert.equal(res.headers.trailer, 'x-peerhost-receipt')
    const got = await drain(res)
    const trailer = res.trailers['x-peerhost-receipt']
    assert.ok(trailer !== undefined, 'a receipt trailer')
    const r = JSON.parse(Buffer.from(trailer, 'base64url').toString())
    assert.equal(r.jobId, res.headers['x-peerhost-job'])
    assert.equal(r.outputHash, streamOutputHash({ status: 200, bodyHash: got.sha256 as Hex, bytes: got.bytes }))
    const signer = await recoverReceiptSigner(r.domain, { ...r, fee: BigInt(r.fee), epoch: BigInt(r.epoch), deadline: BigInt(r.deadline) }, r.signature as Hex)
    assert.equal(signer, workerAddress)
    // the same receipt at the receipt endpoint; a forged one (another body) recovers someone else
    const kept = await receiptOf(net, r.jobId)
    assert.deepEqual(kept.receipt, r)
    const forged = streamOutputHash({ status: 200, bodyHash: `0x${'00'.repeat(32)}`, bytes: got.bytes })
    assert.notEqual(await recoverReceiptSigner(r.domain, { ...r, outputHash: forged, fee: BigInt(r.fee), epoch: BigInt(r.epoch), deadline: BigInt(r.deadline) }, r.signature as Hex), workerAddress)
    // no trailer for a client that did not ask
    const plain = await request(`${base}/bytes?mb=2`)
    await drain(plain)
    assert.equal(plain.headers.trailer, undefined)
    assert.equal(plain.trailers['x-peerhost-receipt'], undefined)
  })

  it('a client that stops reading makes the function wait; gateway memory does not grow', async () => {
    // slowloris reader: reads the first chunk, then nothing for 4 s (on a connection of its own:
    // a pooled one that carried fast bodies before has autotuned kernel buffers of many MiB)
    const res = await request(`${base}/stamped?mb=32`, {}, true)
    const port = res.socket.localPort!
    assert.equal(res.statusCode, 200)
    const first = await new Promise<Buffer>(resolve => res.once('data', resolve))
    res.pause()
    const gateway = net.gateway.proc.pid!
    await new Promise(resolve => setTimeout(resolve, 1_000))
    const settled = rss(gateway)
    const stop = sampleRss([gateway])
    await new Promise(resolve => setTimeout(resolve, 3_000))
    const [peak] = stop()
    // the function is blocked now: what it made so far sits in the kernel's socket buffers or in
    // PeerHost's own (the sandbox's window, the job stream's yamux window, one chunk at the gateway)
    const inKernel = kernelQueued(port)
    const resumedAt = Date.now()
    const stamps: number[] = []
    let carry: Buffer = first
    const take = (): void => {
      while (carry.byteLength >= 64 * 1024) { stamps.push(Number(carry.subarray(0, 13).toString())); carry = carry.subarray(64 * 1024) }
    }
    take()
    const reading = drain(res, (c) => { carry = Buffer.concat([carry, c]); take() })
    // an explicitly paused stream stays paused when a data listener is added
    res.resume()
    const got = await reading
    assert.equal(got.bytes + first.byteLength, 32 * MiB)
    assert.equal(stamps.length, 32 * 16)
    const madeBeforeResume = stamps.filter(t => t < resumedAt).length * 64 * 1024
    // without backpressure the function would have made its 32 MiB during the 4 s pause; with
    // it, only what the buffers on the way hold. PeerHost's own: the sandbox's credit window
    // (STREAM_WINDOW_BYTES, 4 MiB), the job stream's yamux window (NODE_DEFAULTS.maxStreamWindowBytes,
    // 4 MiB), a chunk (256 KiB) at the worker and at the gateway; 12 MiB leaves room for the
    // stamps' 64 KiB granularity and Node's small stream buffers. The kernel's part is measured.
    const ours = madeBeforeResume - inKernel - first.byteLength
    const figures = `${(madeBeforeResume / MiB).toFixed(1)} MiB made before the client resumed, ${(inKernel / MiB).toFixed(1)} MiB of it in the kernel's socket buffers`
    console.log(`      ${figures}`)
    assert.ok(ours < 12 * MiB, `${figures}: ${(ours / MiB).toFixed(1)} MiB held by the gateway and worker`)
    assert.ok(stamps[stamps.length - 1] >= resumedAt, `the function finished only after the client read again (${figures})`)
    assert.ok(peak - settled < 32 * MiB, `gateway RSS grew by ${((peak - settled) / MiB).toFixed(1)} MiB while the client did not read`)
  })

  it('cuts a stream once its head is out when a limit ends the function; the receipt says so', async () => {
    // the function streams until its 3 s wall-clock limit (LIMIT_TIMEOUT); the total-bytes limit
    // (LIMIT_RESPONSE_SIZE) ends a stream the same way and is tested on gVisor in test/sandbox/stream.spec.ts
    const res = await request(`${base}/endless`)
    assert.equal(res.statusCode, 200)
    const jobId = String(res.headers['x-peerhost-job'])
    let bytes = 0
    await assert.rejects(drain(res, c => { bytes += c.byteLength }), /aborted|incomplete|socket hang up|ECONNRESET/)
    assert.ok(bytes > 0)
    const kept = await receiptOf(net, jobId)
    assert.equal(kept.error?.code, 'LIMIT_TIMEOUT', JSON.stringify(kept))
    assert.equal(kept.verified, true, kept.problem)
    assert.ok(kept.bytes >= bytes && kept.bytes > 0, `the receipt covers ${kept.bytes} bytes; the client got ${bytes}`)
    assert.equal(kept.receipt.outputHash, streamOutputHash({ status: 200, bodyHash: kept.bodyHash, bytes: kept.bytes, error: 'LIMIT_TIMEOUT' }))
  })

  it('a worker killed mid-stream ends the client\'s response with an error, not a hang', async () => {
    const res = await request(`${base}/stamped?mb=32`)
    assert.equal(res.statusCode, 200)
    let bytes = 0
    const ended = drain(res, c => { bytes += c.byteLength })
    await waitFor('some of the body', () => bytes > 1 * MiB, 20_000, 20)
    const t0 = Date.now()
    net.workers[0].proc.kill('SIGKILL')
    await assert.rejects(ended, /aborted|incomplete|socket hang up|ECONNRESET/)
    assert.ok(Date.now() - t0 < 5_000, `the client heard it after ${Date.now() - t0} ms`)
    assert.ok(bytes < 32 * MiB)
  })
})
