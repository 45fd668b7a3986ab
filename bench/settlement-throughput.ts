/**
 * What settlement costs the mesh path (issue 11: at most 5 % of throughput), on vs off in one run
 * (`node bench/dispatch.ts --settlement`). Two networks as bench:dispatch builds them (a bootstrap
 * node, a gateway and `workers` workers, each its own `peerhost` process on 127.0.0.1, dev
 * executor, `examples/hello` served from its folder), the same code path:
 *
 * - **on**: a local Hardhat chain (the devnet's settlement times: 15 s epochs, a block every
 *   second), gateway and workers staked with `--contracts`; workers ask 0.00001 per request, so
 *   every ticket carries a real fee; the gateway checks the project's escrow allowance and logs
 *   every ticket it signs (SQLite WAL); each worker logs every receipt (SQLite WAL, group commit)
 *   and its settler builds, publishes, commits and finalizes batches while the load runs;
 * - **off**: no chain: fee 0, no allowance, no ticket log, no settler. The worker's receipt log
 *   stays: it is the defence against equivocation (issue 9), on whatever the price.
 *
 * Both networks run at once; rounds alternate which is measured first (drift of the shared machine
 * hits both alike). Each round: `concurrency` keep-alive loops for `seconds` (bench/lib.ts `load`).
 * Besides req/s, each round records the CPU time (user+sys, /proc) of the measured network's
 * gateway and worker processes per request: on a machine shared with other work, CPU per request
 * moves much less than req/s. Before its load, each round measures the network idle for as long
 * (what gossip, chain polling and the settler's and checker's ticks burn), and reports the CPU a
 * request adds above that. The chain (its own process) is not counted: a real node talks to a
 * remote RPC.
 */
import { readFileSync, rmSync } from 'node:fs'
import { cpus, loadavg } from 'node:os'
import { join, resolve } from 'node:path'
import { settlementAbi } from '#contracts'
import { loadEvmAccount } from '#node'
import { startTestNetwork, status, waitFor, type TestNetwork } from '../test/helpers/network.ts'
import { startTestChain, type TestChain } from '../test/chain/helpers.ts'
import { fundProject } from '../test/chain/settlement-helpers.ts'
import { devnetSettlementParams } from '../bin/commands/devnet.ts'
import { fmt, load, type LoadResult } from './lib.ts'

const root = resolve(import.meta.dirname, '..')
/** the devnet's price (bin/commands/devnet.ts DEV_PRICE), in native currency */
const PRICE = '0.00001'

export interface SettlementThroughputInit {
  workers: number
  rounds: number
  seconds: number
  concurrency: number
}

/** user+sys CPU ms of one process (/proc/<pid>/stat fields 14 and 15, in clock ticks of 10 ms). */
function cpuMs (pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(fields[11]) + Number(fields[12])) * 10
}

interface Mode {
  name: 'on' | 'off'
  net: TestNetwork
  url: string
  rounds: Array<LoadResult & { cpuMsPerRequest: number, marginalCpuMsPerRequest: number, idleCpuPercent: number }>
  /** per round: idle CPU (ms per ms) of the gateway, then each worker */
  idleByProcess: number[][]
}

function median (xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 === 1 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2
}

/** The gateway's and workers' CPU ms so far (the bootstrap node idles). */
function networkCpu (net: TestNetwork): number {
  return [net.gateway, ...net.workers].reduce((sum, p) => sum + cpuMs(p.proc.pid!), 0)
}

async function ready (name: 'on' | 'off', net: TestNetwork, workers: number): Promise<Mode> {
  await waitFor(`every worker in the ${name} gateway's view`, async () => (await status(net)).workers.length === workers, 60_000)
  const fn = net.functions.find(u => u.endsWith('/hello/hello'))
  if (fn === undefined) throw new Error(`network ${name}: no hello function among ${JSON.stringify(net.functions)}`)
  const url = `${fn}?name=world`
  // the mode is what it claims: answered by a worker over the mesh, paid (or not) as the mode says
  const res = await fetch(url)
  const body = await res.text()
  const receipt = res.headers.get('x-peerhost-receipt')
  if (res.status !== 200 || receipt === null) throw new Error(`network ${name}: ${res.status} ${body} (no worker receipt)`)
  const fee = BigInt(JSON.parse(Buffer.from(receipt, 'base64url').toString()).fee)
  if ((name === 'on') !== (fee > 0n)) throw new Error(`network ${name}: the receipt's fee is ${fee} wei`)
  return { name, net, url, rounds: [], idleByProcess: [] }
}

export async function settlementThroughput (init: SettlementThroughputInit): Promise<void> {
  const modes: Mode[] = []
  const nets: TestNetwork[] = []
  let chain: TestChain | undefined
  const load0 = loadavg()[0]
  const wall0 = performance.now()
  const hello = join(root, 'examples/hello')
  try {
    chain = await startTestChain(devnetSettlementParams(15))
    const c = chain
    await c.rpc('evm_setIntervalMining', [1000])
    await c.registerProject('hello', ['hello', 'echo'])
    // one after the other: two start-ups at once would only slow each other
    const onNet = await startTestNetwork({
      workers: init.workers,
      projects: [hello],
      owner: c.deployer,
      gatewayArgs: ['--contracts', c.contractsFile],
      async gatewayArgsFor (dataDir) { await c.fund(loadEvmAccount(dataDir).address); return ['--stake', '1'] },
      async workerArgsFor (_i, dataDir) {
        await c.fund(loadEvmAccount(dataDir).address)
        // the gateway serves examples/hello from its folder (registered with a dummy manifest)
        return ['--contracts', c.contractsFile, '--stake', '1', '--price', PRICE, '--unsafe-skip-registry-check']
      }
    })
    nets.push(onNet)
    // the builder's escrow and the gateway's allowance, as `peerhost escrow deposit/allow` (devnet amounts)
    await fundProject(c, (await onNet.gateway.ready).address, 50n * 10n ** 18n, 10n ** 18n, 'hello')
    modes.push(await ready('on', onNet, init.workers))
    const offNet = await startTestNetwork({ workers: init.workers, projects: [hello] })
    nets.push(offNet)
    modes.push(await ready('off', offNet, init.workers))
    for (const m of modes) await load(m.url, 4, 400, 10) // warm-up: JIT, connections, every worker
    for (let r = 0; r < init.rounds; r++) {
      for (const m of r % 2 === 0 ? modes : [...modes].reverse()) {
        // idle first: what the network burns with no request (gossip, chain polling, settler and
        // checker ticks), so the CPU a request adds can be told from the background
        const procs = [m.net.gateway, ...m.net.workers]
        const each0 = procs.map(p => cpuMs(p.proc.pid!))
        const t0 = performance.now()
        await new Promise(resolve => setTimeout(resolve, init.seconds * 1000))
        const idleMs = performance.now() - t0
        const each = procs.map((p, i) => (cpuMs(p.proc.pid!) - each0[i]) / idleMs)
        const idlePerMs = each.reduce((a, b) => a + b, 0)
        m.idleByProcess.push(each)
        const c0 = networkCpu(m.net)
        const res = await load(m.url, init.concurrency, Number.MAX_SAFE_INTEGER, init.seconds)
        const cpu = networkCpu(m.net) - c0
        const n = Math.max(1, res.requests)
        const marginal = Math.max(0, cpu - idlePerMs * res.seconds * 1000) / n
        m.rounds.push({ ...res, cpuMsPerRequest: cpu / n, marginalCpuMsPerRequest: marginal, idleCpuPercent: idlePerMs * 100 })
        process.stderr.write(`round ${r + 1} settlement ${m.name}: ${fmt(res.rps, 0)} req/s, p50 ${fmt(res.p50)} ms, p99 ${fmt(res.p99)} ms, errors ${res.errors}, gateway + workers CPU ${fmt(cpu / n, 3)} ms/request (${fmt(marginal, 3)} above idle; idle ${fmt(idlePerMs * 100, 1)} % of a core)\n`)
      }
    }
    const [on, off] = modes
    const rps = (m: Mode): number => median(m.rounds.map(x => x.rps))
    const cpu = (m: Mode): number => median(m.rounds.map(x => x.cpuMsPerRequest))
    const p50 = (m: Mode): number => median(m.rounds.map(x => x.p50))
    const p99 = (m: Mode): number => median(m.rounds.map(x => x.p99))
    const errors = (m: Mode): number => m.rounds.reduce((s, x) => s + x.errors, 0)
    console.log(`machine: ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, Node ${process.versions.node}; load average at start ${load0.toFixed(2)}; ${init.workers} workers per network (dev executor); ${init.rounds} rounds of ${init.seconds} s at concurrency ${init.concurrency}, alternating`)
    const marginal = (m: Mode): number => median(m.rounds.map(x => x.marginalCpuMsPerRequest))
    const idle = (m: Mode): number => median(m.rounds.map(x => x.idleCpuPercent))
    console.log('| settlement | median req/s | per round req/s | median p50 ms | median p99 ms | errors | gateway + workers CPU ms per request | of which above idle | idle CPU, % of a core |')
    console.log('|---|---:|---|---:|---:|---:|---:|---:|---:|')
    for (const m of modes) {
      console.log(`| ${m.name} | ${fmt(rps(m), 0)} | ${m.rounds.map(x => fmt(x.rps, 0)).join(', ')} | ${fmt(p50(m))} | ${fmt(p99(m))} | ${errors(m)} | ${fmt(cpu(m), 3)} | ${fmt(marginal(m), 3)} | ${fmt(idle(m), 1)} |`)
    }
    for (const m of modes) {
      const byProc = m.idleByProcess[0].map((_, i) => median(m.idleByProcess.map(r => r[i])) * 100)
      console.log(`idle CPU with settlement ${m.name} (median, % of a core): gateway ${fmt(byProc[0], 1)}, workers ${byProc.slice(1).map(x => fmt(x, 1)).join(', ')}`)
    }
    console.log(`\nthroughput on / off: ${fmt(100 * rps(on) / rps(off), 1)} % (cost ${fmt(100 - 100 * rps(on) / rps(off), 1)} %); CPU per request on / off: ${fmt(100 * cpu(on) / cpu(off), 1)} %; above idle: ${fmt(100 * marginal(on) / marginal(off), 1)} % (medians)`)
    // settlement really ran beside the load: batches of the measured epochs were committed
    const committed = await chain.publicClient.getContractEvents({ address: chain.addresses.Settlement, abi: settlementAbi, eventName: 'BatchCommitted', fromBlock: 0n })
    const settled = committed.reduce((n, e) => n + Number((e.args as { count: number }).count), 0)
    console.log(`settlement during the run: ${committed.length} batches committed, ${settled} requests in them (batches of the last epochs commit after the bench stops)`)
    const self = process.cpuUsage()
    console.log(`bench: ${((performance.now() - wall0) / 1000).toFixed(0)} s wall; bench process ${((self.user + self.system) / 1e6).toFixed(1)} s CPU (user+sys)`)
  } finally {
    await Promise.all(nets.map(async n => await n.stop()))
    await chain?.stop()
    if (chain !== undefined) rmSync(chain.dir, { recursive: true, force: true })
  }
}
