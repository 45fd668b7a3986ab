import { spawn } from 'node:child_process'
import { mkdirSync, readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { Command } from '@commander-js/extra-typings'
import { NodeError } from '../light.ts'
import type { LocalChain } from '../deps.ts'
import { CLI, spawnPeerhost, type NodeProcess } from '../spawn.ts'
import { absolute, collect, intOption, onShutdown, say } from '../util.ts'
import { checkPorts } from '../ports.ts'
import { DEFAULT_DEVNET_DIR, removeDevnetInfo, writeDevnetInfo } from '../devnet-file.ts'

const EXAMPLES = resolve(import.meta.dirname, '..', '..', 'examples', 'hello')
/** what devnet gives each local key: plenty for stakes, deploys and fallback fees */
const DEV_BALANCE = 10n ** 21n // 1,000 ETH
/** each worker's stake on the local chain (native currency) */
const DEV_STAKE = '1'

async function stopAll (children: NodeProcess[]): Promise<void> {
  await Promise.all(children.map(async c => await c.stop()))
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

/** Runs `peerhost deploy` as its own process, exactly as a builder would; resolves with the function URLs. */
async function deploy (dir: string, gateway: string, contractsFile: string, builderKey: string, logDir: string): Promise<string[]> {
  const proc = spawn(process.execPath, [CLI, 'deploy', dir, '--gateway', gateway, '--contracts', contractsFile, '--json'], {
    env: { ...process.env, PEERHOST_PRIVATE_KEY: builderKey },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let stdout = ''
  let stderr = ''
  proc.stdout!.on('data', d => { stdout += d })
  proc.stderr!.on('data', d => { stderr += d })
  const code = await new Promise<number | null>(resolve => proc.once('exit', resolve))
  if (code !== 0) throw new NodeError('DEVNET_DEPLOY_FAILED', `deploying ${dir} failed: ${stderr.trim().split('\n').pop() ?? `exit ${code}`}`)
  const urls: string[] = []
  for (const line of stdout.split('\n')) {
    try {
      const msg = JSON.parse(line)
      for (const f of msg.functions ?? []) if (typeof f.url === 'string') urls.push(f.url)
    } catch {}
  }
  void logDir
  return urls
}

async function untilGatewaySees (gateway: string, workers: number, timeoutMs = 180_000): Promise<void> {
  const until = Date.now() + timeoutMs
  while (Date.now() < until) {
    try {
      const status = await (await fetch(`${gateway}/_peerhost/status`)).json() as { workers?: unknown[] }
      if ((status.workers?.length ?? 0) >= workers) return
    } catch {}
    await new Promise(resolve => setTimeout(resolve, 100))
  }
  throw new NodeError('DEVNET_NOT_READY', `the gateway did not see all ${workers} workers within ${timeoutMs / 1000} s; see the worker logs`)
}

/**
 * Calls each function once through the gateway until a worker answers it over the mesh, so its
 * sandbox is warm and the gateway has loaded it before the URLs are printed: the first request a
 * builder makes then neither waits for a pool nor goes to the chain.
 */
async function warmUp (urls: string[], timeoutMs = 300_000): Promise<void> {
  const until = Date.now() + timeoutMs
  await Promise.all(urls.map(async url => {
    let last = ''
    while (Date.now() < until) {
      try {
        const res = await fetch(url, { headers: { 'x-peerhost-warmup': '1' }, signal: AbortSignal.timeout(90_000) })
        await res.arrayBuffer()
        if ((res.headers.get('x-peerhost-worker') ?? '') !== '' && res.headers.get('x-peerhost-path') !== 'chain') return
        last = `HTTP ${res.status}${res.headers.get('x-peerhost-path') === 'chain' ? ' through the chain' : ''}`
      } catch (err: any) {
        last = err?.message ?? String(err)
      }
      await new Promise(resolve => setTimeout(resolve, 100))
    }
    throw new NodeError('DEVNET_NOT_WARM', `${url} was not answered by a worker over the mesh within ${timeoutMs / 1000} s (last: ${last}); see the logs`)
  }))
}

export function devnetCommand (): Command<any, any> {
  return new Command('devnet')
    .description('run a local network on 127.0.0.1: a Hardhat chain with the contracts, one bootstrap node, one gateway and N staked workers (each its own process), with examples/hello and any --project deployed through `peerhost deploy`')
    .option('--port <port>', 'gateway HTTP port', intOption('--port', 0, 65535), 8080)
    .option('--chain-port <port>', 'local chain JSON-RPC port', intOption('--chain-port', 1, 65535), 8545)
    .option('--workers <n>', 'number of workers', intOption('--workers', 1, 32), 3)
    .option('--project <dir...>', 'also deploy these project folders', collect, [] as string[])
    .option('--data-dir <dir>', 'where the network keeps its state (the chain is new on every run; state derived from a previous run\'s chain is discarded)', DEFAULT_DEVNET_DIR)
    .option('--no-chain', 'no chain: the gateway serves the projects straight from their folders (no deploy, no stake)')
    .option('--unsafe-dev-executor', 'run functions in node:vm instead of gVisor (NOT a security boundary)')
    .option('--json', 'print machine-readable lines')
    .action(async (opts) => {
      const { loadSigner, startLocalChain } = await import('../deps.ts')
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
      const children: NodeProcess[] = []
      let chain: LocalChain | undefined
      let stopped = false
      // stops a chain still starting when another part fails first (or on Ctrl-C)
      const starting = new AbortController()
      const stop = async (): Promise<void> => {
        stopped = true
        starting.abort(new NodeError('DEVNET_STOPPED', 'the devnet is stopping'))
        removeDevnetInfo(dataDir)
        await stopAll(children)
        await chain?.stop()
      }
      onShutdown(stop)
      const tty = process.stdout.isTTY === true && opts.json !== true
      /** runs one start-up step, printing it with its time (as `peerhost deploy` does) */
      async function step<T> (id: string, title: string, fn: () => Promise<T>, detail?: (v: T) => string): Promise<T> {
        const t = performance.now()
        if (tty) process.stdout.write(`  … ${title}\n`)
        try {
          const v = await fn()
          const ms = Math.round(performance.now() - t)
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
        // the chain (compile, node, contracts) and the bootstrap node need nothing from each other: start both at once
        const boot = spawnPeerhost('bootstrap', ['bootstrap', '--data-dir', join(dataDir, 'bootstrap'), '--listen', '/ip4/127.0.0.1/tcp/0'], logDir)
        children.push(boot)
        const [localChain, addrs] = await Promise.all([
          withChain
            ? step('chain', 'Start the local chain and deploy the contracts', async () => {
              // a fresh chain every run: whatever a node kept from a previous run's chain is discarded by its keys (chain id, genesis, addresses)
              chain = await startLocalChain({ port: opts.chainPort, dataDir: join(dataDir, 'chain'), signal: starting.signal })
              return chain
            }, c => `${c.rpcUrl}, chain id ${c.chainId}`)
            : Promise.resolve(undefined),
          step('bootstrap', 'Start the bootstrap node', async () => (await boot.ready).addrs as string[], a => a[0] ?? '')
        ])
        const bootstrap = addrs.join(',')
        const workerDirs = Array.from({ length: opts.workers }, (_, i) => join(dataDir, `worker-${i + 1}`))
        const gatewayDir = join(dataDir, 'gateway')
        if (localChain !== undefined) {
          contractsFile = join(dataDir, 'chain', 'contracts.json')
          contractsArgs = ['--contracts', contractsFile]
          // each node stakes (and the builder deploys) from its own key: give every key funds, at once
          await step('fund', 'Fund the builder, gateway and worker keys', async () => {
            await Promise.all([builderDir, gatewayDir, ...workerDirs].map(async d => await fund(localChain.rpcUrl, loadSigner(d).address)))
          })
        }
        // workers (self-test, stake, bind) and the gateway (stake, registry) start at once
        const workers = workerDirs.map((workerDir, i) => {
          const args = ['worker', '--bootstrap', bootstrap, '--data-dir', workerDir, ...contractsArgs]
          if (withChain) args.push('--stake', DEV_STAKE)
          if (opts.unsafeDevExecutor === true) args.push('--unsafe-dev-executor')
          return spawnPeerhost(`worker-${i + 1}`, args, logDir)
        })
        children.push(...workers)
        const projects = [EXAMPLES, ...opts.project.map(p => absolute(p))]
        const gatewayArgs = ['gateway', '--bootstrap', bootstrap, '--port', String(opts.port), '--data-dir', gatewayDir, ...contractsArgs]
        // with a chain the gateway stakes too, so it can publish its secret key (peerhost secret put)
        if (withChain) gatewayArgs.push('--stake', DEV_STAKE)
        else gatewayArgs.push('--owner', builder.address, ...projects.flatMap(p => ['--project', p]))
        const gateway = spawnPeerhost('gateway', gatewayArgs, logDir)
        children.push(gateway)
        const [, gw] = await Promise.all([
          step('workers', `Start ${opts.workers} worker${opts.workers === 1 ? '' : 's'} (sandbox self-test${withChain ? ', stake, bind' : ''})`, async () => await Promise.all(workers.map(async w => await w.ready))),
          step('gateway', 'Start the gateway', async () => await gateway.ready, g => g.url)
        ])
        // every worker in the gateway's view (staked and admitted): before that, requests would go to fewer workers, or to the chain
        await step('admit', 'Gateway admits every worker', async () => { await untilGatewaySees(gw.url, opts.workers) })
        let functions: string[] = gw.functions ?? []
        if (withChain) {
          // deploy exactly as a builder would: `peerhost deploy` with the builder's key
          const key = readFileSync(join(builderDir, 'evm.key'), 'utf8').trim()
          functions = (await step('deploy', `Deploy ${projects.length === 1 ? 'examples/hello' : `${projects.length} projects`} with \`peerhost deploy\``,
            async () => await Promise.all(projects.map(async p => await deploy(p, gw.url, contractsFile, key, logDir))),
            r => `${r.flat().length} functions`)).flat()
        }
        // URLs are printed only once each function has been answered by a worker over the mesh (on a
        // quiet machine seconds; under heavy load the first bundle fetch over bitswap can take minutes)
        await step('warm', 'Warm every function through the mesh', async () => { await warmUp(functions) })
        for (const c of children) {
          c.proc.once('exit', (code, signal) => {
            if (!stopped) process.stderr.write(`peerhost: ${c.name} exited (${signal ?? code}); see ${join(logDir, `${c.name}.log`)}\n`)
          })
        }
        const devnetFile = withChain
          ? writeDevnetInfo({ pid: process.pid, dataDir, chainId: chain!.chainId, rpcUrl: chain!.rpcUrl, contracts: contractsFile, gateway: gw.url, builder: builder.address, builderKeyFile: join(builderDir, 'evm.key'), startedAt: new Date().toISOString() })
          : undefined
        const hello = functions.find(u => u.endsWith('/hello')) ?? functions[0]
        const readyMs = Math.round(performance.now() - t0)
        say(opts, [
          `PeerHost devnet is up in ${(readyMs / 1000).toFixed(1)} s (state in ${dataDir}, logs in ${logDir})`,
          withChain ? `  chain      ${chain!.rpcUrl} (chain id ${chain!.chainId}; contracts in ${contractsFile})` : '  chain      none (--no-chain)',
          `  bootstrap  ${addrs[0]}`,
          `  gateway    ${gw.url}   status: ${gw.url}/_peerhost/status`,
          `  workers    ${opts.workers}${opts.unsafeDevExecutor === true ? ' (unsafe dev executor)' : ' (gVisor)'}${withChain ? `, each staked ${DEV_STAKE}` : ''}`,
          `  builder    ${builder.address} (key in ${join(builderDir, 'evm.key')})`,
          ...(devnetFile !== undefined ? [`  devnet     ${devnetFile}: \`peerhost deploy\`, \`peerhost secret\` and \`peerhost wallet fund\` find this devnet by it`] : []),
          '',
          'Functions:',
          ...functions.map(u => `  ${u}`),
          '',
          'Try:',
          `  curl '${hello}?name=PeerHost'`,
          ...(withChain ? [`  curl -H 'x-peerhost-mode: onchain' '${hello}?name=chain'   # through ExecutionCoordinator`] : []),
          ...(withChain ? ['  npx peerhost deploy <your project folder>   # uses this devnet\'s chain, gateway and builder key'] : []),
          ...(withChain ? [`  printf 'from a secret' | PEERHOST_PRIVATE_KEY=$(cat ${join(builderDir, 'evm.key')}) npx peerhost secret put hello GREETING --gateway ${gw.url} --contracts ${contractsFile}   # then: curl ${functions.find(u => u.endsWith('/echo')) ?? hello}`] : []),
          'Press Ctrl-C to stop.'
        ].join('\n'), { event: 'ready', role: 'devnet', gateway: gw.url, bootstrap: addrs, functions, builder: builder.address, dataDir, chain: chain?.rpcUrl, contracts: withChain ? contractsFile : undefined, devnetFile, readyMs })
      } catch (err) {
        await stop()
        throw err
      }
    })
}
