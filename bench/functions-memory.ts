/**
 * `npm run bench:functions-memory`: is a worker's memory bounded with many deployed functions?
 * (issue 10: "1,000 deployed functions on one worker").
 *
 * A bootstrap node, a gateway and ONE worker, each its own `peerhost` process on 127.0.0.1 (the
 * test network helper, as bench:sandbox's end-to-end part uses). The gateway serves one generated
 * project of N small functions (`functions/f0001.ts` …): each returns its own text, so every one
 * is a distinct bundle (its own CID, i.e. its own function version on the worker). Every function
 * is called once through the gateway (bounded: `--concurrency` requests in flight), and every
 * `--every` functions the bench samples:
 *  - the worker process's RSS (/proc/<pid>/status VmRSS) and, with gVisor, the PSS of its sandbox
 *    process trees (runsc, gofer, Sentry, the Node shim: /proc/<pid>/smaps_rollup);
 *  - the worker's `peerhost_worker_sandboxes` / `…_booted` gauges (admin /_peerhost/metrics);
 *  - the worker's warm list (admin /_peerhost/status `warm`: the pool's function versions);
 *  - the bundle files on the worker's disk (the in-memory bundle cache is capped at 64 MiB).
 *
 *   node bench/functions-memory.ts [--functions 1000] [--executor gvisor|dev] [--concurrency 4] [--every 100] [--no-write]
 *
 * The gVisor executor boots a sandbox for every new function version (the generic pool hands
 * one over and refills: ~0.5 s of a core per boot), so 1,000 functions with gVisor take long on a
 * shared 2-core machine; `--executor dev` exercises the same worker tables without sandboxes.
 * Figures are written between the bench:functions-memory markers of docs/benchmarks.md, one
 * section per executor.
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { cpus, loadavg, tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { startTestNetwork, waitFor, status } from '../test/helpers/network.ts'
import { descendants } from '../test/helpers/processes.ts'

const { values } = parseArgs({
  options: {
    functions: { type: 'string', default: '1000' },
    executor: { type: 'string', default: 'gvisor' },
    concurrency: { type: 'string', default: '4' },
    every: { type: 'string', default: '100' },
    'no-write': { type: 'boolean', default: false }
  }
})
const N = Number(values.functions)
const C = Number(values.concurrency)
const EVERY = Number(values.every)
const kind = values.executor
if (!Number.isInteger(N) || N < 1) throw new Error(`--functions must be a positive integer, got ${values.functions}`)
if (kind !== 'gvisor' && kind !== 'dev') throw new Error(`--executor must be gvisor or dev, got ${kind}`)
const root = resolve(import.meta.dirname, '..')
const MiB = 1024 * 1024
const startLoad = loadavg().map(l => l.toFixed(1)).join(' ')
const cpuAtStart = process.cpuUsage()

const dir = mkdtempSync(join(tmpdir(), 'peerhost-bench-fnmem-'))
const project = join(dir, 'many')
mkdirSync(join(project, 'functions'), { recursive: true })
const names = Array.from({ length: N }, (_, i) => `f${String(i + 1).padStart(4, '0')}`)
const functions: Record<string, object> = {}
for (const name of names) {
  writeFileSync(join(project, 'functions', `${name}.ts`), `export default { async fetch () { return new Response('${name}\\n') } }\n`)
  functions[name] = { timeoutMs: 5000, memoryMb: 128 }
}
writeFileSync(join(project, 'peerhost.json'), JSON.stringify({ name: 'many', functions }, null, 2))

function rollup (pid: number): number {
  try {
    return Number(/^Pss:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'))?.[1] ?? 0) * 1024
  } catch { return 0 }
}
function rssOf (pid: number): number {
  try { return Number(/^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) * 1024 } catch { return 0 }
}
/** PSS of every process below `pid` (the sandboxes' runsc trees), and how many trees hang off it */
function descendantsPss (pid: number): { pss: number, processes: number } {
  const all = descendants(pid)
  return { pss: all.reduce((a, p) => a + rollup(p), 0), processes: all.length }
}
function dirBytes (path: string): { files: number, bytes: number } {
  let files = 0
  let bytes = 0
  const walk = (p: string): void => {
    let list: string[]
    try { list = readdirSync(p) } catch { return }
    for (const name of list) {
      const q = join(p, name)
      const s = statSync(q)
      if (s.isDirectory()) walk(q)
      else { files++; bytes += s.size }
    }
  }
  walk(path)
  return { files, bytes }
}
function gauge (text: string, name: string): number {
  return Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN)
}

interface Sample { called: number, rss: number, sandboxPss: number, processes: number, sandboxes: number, booted: number, warm: number, bundleFiles: number, bundleBytes: number, errors: number, seconds: number }
const samples: Sample[] = []
let errors = 0
let firstError = ''
const started = performance.now()

const tBuild = performance.now()
const net = await startTestNetwork({ workers: 1, projects: [project], workerArgs: kind === 'dev' ? ['--unsafe-dev-executor'] : [] })
const buildS = (performance.now() - tBuild) / 1000
try {
  const worker = net.workers[0]
  const pid = worker.proc.pid!
  const admin: string = net.workerInfo[0].admin
  if (admin === undefined) throw new Error('the worker printed no admin URL in its ready line')
  const urls = new Map(net.functions.map(u => [u.split('/').at(-1)!, u]))
  if (urls.size !== N) throw new Error(`the gateway serves ${urls.size} functions, expected ${N}`)
  await waitFor('the worker in the gateway view', async () => (await status(net)).workers.length === 1, 60_000)

  const sample = async (called: number): Promise<void> => {
    const metrics = await (await fetch(`${admin}/_peerhost/metrics`)).text()
    const st = await (await fetch(`${admin}/_peerhost/status`)).json() as { warm?: string[] }
    const sb = descendantsPss(pid)
    const disk = dirBytes(join(net.dir, 'worker-1', 'bundles'))
    const s: Sample = { called, rss: rssOf(pid), sandboxPss: sb.pss, processes: sb.processes, sandboxes: gauge(metrics, 'peerhost_worker_sandboxes'), booted: gauge(metrics, 'peerhost_worker_sandboxes_booted'), warm: st.warm?.length ?? NaN, bundleFiles: disk.files, bundleBytes: disk.bytes, errors, seconds: (performance.now() - started) / 1000 }
    samples.push(s)
    process.stderr.write(`${called}/${N}: worker RSS ${(s.rss / MiB).toFixed(1)} MiB, sandboxes ${s.sandboxes} (booted ${s.booted}, PSS ${(s.sandboxPss / MiB).toFixed(0)} MiB in ${s.processes} processes), warm ${s.warm}, bundles on disk ${s.bundleFiles}, errors ${errors}, ${s.seconds.toFixed(0)} s\n`)
  }

  await sample(0)
  let next = 0
  let done = 0
  let nextSample = EVERY
  await Promise.all(Array.from({ length: C }, async () => {
    while (next < N) {
      const name = names[next++]
      try {
        const res = await fetch(urls.get(name)!, { signal: AbortSignal.timeout(60_000) })
        const text = await res.text()
        if (res.status !== 200 || text !== `${name}\n`) throw new Error(`${name}: ${res.status} ${text.slice(0, 120)}`)
      } catch (err) {
        errors++
        if (firstError === '') firstError = String((err as Error).message ?? err)
      }
      done++
      if (done >= nextSample) { nextSample += EVERY; await sample(done) }
    }
  }))
  if (samples.at(-1)!.called !== N) await sample(N)
  // the pool refills and evicts in the background: the settled state is what stays
  await new Promise(resolve => setTimeout(resolve, 5_000))
  await sample(N)
} finally {
  await net.stop()
  rmSync(dir, { recursive: true, force: true })
}

const cpu = process.cpuUsage(cpuAtStart)
const last = samples.at(-1)!
const mid = samples.find(s => s.called >= N / 2) ?? last
const f = (n: number, d = 1): string => Number.isFinite(n) ? n.toFixed(d) : 'n/a'
/** a gauge the dev executor does not have prints as — */
const n = (v: number): string => Number.isFinite(v) ? String(v) : '—'
const report = [
  `Machine: ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, Node ${process.versions.node}; load average at start ${startLoad}, at end ${loadavg().map(l => l.toFixed(1)).join(' ')}. ` +
  `Command: \`node bench/functions-memory.ts --functions ${N} --executor ${kind} --concurrency ${C}\`; project of ${N} functions built and network started in ${f(buildS)} s; ` +
  `${N} calls in ${f(last.seconds - 5 - samples[0].seconds, 0)} s, ${errors} errors${firstError === '' ? '' : ` (first: ${firstError.slice(0, 160)})`}; bench process CPU ${f((cpu.user + cpu.system) / 1e6)} s.`,
  '',
  '| functions called | worker RSS MiB | sandboxes alive | sandboxes booted | sandbox trees PSS MiB | warm versions advertised | bundle files on disk | errors |',
  '|---:|---:|---:|---:|---:|---:|---:|---:|',
  ...samples.map((s, i) => `| ${s.called}${i === samples.length - 1 ? ' (+5 s settled)' : ''} | ${f(s.rss / MiB)} | ${n(s.sandboxes)} | ${n(s.booted)} | ${kind === 'dev' ? '—' : f(s.sandboxPss / MiB, 0)} | ${n(s.warm)} | ${s.bundleFiles} (${f(s.bundleBytes / 1024, 0)} KiB) | ${s.errors} |`),
  '',
  `Worker RSS from half-way (${mid.called} functions) to the end: ${f(mid.rss / MiB)} → ${f(last.rss / MiB)} MiB (${f((last.rss - mid.rss) / MiB)} MiB over ${last.called - mid.called} more functions); ` +
  `highest sample in the first half ${f(Math.max(...samples.filter(s => s.called <= mid.called).map(s => s.rss)) / MiB)} MiB, in the second half ${f(Math.max(...samples.filter(s => s.called > mid.called).map(s => s.rss)) / MiB)} MiB ` +
  '(RSS moves with V8\'s garbage collection in the worker process, which the bench cannot trigger: read the trend, not one sample).'
].join('\n')
console.log(`\n${report}\n`)
if (!values['no-write']) {
  const doc = join(root, 'docs/benchmarks.md')
  const text = readFileSync(doc, 'utf8')
  const begin = `<!-- bench:functions-memory:${kind}:begin -->`
  const end = `<!-- bench:functions-memory:${kind}:end -->`
  const i = text.indexOf(begin)
  const j = text.indexOf(end)
  if (i < 0 || j < i) throw new Error(`docs/benchmarks.md has no ${begin} … ${end} section to write into`)
  writeFileSync(doc, `${text.slice(0, i + begin.length)}\n${report}\n${text.slice(j)}`)
  console.log(`written: docs/benchmarks.md (bench:functions-memory:${kind} section)`)
}
process.exit(errors === 0 ? 0 : 1)
