/**
 * `npm run bench:dispatch`: requests through gateway → mesh → worker (dev executor, hello
 * function) at concurrency 1 and 32, against a raw Node `http` hello server measured in the same
 * run. Prints p50/p99 latency, req/s and the ratios to raw Node.
 *
 *   node bench/dispatch.ts [--requests 2000] [--workers 2]
 *
 * `--settlement` measures instead what settlement costs the mesh path (issue 11: at most 5 %), on
 * vs off in one run (bench/settlement-throughput.ts):
 *
 *   node bench/dispatch.ts --settlement [--rounds 4] [--seconds 8] [--concurrency 8] [--workers 2]
 */
import { spawn } from 'node:child_process'
import { cpus } from 'node:os'
import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { startTestNetwork, status, waitFor } from '../test/helpers/network.ts'
import { fmt, load, type LoadResult } from './lib.ts'

const { values } = parseArgs({
  options: {
    requests: { type: 'string', default: '2000' },
    workers: { type: 'string', default: '2' },
    settlement: { type: 'boolean', default: false },
    rounds: { type: 'string', default: '4' },
    seconds: { type: 'string', default: '8' },
    concurrency: { type: 'string', default: '8' }
  }
})
if (values.settlement) {
  const { settlementThroughput } = await import('./settlement-throughput.ts')
  await settlementThroughput({ workers: Number(values.workers), rounds: Number(values.rounds), seconds: Number(values.seconds), concurrency: Number(values.concurrency) })
  process.exit(0)
}
const N = Number(values.requests)
const root = resolve(import.meta.dirname, '..')

// raw Node http hello server in its own process, like the gateway
const raw = spawn(process.execPath, ['-e', `
  const http = require('node:http')
  const s = http.createServer((req, res) => { res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' }); res.end('Hello, world!\\n') })
  s.listen(0, '127.0.0.1', () => console.log(s.address().port))
`], { stdio: ['ignore', 'pipe', 'inherit'] })
const rawPort = await new Promise<number>(resolve => raw.stdout!.once('data', d => resolve(Number(String(d).trim()))))
const rawUrl = `http://127.0.0.1:${rawPort}/`

const net = await startTestNetwork({ workers: Number(values.workers), projects: [join(root, 'examples/hello')] })
const hello = net.functions.find(u => u.endsWith('/hello/hello'))!
try {
  await waitFor('every worker in the gateway view', async () => (await status(net)).workers.length === Number(values.workers), 20_000)
  // warm up both paths (bundle fetch, JIT, connections)
  await load(rawUrl, 4, 500)
  await load(hello, 4, 300)

  const rows: Array<[string, LoadResult, LoadResult]> = []
  for (const c of [1, 32]) {
    const r = await load(rawUrl, c, c === 1 ? N : N * 4)
    const g = await load(hello, c, c === 1 ? N : N * 4)
    rows.push([`c=${c}`, r, g])
  }
  console.log(`machine: ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, Node ${process.versions.node}, workers ${values.workers} (dev executor)`)
  // errors: answers other than 200 and failed requests, for each side (latencies count successes only)
  console.log('| concurrency | raw p50 ms | raw p99 ms | raw req/s | raw errors | peerhost p50 ms | peerhost p99 ms | peerhost req/s | peerhost errors | added p50 ms | added p99 ms | throughput ratio |')
  console.log('|---|---|---|---|---|---|---|---|---|---|---|---|')
  for (const [name, r, g] of rows) {
    console.log(`| ${name} | ${fmt(r.p50)} | ${fmt(r.p99)} | ${fmt(r.rps, 0)} | ${r.errors} | ${fmt(g.p50)} | ${fmt(g.p99)} | ${fmt(g.rps, 0)} | ${g.errors} | ${fmt(g.p50 - r.p50)} | ${fmt(g.p99 - r.p99)} | ${fmt(100 * g.rps / r.rps, 1)} % |`)
  }
} finally {
  await net.stop()
  raw.kill()
}
