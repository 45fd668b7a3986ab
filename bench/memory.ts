/**
 * `npm run bench:memory`: memory, measured (issue 10).
 *
 * 1. Per warm gVisor sandbox: a gVisor executor (as a worker runs it) boots its pool; every
 *    sandbox is a `runsc run` process tree (runsc, gofer, sandbox kernel, the Node shim inside).
 *    RSS counts pages shared between sandboxes (the Node binary, runsc) once per process; PSS
 *    (from /proc/<pid>/smaps_rollup) splits shared pages between their users, so PSS per sandbox
 *    is what one more sandbox costs the machine. One of the sandboxes has run examples/hello.
 * 2. Per idle keep-alive HTTP connection on the gateway: a gateway (and the bootstrap node it
 *    needs) in this process, `--max-connections-per-ip` raised past 1,000; another process opens
 *    1,000 connections, sends one request on each and leaves them open and idle. The gateway
 *    process's RSS before and after (after a GC), divided by 1,000.
 *
 *   node --expose-gc bench/memory.ts [--sandboxes 4] [--connections 1000] [--targets sandbox,connections] [--no-write]
 *
 * Figures are written between the bench:memory markers of docs/benchmarks.md.
 */
import { spawn, execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { cpus, loadavg, tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { rawCid } from '#protocol'
import { silentLogger } from '#node'
import { bootstrapOptionsFrom, runBootstrap } from '../bin/commands/bootstrap.ts'
import { gatewayOptionsFrom, runGateway } from '../bin/commands/gateway.ts'

const { values } = parseArgs({
  options: {
    sandboxes: { type: 'string', default: '4' },
    connections: { type: 'string', default: '1000' },
    targets: { type: 'string', default: 'sandbox,connections' },
    'no-write': { type: 'boolean', default: false }
  }
})
const root = resolve(import.meta.dirname, '..')
const dir = mkdtempSync(join(tmpdir(), 'peerhost-bench-memory-'))
const wanted = new Set(values.targets.split(','))
const MiB = 1024 * 1024
const lines: string[] = []

function gc (): void { (globalThis as any).gc?.() }

/** kB fields of /proc/<pid>/smaps_rollup (Rss, Pss), or zeros for a process that is gone. */
function rollup (pid: number): { rss: number, pss: number } {
  try {
    const text = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8')
    const field = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? 0) * 1024
    return { rss: field('Rss'), pss: field('Pss') }
  } catch {
    return { rss: 0, pss: 0 }
  }
}

function childrenOf (): Map<number, number[]> {
  const out = execFileSync('ps', ['-e', '-o', 'pid=,ppid='], { encoding: 'utf8' })
  const children = new Map<number, number[]>()
  for (const line of out.trim().split('\n')) {
    const [p, pp] = line.trim().split(/\s+/).map(Number)
    children.set(pp, [...(children.get(pp) ?? []), p])
  }
  return children
}

function tree (pid: number, children: Map<number, number[]>): number[] {
  return [pid, ...(children.get(pid) ?? []).flatMap(c => tree(c, children))]
}

async function sandboxes (): Promise<void> {
  const { gvisorExecutor } = await import('#sandbox')
  const n = Number(values.sandboxes)
  const executor = gvisorExecutor({ dataDir: join(dir, 'worker'), genericPoolSize: n, perFunctionPoolSize: 1 })({ logger: silentLogger() })
  await executor.start()
  try {
    const bytes = readFileSync(join(root, 'examples/hello/functions/hello.ts'))
    // the example as a CommonJS bundle would be built by deploy; a minimal equivalent handler suffices for memory
    const code = new TextEncoder().encode('module.exports.default = { async fetch (req) { const name = new URL(req.url).searchParams.get("name") ?? "world"; return new Response(`Hello, ${name}!\\n`) } }')
    void bytes
    const bundle = { cid: rawCid(code), bytes: code }
    const res = await executor.execute({ jobId: 'mem', bundle, request: { method: 'GET', url: 'http://x/?name=memory', headers: [], body: new Uint8Array(0) }, env: {}, options: { memoryMb: 128, timeoutMs: 10_000, network: [], isolation: 'function' }, deadline: Date.now() + 30_000 })
    if (res.response === undefined) throw new Error(`the hello execution failed: ${JSON.stringify(res.error)}`)
    if (!await executor.settled(120_000)) throw new Error('the sandbox pool did not settle within 120 s')
    await new Promise(resolve => setTimeout(resolve, 2_000))
    const children = childrenOf()
    const cmdline = (pid: number): string => { try { return readFileSync(`/proc/${pid}/cmdline`, 'utf8') } catch { return '' } }
    const groups = (children.get(process.pid) ?? []).map(pid => ({ pid, args: cmdline(pid) })).filter(g => g.args.includes('runsc') && g.args.includes('\0run\0'))
    const per = groups.map(g => tree(g.pid, children).map(rollup).reduce((a, b) => ({ rss: a.rss + b.rss, pss: a.pss + b.pss }), { rss: 0, pss: 0 }))
    if (per.length === 0) throw new Error('no runsc sandbox processes found under this process')
    const avg = (k: 'rss' | 'pss'): number => per.reduce((a, b) => a + b[k], 0) / per.length
    const max = (k: 'rss' | 'pss'): number => Math.max(...per.map(p => p[k]))
    process.stderr.write(`sandboxes: ${per.length}; per sandbox RSS avg ${(avg('rss') / MiB).toFixed(1)} MiB, PSS avg ${(avg('pss') / MiB).toFixed(1)} MiB\n`)
    lines.push(`| warm gVisor sandbox (runsc + gofer + sentry + Node shim; ${per.length} idle sandboxes, one has run hello) | RSS ${(avg('rss') / MiB).toFixed(1)} MiB avg, ${(max('rss') / MiB).toFixed(1)} max | PSS ${(avg('pss') / MiB).toFixed(1)} MiB avg, ${(max('pss') / MiB).toFixed(1)} max | per sandbox |`)
  } finally {
    await executor.stop()
  }
}

async function connections (): Promise<void> {
  const n = Number(values.connections)
  const log = silentLogger()
  const boot = await runBootstrap(bootstrapOptionsFrom(['--data-dir', join(dir, 'bootstrap'), '--listen', '/ip4/127.0.0.1/tcp/0']), log)
  const gw = await runGateway(gatewayOptionsFrom(['--bootstrap', boot.addrs()[0], '--port', '0', '--data-dir', join(dir, 'gateway'),
    '--project', join(root, 'examples/hello'), '--max-connections-per-ip', String(n * 2), '--max-connections', String(n * 2)]), {}, log)
  try {
    const url = new URL(gw.gateway.url)
    // warm the HTTP path once so lazily built state is in the baseline
    await (await fetch(`${gw.gateway.url}/_peerhost/health`)).text()
    gc(); await new Promise(resolve => setTimeout(resolve, 1_000)); gc()
    const before = process.memoryUsage().rss
    const script = join(dir, 'clients.cjs')
    writeFileSync(script, `
      const net = require('node:net')
      const n = ${n}; let open = 0; const socks = []
      for (let i = 0; i < n; i++) {
        const s = net.connect(${url.port}, '127.0.0.1', () => s.write('GET /_peerhost/health HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\nConnection: keep-alive\\r\\n\\r\\n'))
        let got = false
        s.on('data', () => { if (!got) { got = true; if (++open === n) console.log('open') } })
        s.on('error', e => { console.error('client error', e.message); process.exit(1) })
        socks.push(s)
      }
      setInterval(() => {}, 1000)
    `)
    const clients = spawn(process.execPath, [script], { stdio: ['ignore', 'pipe', 'inherit'] })
    try {
      await new Promise<void>((resolve, reject) => {
        clients.stdout!.on('data', d => { if (String(d).includes('open')) resolve() })
        clients.once('exit', code => reject(new Error(`the client process exited (${code}) before ${n} connections were open`)))
      })
      await new Promise(resolve => setTimeout(resolve, 2_000))
      gc(); await new Promise(resolve => setTimeout(resolve, 1_000)); gc()
      const after = process.memoryUsage().rss
      const per = (after - before) / n
      process.stderr.write(`connections: ${n} idle keep-alive; gateway RSS ${(before / MiB).toFixed(1)} → ${(after / MiB).toFixed(1)} MiB; ${(per / 1024).toFixed(1)} KiB per connection\n`)
      lines.push(`| idle keep-alive HTTP connection on the gateway (${n} open, one request each) | ${(per / 1024).toFixed(1)} KiB | RSS ${(before / MiB).toFixed(0)} → ${(after / MiB).toFixed(0)} MiB | per connection |`)
    } finally {
      clients.kill()
    }
  } finally {
    await gw.stop()
    await boot.stop()
  }
}

const load = loadavg().map(l => l.toFixed(2)).join(' ')
try {
  if ((globalThis as any).gc === undefined) process.stderr.write('note: run with node --expose-gc for GC between readings\n')
  if (wanted.has('sandbox')) await sandboxes()
  if (wanted.has('connections')) await connections()
  const report = [`Machine: ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, Node ${process.versions.node}; load average at start ${load}.`, '',
    '| what | memory | detail | unit |', '|---|---|---|---|', ...lines].join('\n')
  console.log(`\n${report}\n`)
  if (!values['no-write']) {
    const doc = join(root, 'docs/benchmarks.md')
    const text = readFileSync(doc, 'utf8')
    const begin = '<!-- bench:memory:begin -->'
    const end = '<!-- bench:memory:end -->'
    const i = text.indexOf(begin)
    const j = text.indexOf(end)
    if (i < 0 || j < i) throw new Error(`docs/benchmarks.md has no ${begin} … ${end} section to write into`)
    writeFileSync(doc, `${text.slice(0, i + begin.length)}\n${report}\n${text.slice(j)}`)
    console.log('written: docs/benchmarks.md (bench:memory section)')
  }
} finally {
  rmSync(dir, { recursive: true, force: true })
}
process.exit(0)
