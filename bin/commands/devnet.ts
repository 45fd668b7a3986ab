import { mkdirSync, readFileSync, rmSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { Command } from '@commander-js/extra-typings'
import pino from 'pino'
import type { Executor, GvisorExecutor } from '#sandbox'
import { formatEther, type Hex } from 'viem'
import { createLogger, loadContracts, LOCAL_CHAIN_ESCROW, NODE_DEFAULTS, NodeError, type Logger } from '../light.ts'
import type { LocalChain } from '../deps.ts'
import { absolute, collect, intOption, onShutdown, say, userCacheDir } from '../util.ts'
import { bootstrapOptionsFrom, runBootstrap } from './bootstrap.ts'
import { gatewayOptionsFrom, runGateway, type RunningGateway } from './gateway.ts'
import { chooseExecutor, runWorker, workerOptionsFrom, type RunningWorker } from './worker.ts'
import { recordSelfTestKey, selfTestKey, selfTestProven } from '../self-test-cache.ts'
import { checkPorts } from '../ports.ts'
import { DEFAULT_DEVNET_DIR, removeDevnetInfo, writeDevnetInfo } from '../devnet-file.ts'
import { DEVNET_WALLET_DOMAIN, walletOrigin, walletOriginLines } from '../devnet-origins.ts'

const EXAMPLES = resolve(import.meta.dirname, '..', '..', 'examples', 'hello')
/** what devnet gives each local key: plenty for stakes, deploys and fallback fees */
const DEV_BALANCE = 10n ** 21n // 1,000 ETH
/** each worker's stake on the local chain (native currency) */
const DEV_STAKE = '1'
/** each worker's price per request on the local chain (native currency): every devnet request is paid through Settlement */
const DEV_PRICE = '0.00001'

/**
 * The sandbox pool targets of each devnet worker: one idle generic sandbox and one per function
 * instead of the executor's defaults (two and two), which are sized for a worker with a machine of
 * its own. The devnet runs three workers on one machine, often two cores. By the pool's rules the
 * defaults boot about 8 sandboxes per worker (2 generic, their refills, a second per function);
 * these, about 3.
 * The devnet used to go back to the defaults 10 s after its ready line: those 9 background boots
 * stalled the requests running beside them for 10–15 s (bench:http, docs/benchmarks.md "Boots
 * beside executions"), so it keeps these.
 * Nor does a worker take a second sandbox of a function (maxSandboxesPerFunction 1): three
 * workers' hello each in two sandboxes, six sandboxes of one core's quota on two cores, served
 * 300-330 executions per second against 450-510 with one each (docs/benchmarks.md, "System calls
 * per execution, and boots under load"); past a sandbox's concurrency a request waits for a slot.
 */
const DEVNET_POOL = { genericPoolSize: 1, perFunctionPoolSize: 1, maxSandboxesPerFunction: 1 } as const

/**
 * Settlement's times on the devnet, from its epoch length: one commit window and one challenge
 * window of two epochs each, so a request's batch is built, committed and finalized about
 * 4–5 epochs after it (a minute at the default 15 s), while `peerhost earnings` shows each step.
 */
export function devnetSettlementParams (epochSeconds: number): { epochLength: bigint, commitWindow: bigint, challengeWindow: bigint } {
  const e = BigInt(epochSeconds)
  return { epochLength: e, commitWindow: 2n * e, challengeWindow: 2n * e }
}

/**
 * The builder funds the escrow of every deployed project and lets the devnet's gateway spend it,
 * as `peerhost deploy` does on a local chain (node/escrow `fundOnLocalChain`; by hand:
 * `peerhost escrow deposit` and `peerhost escrow allow`): without it the gateway answers 402
 * (workers ask a price on the devnet).
 */
async function fundProjects (contractsFile: string, builderKeyFile: string, gateway: `0x${string}`, workers: Array<`0x${string}`>, functionUrls: string[]): Promise<string[]> {
  const { chainClient, fundOnLocalChain, loadContracts } = await import('../deps.ts')
  const { privateKeyToAccount } = await import('viem/accounts')
  const { settlementAbi } = await import('#contracts')
  const { projectId } = await import('#protocol')
  const client = chainClient(loadContracts(contractsFile), privateKeyToAccount(readFileSync(builderKeyFile, 'utf8').trim() as `0x${string}`))
  // URLs are <gateway>/<wallet>/<project>/<function>
  const projects = [...new Set(functionUrls.map(projectName))]
  for (const project of projects) {
    await fundOnLocalChain(client, project, gateway)
    // each lane's batch ring paid once (Settlement.prepareBatchSlots, free on this chain), so every
    // commit rewrites a slot instead of creating one, as a long-lived lane's do (docs/chain.md)
    for (const worker of workers) {
      await client.send({ address: client.contracts.addresses.Settlement, abi: settlementAbi, functionName: 'prepareBatchSlots', args: [worker, projectId(client.account!.address, project), gateway] })
    }
  }
  return projects
}

/** Funds an address on the local Hardhat chain (a development-only RPC method). */
async function fund (rpcUrl: string, address: string): Promise<void> {
  const res = await fetch(rpcUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'hardhat_setBalance', params: [address, `0x${DEV_BALANCE.toString(16)}`] })
  })
  const body = await res.json() as { error?: { message: string } }
  if (body.error !== undefined) throw new NodeError('DEVNET_FUND_FAILED', `could not fund ${address} on the local chain: ${body.error.message}`)
}

/**
 * A block every second besides one per transaction: Settlement reads `block.timestamp`, and a
 * Hardhat chain that mines only on transactions keeps an idle head minutes old, so a commit
 * simulated against it would still see the epoch as running (a public chain makes blocks anyway).
 */
async function mineEverySecond (rpcUrl: string): Promise<void> {
  const res = await fetch(rpcUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'evm_setIntervalMining', params: [1000] })
  })
  const body = await res.json() as { error?: { message?: string } }
  if (body.error !== undefined) throw new NodeError('DEVNET_CHAIN', `the local chain refused interval mining: ${body.error.message ?? 'unknown error'}`)
}

/** A log file per node, as when each ran as its own process (asynchronous writes: logging stays off the hot path). */
function nodeLogger (logDir: string, name: string): Logger {
  return createLogger({ level: process.env.PEERHOST_LOG_LEVEL ?? 'info', base: { node: name }, destination: pino.destination({ dest: join(logDir, `${name}.log`), sync: false, mkdir: true }) })
}

/** This process's child processes (Linux); empty where /proc does not say. */
function childPids (): string[] {
  try {
    return readFileSync(`/proc/${process.pid}/task/${process.pid}/children`, 'utf8').trim().split(/\s+/).filter(p => p !== '')
  } catch {
    return []
  }
}

async function until (what: () => boolean, timeoutMs: number, error: () => NodeError): Promise<void> {
  const end = Date.now() + timeoutMs
  while (!what()) {
    if (Date.now() > end) throw error()
    await new Promise(resolve => setTimeout(resolve, 25))
  }
}

/**
 * Calls each function through the gateway, in rounds of as many requests at once as there are
 * workers, until every worker has answered it over the mesh (not the chain), or a round reached no
 * new worker: the gateway prefers the workers it measured fastest, so one it stopped choosing does
 * not get the first request either. On every worker that answered, the bundle is fetched and
 * verified, the registry check has seen it and a sandbox has run it; the gateway has measured every
 * worker it would choose. Then waits until every worker's sandbox pool is refilled (no boot in
 * flight). Only then are the URLs printed: the first request finds a warm sandbox.
 */
async function warmUp (urls: string[], workers: RunningWorker[], timeoutMs = 300_000): Promise<{ requests: number, workers: number }> {
  const deadline = Date.now() + timeoutMs
  const all = workers.length
  let requests = 0
  let least = all
  await Promise.all(urls.map(async url => {
    const served = new Set<string>()
    let last = ''
    for (let round = 1; served.size < all; round++) {
      if (Date.now() > deadline) throw new NodeError('DEVNET_NOT_WARM', `${url} was not answered over the mesh within ${timeoutMs / 1000} s (last: ${last}); see the logs`)
      const before = served.size
      await Promise.all(Array.from({ length: all }, async () => {
        requests++
        try {
          const res = await fetch(url, { headers: { 'x-peerhost-warmup': '1' }, signal: AbortSignal.timeout(90_000) })
          await res.arrayBuffer()
          const worker = res.headers.get('x-peerhost-worker') ?? ''
          if (res.ok && worker !== '' && res.headers.get('x-peerhost-path') !== 'chain') served.add(worker)
          else last = `HTTP ${res.status}${res.headers.get('x-peerhost-path') === 'chain' ? ' through the chain' : ''}`
        } catch (err: any) {
          last = err?.message ?? String(err)
        }
      }))
      if (served.size > 0 && served.size === before && round >= 3) break
    }
    least = Math.min(least, served.size)
  }))
  for (const w of workers) {
    const ex = w.executor as Executor & { settled?: (timeoutMs?: number) => Promise<boolean> }
    if (ex.settled !== undefined && !await ex.settled(Math.max(1_000, deadline - Date.now()))) {
      throw new NodeError('DEVNET_NOT_WARM', `worker ${w.worker.peerId.toString()} did not refill its sandbox pool within ${timeoutMs / 1000} s; see its log`)
    }
  }
  return { requests, workers: least }
}

function projectName (url: string | undefined): string {
  return url === undefined ? '<project>' : (new URL(url).pathname.split('/')[2] ?? '<project>')
}

export function devnetCommand (): Command<any, any> {
  return new Command('devnet')
    .description('run a local network on 127.0.0.1: a Hardhat chain with the contracts (its own process), one bootstrap node, one gateway and N staked workers (in this process, each with its own keys, libp2p node and log), with examples/hello and any --project deployed as `peerhost deploy` deploys')
    .option('--port <port>', 'gateway HTTP port', intOption('--port', 0, 65535), 8080)
    .option('--chain-port <port>', 'local chain JSON-RPC port', intOption('--chain-port', 1, 65535), 8545)
    .option('--workers <n>', 'number of workers', intOption('--workers', 1, 32), 3)
    .option('--project <dir...>', 'also deploy these project folders', collect, [] as string[])
    .option('--data-dir <dir>', 'where the network keeps its state (the chain is new on every run; state derived from a previous run\'s chain is discarded)', DEFAULT_DEVNET_DIR)
    .option('--no-chain', 'no chain: the gateway serves the projects straight from their folders (no deploy, no stake)')
    .option('--settlement-epoch <seconds>', 'Settlement\'s epoch on the local chain, in seconds (commit and challenge windows are two epochs each): batches commit and finalize within a few epochs of a request', intOption('--settlement-epoch', 5, 3600), 15)
    .option('--unsafe-dev-executor', 'run functions in node:vm instead of gVisor (NOT a security boundary)')
    .option('--json', 'print machine-readable lines')
    .action(async (opts) => {
      const { loadSigner, startLocalChain, deployProject, prewarmCached } = await import('../deps.ts')
      const t0 = performance.now()
      const dataDir = absolute(opts.dataDir)
      const logDir = join(dataDir, 'logs')
      const withChain = opts.chain !== false
      // every port this command binds itself is checked before anything starts (libp2p ports are 0)
      await checkPorts([
        ...(withChain ? [{ flag: '--chain-port', port: opts.chainPort, what: 'the local chain\'s JSON-RPC' }] : []),
        { flag: '--port', port: opts.port, what: 'the gateway\'s HTTP' }
      ])
      mkdirSync(logDir, { recursive: true })
      const builderDir = join(dataDir, 'builder')
      const builder = loadSigner(builderDir)
      // every node runs in this process (as `peerhost bootstrap|gateway|worker` would run it, from
      // the same flags, each with its own keys, libp2p node, data dir and log file); sandboxes are
      // runsc processes. Stopped all at once, the chain last.
      const running: Array<{ stop: () => Promise<void> }> = []
      // the gVisor executors the devnet starts before their workers (each worker stops its own too)
      const executors: GvisorExecutor[] = []
      let chain: LocalChain | undefined
      // stops a chain still starting when another part fails first (or on Ctrl-C)
      const starting = new AbortController()
      const stop = async (): Promise<void> => {
        starting.abort(new NodeError('DEVNET_STOPPED', 'the devnet is stopping'))
        removeDevnetInfo(dataDir)
        // the nodes stop at once (each waits for its own in-flight work, and a worker for its
        // sandboxes' runsc kill + delete: one after another, three gVisor workers on a loaded
        // machine outlasted the 15 s shutdown limit); then the executors started before their worker
        const nodes = running.splice(0)
        await Promise.allSettled(nodes.map(async r => { await r.stop() }))
        await Promise.allSettled(executors.splice(0).map(async e => { await e.stop() }))
        await chain?.stop()
        // the in-process deploy bundled with esbuild, whose service is a child process: stop it too,
        // so nothing this devnet started outlives it
        await (await import('esbuild')).stop().catch(() => {})
        // stop() kills esbuild without waiting for it: give Node a moment to reap it (an unreaped
        // child outlives this process as a zombie where PID 1 does not reap orphans)
        for (let i = 0; i < 50 && childPids().length > 0; i++) await new Promise(resolve => setTimeout(resolve, 20))
      }
      onShutdown(stop)
      // the start-up timeline: every step and the nodes' own phases, each with its duration and
      // when it ended (ms since the command started); printed as `devnet: <phase> <ms>` lines
      const timeline: Array<{ phase: string, ms: number, at: number }> = []
      const mark = (phase: string, ms: number): void => { timeline.push({ phase, ms, at: Math.round(performance.now() - t0) }) }
      const timed = async <T>(phase: string, p: Promise<T>): Promise<T> => {
        const t = performance.now()
        const v = await p
        mark(phase, Math.round(performance.now() - t))
        return v
      }
      const tty = process.stdout.isTTY === true && opts.json !== true
      /** runs one start-up step, printing it with its time (as `peerhost deploy` does) */
      async function step<T> (id: string, title: string, fn: () => Promise<T>, detail?: (v: T) => string): Promise<T> {
        const t = performance.now()
        if (tty) process.stdout.write(`  … ${title}\n`)
        try {
          const v = await fn()
          const ms = Math.round(performance.now() - t)
          mark(id, ms)
          const d = detail?.(v)
          if (opts.json === true) process.stdout.write(`${JSON.stringify({ event: 'step', step: id, status: 'done', title, detail: d, ms, at: Math.round(performance.now() - t0) })}\n`)
          else process.stdout.write(`${tty ? '\x1b[1A\x1b[2K' : ''}  ✔ ${title}${d !== undefined ? `: ${d}` : ''} (${ms} ms)\n`)
          return v
        } catch (err: any) {
          const ms = Math.round(performance.now() - t)
          if (opts.json === true) process.stdout.write(`${JSON.stringify({ event: 'step', step: id, status: 'failed', title, detail: err?.message, ms })}\n`)
          else process.stdout.write(`  ✖ ${title} (${ms} ms)\n`)
          throw err
        }
      }
      if (opts.json !== true) process.stdout.write(`Starting a PeerHost devnet in ${dataDir} (logs in ${logDir})\n`)
      try {
        let contractsArgs: string[] = []
        let contractsFile = ''
        const workerDirs = Array.from({ length: opts.workers }, (_, i) => join(dataDir, `worker-${i + 1}`))
        const gatewayDir = join(dataDir, 'gateway')
        if (withChain) {
          // a fresh chain every run: the previous run's chain-bound state goes (the receipt logs
          // once none of their tickets can be presented again: bin/devnet-chain-logs.ts)
          const { resetChainLogs } = await import('../devnet-chain-logs.ts')
          const reset = resetChainLogs({ gateways: [gatewayDir], workers: workerDirs })
          if ('kept' in reset && opts.json !== true) {
            process.stdout.write(`  (the previous run's receipt logs are kept: written ${Math.round((Date.now() - reset.lastWriteMs) / 1000)} s ago, their tickets can be presented until ${new Date(reset.safeAtMs).toISOString()} and stay refused; its receipts are never settled on this chain)\n`)
          }
        }
        // Every worker's sandboxes (runsc checks, rootfs, the first pool boots) start while the chain
        // starts: they need nothing from it. The gVisor self-test proves this machine (runsc,
        // cgroups, rootfs), not a worker: it runs once, in worker 1's executor, before the others
        // start; every worker then finds the proof (bin/self-test-cache.ts). A later devnet on the
        // same boot skips it too.
        const gvisor = opts.unsafeDevExecutor !== true
        const sandboxes = gvisor
          ? (async () => {
              // one rootfs for every worker (read-only in every sandbox): one copy of Node, built once
              const rootfsDir = join(dataDir, 'sandbox')
              // each worker's own copy, from devnets before the rootfs was shared
              for (const d of workerDirs) rmSync(join(d, 'sandbox', 'rootfs'), { recursive: true, force: true })
              const key = await selfTestKey(workerDirs[0], undefined, undefined, rootfsDir)
              const proven = selfTestProven(key)
              const start = async (i: number): Promise<GvisorExecutor> => {
                const selfTest = i === 0 && !proven
                // the workers' Node side runs on this process's one thread: every worker's sandboxes
                // together weigh as much as it when both want the CPU (not each worker's as much)
                const logger = nodeLogger(logDir, `worker-${i + 1}`)
                const executor = await chooseExecutor(false, workerDirs[i], NODE_DEFAULTS.workerCapacity, logger, { selfTest, rootfsDir, sandboxCpuShares: Math.round(1024 / workerDirs.length), ...DEVNET_POOL }) as GvisorExecutor
                executors.push(executor)
                await timed(`worker-${i + 1}.sandbox`, executor.start())
                // the functions this worker served in the previous run boot now, beside the chain's
                // start and ahead of the generic sandbox (the warm-up's requests need them)
                void prewarmCached(workerDirs[i], executor, logger).catch(() => {})
                return executor
              }
              // unproven: worker 1 proves the machine before the others start without the probes
              const first = proven ? undefined : await start(0)
              if (!proven) recordSelfTestKey(key)
              const all = await Promise.all(workerDirs.map(async (_, i) => i === 0 && first !== undefined ? first : await start(i)))
              return { executors: all, proven }
            })()
          : Promise.resolve(undefined)
        sandboxes.catch(() => {})
        // the chain (compile, node, contracts), the bootstrap node and the sandboxes need nothing from each other: all at once
        const [localChain, boot, started] = await Promise.all([
          withChain
            ? step('chain', 'Start the local chain and deploy the contracts', async () => {
              // a fresh chain every run: whatever a node kept from a previous run's chain is discarded by its keys (chain id, genesis, addresses)
              // its own process (`hardhat node`): in this process, the nodes' start-up work would hold up its JSON-RPC answers
              chain = await startLocalChain({ port: opts.chainPort, dataDir: join(dataDir, 'chain'), artifactCache: userCacheDir('contract-artifacts'), signal: starting.signal, params: devnetSettlementParams(opts.settlementEpoch), onPhase: (p, ms) => { mark(`chain.${p}`, ms) } })
              await mineEverySecond(chain.rpcUrl)
              return chain
            }, c => `${c.rpcUrl}, chain id ${c.chainId}`)
            : Promise.resolve(undefined),
          step('bootstrap', 'Start the bootstrap node', async () => {
            const node = await runBootstrap(bootstrapOptionsFrom(['--data-dir', join(dataDir, 'bootstrap'), '--listen', '/ip4/127.0.0.1/tcp/0']), nodeLogger(logDir, 'bootstrap'))
            running.push(node)
            return node
          }, n => n.addrs()[0] ?? ''),
          gvisor
            ? step('sandbox', `Start the gVisor sandboxes of ${opts.workers} worker${opts.workers === 1 ? '' : 's'}`, async () => await sandboxes, p => p === undefined || p.proven ? 'self-test already proven on this boot' : 'self-test passed')
            : Promise.resolve(undefined)
        ])
        const addrs = boot.addrs()
        const bootstrap = addrs.join(',')
        if (localChain !== undefined) {
          contractsFile = join(dataDir, 'chain', 'contracts.json')
          contractsArgs = ['--contracts', contractsFile]
          // each node stakes (and the builder deploys) from its own key: give every key funds, at once
          await step('fund', 'Fund the builder, gateway and worker keys', async () => {
            await Promise.all([builderDir, gatewayDir, ...workerDirs].map(async d => await fund(localChain.rpcUrl, loadSigner(d).address)))
          })
        }
        const projects = [EXAMPLES, ...opts.project.map(p => absolute(p))]
        const gatewayArgs = ['--bootstrap', bootstrap, '--port', String(opts.port), '--data-dir', gatewayDir, '--domain', DEVNET_WALLET_DOMAIN, ...contractsArgs]
        // with a chain the gateway stakes too, so it can publish its secret key (peerhost secret put)
        if (withChain) gatewayArgs.push('--stake', DEV_STAKE)
        else gatewayArgs.push('--owner', builder.address, ...projects.flatMap(p => ['--project', p]))
        // workers (stake, bind) and the gateway (stake, registry) start at once
        const workersStarted = step('workers', `Start ${opts.workers} worker${opts.workers === 1 ? '' : 's'} (${withChain ? 'stake, bind' : 'mesh'})`, async () => await Promise.all(workerDirs.map(async (workerDir, i) => {
          const args = ['--bootstrap', bootstrap, '--data-dir', workerDir, ...contractsArgs]
          if (withChain) args.push('--stake', DEV_STAKE, '--price', DEV_PRICE)
          if (opts.unsafeDevExecutor === true) args.push('--unsafe-dev-executor')
          const w = await runWorker(workerOptionsFrom(args), { executor: started?.executors[i], onPhase: (p, ms) => { mark(`worker-${i + 1}.${p}`, ms) } }, nodeLogger(logDir, `worker-${i + 1}`))
          running.push(w)
          return w
        })))
        const gatewayStarted = step('gateway', 'Start the gateway', async () => {
          const g: RunningGateway = await runGateway(gatewayOptionsFrom(gatewayArgs), { onPhase: (p, ms) => { mark(`gateway.${p}`, ms) } }, nodeLogger(logDir, 'gateway'))
          running.push(g)
          return g
        }, g => g.gateway.url)
        // every worker in the gateway's view (staked and admitted): before that, requests would go to fewer workers, or to the chain
        const admitted = Promise.all([workersStarted, gatewayStarted]).then(async ([workers, gw]) => await step('admit', 'Gateway admits every worker', async () => {
          // the devnet knows where its workers listen: the gateway dials them as it dials the
          // bootstrap node, so their adverts reach it directly instead of only through the
          // bootstrap node's gossip relay (under load that relay has left a worker unseen for minutes)
          const { multiaddr } = await import('@multiformats/multiaddr')
          await Promise.allSettled(workers.flatMap(w => w.worker.addrs().slice(0, 1).map(async a => await gw.gateway.libp2p.dial(multiaddr(a), { signal: AbortSignal.timeout(30_000) }))))
          await until(() => gw.gateway.view.size() >= opts.workers, 180_000, () => new NodeError('DEVNET_NOT_READY', `the gateway did not see all ${opts.workers} workers within 180 s; see the worker logs in ${logDir}`))
        }))
        // the deploy needs the gateway and the chain, not the workers: it runs while they stake and join
        const deployed = gatewayStarted.then(async (gw): Promise<string[]> => {
          if (!withChain) return gw.urls
          // deployed exactly as \`peerhost deploy\` deploys (the same deployProject: bundle, upload to the
          // gateway, register on chain with the builder's key, wait until the gateway serves it)
          const key = readFileSync(join(builderDir, 'evm.key'), 'utf8').trim() as Hex
          const contracts = loadContracts(contractsFile)
          const urls = (await step('deploy', `Deploy ${projects.length === 1 ? 'examples/hello' : `${projects.length} projects`} as \`peerhost deploy\` does`,
            async () => await Promise.all(projects.map(async p => (await deployProject({ source: p, gateway: gw.gateway.url, contracts, account: key })).functions.map(f => f.url))),
            r => `${r.flat().length} functions`)).flat()
          // before the first request: workers ask DEV_PRICE, and the gateway signs no unpaid ticket
          const gatewayAddress = loadSigner(gatewayDir).address
          await step('escrow', 'Fund each project\'s escrow, allow the gateway (`peerhost escrow deposit/allow`) and prepare its workers\' batch slots',
            async () => await fundProjects(contractsFile, join(builderDir, 'evm.key'), gatewayAddress, workerDirs.map(d => loadSigner(d).address), urls),
            p => `${p.join(', ')}: ${formatEther(LOCAL_CHAIN_ESCROW.deposit)} deposited, ${formatEther(LOCAL_CHAIN_ESCROW.perEpoch)} per epoch`)
          return urls
        })
        for (const p of [workersStarted, gatewayStarted, admitted, deployed]) p.catch(() => {})
        const [workers, gw, functions] = await Promise.all([workersStarted, gatewayStarted, deployed, admitted])
        const gwUrl = gw.gateway.url
        // URLs are printed only once each function has been answered by every worker over the mesh
        // and every sandbox pool is refilled (on a quiet machine seconds; under heavy load the first
        // bundle fetch over bitswap can take minutes)
        await step('warm', 'Warm every function on every worker through the mesh', async () => await warmUp(functions, workers), r => `${r.requests} requests; each function warm on ${r.workers === workers.length ? 'every worker' : `at least ${r.workers} of ${workers.length} workers (the ones the gateway chooses)`}`)
        const devnetFile = withChain
          ? writeDevnetInfo({ pid: process.pid, dataDir, chainId: chain!.chainId, rpcUrl: chain!.rpcUrl, contracts: contractsFile, gateway: gwUrl, builder: builder.address, builderKeyFile: join(builderDir, 'evm.key'), startedAt: new Date().toISOString() })
          : undefined
        const hello = functions.find(u => u.endsWith('/hello')) ?? functions[0]
        const readyMs = Math.round(performance.now() - t0)
        // CPU this process spent starting (every node, the chain, the deploy; not the runsc sandboxes):
        // wall time depends on what else runs on the machine, CPU much less
        const cpu = process.cpuUsage()
        const cpuMs = Math.round((cpu.user + cpu.system) / 1000)
        if (opts.json !== true) {
          const width = Math.max(...timeline.map(e => e.phase.length))
          process.stdout.write(timeline.sort((a, b) => (a.at - a.ms) - (b.at - b.ms)).map(e => `devnet: ${e.phase.padEnd(width)} ${String(e.ms).padStart(6)} ms  (${e.at - e.ms}–${e.at} ms)\n`).join(''))
        }
        say(opts, [
          `PeerHost devnet is up in ${(readyMs / 1000).toFixed(1)} s, ${(cpuMs / 1000).toFixed(1)} s of CPU (state in ${dataDir}, logs in ${logDir})`,
          withChain ? `  chain      ${chain!.rpcUrl} (chain id ${chain!.chainId}; contracts in ${contractsFile})` : '  chain      none (--no-chain)',
          `  bootstrap  ${addrs[0]}`,
          `  gateway    ${gwUrl}   status: ${gwUrl}/_peerhost/status`,
          `  workers    ${opts.workers}${opts.unsafeDevExecutor === true ? ' (unsafe dev executor)' : ' (gVisor)'}${withChain ? `, each staked ${DEV_STAKE}, price ${DEV_PRICE} per request` : ''}`,
          ...(withChain ? [`  settlement ${opts.settlementEpoch} s epochs: each request is paid from the project's escrow through a worker's batch, committed and finalized about a minute later`] : []),
          `  builder    ${builder.address} (key in ${join(builderDir, 'evm.key')})`,
          ...(devnetFile !== undefined ? [`  devnet     ${devnetFile}: \`peerhost deploy\`, \`peerhost secret\` and \`peerhost wallet fund\` find this devnet by it`] : []),
          '',
          'Functions:',
          ...functions.map(u => `  ${u}`),
          ...walletOriginLines(functions),
          '',
          'Try:',
          `  curl '${hello}?name=PeerHost'`,
          ...(functions.some(u => u.endsWith('/echo')) ? [`  npx peerhost ws ${functions.find(u => u.endsWith('/echo'))!.replace(/^http/, 'ws')}   # a WebSocket session: type lines, Ctrl-D ends it; then checks the worker's signed receipt`] : []),
          ...(withChain ? [`  curl -H 'x-peerhost-mode: onchain' '${hello}?name=chain'   # through ExecutionCoordinator`] : []),
          ...(withChain ? ['  npx peerhost deploy <your project folder>   # uses this devnet\'s chain, gateway and builder key'] : []),
          ...(withChain ? [`  printf 'from a secret' | PEERHOST_PRIVATE_KEY=$(cat ${join(builderDir, 'evm.key')}) npx peerhost secret put hello GREETING --gateway ${gwUrl} --contracts ${contractsFile}   # then: curl ${functions.find(u => u.endsWith('/echo')) ?? hello}`] : []),
          ...(withChain ? [
            '',
            'Watch settlement (batches per epoch, pending, withdrawable; add --withdraw to pay out):',
            `  npx peerhost earnings --data-dir ${workerDirs[0]} --contracts ${contractsFile}`,
            `  npx peerhost escrow show ${projectName(hello)} --wallet ${builder.address} --gateway ${gwUrl} --contracts ${contractsFile}`
          ] : []),
          'Press Ctrl-C to stop.'
        ].join('\n'), { event: 'ready', role: 'devnet', gateway: gwUrl, bootstrap: addrs, functions, origins: functions.map(f => walletOrigin(f)), builder: builder.address, dataDir, chain: chain?.rpcUrl, contracts: withChain ? contractsFile : undefined, devnetFile, readyMs, cpuMs, timeline })
      } catch (err) {
        await stop()
        throw err
      }
    })
}
