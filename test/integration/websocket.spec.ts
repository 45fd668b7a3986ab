/**
 * WebSocket sessions through the mesh (issue 12): real `ws` clients, a real gateway and worker on
 * libp2p over 127.0.0.1, and the function running in a real gVisor sandbox.
 */
import assert from 'node:assert/strict'
import { deflateRawSync } from 'node:zlib'
import { mkdtempSync, rmSync } from 'node:fs'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { multiaddr } from '@multiformats/multiaddr'
import { Registry } from 'prom-client'
import { generatePrivateKey } from 'viem/accounts'
import { chromium } from 'playwright-core'
import { WebSocket } from 'ws'
import { createBootstrap } from '#bootstrap'
import { gvisorExecutor } from '#sandbox'
import { addProject, apiKeyHash, apiKeyId, apiKeyStore, authGuard, createGateway, createWorker, fastSigner, functionTable, mintApiKey, silentLogger, type ApiKeyStore, type GatewayNode, type WorkerNode } from '#node'
import { DEV_DOMAIN, receiptDigest, transcript, transcriptOutputHash } from '#protocol'
import { recoverDigestSigner } from '../../node/signing.ts'
import { waitFor } from '../helpers/network.ts'
import { checkSessionReceipt } from '../../node/gateway/session-receipt.ts'
import { openWebSocket } from '../helpers/ws.ts'

const root = resolve(import.meta.dirname, '..', '..')

interface Closed { code: number, reason: string }

async function open (url: string): Promise<WebSocket> {
  return (await openWebSocket(url)).ws
}

function closed (ws: WebSocket): Promise<Closed & { ms: number }> {
  const t0 = Date.now()
  return new Promise(resolve => ws.once('close', (code, reason) => resolve({ code, reason: reason.toString(), ms: Date.now() - t0 })))
}

function nextMessage (ws: WebSocket): Promise<{ data: Buffer, binary: boolean }> {
  return new Promise((resolve, reject) => {
    ws.once('message', (data, binary) => resolve({ data: data as Buffer, binary }))
    ws.once('close', (code) => reject(new Error(`closed with ${code} before a message`)))
  })
}

describe('WebSocket sessions (gateway + worker + gVisor)', function () {
  this.timeout(180_000)
  const dir = mkdtempSync(join(tmpdir(), 'peerhost-ws-'))
  const logger = silentLogger()
  let boot: Awaited<ReturnType<typeof createBootstrap>>
  let gateway: GatewayNode
  let worker: WorkerNode
  let base: string
  let wsBase: string
  let keys: ApiKeyStore
  let owner: `0x${string}`
  const workerMetrics = new Registry()

  before(async () => {
    boot = await createBootstrap({}, { privateKey: await generateKeyPair('Ed25519'), logger, registry: new Registry() })
    await boot.start()
    const functions = functionTable()
    owner = fastSigner(generatePrivateKey()).address
    await addProject(functions, owner, join(root, 'test/fixtures/websocket'))
    // the gateway's real API-key store and auth check (node/auth), as `peerhost gateway` composes them
    keys = apiKeyStore({ dataDir: join(dir, 'gateway') })
    // idle timeout 6 s: short enough to test, long enough that a loaded machine (a 2 MiB message
    // out of a gVisor sandbox, a cold boot) does not trip it in the other tests
    gateway = await createGateway({ port: 0, bootstrap: boot.addrs(), sessions: { idleMs: 6_000 } }, { privateKey: await generateKeyPair('Ed25519'), signer: fastSigner(generatePrivateKey()), functions, logger, registry: new Registry(), auth: authGuard({}, { keys, logger }) })
    await gateway.start()
    const executor = gvisorExecutor({ dataDir: join(dir, 'w1'), selfTest: false, genericPoolSize: 1, perFunctionPoolSize: 1 })({})
    // at most 3 sessions (the default is 256): the cap test below fills them
    worker = await createWorker({ dataDir: join(dir, 'w1'), bootstrap: boot.addrs(), maxSessions: 3 }, {
      privateKey: await generateKeyPair('Ed25519'), signer: fastSigner(generatePrivateKey()), executor, logger, registry: workerMetrics
    })
    await worker.start()
    // a direct connection, so the worker's adverts reach the gateway without waiting for discovery
    await gateway.libp2p.dial(multiaddr(worker.addrs()[0]))
    await waitFor('the worker in the view', () => gateway.view.size() === 1, 60_000)
    base = `${gateway.url}/${owner}/ws`
    wsBase = base.replace(/^http/, 'ws')
  })
  // the worker holds at most 3 sessions: each test starts once the previous tests' sessions have
  // ended at the worker too (a close reaches the worker a moment after the client sees it)
  beforeEach(async () => { if (worker !== undefined) await waitFor('no session left open at the worker', () => worker.sessions === 0, 30_000) })
  after(async () => {
    await gateway?.stop()
    await worker?.stop()
    await boot?.stop()
    keys?.close()
    rmSync(dir, { recursive: true, force: true })
  })

  it('serves the same function over plain HTTP', async () => {
    const res = await fetch(`${base}/echo`)
    assert.equal(res.status, 200)
    assert.equal(await res.text(), 'plain')
  })

  it('attack: malformed handshakes (bad or missing key, old version, POST) get 400 naming the fault before any worker is asked', async () => {
    // `ws` would refuse each of them after dispatch: a worker would open (and hold) a session for nobody
    const url = new URL(gateway.url)
    const path = new URL(`${base}/echo`).pathname
    const executions = async (): Promise<number> => {
      const m = await workerMetrics.getSingleMetric('peerhost_worker_execution_seconds')?.get()
      return m?.values.find((v: any) => v.metricName === 'peerhost_worker_execution_seconds_count')?.value ?? 0
    }
    const raw = async (head: string): Promise<string> => await new Promise<string>((resolve, reject) => {
      const sock = connect(Number(url.port), url.hostname, () => { sock.write(`${head}Host: ${url.host}\r\nUpgrade: websocket\r\n\r\n`) })
      let buf = ''
      sock.on('data', d => { buf += String(d) })
      sock.on('close', () => resolve(buf))
      sock.on('error', reject)
      setTimeout(() => { sock.destroy(); resolve(buf) }, 10_000)
    })
    const before = await executions()
    const cases: Array<[string, string, RegExp]> = [
      ['a key that is not 16 bytes', `GET ${path} HTTP/1.1\r\nConnection: Upgrade\r\nSec-WebSocket-Key: abc\r\nSec-WebSocket-Version: 13\r\n`, /Sec-WebSocket-Key must be 16 random bytes/],
      ['no key', `GET ${path} HTTP/1.1\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n`, /Sec-WebSocket-Key/],
      ['version 8', `GET ${path} HTTP/1.1\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n`, /Sec-WebSocket-Version must be 13, not 8/],
      ['POST', `POST ${path} HTTP/1.1\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nContent-Length: 0\r\n`, /must be a GET request, not POST/]
    ]
    for (const [what, head, message] of cases) {
      const reply = await raw(head)
      assert.match(reply, /^HTTP\/1\.1 400 /, `${what}: ${reply.slice(0, 200)}`)
      const body = JSON.parse(reply.slice(reply.indexOf('\r\n\r\n') + 4))
      assert.equal(body.error.code, 'BAD_REQUEST', what)
      assert.match(body.error.message, message, what)
      if (what === 'version 8') assert.match(reply, /sec-websocket-version: 13/i, 'names the version it speaks')
    }
    assert.equal(await executions(), before, 'no worker ran anything for a malformed handshake')
    assert.equal(worker.sessions, 0)
  })

  it('echoes 1,000 text and binary messages in order; the signed transcript matches the client\'s', async () => {
    const ws = await open(`${wsBase}/echo`)
    const jobIdPromise = fetch(`${gateway.url}/_peerhost/status`).then(async r => await r.json() as any)
    const mine = transcript()
    const got: Array<{ data: Buffer, binary: boolean }> = []
    const all = new Promise<void>(resolve => {
      ws.on('message', (data, binary) => { got.push({ data: data as Buffer, binary }); if (got.length === 1000) resolve() })
    })
    for (let i = 0; i < 1000; i++) {
      if (i % 2 === 0) {
        const text = `m${i}`
        mine.add('in', false, new TextEncoder().encode(text))
        mine.add('out', false, new TextEncoder().encode(`echo: ${text}`))
        ws.send(text)
      } else {
        const bin = Buffer.from([i & 0xff, (i >> 8) & 0xff, 0, 255])
        mine.add('in', true, bin)
        mine.add('out', true, bin)
        ws.send(bin)
      }
    }
    await all
    for (let i = 0; i < 1000; i++) {
      if (i % 2 === 0) {
        assert.equal(got[i].binary, false)
        assert.equal(got[i].data.toString(), `echo: m${i}`)
      } else {
        assert.equal(got[i].binary, true)
        assert.deepEqual([...got[i].data], [i & 0xff, (i >> 8) & 0xff, 0, 255])
      }
    }
    // a new second for the rate limit (1,000 messages per second)
    await new Promise(resolve => setTimeout(resolve, 1_100))
    const done = closed(ws)
    mine.add('in', false, new TextEncoder().encode('close:4001:done here'))
    ws.send('close:4001:done here')
    const c = await done
    assert.equal(c.code, 4001)
    assert.equal(c.reason, 'done here')
    const status = await jobIdPromise
    const jobId = status.recentJobs.find((j: any) => j.function === 'ws/echo' && j.status === 101)?.jobId
    assert.ok(jobId, 'the session is in the recent jobs with status 101')
    const receipt = await waitFor('the session receipt', async () => {
      const r = await fetch(`${gateway.url}/_peerhost/receipts/${jobId}`)
      return r.status === 200 ? await r.json() as any : undefined
    }, 10_000)
    assert.equal(receipt.verified, true, receipt.problem)
    const expected = mine.summary()
    assert.deepEqual(receipt.transcript, expected)
    assert.equal(receipt.receipt.outputHash, transcriptOutputHash(expected))
    // anyone can check who signed it, from the receipt alone
    const r = receipt.receipt
    const signer = recoverDigestSigner(receiptDigest(DEV_DOMAIN, { ...r, fee: BigInt(r.fee), epoch: BigInt(r.epoch), deadline: BigInt(r.deadline) }), r.signature)
    assert.equal(signer?.toLowerCase(), worker.address.toLowerCase())
  })

  it('a client that closes while the function is still sending: the receipt signs exactly the messages the client got, and the client\'s own check passes', async () => {
    const { ws, headers } = await openWebSocket(`${wsBase}/echo`)
    const jobId = String(headers['x-peerhost-job'])
    const mine = transcript()
    let got = 0
    // every message the client receives counts, those after its own close() too (RFC 6455: it
    // reads until the server's Close)
    ws.on('message', (data, binary) => {
      mine.add('out', binary, data as Buffer)
      if (++got === 3) ws.close(1000, 'enough')
    })
    const done = closed(ws)
    mine.add('in', false, Buffer.from('flood'))
    ws.send('flood')
    // 1000: the client's close came first; 1008: the function, which ignores backpressure, was
    // closed for outrunning the relay first (its close crossed the client's)
    const code = (await done).code
    assert.ok(code === 1000 || code === 1008, `closed ${code}`)
    const receipt = await waitFor('the session receipt', async () => {
      const r = await fetch(`${gateway.url}/_peerhost/receipts/${jobId}`)
      return r.status === 200 ? await r.json() as any : undefined
    }, 10_000)
    const own = mine.summary()
    // the function went on sending 512 KiB messages until it heard the close: more than the client
    // got were in flight, and the gateway delivered none after the client's Close
    assert.equal(receipt.verified, true, receipt.problem)
    assert.equal(receipt.transcript.messagesOut, own.messagesOut, `the receipt counts ${receipt.transcript.messagesOut} messages out, the client got ${own.messagesOut}`)
    const check = checkSessionReceipt(receipt, own, jobId)
    assert.equal(check.verified, true, check.verified ? '' : check.problem)
  })

  it('attack: more than 1,000 messages in a second closes the session with 4429', async () => {
    const ws = await open(`${wsBase}/echo`)
    const done = closed(ws)
    for (let i = 0; i < 1_100; i++) ws.send('x')
    const c = await done
    assert.equal(c.code, 4429)
    assert.match(c.reason, /messages per second/)
  })

  it('a message over the size limit closes the socket with 1009', async () => {
    const ws = await open(`${wsBase}/echo`)
    const done = closed(ws)
    ws.send(Buffer.alloc(1024 * 1024 + 1))
    assert.equal((await done).code, 1009)
  })

  it('a function message over the size limit closes with 1009 too', async () => {
    const ws = await open(`${wsBase}/echo`)
    const done = closed(ws)
    ws.send('big')
    assert.equal((await done).code, 1009)
  })

  it('an idle session is closed with 4408 at the idle timeout', async () => {
    const ws = await open(`${wsBase}/echo`)
    const t0 = Date.now()
    const c = await closed(ws)
    assert.equal(c.code, 4408)
    assert.equal(c.reason, 'idle timeout')
    assert.ok(Date.now() - t0 >= 5_500, `closed after ${Date.now() - t0} ms; the idle timeout is 6,000`)
  })

  it('attack: sessions past what the worker can hold (3 here) are refused fast with 503 OVERLOADED, not queued; a freed slot serves the next', async () => {
    // each session holds a whole sandbox: a session the worker cannot hold now must not wait
    // for another session to end. All at once; each open session is kept busy, because booting
    // sandboxes for the others takes longer than this spec's idle timeout (6 s).
    const keep = new Set<WebSocket>()
    const ticker = setInterval(() => { for (const ws of keep) if (ws.readyState === WebSocket.OPEN) ws.send('keep') }, 1_000)
    try {
      const settled = await Promise.allSettled(Array.from({ length: 5 }, async () => {
        const t0 = Date.now()
        try {
          const ws = await open(`${wsBase}/echo`)
          keep.add(ws)
          return ws
        } catch (err: any) {
          throw Object.assign(err, { ms: Date.now() - t0 })
        }
      }))
      const opened = settled.flatMap(r => r.status === 'fulfilled' ? [r.value] : [])
      const refusals = settled.flatMap(r => r.status === 'rejected' ? [r.reason] : [])
      const why = `opened ${opened.length}, refused ${refusals.map(r => `${r.message} after ${r.ms} ms`).join('; ')}`
      // never more than the worker holds; on a loaded machine a session that needs a sandbox boot
      // may instead run out of its upgrade deadline (504): either way it is answered, not queued
      assert.ok(opened.length >= 1 && opened.length <= 3, why)
      assert.ok(refusals.length >= 2, why)
      for (const r of refusals) {
        assert.ok((r.status === 503 && JSON.parse(r.body).error.code === 'OVERLOADED') || (r.status === 504 && JSON.parse(r.body).error.code === 'DEADLINE_EXCEEDED'), why)
        assert.ok(r.ms < 30_000, why)
      }
      assert.ok(refusals.some(r => r.status === 503), why)
      // the open sessions still work
      const echoOf = async (ws: WebSocket, text: string): Promise<void> => {
        await new Promise<void>((resolve, reject) => {
          const onMessage = (data: Buffer): void => { if (String(data) === `echo: ${text}`) { ws.off('message', onMessage); resolve() } }
          ws.on('message', onMessage)
          ws.once('close', (code) => reject(new Error(`closed with ${code}`)))
          ws.send(text)
        })
      }
      for (const ws of opened) await echoOf(ws, 'still here')
      const ends = opened.map(ws => closed(ws))
      keep.delete(opened[0])
      opened[0].close(1000, 'done')
      await ends[0]
      const next = await waitFor('a session after one closed', async () => { try { return await open(`${wsBase}/echo`) } catch { return undefined } }, 20_000)
      keep.add(next)
      await echoOf(next, 'again')
      for (const ws of [...opened.slice(1), next]) { keep.delete(ws); ws.close(1000, 'done') }
      await Promise.all(ends.slice(1))
    } finally {
      clearInterval(ticker)
    }
  })

  it('a function that never calls accept() fails the upgrade with a clear HTTP error', async () => {
    await assert.rejects(open(`${wsBase}/noaccept`), (err: any) => {
      assert.equal(err.status, 500, err.message)
      const body = JSON.parse(err.body)
      assert.equal(body.error.code, 'FUNCTION_ERROR')
      assert.match(body.error.details.reason, /without calling server\.accept\(\)/)
      return true
    })
  })

  it('attack: an api-key function\'s WebSocket without a valid key is refused 401 before the upgrade, and no worker runs it', async () => {
    const jobs = async (): Promise<number> => ((await workerMetrics.getSingleMetric('peerhost_worker_jobs_total')?.get())?.values ?? []).reduce((n, v) => n + v.value, 0)
    const key = mintApiKey()
    const hash = apiKeyHash(key)
    keys.create(owner, 'ws', { id: apiKeyId(hash), hash, name: 'ws-test', issued: Math.floor(Date.now() / 1000) })
    const before = await jobs()
    for (const headers of [{}, { authorization: `Bearer ${mintApiKey()}` }, { authorization: 'Basic Zm9vOmJhcg==' }]) {
      await assert.rejects(new Promise<WebSocket>((resolve, reject) => {
        const ws = new WebSocket(`${wsBase}/keyed`, { headers })
        ws.once('open', () => resolve(ws))
        ws.once('error', reject)
        ws.once('unexpected-response', (_req, res) => {
          let body = ''
          res.on('data', (d: Buffer) => { body += String(d) })
          res.on('end', () => reject(Object.assign(new Error(`HTTP ${res.statusCode}: ${body}`), { status: res.statusCode, body, job: res.headers['x-peerhost-job'] })))
        })
      }), (err: any) => {
        assert.equal(err.status, 401, err.message)
        assert.equal(JSON.parse(err.body).error.code, 'UNAUTHORIZED')
        assert.equal(err.job, undefined, 'refused before any dispatch: no job id')
        return true
      })
    }
    // the same admission for plain HTTP
    const plain = await fetch(`${base}/keyed`)
    assert.equal(plain.status, 401)
    assert.equal(((await plain.json()) as any).error.code, 'UNAUTHORIZED')
    assert.equal(await jobs(), before, 'no worker ran anything for the refused upgrades')
    const keyed = await fetch(`${base}/keyed`, { headers: { authorization: `Bearer ${key}` } })
    assert.equal(keyed.status, 200)
    assert.equal(await keyed.text(), 'plain')
    // with the key: the upgrade completes, and the function never sees the key
    const ws = new WebSocket(`${wsBase}/keyed`, { headers: { authorization: `Bearer ${key}` } })
    await new Promise<void>((resolve, reject) => { ws.once('open', () => resolve()); ws.once('error', reject); ws.once('unexpected-response', (_q, res) => reject(new Error(`HTTP ${res.statusCode}`))) })
    const reply = nextMessage(ws)
    ws.send('who am i')
    assert.equal((await reply).data.toString(), 'authorization seen: none')
    const end = closed(ws)
    ws.close(1000, 'done')
    assert.equal((await end).code, 1000)
  })

  /**
   * A raw client: the echo's upgrade (with `extraHeaders`), then `frame` (masked by the caller) once
   * the 101 is in; resolves with the response head and what followed it when the socket closes.
   */
  async function rawFrameAfterUpgrade (frame: Buffer, extraHeaders = ''): Promise<{ head: string, rest: Buffer }> {
    const url = new URL(gateway.url)
    const reply = await new Promise<Buffer>((resolve, reject) => {
      const s = connect(Number(url.port), url.hostname, () => {
        s.write(`GET ${new URL(`${base}/echo`).pathname} HTTP/1.1\r\nHost: ${url.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n${extraHeaders}\r\n`)
      })
      let buf = Buffer.alloc(0)
      let sent = false
      s.on('data', d => {
        buf = Buffer.concat([buf, d])
        if (!sent && buf.includes('\r\n\r\n')) { sent = true; s.write(frame) }
      })
      s.on('close', () => resolve(buf))
      s.on('error', reject)
      setTimeout(() => { s.destroy(); resolve(buf) }, 15_000)
    })
    const at = reply.indexOf('\r\n\r\n')
    return { head: reply.subarray(0, at).toString(), rest: reply.subarray(at + 4) }
  }

  /** A masked client frame: `first` is the FIN/RSV/opcode byte. */
  function maskedFrame (first: number, payload: Buffer): Buffer {
    const mask = Buffer.from([1, 2, 3, 4])
    const len = payload.length < 126 ? Buffer.from([0x80 | payload.length]) : payload.length < 65536 ? Buffer.from([0x80 | 126, payload.length >> 8, payload.length & 0xff]) : Buffer.concat([Buffer.from([0x80 | 127]), Buffer.from(new BigUint64Array([BigInt(payload.length)]).buffer).reverse()])
    return Buffer.concat([Buffer.from([first]), len, mask, Buffer.from(payload.map((b, i) => b ^ mask[i % 4]))])
  }

  it('attack: a text frame with invalid UTF-8 is closed with 1007 and the session ends cleanly', async () => {
    const { head, rest } = await rawFrameAfterUpgrade(maskedFrame(0x81, Buffer.from([0xff, 0xfe, 0xc3, 0x28])))
    assert.match(head, /^HTTP\/1.1 101/)
    assert.equal(rest[0], 0x88, 'a close frame')
    assert.equal(rest.readUInt16BE(2), 1007)
  })

  it('attack: a compression bomb is never inflated: no permessage-deflate is agreed, and a compressed (RSV1) frame is closed 1002', async () => {
    // 64 MiB of zeros deflate to ~64 KiB: inflated, it would be past every message limit
    const bomb = deflateRawSync(Buffer.alloc(64 * 1024 * 1024))
    global.gc?.()
    const before = process.memoryUsage().heapUsed
    const { head, rest } = await rawFrameAfterUpgrade(maskedFrame(0xc1, bomb), 'Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n')
    assert.match(head, /^HTTP\/1.1 101/)
    assert.doesNotMatch(head, /sec-websocket-extensions/i, 'the gateway agrees no extension')
    assert.equal(rest[0], 0x88, 'a close frame')
    assert.equal(rest.readUInt16BE(2), 1002)
    global.gc?.()
    assert.ok(process.memoryUsage().heapUsed - before < 32 * 1024 * 1024, 'nothing was inflated')
  })

  it('attack: a flood of 1-byte continuation fragments does not grow the gateway heap without bound', async () => {
    const url = new URL(gateway.url)
    const before = process.memoryUsage().heapUsed
    const sockets: Array<import('node:net').Socket> = []
    const replies: Buffer[] = []
    for (let n = 0; n < 2; n++) {
      const index = n
      replies[index] = Buffer.alloc(0)
      sockets.push(await new Promise<import('node:net').Socket>((resolve, reject) => {
        const s = connect(Number(url.port), url.hostname, () => {
          s.write(`GET ${new URL(`${base}/echo`).pathname} HTTP/1.1\r\nHost: ${url.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`)
        })
        let open = false
        s.on('data', d => {
          replies[index] = Buffer.concat([replies[index], d]).subarray(-4096)
          if (!open && replies[index].toString('latin1').startsWith('HTTP/1.1 101')) { open = true; resolve(s) }
        })
        s.on('error', () => {})
        setTimeout(() => reject(new Error(`no upgrade: ${replies[index].toString('latin1').slice(0, 300)}`)), 20_000)
      }))
    }
    // each sends a text frame's start and then 1-byte continuation frames (up to 1.2 M fragments)
    const mask = Buffer.from([1, 2, 3, 4])
    const first = Buffer.concat([Buffer.from([0x01, 0x81]), mask, Buffer.from([0x61 ^ 1])])
    const cont = Buffer.concat([Buffer.from([0x00, 0x81]), mask, Buffer.from([0x61 ^ 1])])
    for (const s of sockets) {
      s.write(first)
      const chunk = Buffer.concat(Array.from({ length: 4096 }, () => cont))
      for (let i = 0; i < 300 && !s.destroyed; i++) s.write(chunk)
    }
    // 1008 after NODE_DEFAULTS.sessionMaxFragments fragments, long before 1 MiB of payload (the
    // socket itself ends when the client answers the close, or at ws's close timeout: not awaited)
    const CLOSE_1008 = Buffer.from([0x88, 0x02, 0x03, 0xf0])
    await waitFor('a 1008 close frame on every flooding socket', () => replies.every(r => r.includes(CLOSE_1008)), 60_000, 100)
    for (const s of sockets) s.destroy()
    global.gc?.()
    const grown = process.memoryUsage().heapUsed - before
    assert.ok(grown < 64 * 1024 * 1024, `heap grew by ${Math.round(grown / 1e6)} MB`)
  })

  it('a browser (Chromium) talks to a function over a WebSocket and reads its Server-Sent Events', async () => {
    const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'] })
    try {
      const page = await browser.newPage()
      page.setDefaultTimeout(60_000)
      // a page on the gateway's origin, as a web app served next to its functions would be
      await page.goto(`${gateway.url}/_peerhost/health`)
      const echoed = await page.evaluate(async (url) => await new Promise<{ text: string, binary: number[], code: number, reason: string }>((resolve, reject) => {
        const ws = new WebSocket(url)
        ws.binaryType = 'arraybuffer'
        const got: Array<string | ArrayBuffer> = []
        ws.onopen = () => { ws.send('from chromium'); ws.send(new Uint8Array([1, 2, 3])) }
        ws.onmessage = (e) => { got.push(e.data as unknown as string | ArrayBuffer); if (got.length === 2) ws.send('close:4000:see you') }
        ws.onerror = () => reject(new Error('WebSocket error'))
        ws.onclose = (e) => resolve({ text: String(got[0]), binary: [...new Uint8Array(got[1] as ArrayBuffer)], code: e.code, reason: e.reason })
      }), `${wsBase}/echo`.replace(gateway.url.replace(/^http/, 'ws'), `ws://${new URL(gateway.url).host}`))
      assert.deepEqual(echoed, { text: 'echo: from chromium', binary: [1, 2, 3], code: 4000, reason: 'see you' })

      const events = await page.evaluate(async (url) => await new Promise<string[]>((resolve, reject) => {
        const source = new EventSource(url)
        const data: string[] = []
        source.onmessage = (e) => { data.push(e.data); if (data.length === 5) { source.close(); resolve(data) } }
        source.onerror = () => { if (data.length < 5 && source.readyState === EventSource.CLOSED) reject(new Error('EventSource failed')) }
      }), `${base}/sse`)
      assert.deepEqual(events, ['0', '1', '2', '3', '4'])
    } finally {
      await browser.close()
    }
  })

  it('the gateway shutting down closes open sessions with 1001', async () => {
    await waitFor('no session open', () => gateway.http.sessions === 0, 10_000)
    const ws = await open(`${wsBase}/echo`)
    ws.send('hi')
    assert.equal((await nextMessage(ws)).data.toString(), 'echo: hi')
    const done = closed(ws)
    await gateway.stop()
    const c = await done
    assert.equal(c.code, 1001)
  })
})
