/**
 * `npm run bench:sandbox`: the cost of running a function in a gVisor sandbox.
 *
 * - warm: per-execution time of the hello function in a warm gVisor sandbox (executor.execute,
 *   host ↔ shim round trip included) vs the same bundle called in plain Node in this process, and
 *   the dev-vm executor for reference; p50/p99 and the overhead (gVisor − plain);
 * - realm: every execution gets a fresh `node:vm` realm, but the shim creates the next one while
 *   it is idle (realm.ts `prepareRealm`), so a lone request finds its realm ready. Measured both
 *   ways: the shim's `runExecution` in this process with the realm prepared before the clock
 *   starts vs created on the timed path; in gVisor, requests paced 20 ms apart (realm certainly
 *   ready) vs back-to-back (the default loop) vs two at once on one sandbox (the second's realm
 *   is created on its timed path: the pair's time is reported);
 * - cold: a sandbox booted on demand (runsc run → shim ready → first response), and the first
 *   request to a newly deployed function (new bundle CID) served from the warm generic pool;
 * - refill: sandboxes booted per second by the pool from empty;
 * - end to end: HTTP → gateway → mesh → worker (gVisor) req/s vs raw Node `http`, when the
 *   test network helper can start one (`--no-e2e` skips it).
 *
 *   node bench/sandbox.ts [--iterations 3000] [--no-e2e]
 */
import { execFileSync, spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { cpus, loadavg, tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { devExecutor, gvisorExecutor, type Executor } from '#sandbox'
import { bundle, HELLO, job, options } from './hello-job.ts'

const { values } = parseArgs({ options: { iterations: { type: 'string', default: '3000' }, 'no-e2e': { type: 'boolean', default: false } } })
const N = Number(values.iterations)
const startLoad = loadavg().map(l => l.toFixed(1)).join(' ')
const root = resolve(import.meta.dirname, '..')

const hello = bundle(HELLO)

const pct = (a: number[], p: number): number => { const s = a.slice().sort((x, y) => x - y); return s[Math.min(s.length - 1, Math.floor(s.length * p))] }
const f = (n: number, d = 2): string => Number.isFinite(n) ? n.toFixed(d) : 'n/a'

async function timeLoop (n: number, fn: () => Promise<unknown>): Promise<number[]> {
  const out: number[] = []
  for (let i = 0; i < n; i++) {
    const t = performance.now()
    await fn()
    out.push(performance.now() - t)
  }
  return out
}

/** `fn` timed `n` times, each after a 20 ms pause (the shim has finished its idle work: the next realm is ready) */
async function pacedLoop (n: number, fn: () => Promise<unknown>): Promise<number[]> {
  const out: number[] = []
  for (let i = 0; i < n; i++) {
    await new Promise(resolve => setTimeout(resolve, 20))
    const t = performance.now()
    await fn()
    out.push(performance.now() - t)
  }
  return out
}

// plain Node: the same bundle, loaded once, called directly (Request in, Response body read)
const mod: any = { exports: {} }
new Function('module', 'exports', HELLO)(mod, mod.exports)
const handler = mod.exports.default
const plainOnce = async (): Promise<void> => {
  const res: Response = await handler.fetch(new Request('http://bench/hello?name=bench'), {}, { waitUntil () {} })
  await res.arrayBuffer()
}
await timeLoop(2000, plainOnce)
const plain = await timeLoop(N, plainOnce)

// the shim's own execution path (realm.ts) in this process: realm prepared off the clock vs created on it
const { prepareRealm, runExecution } = await import('../sandbox/runtime/realm.ts')
const shimRun = async (): Promise<void> => {
  const o = await runExecution({ cid: hello.cid, bundle: hello.bytes, request: { method: 'GET', url: 'http://bench/hello?name=bench', headers: [], body: new Uint8Array(0) }, env: {}, limits: { timeoutMs: 5000, maxResponseBytes: 1 << 20, maxLogBytes: 1 << 12, network: false, maxSubrequests: 0 } })
  if (o.response === undefined) throw new Error(`runExecution failed: ${JSON.stringify(o.error)}`)
}
const timeRealm = async (n: number, prepared: boolean): Promise<number[]> => {
  const out: number[] = []
  for (let i = 0; i < n; i++) {
    if (prepared) prepareRealm()
    const t = performance.now()
    await shimRun()
    out.push(performance.now() - t)
  }
  return out
}
const realmN = Math.min(N, 1000)
await timeRealm(200, true); await timeRealm(200, false)
const realmReady = await timeRealm(realmN, true)
const realmFresh = await timeRealm(realmN, false)

const dataDir = mkdtempSync(join(tmpdir(), 'peerhost-bench-sandbox-'))
const results: string[] = []
let e2eRow = '| end to end HTTP → gateway → mesh → gVisor | not measured | | |'
try {
  // dev-vm executor for reference
  const dev: Executor = devExecutor()()
  await dev.start()
  await timeLoop(500, async () => await dev.execute(job(hello)))
  const devT = await timeLoop(N, async () => await dev.execute(job(hello)))
  await dev.stop()

  // warm gVisor
  const gv = gvisorExecutor({ dataDir: join(dataDir, 'warm') })()
  const tStart = performance.now()
  await gv.start()
  const startMs = performance.now() - tStart
  await gv.prewarm(hello, options)
  await gv.settled()
  while (gv.idleFor(hello.cid) < 2) await new Promise(resolve => setTimeout(resolve, 50))
  await timeLoop(500, async () => await gv.execute(job(hello)))
  const warm = await timeLoop(N, async () => await gv.execute(job(hello)))
  const paced = await pacedLoop(Math.min(N, 300), async () => await gv.execute(job(hello)))
  const probe = await gv.execute(job(hello))
  if (probe.response === undefined) throw new Error(`gVisor hello failed: ${JSON.stringify(probe.error)}`)

  // first request to a newly deployed function: a new CID, served by a warm generic sandbox
  const firsts: number[] = []
  for (let i = 0; i < 10; i++) {
    await gv.settled()
    const b = bundle(`${HELLO}\n// version ${i} ${Date.now()}`)
    const t = performance.now()
    const r = await gv.execute(job(b))
    firsts.push(performance.now() - t)
    if (r.response === undefined) throw new Error('first request failed')
  }
  await gv.stop()

  // one sandbox for the function, two executions sent at once: the shim runs the first in the
  // realm it prepared and creates the second's realm while that request waits
  const one = gvisorExecutor({ dataDir: join(dataDir, 'pair'), selfTest: false, genericPoolSize: 0, perFunctionPoolSize: 1, maxSandboxesPerFunction: 1, maxExecutionsPerSandbox: 1_000_000 })()
  await one.start()
  await one.prewarm(hello, options)
  await one.settled(120_000)
  while (one.idleFor(hello.cid) < 1) await new Promise(resolve => setTimeout(resolve, 50))
  await pacedLoop(100, async () => await one.execute(job(hello)))
  const pairN = Math.min(N, 300)
  const pairs: number[] = []
  const singles: number[] = []
  for (let i = 0; i < pairN; i++) {
    singles.push(...await pacedLoop(1, async () => await one.execute(job(hello))))
    pairs.push(...await pacedLoop(1, async () => {
      const rs = await Promise.all([one.execute(job(hello)), one.execute(job(hello))])
      if (rs.some(r => r.response === undefined)) throw new Error(`pair execution failed: ${JSON.stringify(rs.map(r => r.error))}`)
    }))
  }
  const pairBoots = one.stats?.().booted ?? 0
  await one.stop()
  if (pairBoots > 1) throw new Error(`the pair measurement booted ${pairBoots} sandboxes: not one sandbox`)

  // cold: no pool at all, every execution boots its sandbox (runsc run → ready → response)
  const cold = gvisorExecutor({ dataDir: join(dataDir, 'cold'), selfTest: false, genericPoolSize: 0, perFunctionPoolSize: 0 })()
  await cold.start()
  const colds: number[] = []
  for (let i = 0; i < 6; i++) {
    const t = performance.now()
    const r = await cold.execute(job(bundle(`${HELLO}\n// cold ${i}`)))
    colds.push(performance.now() - t)
    if (r.response === undefined) throw new Error('cold request failed')
  }
  await cold.stop()

  // refill: boot 8 generic sandboxes from empty (2 boots in flight at a time)
  const fill = gvisorExecutor({ dataDir: join(dataDir, 'fill'), selfTest: false, genericPoolSize: 8, maxSandboxes: 16 })()
  await fill.start()
  const tf = performance.now()
  await fill.settled(120_000)
  const fillS = (performance.now() - tf) / 1000
  const filled = fill.idleGeneric()
  await fill.stop()

  results.push(
    '| measure | p50 ms | p99 ms | note |',
    '|---|---:|---:|---|',
    `| plain Node, same bundle in-process | ${f(pct(plain, 0.5), 3)} | ${f(pct(plain, 0.99), 3)} | baseline |`,
    `| dev-vm executor (worker thread, fresh vm realm) | ${f(pct(devT, 0.5), 3)} | ${f(pct(devT, 0.99), 3)} | not a boundary; reference |`,
    `| shim execution in this process (realm.ts runExecution), realm prepared before the clock starts | ${f(pct(realmReady, 0.5), 3)} | ${f(pct(realmReady, 0.99), 3)} | what the shim does when its idle-time realm is ready |`,
    `| shim execution in this process, **fresh realm created on the timed path** | ${f(pct(realmFresh, 0.5), 3)} | ${f(pct(realmFresh, 0.99), 3)} | realm creation ≈ ${f(pct(realmFresh, 0.5) - pct(realmReady, 0.5), 3)} ms p50 (outside gVisor) |`,
    `| gVisor warm execution, back-to-back (execute(), round trip) | ${f(pct(warm, 0.5), 3)} | ${f(pct(warm, 0.99), 3)} | fresh realm per execution, created by the shim in its idle time between requests (2 sandboxes alternate) |`,
    `| gVisor warm execution, paced 20 ms apart | ${f(pct(paced, 0.5), 3)} | ${f(pct(paced, 0.99), 3)} | realm certainly prepared before the request (${paced.length} runs) |`,
    `| gVisor, one sandbox: single execution, paced | ${f(pct(singles, 0.5), 3)} | ${f(pct(singles, 0.99), 3)} | ${singles.length} runs |`,
    `| gVisor, one sandbox: **two executions at once** (time until both answered) | ${f(pct(pairs, 0.5), 3)} | ${f(pct(pairs, 0.99), 3)} | the second's realm is created on its timed path; pair − single ≈ ${f(pct(pairs, 0.5) - pct(singles, 0.5), 3)} ms p50 |`,
    `| **gVisor warm overhead vs plain Node** | **${f(pct(warm, 0.5) - pct(plain, 0.5), 3)}** | **${f(pct(warm, 0.99) - pct(plain, 0.99), 3)}** | target p50 ≤ 2, p99 ≤ 10 |`,
    `| first request to a newly deployed function (warm generic pool) | ${f(pct(firsts, 0.5), 1)} | ${f(Math.max(...firsts), 1)} (max of 10) | target p50 ≤ 250 |`,
    `| cold: sandbox booted on demand → first response | ${f(pct(colds, 0.5), 1)} | ${f(Math.max(...colds), 1)} (max of 6) | runsc run + Node start + shim warm-up |`,
    `| pool refill from empty | ${f(filled / fillS, 2)} sandboxes/s | | ${filled} sandboxes in ${f(fillS, 2)} s, 2 boots in flight |`,
    `| executor start incl. self-test (boot, memory-limit probe) | ${f(startMs, 0)} | | once per worker start |`
  )

  if (values['no-e2e'] !== true) {
    try {
      const { startTestNetwork, status, waitFor } = await import('../test/helpers/network.ts')
      const { load } = await import('./lib.ts')
      const raw = spawn(process.execPath, ['-e', `
        const http = require('node:http')
        const s = http.createServer((req, res) => { res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' }); res.end('Hello, world!\\n') })
        s.listen(0, '127.0.0.1', () => console.log(s.address().port))`], { stdio: ['ignore', 'pipe', 'inherit'] })
      const rawPort = await new Promise<number>(resolve => raw.stdout!.once('data', d => resolve(Number(String(d).trim()))))
      const net = await startTestNetwork({ workers: 1, projects: [join(root, 'examples/hello')], workerArgs: [] })
      try {
        const url = net.functions.find((u: string) => u.endsWith('/hello/hello'))!
        await waitFor('the worker in the gateway view', async () => (await status(net)).workers.length === 1, 60_000)
        await load(url, 4, 300)
        const r1 = await load(`http://127.0.0.1:${rawPort}/`, 1, 1000)
        const g1 = await load(url, 1, 1000)
        const r8 = await load(`http://127.0.0.1:${rawPort}/`, 8, 4000)
        const g8 = await load(url, 8, 4000)
        e2eRow = `| end to end HTTP → gateway → mesh → gVisor, c=1 | ${f(g1.p50)} | ${f(g1.p99)} | ${f(g1.rps, 0)} req/s vs raw Node ${f(r1.rps, 0)} req/s (${f(100 * g1.rps / r1.rps, 1)} %), errors ${g1.errors} |\n` +
          `| end to end HTTP → gateway → mesh → gVisor, c=8 | ${f(g8.p50)} | ${f(g8.p99)} | ${f(g8.rps, 0)} req/s vs raw Node ${f(r8.rps, 0)} req/s (${f(100 * g8.rps / r8.rps, 1)} %), errors ${g8.errors} |`
      } finally {
        await net.stop()
        raw.kill()
      }
    } catch (err) {
      e2eRow = `| end to end HTTP → gateway → mesh → gVisor | not measured | | ${String((err as Error).message ?? err).split('\n')[0].slice(0, 160)} |`
    }
  }
  results.push(e2eRow)
} finally {
  rmSync(dataDir, { recursive: true, force: true })
}

let runscVersion = 'runsc'
try { runscVersion = execFileSync('/usr/bin/runsc', ['--version'], { encoding: 'utf8' }).split('\n')[0] } catch {}
console.log(`machine: ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, Node ${process.versions.node}, ${runscVersion}, platform ptrace; ${N} iterations; load average at start ${startLoad}, at end ${loadavg().map(l => l.toFixed(1)).join(' ')}`)
console.log(results.join('\n'))
