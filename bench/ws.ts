/**
 * `npm run bench:ws` — WebSockets and streaming through a devnet-like network (issue 12): one
 * bootstrap, one gateway and three workers, each its own process, functions in gVisor.
 *
 * 1. echo round trip p50/p99 of one session through the mesh, and of a raw `ws` echo server in
 *    this process, measured in the same run (the mesh's overhead is the difference);
 * 2. messages per second with 64 sessions sending at once (each waits for its echo);
 * 3. SSE time to first byte (the fixture's first event, sent before its first 200 ms wait);
 * 4. `--sessions` (default 500) idle sessions held at once, from ⌈sessions / 200⌉ loopback
 *    addresses (127.0.0.2, …: one address gets 256 connections at most): how long they took to open (each
 *    upgrade bounded by `--open-timeout`, retried at most twice, failures counted by reason), one
 *    echo on each at once (p50/p99), gateway and worker RSS deltas, sandboxes per worker and their
 *    cgroup memory, per session; then all close. `--sessions-only` skips stages 1–3.
 *
 * Figures taken while other work runs on the machine are upper bounds; CPU time (user+sys) of
 * each process is printed beside wall time.
 *
 *   npm run bench:ws [-- --sessions 500 --messages 2000 --open-timeout 30000 --sessions-only]
 */
import { readFileSync } from 'node:fs'
import { cpus, loadavg } from 'node:os'
import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { WebSocket, WebSocketServer } from 'ws'
import { startTestNetwork, waitFor } from '../test/helpers/network.ts'
import { rssBytes, sandboxMemory } from '../test/helpers/processes.ts'

const root = resolve(import.meta.dirname, '..')
const MB = 1024 * 1024
const { values: args } = parseArgs({ options: { sessions: { type: 'string', default: '500' }, messages: { type: 'string', default: '2000' }, 'open-timeout': { type: 'string', default: '30000' }, 'sessions-only': { type: 'boolean', default: false } } })
const SESSIONS = Number(args.sessions)
const MESSAGES = Number(args.messages)
/** an upgrade not answered in this long is abandoned (and counted), never waited for forever */
const OPEN_TIMEOUT_MS = Number(args['open-timeout'])
/** attempts per session in stage 4 (a refused or timed-out upgrade is retried, as clients do) */
const OPEN_ATTEMPTS = 3
for (const [name, v] of [['--sessions', SESSIONS], ['--messages', MESSAGES], ['--open-timeout', OPEN_TIMEOUT_MS]] as const) {
  if (!Number.isInteger(v) || v <= 0) throw new Error(`${name} must be a positive integer; got ${String(v)}`)
}

function pct (xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.floor(p / 100 * s.length))]
}

/** CPU seconds (user+sys) a process used so far. */
function cpuSeconds (pid: number): number {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const parts = f.slice(f.lastIndexOf(')') + 2).split(' ')
    return (Number(parts[11]) + Number(parts[12])) / 100
  } catch { return 0 }
}

/** How a session that was open ended before the bench closed it: code, reason and seconds after the open. */
const earlyCloses = new WeakMap<WebSocket, { code: number, reason: string, afterS: number }>()

async function open (url: string, timeoutMs = OPEN_TIMEOUT_MS, localAddress?: string): Promise<WebSocket> {
  const ws = new WebSocket(url, localAddress === undefined ? {} : { localAddress })
  let openedAt = 0
  ws.once('open', () => { openedAt = performance.now() })
  ws.once('close', (code: number, reason: Buffer) => {
    if (openedAt > 0) earlyCloses.set(ws, { code, reason: String(reason).slice(0, 60), afterS: (performance.now() - openedAt) / 1000 })
  })
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => { ws.terminate(); reject(new Error(`no upgrade within ${timeoutMs} ms`)) }, timeoutMs)
    ws.once('open', () => { clearTimeout(timer); resolve() })
    ws.once('error', (err) => { clearTimeout(timer); reject(err) })
    ws.once('unexpected-response', (_req, res) => {
      clearTimeout(timer)
      let body = ''
      res.on('data', (d: Buffer) => { body += String(d) })
      res.on('end', () => {
        ws.terminate()
        let why = body.slice(0, 60)
        try { const e = JSON.parse(body).error; why = `${String(e.code)}: ${String(e.message).slice(0, 70)}` } catch {}
        reject(new Error(`HTTP ${res.statusCode} ${why}`))
      })
    })
  })
  return ws
}

async function roundTrips (ws: WebSocket, n: number): Promise<number[]> {
  const out: number[] = []
  for (let i = 0; i < n; i++) {
    const t0 = performance.now()
    await new Promise<void>(resolve => { ws.once('message', () => resolve()); ws.send(`m${i}`) })
    out.push(performance.now() - t0)
  }
  return out
}

async function main (): Promise<void> {
  console.log(`bench:ws — ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, load average ${loadavg().map(l => l.toFixed(2)).join(' ')} at start`)
  // 1b. the raw ws echo server, in this process
  const raw = new WebSocketServer({ port: 0, host: '127.0.0.1' })
  raw.on('connection', ws => ws.on('message', (d, binary) => ws.send(binary ? d : `echo: ${String(d)}`)))
  await new Promise(resolve => raw.once('listening', resolve))
  const rawUrl = `ws://127.0.0.1:${(raw.address() as { port: number }).port}`

  const t0 = Date.now()
  const net = await startTestNetwork({ workers: 3, workerArgs: (process.env.BENCH_WORKER_ARGS ?? '').split(' ').filter(Boolean), projects: [join(root, 'test/fixtures/websocket-many'), join(root, 'test/fixtures/websocket')] })
  // interrupted (Ctrl-C, a time limit): the network's processes go too
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => { void net.stop().finally(() => process.exit(130)) })
  try {
    console.log(`network up in ${((Date.now() - t0) / 1000).toFixed(1)} s`)
    await waitFor('three workers', async () => ((await (await fetch(`${net.gatewayUrl}/_peerhost/status`)).json()) as any).workers.length === 3, 60_000, 250)
    const echo = net.functions.find(u => u.endsWith('/wsmany/echo'))!.replace(/^http/, 'ws')
    const sse = net.functions.find(u => u.endsWith('/ws/sse'))!
    // warm: a dozen sessions at once reach every worker (and connect the gateway to each)
    const warm = await Promise.all(Array.from({ length: 12 }, async () => await waitFor('warm-up', async () => await open(echo), 60_000, 500)))
    for (const ws of warm) ws.close()

    if (!args['sessions-only']) await stages(echo, rawUrl, sse)
    await held(net, echo)
  } finally {
    raw.close()
    await net.stop()
  }
  console.log(`load average ${loadavg().map(l => l.toFixed(2)).join(' ')} at end`)
}

/** Stages 1–3: round trips against the raw server, 64 sessions at once, SSE time to first byte. */
async function stages (echo: string, rawUrl: string, sse: string): Promise<void> {
  {
    // 1. round trips
    const meshWs = await open(echo)
    await roundTrips(meshWs, 50)
    const mesh = await roundTrips(meshWs, MESSAGES)
    meshWs.close()
    const rawWs = await open(rawUrl)
    await roundTrips(rawWs, 50)
    const direct = await roundTrips(rawWs, MESSAGES)
    rawWs.close()
    console.log(`echo round trip, ${MESSAGES} messages one at a time: mesh (gVisor) p50 ${pct(mesh, 50).toFixed(2)} ms p99 ${pct(mesh, 99).toFixed(2)} ms; raw ws p50 ${pct(direct, 50).toFixed(3)} ms p99 ${pct(direct, 99).toFixed(3)} ms`)

    // 2. messages per second at 64 sessions
    const many = await Promise.all(Array.from({ length: 64 }, async () => await waitFor('a session', async () => await open(echo), 60_000, 250)))
    const perSession = Math.max(10, Math.floor(MESSAGES / 16))
    const tm = performance.now()
    await Promise.all(many.map(async ws => await roundTrips(ws, perSession)))
    const secs = (performance.now() - tm) / 1000
    console.log(`64 sessions × ${perSession} echoes: ${(64 * perSession / secs).toFixed(0)} messages/s (each way) in ${secs.toFixed(2)} s`)
    for (const ws of many) ws.close()

    // 3. SSE time to first byte
    const ttfb: number[] = []
    for (let i = 0; i < 10; i++) {
      const ts = performance.now()
      const res = await fetch(sse)
      const reader = res.body!.getReader()
      await reader.read()
      ttfb.push(performance.now() - ts)
      await reader.cancel()
    }
    console.log(`SSE time to first byte (10 requests): p50 ${pct(ttfb, 50).toFixed(1)} ms, max ${Math.max(...ttfb).toFixed(1)} ms`)
  }
}

/** Stage 4: `SESSIONS` sessions opened at once and held. */
async function held (net: Awaited<ReturnType<typeof startTestNetwork>>, echo: string): Promise<void> {
  {
    // 4. idle sessions held at once
    await waitFor('sessions closed', async () => (await Promise.all(net.workerInfo.map(async w => ((await (await fetch(`${w.admin}/_peerhost/status`)).json()) as any).sessions as number))).every(n => n === 0), 30_000, 200)
    const pids = { gateway: net.gateway.proc.pid!, workers: net.workers.map(w => w.proc.pid!) }
    const boxesBefore = net.workers.map((_w, i) => sandboxMemory(join(net.dir, `worker-${i + 1}`)))
    const gwBefore = rssBytes(pids.gateway)
    const wkBefore = pids.workers.map(rssBytes)
    const cpuBefore = [pids.gateway, ...pids.workers].map(cpuSeconds)
    const th = performance.now()
    let reconnects = 0
    /** failed attempts by reason (numbers folded, so alike reasons count together) */
    const reasons = new Map<string, number>()
    const openMs: number[] = []
    // the clients come from several loopback addresses, as many users would (the gateway holds at
    // most NODE_DEFAULTS.gatewayMaxConnectionsPerIp, 256, connections from one address)
    const sources = Math.max(1, Math.ceil(SESSIONS / 200))
    const settled = await Promise.allSettled(Array.from({ length: SESSIONS }, async (_x, i) => {
      for (let attempt = 1; ; attempt++) {
        const ta = performance.now()
        try {
          const ws = await open(echo, OPEN_TIMEOUT_MS, `127.0.0.${2 + (i % sources)}`)
          openMs.push(performance.now() - th)
          return ws
        } catch (err) {
          const why = String((err as Error)?.message ?? err).slice(0, 100)
          reasons.set(why, (reasons.get(why) ?? 0) + 1)
          if (attempt >= OPEN_ATTEMPTS) throw err
          reconnects++
          await new Promise(resolve => setTimeout(resolve, Math.max(0, 250 * attempt - (performance.now() - ta))))
        }
      }
    }))
    const held = settled.flatMap(r => r.status === 'fulfilled' ? [r.value] : [])
    const failed = SESSIONS - held.length
    const openSecs = (performance.now() - th) / 1000
    console.log(`${held.length}/${SESSIONS} sessions opened at once in ${openSecs.toFixed(1)} s (time to open p50 ${(pct(openMs, 50) / 1000).toFixed(1)} s, p99 ${(pct(openMs, 99) / 1000).toFixed(1)} s), ${reconnects} retries, ${failed} FAILED after ${OPEN_ATTEMPTS} attempts`)
    if (reasons.size > 0) console.log(`  failed attempts: ${[...reasons].sort((a, b) => b[1] - a[1]).map(([k, n]) => `${n}× ${k}`).join('; ')}`)
    // one echo on every held session, all at once; a session that does not answer in 30 s counts as lost
    const echoes = await Promise.all(held.map(async (ws) => await Promise.race([
      roundTrips(ws, 1).then(r => r[0]),
      new Promise<number>(resolve => { setTimeout(() => resolve(Number.NaN), 30_000).unref(); ws.once('close', () => resolve(Number.NaN)) })
    ])))
    const answered = echoes.filter(x => !Number.isNaN(x))
    console.log(`  one echo on each held session at once: ${answered.length}/${held.length} answered, p50 ${pct(answered, 50).toFixed(1)} ms, p99 ${pct(answered, 99).toFixed(1)} ms`)
    // the sessions that ended before the bench closed them: how (close code and reason) and when
    const lost = new Map<string, { n: number, afterS: number[] }>()
    for (const ws of held) {
      const c = earlyCloses.get(ws)
      if (c === undefined) continue
      const k = `${c.code} ${c.reason}`.trim()
      const e = lost.get(k) ?? { n: 0, afterS: [] }
      e.n++
      e.afterS.push(c.afterS)
      lost.set(k, e)
    }
    if (lost.size > 0) console.log(`  closed by the network before the echo: ${[...lost].map(([k, e]) => `${e.n}× ${k} (after ${Math.min(...e.afterS).toFixed(1)}–${Math.max(...e.afterS).toFixed(1)} s open)`).join('; ')}`)
    const perWorker = await Promise.all(net.workerInfo.map(async w => ((await (await fetch(`${w.admin}/_peerhost/status`)).json()) as any).sessions as number))
    const gwAfter = rssBytes(pids.gateway)
    const wkAfter = pids.workers.map(rssBytes)
    const boxesAfter = net.workers.map((_w, i) => sandboxMemory(join(net.dir, `worker-${i + 1}`)))
    const cpuAfter = [pids.gateway, ...pids.workers].map(cpuSeconds)
    const sbDelta = boxesAfter.reduce((a, b) => a + b.bytes, 0) - boxesBefore.reduce((a, b) => a + b.bytes, 0)
    const wkDelta = wkAfter.reduce((a, b) => a + b, 0) - wkBefore.reduce((a, b) => a + b, 0)
    console.log(`  per worker ${perWorker.join('/')} sessions`)
    console.log(`  gateway RSS ${(gwBefore / MB).toFixed(0)} → ${(gwAfter / MB).toFixed(0)} MB: ${((gwAfter - gwBefore) / SESSIONS / 1024).toFixed(1)} KiB per session`)
    console.log(`  worker RSS ${wkBefore.map(b => (b / MB).toFixed(0)).join('/')} → ${wkAfter.map(b => (b / MB).toFixed(0)).join('/')} MB: ${(wkDelta / SESSIONS / 1024).toFixed(1)} KiB per session`)
    console.log(`  sandboxes ${boxesBefore.map(b => b.sandboxes).join('/')} → ${boxesAfter.map(b => b.sandboxes).join('/')}, cgroup memory ${(boxesBefore.reduce((a, b) => a + b.bytes, 0) / MB).toFixed(0)} → ${(boxesAfter.reduce((a, b) => a + b.bytes, 0) / MB).toFixed(0)} MB: ${(sbDelta / SESSIONS / 1024).toFixed(1)} KiB per session (new sandboxes included)`)
    console.log(`  CPU (user+sys) while opening: gateway ${(cpuAfter[0] - cpuBefore[0]).toFixed(1)} s, workers ${cpuAfter.slice(1).map((c, i) => (c - cpuBefore[i + 1]).toFixed(1)).join('/')} s (sandboxes not included)`)
    const ends = held.map(ws => ws.readyState === WebSocket.CLOSED ? Promise.resolve(-1) : new Promise<number>(resolve => ws.once('close', code => resolve(code))))
    for (const ws of held) ws.close(1000)
    const codes = await Promise.all(ends)
    console.log(`  closed: ${codes.filter(c => c === 1000).length}/${held.length} with 1000`)
    const workerSessions = async (): Promise<number[]> => await Promise.all(net.workerInfo.map(async w => ((await (await fetch(`${w.admin}/_peerhost/status`)).json()) as any).sessions as number))
    const tr = performance.now()
    let left = await workerSessions()
    while (left.some(n => n > 0) && performance.now() - tr < 30_000) { await new Promise(resolve => setTimeout(resolve, 200)); left = await workerSessions() }
    console.log(`  workers' sessions after the close: ${left.join('/')} (${((performance.now() - tr) / 1000).toFixed(1)} s)`)
    if (failed > 0 || left.some(n => n > 0)) process.exitCode = 1
  }
}

await main()
