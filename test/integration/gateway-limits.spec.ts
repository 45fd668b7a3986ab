/**
 * Gateway ingress attacks performed with real sockets against real in-process nodes on 127.0.0.1
 * (bootstrap, gateways, a worker running the functions with the dev executor): oversize and endless
 * bodies (GW-02), slowloris and connection floods (GW-03), request floods and rate limits (GW-07),
 * and one web origin per wallet (issue 13). Clients on 127.0.0.2 and 127.0.0.3 stand for other IPs.
 */
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { request as httpRequest } from 'node:http'
import { connect, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { Registry } from 'prom-client'
import { generatePrivateKey } from 'viem/accounts'
import { devExecutor } from '#sandbox'
import { createBootstrap } from '#bootstrap'
import { LIMITS } from '#protocol'
import { addProject, createGateway, createWorker, fastSigner, functionTable, silentLogger, type GatewayInit, type GatewayNode, type WorkerNode } from '#node'
import { waitFor } from '../helpers/network.ts'

const root = resolve(import.meta.dirname, '..', '..')
const CAP = LIMITS.maxRequestBodyBytes

interface Raw { status: number, headers: Record<string, string>, body: string, closed: boolean }

/** One HTTP/1.1 exchange over a fresh socket from `localAddress`; the response as text. */
async function raw (port: number, head: string, options: { localAddress?: string, body?: (s: Socket) => void, timeoutMs?: number } = {}): Promise<Raw> {
  return await new Promise((resolve, reject) => {
    const s = connect({ port, host: '127.0.0.1', localAddress: options.localAddress }, () => { s.write(head); options.body?.(s) })
    let out = ''
    const timer = setTimeout(() => { s.destroy(); reject(new Error(`no answer in ${options.timeoutMs ?? 20_000} ms; got ${JSON.stringify(out.slice(0, 200))}`)) }, options.timeoutMs ?? 20_000)
    s.on('data', d => { out += String(d) })
    s.on('error', () => {})
    s.on('close', () => {
      clearTimeout(timer)
      const [h = '', body = ''] = out.split('\r\n\r\n')
      const [statusLine = '', ...lines] = h.split('\r\n')
      const headers: Record<string, string> = {}
      for (const l of lines) { const i = l.indexOf(':'); headers[l.slice(0, i).toLowerCase()] = l.slice(i + 1).trim() }
      resolve({ status: Number(statusLine.split(' ')[1] ?? 0), headers, body, closed: true })
    })
  })
}

/** A GET with a Host header (fetch may not set Host), from `localAddress`. */
async function get (base: string, path: string, options: { host?: string, localAddress?: string } = {}): Promise<{ status: number, headers: Record<string, string | string[] | undefined>, json: any }> {
  const url = new URL(base)
  return await new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port: url.port, path, agent: false, localAddress: options.localAddress, headers: { host: options.host ?? url.host, connection: 'close' } }, res => {
      let text = ''
      res.on('data', d => { text += String(d) })
      res.on('end', () => {
        let json: any
        try { json = JSON.parse(text) } catch { json = text }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, json })
      })
    })
    req.on('error', reject)
    req.end()
  })
}

describe('gateway ingress limits (real sockets)', function () {
  this.timeout(120_000)
  const dir = mkdtempSync(join(tmpdir(), 'peerhost-gwlim-'))
  const logger = silentLogger()
  const owner = fastSigner(generatePrivateKey()).address
  const other = fastSigner(generatePrivateKey()).address
  let boot: Awaited<ReturnType<typeof createBootstrap>>
  let worker: WorkerNode
  const gateways: GatewayNode[] = []
  const functions = functionTable()

  async function gateway (init: Partial<GatewayInit> = {}): Promise<GatewayNode> {
    const g = await createGateway({ port: 0, bootstrap: boot.addrs(), ...init }, { privateKey: await generateKeyPair('Ed25519'), signer: fastSigner(generatePrivateKey()), functions, logger, registry: new Registry() })
    gateways.push(g)
    await g.start()
    await waitFor('the worker in the view', () => g.view.size() === 1, 15_000)
    return g
  }
  const port = (g: GatewayNode): number => Number(new URL(g.url).port)

  before(async () => {
    boot = await createBootstrap({}, { privateKey: await generateKeyPair('Ed25519'), logger, registry: new Registry() })
    await boot.start()
    await addProject(functions, owner, join(root, 'test/fixtures/slow'))
    await addProject(functions, owner, join(root, 'test/fixtures/limited'))
    await addProject(functions, other, join(root, 'test/fixtures/limited'))
    worker = await createWorker({ dataDir: join(dir, 'w1'), bootstrap: boot.addrs() }, {
      privateKey: await generateKeyPair('Ed25519'), signer: fastSigner(generatePrivateKey()), executor: devExecutor({})({}), logger, registry: new Registry()
    })
    await worker.start()
  })
  after(async () => {
    for (const g of gateways) await g.stop()
    await worker?.stop()
    await boot?.stop()
    rmSync(dir, { recursive: true, force: true })
  })

  describe('oversize bodies (GW-02)', () => {
    let g: GatewayNode
    const readBySocket: number[] = []
    before(async () => {
      g = await gateway()
      g.http.server.on('connection', (s: Socket) => s.on('close', () => readBySocket.push(s.bytesRead)))
    })

    it('answers a declared 10 GB body with 413 and closes the connection after reading at most the cap', async () => {
      readBySocket.length = 0
      let sent = 0
      const chunk = Buffer.alloc(256 * 1024, 0x61)
      const res = await raw(port(g), `POST /${owner}/slow/slow HTTP/1.1\r\nhost: x\r\ncontent-type: application/octet-stream\r\ncontent-length: ${10 * 1024 ** 3}\r\n\r\n`, {
        body: (s) => {
          // more than the cap is offered at once (queued in this socket even before the gateway
          // reads: on a loaded machine its early 413 may come before the first drain), then more
          // on each drain (up to 64 MiB) until the gateway closes the socket
          while (sent <= CAP + 64 * 1024 && !s.destroyed) { s.write(chunk); sent += chunk.length }
          const pump = (): void => { while (sent < 64 * 1024 * 1024 && !s.destroyed && s.write(chunk)) sent += chunk.length }
          s.on('drain', pump)
          pump()
        }
      })
      assert.equal(res.status, 413)
      assert.equal(JSON.parse(res.body).error.code, 'PAYLOAD_TOO_LARGE')
      assert.equal(JSON.parse(res.body).error.details.limit, 'maxRequestBodyBytes')
      assert.ok(res.closed)
      await waitFor('the server side of the socket to close', () => readBySocket.length === 1, 5_000)
      assert.ok(readBySocket[0] <= CAP + 64 * 1024, `the gateway read ${readBySocket[0]} bytes; the cap is ${CAP}`)
      assert.ok(sent > CAP + 64 * 1024 || readBySocket[0] < sent, 'the client offered more than the gateway read')
    })

    it('answers an endless chunked body with 413 once past the cap, and closes the connection', async () => {
      readBySocket.length = 0
      let sent = 0
      const piece = Buffer.alloc(256 * 1024, 0x62)
      const chunk = Buffer.concat([Buffer.from(`${piece.length.toString(16)}\r\n`), piece, Buffer.from('\r\n')])
      const res = await raw(port(g), `POST /${owner}/slow/slow HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n`, {
        body: (s) => {
          // like an HTTP client that stops sending once an early answer arrives
          let answered = false
          s.once('data', () => { answered = true })
          const pump = (): void => { while (!answered && sent < 256 * 1024 * 1024 && !s.destroyed && s.write(chunk)) sent += piece.length }
          s.on('drain', pump)
          pump()
        }
      })
      assert.equal(res.status, 413)
      assert.equal(JSON.parse(res.body).error.code, 'PAYLOAD_TOO_LARGE')
      await waitFor('the server side of the socket to close', () => readBySocket.length === 1, 5_000)
      // the route counts the body as it streams in; what node buffered meanwhile is bounded
      assert.ok(readBySocket[0] <= 2 * CAP, `the gateway read ${readBySocket[0]} bytes of an endless body; the cap is ${CAP}`)
      assert.ok(sent > readBySocket[0], 'the client offered more than the gateway read')
    })

    it('does not drain an endless chunked body a route refuses without reading (404 for an unknown function)', async () => {
      readBySocket.length = 0
      let sent = 0
      const piece = Buffer.alloc(256 * 1024, 0x63)
      const chunk = Buffer.concat([Buffer.from(`${piece.length.toString(16)}\r\n`), piece, Buffer.from('\r\n')])
      const res = await raw(port(g), `POST /${owner}/slow/nope HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n`, {
        body: (s) => {
          // keeps sending after the answer (up to 32 MiB): a gateway that drains would read it all
          const pump = (): void => { while (sent < 32 * 1024 * 1024 && !s.destroyed && s.write(chunk)) sent += piece.length }
          s.on('drain', pump)
          pump()
        }
      })
      assert.equal(res.status, 404)
      await waitFor('the server side of the socket to close', () => readBySocket.length === 1, 5_000)
      assert.ok(readBySocket[0] <= CAP, `the gateway read ${readBySocket[0]} bytes of a body no route wanted`)
    })
  })

  describe('slowloris (GW-03)', () => {
    it('closes a connection whose headers trickle in past headersTimeout', async () => {
      const g = await gateway({ headersTimeoutMs: 1_000, requestTimeoutMs: 2_000 })
      const started = Date.now()
      let timer: NodeJS.Timeout | undefined
      const res = await raw(port(g), 'GET /_peerhost/health HTTP/1.1\r\nhost: x\r\n', {
        body: (s) => { let i = 0; timer = setInterval(() => { if (!s.destroyed) s.write(`x-slow-${i++}: 1\r\n`) }, 200) },
        timeoutMs: 15_000
      })
      clearInterval(timer)
      const took = Date.now() - started
      assert.ok(res.closed)
      assert.equal(res.status, 400)
      assert.match(JSON.parse(res.body).error.message, /took too long/)
      assert.ok(took < 8_000, `closed after ${took} ms; headersTimeout is 1000 ms`)
    })
  })

  describe('connection caps (GW-03)', () => {
    let g: GatewayNode
    const held: Socket[] = []
    before(async () => { g = await gateway({ ingress: { maxConnectionsPerIp: 3, maxConnections: 5 } }) })
    after(() => { for (const s of held) s.destroy() })

    async function open (localAddress: string): Promise<Socket> {
      const s = await new Promise<Socket>((resolve, reject) => { const s = connect({ port: port(g), host: '127.0.0.1', localAddress }, () => resolve(s)); s.on('error', reject) })
      held.push(s)
      return s
    }

    it('answers a connection over the per-IP cap with 503 JSON naming the limit and closes it; other IPs still connect', async () => {
      for (let i = 0; i < 3; i++) await open('127.0.0.2')
      const over = await raw(port(g), 'GET /_peerhost/health HTTP/1.1\r\nhost: x\r\n\r\n', { localAddress: '127.0.0.2' })
      assert.equal(over.status, 503)
      assert.equal(over.headers['retry-after'], '1')
      const body = JSON.parse(over.body)
      assert.equal(body.error.code, 'OVERLOADED')
      assert.deepEqual(body.error.details, { limit: 'maxConnectionsPerIp', value: 3 })
      const fine = await get(g.url, '/_peerhost/health', { localAddress: '127.0.0.3' })
      assert.equal(fine.status, 200)
    })

    it('answers a connection over the global cap with 503 naming maxConnections', async () => {
      await open('127.0.0.3')
      await open('127.0.0.3')
      const over = await raw(port(g), 'GET /_peerhost/health HTTP/1.1\r\nhost: x\r\n\r\n', { localAddress: '127.0.0.4' })
      assert.equal(over.status, 503)
      assert.equal(JSON.parse(over.body).error.details.limit, 'maxConnections')
      // freeing connections lets clients in again
      for (const s of held.splice(0)) s.destroy()
      await waitFor('a connection accepted again', async () => (await get(g.url, '/_peerhost/health', { localAddress: '127.0.0.4' }).catch(() => ({ status: 0 }))).status === 200, 5_000)
    })
  })

  describe('concurrent request caps (GW-07)', () => {
    it('answers requests over the per-IP and global in-flight caps with 429, Retry-After and the limit named', async () => {
      const g = await gateway({ ingress: { maxRequestsPerIp: 2, maxRequests: 3 } })
      const slow = (ip: string): Promise<Awaited<ReturnType<typeof get>>> => get(g.url, `/${owner}/slow/slow?ms=3000`, { localAddress: ip })
      const a1 = slow('127.0.0.2')
      const a2 = slow('127.0.0.2')
      await waitFor('2 requests in flight', () => g.view.list()[0]?.inflight === 2 || undefined, 10_000).catch(() => {})
      await new Promise(r => setTimeout(r, 300))
      const a3 = await get(g.url, `/${owner}/slow/slow?ms=1`, { localAddress: '127.0.0.2' })
      assert.equal(a3.status, 429)
      assert.equal(a3.headers['retry-after'], '1')
      assert.equal(a3.json.error.code, 'RATE_LIMITED')
      assert.deepEqual(a3.json.error.details, { limit: 'maxRequestsPerIp', value: 2 })
      const b1 = slow('127.0.0.3')
      await new Promise(r => setTimeout(r, 300))
      const c1 = await get(g.url, `/${owner}/slow/slow?ms=1`, { localAddress: '127.0.0.4' })
      assert.equal(c1.status, 429)
      assert.deepEqual(c1.json.error.details, { limit: 'maxRequests', value: 3 })
      // the held requests were admitted (their own outcome depends on the machine's load)
      for (const r of await Promise.all([a1, a2, b1])) assert.notEqual(r.status, 429)
      // the slots are released when requests end
      const after = await get(g.url, `/${owner}/slow/slow?ms=1`, { localAddress: '127.0.0.2' })
      assert.notEqual(after.status, 429, JSON.stringify(after.json))
    })
  })

  describe('rate limits (issue 13)', () => {
    it('answers a burst over a project\'s rateLimit with 429 + Retry-After; another project is unaffected', async () => {
      const g = await gateway()
      const burst = await Promise.all(Array.from({ length: 6 }, async () => await get(g.url, `/${owner}/limited/hi`)))
      const ok = burst.filter(r => r.status === 200)
      const limited = burst.filter(r => r.status === 429)
      assert.equal(ok.length, 3, `statuses: ${burst.map(r => r.status).join(',')}`)
      assert.equal(limited.length, 3)
      for (const r of limited) {
        assert.equal(r.json.error.code, 'RATE_LIMITED')
        assert.equal(r.json.error.details.limit, 'rateLimit')
        assert.equal(r.json.error.details.requests, 3)
        assert.ok(Number(r.headers['retry-after']) >= 1 && Number(r.headers['retry-after']) <= 20, `retry-after ${String(r.headers['retry-after'])}`)
      }
      // the same project name under another wallet, and another project of the same wallet, still answer
      assert.equal((await get(g.url, `/${other}/limited/hi`)).status, 200)
      assert.equal((await get(g.url, `/${owner}/slow/slow?ms=1`)).status, 200)
      const metrics = await (await fetch(`${g.url}/_peerhost/metrics`)).text()
      assert.match(metrics, /peerhost_gateway_refused_total\{limit="rateLimit"\} 3/)
    })

    it('answers a client IP over --ip-rate-limit with 429 naming ipRateLimit; other IPs are unaffected', async () => {
      const g = await gateway({ ingress: { ipRateLimit: { requests: 3, perSeconds: 60 } } })
      const statuses: number[] = []
      for (let i = 0; i < 5; i++) statuses.push((await get(g.url, `/${owner}/slow/slow?ms=1`, { localAddress: '127.0.0.2' })).status)
      assert.deepEqual(statuses, [200, 200, 200, 429, 429])
      const over = await get(g.url, '/_peerhost/health', { localAddress: '127.0.0.2' })
      assert.equal(over.json.error.details.limit, 'ipRateLimit')
      assert.ok(Number(over.headers['retry-after']) >= 1)
      assert.equal((await get(g.url, `/${owner}/slow/slow?ms=1`, { localAddress: '127.0.0.3' })).status, 200)
    })
  })

  describe('WebSocket upgrades pass the same ingress and rate limits (issue 12)', () => {
    const upgrade = (path: string, host: string): string => `GET ${path} HTTP/1.1\r\nHost: ${host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`

    it('attack: an upgrade past a project\'s rateLimit is answered 429 before any dispatch', async () => {
      const g = await gateway()
      for (let i = 0; i < 3; i++) assert.equal((await get(g.url, `/${owner}/limited/hi`)).status, 200)
      const r = await raw(port(g), upgrade(`/${owner}/limited/hi`, new URL(g.url).host))
      assert.equal(r.status, 429, r.body)
      assert.equal(JSON.parse(r.body).error.details.limit, 'rateLimit')
      assert.ok(Number(r.headers['retry-after']) >= 1)
      assert.equal(r.headers['x-peerhost-job'], undefined, 'refused before dispatch')
    })

    it('attack: an upgrade from a client IP over --ip-rate-limit is answered 429 naming ipRateLimit', async () => {
      const g = await gateway({ ingress: { ipRateLimit: { requests: 2, perSeconds: 60 } } })
      for (let i = 0; i < 2; i++) assert.equal((await get(g.url, `/${owner}/slow/slow?ms=1`, { localAddress: '127.0.0.4' })).status, 200)
      const r = await raw(port(g), upgrade(`/${owner}/slow/slow`, new URL(g.url).host), { localAddress: '127.0.0.4' })
      assert.equal(r.status, 429, r.body)
      assert.equal(JSON.parse(r.body).error.details.limit, 'ipRateLimit')
      assert.ok(Number(r.headers['retry-after']) >= 1)
      const metrics = await (await fetch(`${g.url}/_peerhost/metrics`)).text()
      assert.match(metrics, /peerhost_gateway_refused_total\{limit="ipRateLimit"\} 1/)
      // another address's upgrade gets past the ingress (the slow function answers it as plain HTTP)
      const other = await raw(port(g), upgrade(`/${owner}/slow/slow?ms=1`, new URL(g.url).host), { localAddress: '127.0.0.5' })
      assert.equal(other.status, 200, other.body)
    })
  })

  describe('non-reading sockets (GW-04)', () => {
    it('attack: 1,000 sockets that send an upgrade and never read are answered and closed by the gateway; its heap stays bounded and others are served', async () => {
      const g = await gateway()
      let open = 0
      g.http.server.on('connection', (s: Socket) => { open++; s.once('close', () => { open-- }) })
      const host = new URL(g.url).host
      const head = `GET /${owner}/nosuch/fn HTTP/1.1\r\nHost: ${host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`
      global.gc?.()
      const before = process.memoryUsage().heapUsed
      const sockets: Socket[] = []
      try {
        // 4 addresses × 250: under the per-IP connection cap (256), so every one is answered rather
        // than refused at accept. No 'data' listener: the client never reads, and never closes.
        for (let ip = 1; ip <= 4; ip++) {
          for (let i = 0; i < 250; i++) {
            const s = connect({ port: port(g), host: '127.0.0.1', localAddress: `127.0.1.${ip}` }, () => { s.write(head) })
            s.on('error', () => {})
            sockets.push(s)
          }
        }
        await waitFor('1,000 connections at the gateway', () => open >= 1_000 || sockets.filter(s => s.readyState === 'open').length === 1_000, 30_000)
        // the gateway answers each (404 JSON) and closes its side: none of them stays counted
        await waitFor('the gateway closed every answered socket', () => open === 0, 30_000, 200)
        const fine = await get(g.url, '/_peerhost/health', { localAddress: '127.0.1.5' })
        assert.equal(fine.status, 200)
        global.gc?.()
        const grown = process.memoryUsage().heapUsed - before
        assert.ok(grown < 64 * 1024 * 1024, `heap grew by ${Math.round(grown / 1e6)} MB`)
      } finally {
        for (const s of sockets) s.destroy()
      }
    })
  })

  describe('one origin per wallet (issue 13)', () => {
    it('serves two wallets\' projects on two origins; an unknown wallet host is 404 JSON; the path form still works', async () => {
      const g = await gateway({ walletDomain: 'peerhost.test' })
      const a = await get(g.url, '/slow/slow?ms=1', { host: `${owner.toLowerCase()}.peerhost.test` })
      assert.equal(a.status, 200)
      assert.deepEqual(a.json, { slept: 1 })
      const b = await get(g.url, '/limited/hi', { host: `${other.toLowerCase()}.peerhost.test:443` })
      assert.equal(b.status, 200)
      // a wallet's origin does not serve another wallet's project
      const cross = await get(g.url, '/slow/slow?ms=1', { host: `${other.toLowerCase()}.peerhost.test` })
      assert.equal(cross.status, 404)
      assert.equal(cross.json.error.code, 'NOT_FOUND')
      // nor the path form of another wallet under a wallet host
      const smuggled = await get(g.url, `/${owner}/slow/slow?ms=1`, { host: `${other.toLowerCase()}.peerhost.test` })
      assert.equal(smuggled.status, 404)
      const unknown = await get(g.url, '/slow/slow', { host: `0x${'ab'.repeat(20)}.peerhost.test` })
      assert.equal(unknown.status, 404)
      assert.equal(unknown.json.error.code, 'NOT_FOUND')
      const garbage = await get(g.url, '/slow/slow', { host: 'evil.peerhost.test' })
      assert.equal(garbage.status, 404)
      assert.match(garbage.json.error.message, /names no wallet/)
      const path = await get(g.url, `/${owner}/slow/slow?ms=1`)
      assert.equal(path.status, 200)
    })
  })
})
