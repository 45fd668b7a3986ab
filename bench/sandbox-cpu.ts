/**
 * `npm run bench:sandbox-cpu`: what one execution costs the machine under gVisor (ptrace), with the
 * shim's default Node flags and without them, in the same run.
 *
 * The devnet's throughput is bound by CPU, and most of it is gVisor's: the Sentry and the ptrace
 * stub processes (not this process) pay for every system call the sandboxed Node makes. So this
 * reads the whole machine's CPU time (/proc/stat) around a loop of executions of hello in one warm
 * sandbox, next to this process's own, for each flag set, one execution at a time (c=1) and four
 * at once (the pool's concurrency per sandbox). Run it on a quiet machine: other work on the cores
 * counts too.
 *
 * `--strace` also counts the system calls the sandbox makes per execution (runsc `--strace`;
 * counts do not depend on machine load, timings under strace mean nothing).
 *
 * `--candidate="<flags>"` compares the default flags with the default plus these (a flag being
 * considered) instead of no flags with the default.
 *
 *   node bench/sandbox-cpu.ts [--iterations 600] [--strace] [--candidate="--flag …"]
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { gvisorExecutor, type GvisorExecutor } from '#sandbox'
import { bundle, HELLO, job } from './hello-job.ts'
import { DEFAULT_NODE_FLAGS } from '../sandbox/gvisor/executor.ts'

const { values } = parseArgs({ options: { iterations: { type: 'string', default: '600' }, strace: { type: 'boolean', default: false }, candidate: { type: 'string' } } })
const N = Number(values.iterations)
if (!Number.isInteger(N) || N < 50) throw new Error(`--iterations must be an integer ≥ 50; got ${values.iterations}`)

const hello = bundle(HELLO)

/** CPU time of the whole machine so far, ms (user, nice, system, irq, softirq, steal) */
function machineMs (): number {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number)
  return (f[0] + f[1] + f[2] + f[5] + f[6] + f[7]) * 1000 / 100
}

async function run (ex: GvisorExecutor, n: number, c: number): Promise<{ perSec: number, p50: number, p99: number, hostMs: number, machineMs: number }> {
  const lat: number[] = []
  let left = n
  const m0 = machineMs()
  const c0 = process.cpuUsage()
  const t0 = performance.now()
  await Promise.all(Array.from({ length: c }, async () => {
    while (left-- > 0) {
      const s = performance.now()
      const r = await ex.execute(job(hello))
      if ('error' in r && r.error !== undefined) throw new Error(`execution failed: ${JSON.stringify(r.error)}`)
      lat.push(performance.now() - s)
    }
  }))
  const wall = performance.now() - t0
  const cpu = process.cpuUsage(c0)
  const m1 = machineMs()
  lat.sort((a, b) => a - b)
  return { perSec: n / wall * 1000, p50: lat[Math.floor(n / 2)], p99: lat[Math.floor(n * 0.99)], hostMs: (cpu.user + cpu.system) / 1000 / n, machineMs: (m1 - m0) / n }
}

/** system calls per execution in the sandbox's boot log (runsc --strace), between two instants */
function syscalls (logDir: string, from: number, to: number, n: number): { total: number, byName: Record<string, number> } {
  const hhmmss = (t: number): string => new Date(t).toISOString().slice(11, 23)
  const [a, b] = [hhmmss(from), hhmmss(to)]
  let best: string[] = []
  for (const f of readdirSync(logDir).filter(f => f.endsWith('.boot.txt'))) {
    const lines = readFileSync(join(logDir, f), 'utf8').split('\n').filter(l => / E [a-z_0-9]+\(/.test(l) && (l.split(/\s+/)[1] ?? '') >= a && (l.split(/\s+/)[1] ?? '') <= b)
    if (lines.length > best.length) best = lines
  }
  const byName: Record<string, number> = {}
  for (const l of best) { const name = / E ([a-z_0-9]+)\(/.exec(l)![1]; byName[name] = (byName[name] ?? 0) + 1 }
  for (const k of Object.keys(byName)) byName[k] = Math.round(byName[k] / n * 10) / 10
  return { total: best.length / n, byName }
}

const candidate = values.candidate?.split(/\s+/).filter(f => f !== '')
if (candidate !== undefined && (candidate.length === 0 || candidate.some(f => !f.startsWith('--')))) throw new Error(`--candidate takes Node flags, each starting with --; got ${JSON.stringify(values.candidate)}`)
const defaults = { name: `default (${DEFAULT_NODE_FLAGS.join(' ') || 'none'})`, flags: DEFAULT_NODE_FLAGS }
const sets: Array<{ name: string, flags: string[] }> = candidate === undefined
  ? [{ name: 'no extra flags (baseline)', flags: [] }, defaults]
  : [{ ...defaults, name: `${defaults.name} (baseline)` }, { name: `default + ${candidate.join(' ')}`, flags: [...DEFAULT_NODE_FLAGS, ...candidate] }]
console.log(`gVisor (ptrace) hello, one warm sandbox; ${N} executions per point; load average at start ${loadavg().map(l => l.toFixed(2)).join(' ')}`)
const rows: string[] = []
for (const set of sets) {
  const dataDir = mkdtempSync(join(tmpdir(), 'peerhost-bench-cpu-'))
  const logDir = join(dataDir, 'runsc-log') + '/'
  const ex = gvisorExecutor({ dataDir, genericPoolSize: 0, perFunctionPoolSize: 1, nodeFlags: set.flags, selfTest: false, ...(values.strace ? { runscFlags: ['--strace', `--debug-log=${logDir}`] } : {}) })({})
  try {
    await ex.start()
    for (let i = 0; i < 30; i++) await ex.execute(job(hello))
    await new Promise(resolve => setTimeout(resolve, 500))
    if (values.strace) {
      for (const c of [1, 4]) {
        const from = Date.now()
        const n = 200
        let left = n
        await Promise.all(Array.from({ length: c }, async () => { while (left-- > 0) await ex.execute(job(hello)) }))
        await new Promise(resolve => setTimeout(resolve, 300))
        const s = syscalls(logDir, from, Date.now(), n)
        console.log(`${set.name}, c=${c}: ${s.total.toFixed(1)} system calls per execution in the sandbox: ${JSON.stringify(s.byName)}`)
        await new Promise(resolve => setTimeout(resolve, 1000))
      }
    } else {
      for (const c of [1, 4]) {
        const r = await run(ex, N, c)
        rows.push(`| ${set.name} | ${c} | ${r.perSec.toFixed(0)} | ${r.p50.toFixed(2)} | ${r.p99.toFixed(2)} | ${r.hostMs.toFixed(2)} | ${r.machineMs.toFixed(2)} |`)
        console.log(rows[rows.length - 1])
      }
    }
  } finally {
    await ex.stop()
    rmSync(dataDir, { recursive: true, force: true })
  }
}
if (rows.length > 0) {
  console.log('\n| shim flags | executions at once | executions/s | p50 ms | p99 ms | this process CPU ms/execution | machine CPU ms/execution |\n|---|---|---|---|---|---|---|')
  for (const r of rows) console.log(r)
}
