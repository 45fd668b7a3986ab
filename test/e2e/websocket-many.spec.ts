/**
 * Many WebSocket sessions on one network (issue 12): sessions of one function version share gVisor
 * sandboxes (memoryMb / GVISOR_POOL_DEFAULTS.sessionMemoryMb to a sandbox) and take no job slot,
 * so three workers hold far more than the old one-sandbox-per-session cap (6 a worker). The
 * fixture's functions have 32 MB: 32 sessions to a sandbox. The spec holds 500 at once (issue 12),
 * from three loopback source addresses (127.0.0.2–4) as many users would: the gateway takes at most
 * `gatewayMaxConnectionsPerIp` (256) connections from one address. `npm run bench:ws` measures the
 * same with timings (docs/benchmarks.md).
 */
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { loadavg } from 'node:os'
import { join, resolve } from 'node:path'
import { WebSocket } from 'ws'
import { startTestNetwork, waitFor, type TestNetwork } from '../helpers/network.ts'
import { rssBytes, sandboxMemory } from '../helpers/processes.ts'
import { openWebSocket } from '../helpers/ws.ts'

const root = resolve(import.meta.dirname, '..', '..')
const SESSIONS = 500
/** client source addresses: SESSIONS / 3 each, below the gateway's 256 connections per address */
const SOURCES = ['127.0.0.2', '127.0.0.3', '127.0.0.4']
const MB = 1024 * 1024

interface Session { ws: WebSocket, worker: string, jobId: string }

async function open (url: string, localAddress?: string): Promise<Session> {
  const { ws, headers } = await openWebSocket(url, { localAddress })
  return { ws, worker: String(headers['x-peerhost-worker'] ?? ''), jobId: String(headers['x-peerhost-job'] ?? '') }
}

async function ask (ws: WebSocket, text: string, timeoutMs = 20_000): Promise<string> {
  return await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no answer to ${text} in ${timeoutMs} ms`)), timeoutMs)
    ws.once('message', d => { clearTimeout(timer); resolve(String(d)) })
    ws.once('close', code => { clearTimeout(timer); reject(new Error(`closed ${code} before answering ${text}`)) })
    ws.send(text)
  })
}

function closed (ws: WebSocket): Promise<{ code: number, reason: string }> {
  if (ws.readyState === ws.CLOSED) return Promise.resolve({ code: -1, reason: 'already closed' })
  return new Promise(resolve => ws.once('close', (code, reason) => resolve({ code, reason: String(reason) })))
}

describe('many WebSocket sessions on three gVisor workers', function () {
  this.timeout(240_000)
  let net: TestNetwork
  let base: string

  before(async () => {
    net = await startTestNetwork({ workers: 3, workerArgs: [], projects: [join(root, 'test/fixtures/websocket-many')] })
    base = net.functions.find(u => u.endsWith('/wsmany/echo'))!.replace(/^http/, 'ws').replace(/\/echo$/, '')
    await waitFor('three workers advertising session room', async () => {
      const st = await (await fetch(`${net.gatewayUrl}/_peerhost/status`)).json() as any
      return st.workers.length === 3
    }, 60_000, 250)
    // the gateway connects to each worker and each worker warms the version, as on a network that
    // has been running: rounds of 48 sessions opened together spread over the three (each pick
    // counts the ones still opening) until every worker has served one. On a loaded machine a first
    // dial or bundle fetch can outlast its timeout; that worker is then still cold, which weighs as
    // much as 16 sessions' share in the pick, so a round must put ~16 on each warm worker before
    // it reaches the cold one.
    const served = new Set<string>()
    await waitFor('every worker to serve a warm-up session', async () => {
      const round = await Promise.all(Array.from({ length: 48 }, async () => await open(`${base}/echo`).catch(() => undefined)))
      for (const s of round) { if (s !== undefined) { served.add(s.worker); s.ws.close(1000) } }
      return served.size === 3
    }, 90_000, 500)
    await sessionsEnd('the warm-up sessions to end')
  })
  after(async () => { await net?.stop() })

  /** Waits until no worker holds a session; on timeout the error says which still do. */
  async function sessionsEnd (what: string): Promise<void> {
    let last: number[] = []
    try {
      await waitFor(what, async () => (last = await workerSessions()).every(n => n === 0), 20_000, 200)
    } catch (err) {
      throw new Error(`${(err as Error).message}; sessions still held per worker: ${last.join(', ')}`)
    }
  }

  /** The session attempts the gateway logged as failed (worker, code, error). */
  function failedAttempts (): string {
    const lines = readFileSync(join(net.dir, 'logs', 'gateway.log'), 'utf8').split('\n').filter(l => l.includes('session attempt failed'))
    return `${lines.length} failed session attempts${lines.length > 0 ? `: ${lines.slice(0, 5).join(' | ')}` : ''}`
  }

  async function workerSessions (): Promise<number[]> {
    return await Promise.all(net.workerInfo.map(async w => ((await (await fetch(`${w.admin}/_peerhost/status`)).json()) as any).sessions as number))
  }

  it(`holds ${SESSIONS} sessions at once, each echoes, memory stays bounded, and all close cleanly`, async () => {
    const gatewayBefore = rssBytes(net.gateway.proc.pid!)
    const workersBefore = net.workers.map(w => rssBytes(w.proc.pid!))
    const t0 = Date.now()
    // a refused upgrade (a dial that timed out on a loaded machine) is reconnected, as clients do;
    // the reconnects are counted and bounded
    let reconnects = 0
    const refusals = new Map<string, number>()
    const sessions = await Promise.all(Array.from({ length: SESSIONS }, async (_, i) => await waitFor('a session', async () => {
      try {
        return await open(`${base}/echo`, SOURCES[i % SOURCES.length])
      } catch (err) {
        reconnects++
        const why = String((err as Error).message).replace(/"jobId":"[^"]*"|0x[0-9a-f]+|\d+ ms/g, '…').slice(0, 120)
        refusals.set(why, (refusals.get(why) ?? 0) + 1)
        throw err
      }
    }, 60_000, 250)))
    const openedMs = Date.now() - t0
    // Refusals that say "later" (503 OVERLOADED; 504 DEADLINE_EXCEEDED: a session that did not
    // open within its function's 15 s deadline while the workers booted sandboxes for the burst,
    // or a job-stream open the worker answered after the 2 s dial timeout, twice) measure speed on
    // a CPU-starved machine, which belongs in bench/; they are bounded by each session's 60 s and
    // by SESSIONS / 2 in all. It was SESSIONS: 260 were used once (load 13), many of them opens
    // whose answers had arrived while the gateway's event loop stalled and lost to their timers
    // (77 in one batch after a 3.1 s stall at load 32); since node/deadline.ts reads the sockets
    // before a due timer aborts, runs at load 15–28 needed 0–52. What is left (session deadlines:
    // 116 once at load 30; a worker answering an open after 2 s) fits in half. Any other failure
    // (502 WORKER_FAILED, a reset, a lost connection, a handshake that never ended) is what the
    // burst fixes removed: few at most (docs/benchmarks.md, "The 2 s dial timeouts").
    const busy = [...refusals].filter(([k]) => /^HTTP 50[34]\b/.test(k)).reduce((a, [, n]) => a + n, 0)
    const why = `${reconnects} reconnects for ${SESSIONS} sessions: ${[...refusals].map(([k, n]) => `${n} × ${k}`).join('; ')}; ${failedAttempts()}`
    console.log(`      ${SESSIONS} sessions opened in ${openedMs} ms, ${reconnects} reconnects${reconnects > 0 ? `: ${[...refusals].map(([k, n]) => `${n} × ${k}`).join('; ')}` : ''}; load average ${loadavg().map(l => l.toFixed(1)).join(' / ')}`)
    assert.ok(busy <= SESSIONS / 2, `${busy} reconnects after a 503/504 refusal; ${why}`)
    assert.ok(reconnects - busy <= SESSIONS / 20, `${reconnects - busy} reconnects after a failure (not a 503/504 refusal); ${why}`)
    // 500 echoes at once through sandboxes on 2 shared cores: a bound for a lost message, not a
    // speed limit (one took more than 20 s at load 12; speed is bench:ws's)
    const settled = await Promise.allSettled(sessions.map(async (s, i) => await ask(s.ws, `m${i}`, 60_000)))
    // every unanswered echo is named (worker, job id: grep the node logs under PEERHOST_KEEP_TEST_DIRS=1)
    const unanswered = settled.flatMap((r, i) => r.status === 'rejected' ? [`m${i} (${(r.reason as Error).message}; worker ${sessions[i].worker.slice(-6)}, job ${sessions[i].jobId})`] : [])
    assert.deepEqual(unanswered, [], `${unanswered.length} of ${SESSIONS} echoes unanswered`)
    settled.forEach((a, i) => assert.equal((a as PromiseFulfilledResult<string>).value, `echo: m${i}`))
    const perWorker = await workerSessions()
    assert.equal(perWorker.reduce((a, b) => a + b, 0), SESSIONS, `the workers hold every session: ${perWorker.join(', ')}`)
    // spread by the advertised session share, and more than one sandbox's room (32) on some worker
    assert.ok(Math.max(...perWorker) > 32, `some worker holds more than one sandbox's room: ${perWorker.join(', ')}`)
    // a worker that failed an open takes a smaller share for 30 s (NODE_DEFAULTS.sessionFailureWeight):
    // the message names the gateway's failed attempts, if any
    for (const n of perWorker) assert.ok(n >= SESSIONS / 15, `every worker takes a share: ${perWorker.join(', ')}; ${failedAttempts()}`)
    const gatewayRss = rssBytes(net.gateway.proc.pid!)
    const workerRss = net.workers.map(w => rssBytes(w.proc.pid!))
    const boxes = net.workers.map((_w, i) => sandboxMemory(join(net.dir, `worker-${i + 1}`)))
    console.log(`      load average ${loadavg().map(l => l.toFixed(1)).join(' / ')}; per worker ${perWorker.join('/')}; gateway RSS ${(gatewayBefore / MB).toFixed(0)} → ${(gatewayRss / MB).toFixed(0)} MB; ` +
      `worker RSS ${workersBefore.map(b => (b / MB).toFixed(0)).join('/')} → ${workerRss.map(b => (b / MB).toFixed(0)).join('/')} MB; ` +
      `sandboxes ${boxes.map(b => `${b.sandboxes}×=${(b.bytes / MB).toFixed(0)} MB`).join(', ')}`)
    // bounded: hundreds of MB would mean something is kept per message or per session far beyond
    // its frames (generous: the machine is shared and Node's heap grows lazily)
    assert.ok(gatewayRss < 600 * MB, `gateway RSS ${(gatewayRss / MB).toFixed(0)} MB`)
    for (const r of workerRss) assert.ok(r < 600 * MB, `worker RSS ${(r / MB).toFixed(0)} MB`)
    // a worker's sessions fit in a few sandboxes, not one each
    for (let i = 0; i < boxes.length; i++) assert.ok(boxes[i].sandboxes <= Math.ceil(perWorker[i] / 32) + 3, `worker ${i + 1}: ${boxes[i].sandboxes} sandboxes for ${perWorker[i]} sessions`)

    const ends = sessions.map(s => closed(s.ws))
    for (const s of sessions) s.ws.close(1000, 'done')
    const codes = await Promise.all(ends)
    assert.deepEqual(codes.filter(c => c.code !== 1000), [], 'every session closes with 1000')
    await sessionsEnd('the workers to release every session')
  })

  it('a function\'s own limits from peerhost.json apply: 1009 past its 1 KiB messages, 4408 after its 1.5 s idle timeout, 429 past its 2 sessions', async () => {
    const a = await waitFor('a session of small', async () => await open(`${base}/small`), 30_000, 250)
    assert.equal(await ask(a.ws, 'x'.repeat(1024)), `echo: ${'x'.repeat(1024)}`)
    const tooBig = closed(a.ws)
    a.ws.send('x'.repeat(2048))
    assert.equal((await tooBig).code, 1009)
    // a's place is given back once its session has ended at the gateway (the worker signs its
    // transcript first), a moment after the client saw 1009: b or c may meet a 429 until then
    const b = await waitFor('a place for b', async () => await open(`${base}/small`), 15_000, 200)
    // b is kept busy until the 429 is seen: waiting for c's place can outlast b's 1.5 s idle
    // timeout, and an idle-closed b would give its place to the third open (seen in a full run)
    const keepB = setInterval(() => { if (b.ws.readyState === b.ws.OPEN) b.ws.send('k') }, 300)
    let c: Session
    try {
      c = await waitFor('a place for c (a\'s given back)', async () => await open(`${base}/small`), 15_000, 200)
      // two held: a third is refused before any worker is asked
      await assert.rejects(open(`${base}/small`), (err: Error) => /HTTP 429/.test(err.message) && /websocket\.maxSessions/.test(err.message))
    } finally {
      clearInterval(keepB)
    }
    // its idle timeout (1.5 s, lower than the gateway's 60 s) ends both, and frees their places
    const t0 = Date.now()
    const [cb, cc] = await Promise.all([closed(b.ws), closed(c.ws)])
    assert.deepEqual([cb.code, cc.code], [4408, 4408])
    assert.ok(Date.now() - t0 < 10_000, `idle close after ${Date.now() - t0} ms`)
    const d = await waitFor('a place freed', async () => await open(`${base}/small`), 10_000, 200)
    assert.equal(await ask(d.ws, 'again'), 'echo: again')
    d.ws.close(1000)
  })

  it('a session whose listener holds the CPU ends its sandbox: it gets 1011, its co-located sessions close 1011 (they may reconnect), other sandboxes serve on', async () => {
    // one at a time: hog's 2 s timeoutMs leaves a cold sandbox boot on a loaded machine little room
    const sessions: Session[] = []
    for (let i = 0; i < 12; i++) sessions.push(await waitFor('a hog session', async () => await open(`${base}/hog`), 30_000, 250))
    const where = await Promise.all(sessions.map(async s => `${s.worker} ${await ask(s.ws, 'who')}`))
    const groups = new Map<string, number[]>()
    where.forEach((w, i) => groups.set(w, [...(groups.get(w) ?? []), i]))
    // 12 sessions in at most 2 sandboxes per worker: some sandbox holds two or more
    const [, shared] = [...groups.entries()].sort((a, b) => b[1].length - a[1].length)[0]
    assert.ok(shared.length >= 2, `some sandbox is shared: ${[...groups.values()].map(g => g.length).join(', ')}`)
    const [culprit, ...neighbours] = shared
    const others = sessions.map((_s, i) => i).filter(i => !shared.includes(i))
    const ends = shared.map(i => closed(sessions[i].ws))
    const t0 = Date.now()
    sessions[culprit].ws.send('spin')
    const codes = await Promise.all(ends)
    const ms = Date.now() - t0
    // hog's timeoutMs is 2 s: the listener is stopped within the limit plus grace (and a loaded machine)
    assert.ok(ms < 15_000, `the spinning sandbox ended after ${ms} ms`)
    assert.equal(codes[0].code, 1011, `the culprit closes 1011 (${codes[0].reason})`)
    assert.match(codes[0].reason, /LIMIT_CPU/)
    for (const [k, c] of codes.slice(1).entries()) assert.equal(c.code, 1011, `neighbour ${neighbours[k]} closes 1011 (${c.reason})`)
    // sessions in other sandboxes never noticed
    for (const i of others) assert.equal(await ask(sessions[i].ws, `still ${i}`), `echo: still ${i}`)
    // a client that reconnects gets a working session
    const again = await open(`${base}/hog`)
    assert.equal(await ask(again.ws, 'back'), 'echo: back')
    for (const s of [...others.map(i => sessions[i]), again]) s.ws.close(1000)
  })
})
