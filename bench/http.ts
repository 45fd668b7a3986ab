/**
 * `npm run bench:http`: the benchmark users read (issue 10). `wrk` (Debian package, /usr/bin/wrk)
 * in one run against:
 *
 * - raw Node `http` hello (its own process): the baseline every ratio is to;
 * - `workerd` (npm package, the same hello as a Worker), when node_modules/workerd is installed —
 *   otherwise the row says SKIPPED, loudly;
 * - the `peerhost devnet` users start (chain-backed: contracts, staked gateway and workers, the
 *   example deployed) with gVisor sandboxes, and with `--unsafe-dev-executor`.
 *
 * Each target at c = 1, 32, 128 and a saturation sweep (c = 1, 4, 16 … 256): p50/p99 latency, req/s,
 * goodput (2xx req/s), errors (non-2xx and socket errors) and ratios to raw Node. The saturation
 * concurrency is the smallest c reaching 90 % of the peak req/s; goodput at 4× it is measured and
 * compared with the peak. Results are printed, written between the bench:http markers of
 * docs/benchmarks.md and drawn in docs/bench-http.svg.
 *
 *   node bench/http.ts [--duration 10] [--workers 3] [--targets raw,workerd,gvisor,dev] [--sweep 1,4,16,32,64,128,256] [--no-write]
 *
 * Figures are only meaningful on a quiet machine: the output records the load average at the
 * start, and runs shorter than 5 s per point are marked as smoke runs. For each devnet it also
 * records how long `npm start` took to print its URLs and the first request after that (latency,
 * path, Server-Timing): issue 10's ≤ 15 s and ≤ 250 ms through the mesh.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { cpus, loadavg, tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { spawnPeerhost, type NodeProcess } from '../bin/spawn.ts'
import { freePort } from '../test/helpers/network.ts'

const { values } = parseArgs({
  options: {
    duration: { type: 'string', default: '10' },
    workers: { type: 'string', default: '3' },
    targets: { type: 'string', default: 'raw,workerd,gvisor,dev' },
    sweep: { type: 'string', default: '1,4,16,32,64,128,256' },
    'no-write': { type: 'boolean', default: false }
  }
})
const root = resolve(import.meta.dirname, '..')
const WRK = '/usr/bin/wrk'
const duration = Number(values.duration)
// 10 s points (the default: the whole run takes about six minutes) and 5 s ones are results; shorter ones are smoke runs
const smoke = duration < 5
const sweep = values.sweep.split(',').map(Number).filter(n => n > 0)
const wanted = new Set(values.targets.split(','))
const dir = mkdtempSync(join(tmpdir(), 'peerhost-bench-http-'))
const HELLO = 'Hello, world!\n'

interface Point {
  c: number
  rps: number
  /** 2xx answers per second */
  goodput: number
  p50: number
  p99: number
  errors: number
  timeouts: number
}

interface Target {
  name: string
  url?: string
  skipped?: string
  points: Point[]
  /** at 4× the saturation concurrency */
  overload?: Point & { satC: number, peak: number }
  /** devnets: ms until the ready line, CPU ms the devnet process spent until then, and the first request after it */
  startup?: { readyMs: number, cpuMs?: number, firstMs: number, path: string, timing: string }
}

// wrk reports through a Lua `done` hook: exact percentiles and error counts as one JSON line
const lua = join(dir, 'report.lua')
writeFileSync(lua, `done = function (summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRKJSON {"requests":%d,"us":%d,"status":%d,"connect":%d,"read":%d,"write":%d,"timeout":%d,"p50":%d,"p99":%d}\\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout, latency:percentile(50), latency:percentile(99)))
end
`)

function wrk (url: string, c: number, seconds: number): Point {
  const threads = Math.min(2, c)
  const out = spawnSync(WRK, ['-t', String(threads), '-c', String(c), '-d', `${seconds}s`, '--timeout', '10s', '-s', lua, url], { encoding: 'utf8', timeout: (seconds + 30) * 1000 })
  const line = out.stdout.split('\n').find(l => l.startsWith('WRKJSON '))
  if (line === undefined) throw new Error(`wrk gave no report for ${url} at c=${c}: ${out.stderr || out.stdout}`)
  const r = JSON.parse(line.slice(8))
  const s = r.us / 1e6
  const socketErrors = r.connect + r.read + r.write + r.timeout
  return { c, rps: r.requests / s, goodput: (r.requests - r.status) / s, p50: r.p50 / 1000, p99: r.p99 / 1000, errors: r.status + socketErrors, timeouts: r.timeout }
}

async function waitHello (url: string, timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs
  let last = ''
  while (Date.now() < until) {
    try {
      const r = await fetch(url)
      last = `${r.status} ${await r.text()}`
      if (r.status === 200) return
    } catch (err) { last = (err as Error).message }
    await new Promise(resolve => setTimeout(resolve, 200))
  }
  throw new Error(`${url} did not answer 200 within ${timeoutMs} ms (last: ${last})`)
}

function measure (t: Target): void {
  if (t.url === undefined) return
  // warm-up: JIT, pools, connections, and a just-started devnet's background boots (5 s: with 2 s
  // and 5 s points the first sweep points of a devnet read 10–20 % low and moved the peak)
  wrk(t.url, 4, Math.min(5, duration))
  for (const c of sweep) {
    const p = wrk(t.url, c, duration)
    t.points.push(p)
    process.stderr.write(`${t.name} c=${c}: ${p.rps.toFixed(0)} req/s, p50 ${p.p50.toFixed(2)} ms, p99 ${p.p99.toFixed(2)} ms, errors ${p.errors}\n`)
  }
  const peak = Math.max(...t.points.map(p => p.goodput))
  const satC = t.points.find(p => p.goodput >= 0.9 * peak)?.c ?? sweep[0]
  const p = t.points.find(q => q.c === satC * 4) ?? wrk(t.url, satC * 4, duration)
  t.overload = { ...p, satC, peak }
}

const children: Array<{ stop: () => Promise<void> | void }> = []
const targets: Target[] = []

function rawServer (): Promise<string> {
  const proc: ChildProcess = spawn(process.execPath, ['-e', `
    const http = require('node:http')
    const s = http.createServer((req, res) => { res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' }); res.end(${JSON.stringify(HELLO)}) })
    s.listen(0, '127.0.0.1', () => console.log(s.address().port))
  `], { stdio: ['ignore', 'pipe', 'inherit'] })
  children.push({ stop: () => { proc.kill() } })
  return new Promise(resolve => proc.stdout!.once('data', d => resolve(`http://127.0.0.1:${Number(String(d).trim())}/`)))
}

async function workerdServer (): Promise<string | { skipped: string }> {
  const bin = join(root, 'node_modules/workerd/bin/workerd')
  if (!existsSync(bin)) return { skipped: 'node_modules/workerd is not installed' }
  const port = await freePort()
  writeFileSync(join(dir, 'hello.js'), `export default { async fetch () { return new Response(${JSON.stringify(HELLO)}, { headers: { 'content-type': 'text/plain; charset=utf-8' } }) } }\n`)
  writeFileSync(join(dir, 'workerd.capnp'), `using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
  services = [ (name = "main", worker = .hello) ],
  sockets = [ (name = "http", address = "127.0.0.1:${port}", http = (), service = "main") ]
);
const hello :Workerd.Worker = (
  modules = [ (name = "worker", esModule = embed "hello.js") ],
  compatibilityDate = "2024-09-23"
);
`)
  const proc = spawn(bin, ['serve', join(dir, 'workerd.capnp')], { stdio: ['ignore', 'inherit', 'inherit'] })
  children.push({ stop: () => { proc.kill() } })
  const url = `http://127.0.0.1:${port}/`
  await waitHello(url, 20_000)
  return url
}

async function devnet (name: string, dev: boolean): Promise<{ url: string, startup: NonNullable<Target['startup']> }> {
  const node: NodeProcess = spawnPeerhost(name, ['devnet', '--port', '0', '--chain-port', String(await freePort()), '--workers', values.workers,
    '--data-dir', join(dir, name), ...(dev ? ['--unsafe-dev-executor'] : [])], join(dir, 'logs'))
  children.push({ stop: async () => await node.stop(20_000) })
  const ready = await node.ready.catch((err: Error) => {
    // the log goes with the temporary dir: show its end now
    const log = join(dir, 'logs', `${name}.log`)
    const tail = existsSync(log) ? readFileSync(log, 'utf8').split('\n').slice(-15).join('\n') : '(no log)'
    throw new Error(`${err.message}\n--- last lines of ${name}.log ---\n${tail}`)
  })
  const url = (ready.functions as string[]).find(u => u.endsWith('/hello/hello'))
  if (url === undefined) throw new Error(`${name}: no hello function among ${JSON.stringify(ready.functions)}`)
  // the name makes the answer the same as the raw server's
  const hello = `${url}?name=world`
  // the first request after the ready line, as a user's first curl: it must go through the mesh, warm
  const t = performance.now()
  const first = await fetch(hello)
  await first.arrayBuffer()
  const firstMs = performance.now() - t
  const startup = { readyMs: ready.readyMs as number, cpuMs: ready.cpuMs as number | undefined, firstMs, path: `${first.status} ${first.headers.get('x-peerhost-path') ?? '?'}`, timing: first.headers.get('server-timing') ?? '' }
  await waitHello(hello, 60_000)
  return { url: hello, startup }
}

function ratio (a: number, b: number): string {
  return Number.isFinite(a / b) && b > 0 ? `${(100 * a / b).toFixed(1)} %` : 'n/a'
}

function svg (ts: Target[]): string {
  const W = 720; const H = 400; const L = 70; const B = 50; const T = 30; const R = 160
  const shown = ts.filter(t => t.points.length > 0)
  const maxRps = Math.max(1, ...shown.flatMap(t => t.points.map(p => p.rps)))
  const cs = sweep
  const x = (c: number): number => L + (W - L - R) * (Math.log2(c) - Math.log2(cs[0])) / Math.max(1, Math.log2(cs[cs.length - 1]) - Math.log2(cs[0]))
  // log scale for req/s: raw Node is orders of magnitude above a sandboxed path
  const lo = Math.max(1, Math.min(...shown.flatMap(t => t.points.map(p => Math.max(1, p.goodput)))))
  const y = (v: number): number => T + (H - T - B) * (1 - (Math.log10(Math.max(lo, v)) - Math.log10(lo)) / Math.max(1e-9, Math.log10(maxRps) - Math.log10(lo)))
  const colors = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd']
  const parts = [`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${L}" y="18" font-size="14">goodput (2xx req/s, log scale) by wrk connections${smoke ? ' — SMOKE RUN, not results' : ''}</text>`,
    `<line x1="${L}" y1="${H - B}" x2="${W - R}" y2="${H - B}" stroke="black"/>`, `<line x1="${L}" y1="${T}" x2="${L}" y2="${H - B}" stroke="black"/>`]
  for (const c of cs) parts.push(`<text x="${x(c)}" y="${H - B + 18}" text-anchor="middle">${c}</text>`)
  for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(maxRps)); e++) {
    const v = 10 ** e
    if (v < lo || v > maxRps * 1.01) continue
    parts.push(`<text x="${L - 6}" y="${y(v) + 4}" text-anchor="end">${v}</text>`, `<line x1="${L}" y1="${y(v)}" x2="${W - R}" y2="${y(v)}" stroke="#ddd"/>`)
  }
  shown.forEach((t, i) => {
    const color = colors[i % colors.length]
    parts.push(`<polyline fill="none" stroke="${color}" stroke-width="2" points="${t.points.map(p => `${x(p.c).toFixed(1)},${y(p.goodput).toFixed(1)}`).join(' ')}"/>`)
    parts.push(`<text x="${W - R + 10}" y="${T + 16 * i + 10}" fill="${color}">${t.name}</text>`)
  })
  parts.push(`<text x="${(L + W - R) / 2}" y="${H - 10}" text-anchor="middle">connections (c)</text>`, '</svg>')
  return parts.join('\n') + '\n'
}

const load = loadavg().map(l => l.toFixed(2)).join(' ')
try {
  if (spawnSync(WRK, ['--version']).error !== undefined) throw new Error(`${WRK} is missing: apt-get install wrk`)
  if (wanted.has('raw')) targets.push({ name: 'raw Node http', url: await rawServer(), points: [] })
  if (wanted.has('workerd')) {
    const w = await workerdServer()
    if (typeof w === 'string') targets.push({ name: 'workerd', url: w, points: [] })
    else {
      process.stderr.write(`\n*** workerd SKIPPED: ${w.skipped} ***\n\n`)
      targets.push({ name: 'workerd', skipped: w.skipped, points: [] })
    }
  }
  // one devnet at a time: both on the same cores would measure each other
  for (const [key, name, dev] of [['gvisor', 'devnet gVisor', false], ['dev', 'devnet dev executor', true]] as const) {
    if (!wanted.has(key)) continue
    const started = performance.now()
    try {
      const d = await devnet(key, dev)
      const t: Target = { name, url: d.url, startup: d.startup, points: [] }
      process.stderr.write(`${name}: first request after ready ${d.startup.firstMs.toFixed(1)} ms (${d.startup.path}; ${d.startup.timing})\n`)
      process.stderr.write(`${name}: up in ${((performance.now() - started) / 1000).toFixed(1)} s\n`)
      targets.push(t)
      measure(t)
    } catch (err) {
      // a devnet that does not come up is a row of the report, said loudly, not a lost run
      process.stderr.write(`\n*** ${name} FAILED: ${(err as Error).message} ***\n\n`)
      targets.push({ name, skipped: `FAILED: ${(err as Error).message.split('\n')[0]}`, points: [] })
    }
    await children.pop()?.stop()
  }
  for (const t of targets) if (t.points.length === 0 && t.skipped === undefined) measure(t)

  const raw = targets.find(t => t.name === 'raw Node http')
  const at = (t: Target | undefined, c: number): Point | undefined => t?.points.find(p => p.c === c)
  const lines: string[] = []
  lines.push(`Machine: ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, Node ${process.versions.node}, wrk ${spawnSync(WRK, ['--version'], { encoding: 'utf8' }).stdout.split('\n')[0].split(' ')[1] ?? ''}; load average at start ${load}; ${duration} s per point; ${values.workers} workers per devnet.`)
  if (smoke) lines.push('', `**SMOKE RUN (${duration} s per point): these figures are not results.**`)
  lines.push('', '| target | c | req/s | goodput 2xx/s | p50 ms | p99 ms | errors | req/s vs raw Node | added p50 ms |', '|---|---|---|---|---|---|---|---|---|')
  for (const t of targets) {
    if (t.skipped !== undefined) { lines.push(`| ${t.name} | — | ${t.skipped.startsWith('FAILED') ? t.skipped : `SKIPPED: ${t.skipped}`} | | | | | | |`); continue }
    for (const c of [1, 32, 128]) {
      const p = at(t, c)
      const r = at(raw, c)
      if (p === undefined) continue
      lines.push(`| ${t.name} | ${c} | ${p.rps.toFixed(0)} | ${p.goodput.toFixed(0)} | ${p.p50.toFixed(2)} | ${p.p99.toFixed(2)} | ${p.errors} | ${r === undefined ? 'n/a' : ratio(p.rps, r.rps)} | ${r === undefined ? 'n/a' : (p.p50 - r.p50).toFixed(2)} |`)
    }
  }
  lines.push('', 'Saturation sweep (goodput, 2xx req/s, by connections):', '', `| target | ${sweep.map(c => `c=${c}`).join(' | ')} | peak | saturation c | goodput at 4× saturation c | vs peak | errors there |`, `|---|${sweep.map(() => '---').join('|')}|---|---|---|---|---|`)
  for (const t of targets) {
    if (t.skipped !== undefined || t.overload === undefined) continue
    const o = t.overload
    lines.push(`| ${t.name} | ${sweep.map(c => at(t, c)?.goodput.toFixed(0) ?? '').join(' | ')} | ${o.peak.toFixed(0)} | ${o.satC} | ${o.goodput.toFixed(0)} (c=${o.c}) | ${ratio(o.goodput, o.peak)} | ${o.errors} |`)
  }
  const started = targets.filter(t => t.startup !== undefined)
  if (started.length > 0) {
    lines.push('', 'Start-up (`peerhost devnet` until it prints its URLs) and the first request after that:', '', '| target | ready in s | CPU of the devnet process, s | first request ms | status, path | Server-Timing |', '|---|---|---|---|---|---|')
    for (const t of started) {
      const s = t.startup!
      lines.push(`| ${t.name} | ${(s.readyMs / 1000).toFixed(1)} | ${s.cpuMs === undefined ? 'n/a' : (s.cpuMs / 1000).toFixed(1)} | ${s.firstMs.toFixed(1)} | ${s.path} | ${s.timing.replace(/\|/g, '/')} |`)
    }
  }
  lines.push('', '![goodput by connections](bench-http.svg)')
  const report = lines.join('\n')
  console.log(`\n${report}\n`)
  if (!values['no-write']) {
    const doc = join(root, 'docs/benchmarks.md')
    const text = readFileSync(doc, 'utf8')
    const begin = '<!-- bench:http:begin -->'
    const end = '<!-- bench:http:end -->'
    const i = text.indexOf(begin)
    const j = text.indexOf(end)
    if (i < 0 || j < i) throw new Error(`docs/benchmarks.md has no ${begin} … ${end} section to write into`)
    writeFileSync(doc, `${text.slice(0, i + begin.length)}\n${report}\n${text.slice(j)}`)
    writeFileSync(join(root, 'docs/bench-http.svg'), svg(targets))
    console.log('written: docs/benchmarks.md (bench:http section), docs/bench-http.svg')
  }
} finally {
  for (const c of children.reverse()) await c.stop()
  rmSync(dir, { recursive: true, force: true })
}
