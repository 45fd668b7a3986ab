/**
 * `npm run bench:fallback`: end-to-end latency of the chain fallback, in blocks and seconds, on a
 * local Hardhat chain (`hardhat node`) with automining and with 2-second blocks. Real processes: a
 * bootstrap node, two staked workers (dev executor, hello function), a gateway asked with
 * `x-peerhost-mode: onchain` and a gateway whose job streams are cut (the same gateway composed in
 * this process with a job dialer that fails, so the mesh fails first and the fallback follows). Blocks are counted from the block holding
 * `requestExecution` to the one holding `ExecutionFinalized`; seconds are client-side, HTTP request
 * to response.
 *
 *   node bench/fallback.ts [--requests 10] [--interval-requests 5]
 */
import { cpus } from 'node:os'
import { join, resolve } from 'node:path'
import { rmSync } from 'node:fs'
import { parseArgs } from 'node:util'
import type { Address } from 'viem'
import { loadEvmAccount } from '#node'
import { runGateway } from '../bin/commands/gateway.ts'
import { startTestNetwork, status, waitFor } from '../test/helpers/network.ts'
import { startTestChain } from '../test/chain/helpers.ts'

const { values } = parseArgs({ options: { requests: { type: 'string', default: '10' }, 'interval-requests': { type: 'string', default: '5' } } })
const root = resolve(import.meta.dirname, '..')

interface Sample { seconds: number, blocks: number, path: string }

function summary (xs: number[]): string {
  const s = [...xs].sort((a, b) => a - b)
  const p50 = s[Math.floor(s.length / 2)]
  const mean = s.reduce((a, b) => a + b, 0) / s.length
  return `p50 ${p50.toFixed(2)}, mean ${mean.toFixed(2)}, max ${s[s.length - 1].toFixed(2)}`
}

const chain = await startTestChain()
await chain.registerProject('hello', ['hello'])
const net = await startTestNetwork({
  workers: 2,
  projects: [join(root, 'examples/hello')],
  owner: chain.deployer,
  // every request comes from 127.0.0.1: lift the per-IP chain budget (default 10 per minute) for the benchmark
  gatewayArgs: ['--contracts', chain.contractsFile, '--log-level', 'warn', '--chain-rate-limit', '100000/1'],
  async workerArgsFor (_i, dataDir) {
    await chain.fund(loadEvmAccount(dataDir).address, '100')
    return ['--contracts', chain.contractsFile, '--stake', '1', '--unsafe-skip-registry-check']
  }
})
const cut = await runGateway({
  bootstrap: net.bootstrapAddrs, port: 0, host: '127.0.0.1', listen: [], announce: [], dataDir: join(net.dir, 'gateway-cut'),
  project: [join(root, 'examples/hello')], owner: chain.deployer, contracts: chain.contractsFile, fallbackPay: 'auto', logLevel: 'warn', chainRateLimit: '100000/1'
}, { dial: async () => { throw new Error('no route to the worker (partition)') } })
try {
  await chain.fund((await net.gateway.ready).address as Address, '100')
  await chain.fund(cut.address, '100')
  const onchainUrl = net.functions.find(u => u.endsWith('/hello/hello'))!
  const cutUrl = cut.urls.find(u => u.endsWith('/hello/hello'))!
  await waitFor('both workers in the view', async () => (await status(net)).workers.length === 2 ? true : undefined, 20_000)
  await waitFor('both workers in the cut gateway view', () => cut.gateway.view.size() === 2 ? true : undefined, 20_000)

  async function one (url: string, headers: Record<string, string>, i: number): Promise<Sample> {
    const t0 = performance.now()
    const res = await fetch(`${url}?name=B${i}`, { headers })
    const body = await res.text()
    const seconds = (performance.now() - t0) / 1000
    if (res.status !== 200 || body !== `Hello, B${i}!\n`) throw new Error(`bad answer ${res.status}: ${body}`)
    return { seconds, blocks: Number(res.headers.get('x-peerhost-chain-blocks')), path: res.headers.get('x-peerhost-path') ?? '' }
  }

  async function series (label: string, n: number): Promise<string[]> {
    const rows: string[] = []
    for (const [what, url, headers] of [['x-peerhost-mode: onchain', onchainUrl, { 'x-peerhost-mode': 'onchain' }], ['mesh cut (partition)', cutUrl, {}]] as const) {
      const samples: Sample[] = []
      for (let i = 0; i < n; i++) samples.push(await one(url, headers, i))
      if (samples.some(s => s.path !== 'chain')) throw new Error('an answer did not come from the chain')
      rows.push(`| ${label} | ${what} | ${n} | ${summary(samples.map(s => s.blocks))} | ${summary(samples.map(s => s.seconds))} |`)
      process.stderr.write(`${rows[rows.length - 1]}\n`)
    }
    return rows
  }

  // warm-up: bundle fetch, JIT
  await one(onchainUrl, { 'x-peerhost-mode': 'onchain' }, 0)
  const rows = [...await series('automine', Number(values.requests))]
  await chain.rpc('evm_setAutomine', [false])
  await chain.rpc('evm_setIntervalMining', [2000])
  rows.push(...await series('2 s blocks', Number(values['interval-requests'])))

  const cpu = cpus()[0]?.model ?? 'unknown CPU'
  console.log(`\nchain fallback, redundancy 2 (two staked workers), ${cpus().length} × ${cpu}, Node ${process.version}\n`)
  console.log('| chain | request | n | blocks (request → finalized) | seconds (client) |')
  console.log('|---|---|---|---|---|')
  for (const r of rows) console.log(r)
} finally {
  await cut.stop()
  await net.stop()
  await chain.stop()
  rmSync(chain.dir, { recursive: true, force: true })
}
