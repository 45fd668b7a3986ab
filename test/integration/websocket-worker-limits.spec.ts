/**
 * Sessions at the worker (issue 12), with a real worker running the gVisor executor (real runsc):
 *
 * - the worker enforces a function's `websocket` limits itself, against a raw gateway-side client
 *   (a libp2p peer speaking the job protocol's frames, ticket signed by its own key) that never
 *   sends, floods, stays too long or sends too much: the same close codes as a gateway's;
 * - a session that runs its shared sandbox out of memory, and a client that stops reading in a
 *   shared sandbox, through a real gateway with real `ws` clients.
 */
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { multiaddr } from '@multiformats/multiaddr'
import { Registry } from 'prom-client'
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts'
import { WebSocket } from 'ws'
import { createBootstrap } from '#bootstrap'
import { PROTOCOL_VERSION, rawCid, type JobRequest, type Message, type SessionLimits } from '#protocol'
import { gvisorExecutor } from '#sandbox'
import {
  addProject, createGateway, createWorker, fastSigner, functionTable, silentLogger,
  type GatewayNode, type PeerHostLibp2p, type WorkerNode
} from '#node'
import { signedJob } from '../helpers/jobs.ts'
import { waitFor } from '../helpers/network.ts'
import { openWebSocket } from '../helpers/ws.ts'
import { openRawSession, RAW_ECHO_SOURCE, rawGateway, untilSessionEnd, type RawSession } from '../helpers/raw-gateway.ts'

const root = resolve(import.meta.dirname, '..', '..')

// the raw client's function: an echo (served to the worker over BUNDLE_PROTOCOL by the raw client)
const ECHO = RAW_ECHO_SOURCE

/** The limits the registry would give each raw-client function (its manifest's `websocket`). */
const RAW_LIMITS: Record<string, SessionLimits> = {
  idle: { idleTimeoutMs: 1_500 },
  flood: { messagesPerSecond: 20 },
  long: { maxSessionMs: 3_000 },
  small: { maxMessageBytes: 1024 }
}


describe('session limits and shared sandboxes at the worker (gVisor)', function () {
  this.timeout(300_000)
  const dir = mkdtempSync(join(tmpdir(), 'peerhost-ws-worker-'))
  const logger = silentLogger()
  const bytes = new TextEncoder().encode(ECHO)
  const cid = rawCid(bytes)
  const rogue = privateKeyToAccount(generatePrivateKey())
  const wallet = privateKeyToAccount(generatePrivateKey()).address
  const workerMetrics = new Registry()
  let boot: Awaited<ReturnType<typeof createBootstrap>>
  let gateway: GatewayNode
  let worker: WorkerNode
  let client: PeerHostLibp2p
  let wsBase: string

  before(async () => {
    // runsc must be present: a missing runsc fails here, never skips
    execFileSync('/usr/bin/runsc', ['--version'])
    boot = await createBootstrap({}, { privateKey: await generateKeyPair('Ed25519'), logger, registry: new Registry() })
    await boot.start()
    const functions = functionTable()
    const owner = fastSigner(generatePrivateKey()).address
    await addProject(functions, owner, join(root, 'test/fixtures/websocket-shared'))
    gateway = await createGateway({ port: 0, bootstrap: boot.addrs() }, { privateKey: await generateKeyPair('Ed25519'), signer: fastSigner(generatePrivateKey()), functions, logger, registry: new Registry() })
    await gateway.start()
    const executor = gvisorExecutor({ dataDir: join(dir, 'worker'), selfTest: false, genericPoolSize: 1, perFunctionPoolSize: 1 })({})
    worker = await createWorker({ dataDir: join(dir, 'worker'), bootstrap: boot.addrs() }, {
      privateKey: await generateKeyPair('Ed25519'),
      signer: fastSigner(generatePrivateKey()),
      executor,
      logger,
      registry: workerMetrics,
      // the registry's answer, as node/worker/registry-check.ts gives it: the frame's options and
      // env, and the manifest's session limits for the raw client's functions
      checkJob: async (job) => ({ run: { options: job.options, env: job.env, ...(RAW_LIMITS[job.fn.name] !== undefined ? { websocket: RAW_LIMITS[job.fn.name] } : {}) } })
    })
    await worker.start()
    await gateway.libp2p.dial(multiaddr(worker.addrs()[0]))
    await waitFor('the worker in the gateway view', () => gateway.view.size() === 1, 60_000)
    wsBase = `${gateway.url.replace(/^http/, 'ws')}/${owner}/wsshared`
    // the raw gateway-side client serves its bundle as a gateway does
    client = await rawGateway(cid, bytes)
  })
  beforeEach(async () => { if (worker !== undefined) await waitFor('no session left open at the worker', () => worker.sessions === 0, 30_000) })
  after(async () => {
    await client?.stop()
    await gateway?.stop()
    await worker?.stop()
    await boot?.stop()
    rmSync(dir, { recursive: true, force: true })
  })

  async function sessionJob (name: string): Promise<JobRequest> {
    return await signedJob({
      worker: worker.address,
      gateway: rogue,
      fn: { wallet, project: 'raw', name, bundleCid: cid },
      request: { method: 'GET', url: `http://peerhost.test/${name}`, headers: [['upgrade', 'websocket']], body: new Uint8Array() },
      options: { memoryMb: 32, timeoutMs: 10_000, network: [], isolation: 'function' },
      session: true
    })
  }

  /** A session opened by the raw client straight on the worker: the job frame, then session-open. */
  async function rawSession (name: string): Promise<RawSession> {
    return await openRawSession(client, worker.addrs()[0], await sessionJob(name))
  }

  const untilEnd = untilSessionEnd

  function closeOf (frames: Message[]): { code: number, reason: string } {
    const c = frames.find(m => m.type === 'ws-close')
    assert.ok(c !== undefined && c.type === 'ws-close', `a ws-close frame: ${frames.map(m => m.type).join(', ')}`)
    return { code: c.code, reason: c.reason }
  }

  const send = async (s: RawSession, text: string): Promise<void> => {
    await s.f.write({ v: PROTOCOL_VERSION, type: 'ws', binary: false, data: new TextEncoder().encode(text) }, AbortSignal.timeout(10_000))
  }

  it('attack: a gateway that holds an idle session open and never closes it: the worker closes it 4408 at the function\'s idle timeout', async () => {
    const s = await rawSession('idle')
    await send(s, 'hello')
    const got = await untilEnd(s, 30_000)
    const ms = Date.now() - s.t0
    assert.equal(got[0].type, 'ws', 'the echo came first')
    assert.deepEqual(closeOf(got), { code: 4408, reason: 'idle timeout' })
    assert.equal(got.at(-1)?.type, 'session-end', 'the transcript is signed')
    // 1.5 s of idle plus the worker's 1 s of grace behind an honest gateway
    assert.ok(ms >= 2_000, `closed after ${ms} ms`)
    await waitFor('the worker to release the session', () => worker.sessions === 0, 10_000)
    await s.stream.close().catch(() => {})
  })

  it('attack: a gateway that floods a session past its messages per second: the worker closes it 4429, and most messages never reach the function', async () => {
    const s = await rawSession('flood')
    const sent = 600
    // as fast as the stream takes them; writes after the close may fail, which is fine
    const writes = (async () => { for (let i = 0; i < sent; i++) await send(s, `m${i}`).catch(() => {}) })()
    const got = await untilEnd(s, 60_000)
    await writes
    assert.deepEqual(closeOf(got), { code: 4429, reason: 'more than 20 messages per second' })
    const echoes = got.filter(m => m.type === 'ws').length
    // 20 per second with 4 s of burst: ~80 get through, not 600
    assert.ok(echoes < 200, `${echoes} of ${sent} messages reached the function`)
    assert.equal(got.at(-1)?.type, 'session-end')
    await s.stream.close().catch(() => {})
  })

  it('attack: a gateway that keeps a session past its maximum length: the worker closes it 4410', async () => {
    const s = await rawSession('long')
    // keep it busy, so only the length limit can end it (the worker's idle default is 60 s)
    const ticker = setInterval(() => { void send(s, 'tick').catch(() => {}) }, 500)
    try {
      const got = await untilEnd(s, 30_000)
      assert.deepEqual(closeOf(got), { code: 4410, reason: 'session time limit' })
      assert.ok(Date.now() - s.t0 >= 3_000, `closed after ${Date.now() - s.t0} ms`)
    } finally {
      clearInterval(ticker)
    }
    await s.stream.close().catch(() => {})
  })

  it('attack: a gateway that relays a message over the function\'s size limit: the worker closes it 1009 and the function never sees it', async () => {
    const s = await rawSession('small')
    await send(s, 'x'.repeat(1024))
    const echo = await s.f.readAny(AbortSignal.timeout(20_000))
    await send(s, 'y'.repeat(2048))
    const got = [echo, ...await untilEnd(s, 30_000)]
    const texts = got.flatMap(m => m.type === 'ws' ? [new TextDecoder().decode(m.data)] : [])
    assert.deepEqual(texts, [`echo: ${'x'.repeat(1024)}`])
    assert.equal(closeOf(got).code, 1009)
    await s.stream.close().catch(() => {})
  })

  // ---- shared sandboxes, through the gateway with real ws clients ----

  async function open (fn: string): Promise<WebSocket> {
    return await waitFor(`a ${fn} session`, async () => (await openWebSocket(`${wsBase}/${fn}`)).ws, 60_000, 250)
  }

  async function ask (ws: WebSocket, text: string, timeoutMs = 20_000): Promise<string> {
    return await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => { ws.off('message', onMessage); reject(new Error(`no answer to ${text} in ${timeoutMs} ms`)) }, timeoutMs)
      const onMessage = (d: Buffer, binary: boolean): void => {
        if (binary) return
        clearTimeout(timer)
        ws.off('message', onMessage)
        ws.off('close', onClose)
        resolve(String(d))
      }
      const onClose = (code: number): void => { clearTimeout(timer); ws.off('message', onMessage); reject(new Error(`closed ${code} before answering ${text}`)) }
      ws.on('message', onMessage)
      ws.once('close', onClose)
      ws.send(text)
    })
  }

  function closed (ws: WebSocket): Promise<{ code: number, reason: string }> {
    if (ws.readyState === ws.CLOSED) return Promise.resolve({ code: -1, reason: 'already closed' })
    return new Promise(resolve => ws.once('close', (code, reason) => resolve({ code, reason: String(reason) })))
  }

  /**
   * `n` box sessions grouped by the sandbox they run in, largest group first: a version's sessions
   * spread over its sandboxes (at most two here, GVISOR_POOL_DEFAULTS.maxSandboxesPerFunction), so
   * three or more put two in one sandbox.
   */
  async function boxSessions (n: number): Promise<WebSocket[][]> {
    const all: WebSocket[] = []
    for (let i = 0; i < n; i++) all.push(await open('box'))
    const groups = new Map<string, WebSocket[]>()
    for (const ws of all) {
      const where = await ask(ws, 'who')
      groups.set(where, [...(groups.get(where) ?? []), ws])
    }
    return [...groups.values()].sort((a, b) => b.length - a.length)
  }

  async function executionsDone (): Promise<number> {
    const m = await workerMetrics.getSingleMetric('peerhost_worker_execution_seconds')?.get()
    return m?.values.find((v: any) => v.metricName === 'peerhost_worker_execution_seconds_count')?.value ?? 0
  }

  it('a session that runs its shared sandbox out of memory: it gets 1011 LIMIT_MEMORY, its neighbours 1011 SANDBOX_INFRA, another sandbox and new sessions serve on, and no session leaks', async () => {
    const groups = await boxSessions(5)
    const [shared, ...elsewhere] = groups
    assert.ok(shared.length >= 2, `some sandbox holds two box sessions: ${groups.map(g => g.length).join(', ')}`)
    const sandboxOf = await ask(shared[0], 'who')
    const other = await open('other')
    assert.equal(await ask(other, 'hi'), 'other: hi')
    assert.equal(worker.sessions, 6)
    const ends = shared.map(closed)
    shared[0].send('oom')
    const codes = await Promise.all(ends)
    assert.deepEqual(codes[0], { code: 1011, reason: 'LIMIT_MEMORY' }, 'the culprit is told')
    for (const c of codes.slice(1)) assert.deepEqual(c, { code: 1011, reason: 'SANDBOX_INFRA' }, 'its neighbours are not blamed and may reconnect')
    // other sandboxes (the version's other one, another function's) never noticed
    assert.equal(await ask(other, 'still'), 'other: still')
    for (const ws of elsewhere.flat()) assert.equal(await ask(ws, 'still'), 'echo: still')
    // a new session of the same function is served, in another sandbox
    const again = await open('box')
    assert.equal(await ask(again, 'back'), 'echo: back')
    assert.notEqual(await ask(again, 'who'), sandboxOf, 'not the dead sandbox')
    const left = [other, again, ...elsewhere.flat()]
    await waitFor(`the ${shared.length} dead sessions released at the worker`, () => worker.sessions === left.length, 20_000)
    const last = left.map(closed)
    for (const ws of left) ws.close(1000)
    await Promise.all(last)
    await waitFor('no session left at the worker', () => worker.sessions === 0, 20_000)
  })

  it('a function\'s stray errors do not end its shared sandbox: a close listener answering a vanished client\'s 1001, and a throw from a message listener, leave its neighbours serving', async () => {
    const groups = await boxSessions(3)
    const shared = groups[0]
    assert.ok(shared.length >= 2, `some sandbox holds two box sessions: ${groups.map(g => g.length).join(', ')}`)
    const [gone, neighbour] = shared
    const sandboxOf = await ask(neighbour, 'who')
    // the client vanishes (no close frame): the function sees 1001 and answers server.close(1001)
    assert.equal(await ask(gone, 'answer-close'), 'will answer')
    const before = worker.sessions
    gone.terminate()
    await waitFor('the vanished session released at the worker', () => worker.sessions === before - 1, 20_000)
    assert.equal(await ask(neighbour, 'still'), 'echo: still')
    // a listener that throws (after answering): the error is the function's, its session goes on
    assert.equal(await ask(neighbour, 'stray'), 'thrown')
    assert.equal(await ask(neighbour, 'after'), 'echo: after')
    assert.equal(await ask(neighbour, 'who'), sandboxOf, 'the same sandbox serves on: none ended')
    const rest = groups.flat().filter(ws => ws !== gone)
    const ends = rest.map(closed)
    for (const ws of rest) ws.close(1000)
    for (const c of await Promise.all(ends)) assert.equal(c.code, 1000)
    await waitFor('no session left at the worker', () => worker.sessions === 0, 20_000)
  })

  it('a client that stops reading in a shared sandbox does not stall its neighbour there; it alone is closed 1008 past its bound', async () => {
    const groups = await boxSessions(3)
    assert.ok(groups[0].length >= 2, `some sandbox holds two box sessions: ${groups.map(g => g.length).join(', ')}`)
    const [slow, neighbour] = groups[0]
    const extra = [...groups[0].slice(2), ...groups.slice(1).flat()]
    for (const ws of extra) ws.close(1000)
    // the flood's pace is one a reading client keeps up with: 8 MiB arrive whole, nothing closes
    let got = 0
    const count = (d: Buffer, binary: boolean): void => { if (binary) got += d.byteLength }
    slow.on('message', count)
    slow.send('flood:128')
    await waitFor('8 MiB flooded to a reading client', () => got === 128 * 64 * 1024, 120_000, 100)
    slow.off('message', count)
    assert.equal(slow.readyState, WebSocket.OPEN)
    const baseline: number[] = []
    for (let i = 0; i < 20; i++) { const t = performance.now(); await ask(neighbour, `b${i}`); baseline.push(performance.now() - t) }
    const before = await executionsDone()
    let received = 0
    slow.on('message', (d: Buffer) => { received += d.byteLength })
    const slowEnd = closed(slow)
    slow.send('flood:4096')
    // the client's socket is no longer read: TCP backpressure up to the gateway
    slow.pause()
    // the neighbour echoes all the while, until the slow session's execution has ended in the
    // shim (its held-back output passed the bound) and a moment after
    const during: number[] = []
    let cutAt: number | undefined
    const t0 = Date.now()
    while (cutAt === undefined || Date.now() - cutAt < 2_000) {
      const t = performance.now()
      assert.equal(await ask(neighbour, `n${during.length}`, 10_000), `echo: n${during.length}`)
      during.push(performance.now() - t)
      // paced under the gateway's 1,000 messages per second per session (4429 past it): a quiet
      // machine echoes in about 1 ms
      await new Promise(resolve => setTimeout(resolve, 2))
      if (cutAt === undefined && await executionsDone() > before) cutAt = Date.now()
      assert.ok(Date.now() - t0 < 120_000, `the slow session was not cut within 120 s (${during.length} neighbour echoes)`)
    }
    const sorted = [...during].sort((a, b) => a - b)
    const p50 = sorted[Math.floor(sorted.length / 2)]
    const base50 = [...baseline].sort((a, b) => a - b)[10]
    console.log(`      neighbour echo before: p50 ${base50.toFixed(1)} ms; while the other client did not read (${((cutAt! - t0) / 1000).toFixed(1)} s): ${during.length} echoes, p50 ${p50.toFixed(1)} ms, max ${sorted.at(-1)!.toFixed(1)} ms`)
    assert.ok(during.length >= 10, `${during.length} neighbour echoes`)
    assert.ok(p50 < 500, `the neighbour's echo p50 ${p50.toFixed(1)} ms while the other client did not read`)
    // the slow client reads again: what was held for it, then the close
    slow.resume()
    const c = await slowEnd
    assert.deepEqual(c, { code: 1008, reason: 'the client reads too slowly' })
    console.log(`      the slow client got ${(received / 1024 / 1024).toFixed(1)} MiB before its 1008 (the function would have sent 256 MiB)`)
    assert.ok(received < 64 * 1024 * 1024, `${received} bytes held for the slow client`)
    assert.equal(await ask(neighbour, 'after'), 'echo: after')
    const end = closed(neighbour)
    neighbour.close(1000)
    await end
    await waitFor('no session left at the worker', () => worker.sessions === 0, 20_000)
  })
})
