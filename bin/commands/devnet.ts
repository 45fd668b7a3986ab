import { spawn } from 'node:child_process'
import { mkdirSync, readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { Command } from '@commander-js/extra-typings'
import { NodeError } from '../light.ts'
import type { LocalChain } from '../deps.ts'
import { CLI, spawnPeerhost, type NodeProcess } from '../spawn.ts'
import { absolute, collect, intOption, onShutdown, say } from '../util.ts'

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

async function untilGatewaySees (gateway: string, workers: number, timeoutMs = 30_000): Promise<void> {
  const until = Date.now() + timeoutMs
  while (Date.now() < until) {
    try {
      const status = await (await fetch(`${gateway}/_peerhost/status`)).json() as { workers?: unknown[] }
      if ((status.workers?.length ?? 0) >= workers) return
    } catch {}
    await new Promise(resolve => setTimeout(resolve, 200))
  }
  throw new NodeError('DEVNET_NOT_READY', `the gateway did not see all ${workers} workers within ${timeoutMs / 1000} s; see the worker logs`)
}

export function devnetCommand (): Command<any, any> {
  return new Command('devnet')
    .description('run a local network on 127.0.0.1: a Hardhat chain with the contracts, one bootstrap node, one gateway and N staked workers (each its own process), with examples/hello and any --project deployed through `peerhost deploy`')
    .option('--port <port>', 'gateway HTTP port', intOption('--port', 0, 65535), 8080)
    .option('--chain-port <port>', 'local chain JSON-RPC port', intOption('--chain-port', 1, 65535), 8545)
    .option('--workers <n>', 'number of workers', intOption('--workers', 1, 32), 3)
    .option('--project <dir...>', 'also deploy these project folders', collect, [] as string[])
    .option('--data-dir <dir>', 'where the network keeps its state', '.peerhost/devnet')
    .option('--no-chain', 'no chain: the gateway serves the projects straight from their folders (no deploy, no stake)')
    .option('--unsafe-dev-executor', 'run functions in node:vm instead of gVisor (NOT a security boundary)')
    .option('--json', 'print machine-readable lines')
    .action(async (opts) => {
      const { loadSigner, startLocalChain } = await import('../deps.ts')
      const dataDir = absolute(opts.dataDir)
      const logDir = join(dataDir, 'logs')
      mkdirSync(logDir, { recursive: true })
      const withChain = opts.chain !== false
      const builderDir = join(dataDir, 'builder')
      const builder = loadSigner(builderDir)
      const children: NodeProcess[] = []
      let chain: LocalChain | undefined
      let stopped = false
      const stop = async (): Promise<void> => {
        stopped = true
        await stopAll(children)
        await chain?.stop()
      }
      onShutdown(stop)
      try {
        let contractsArgs: string[] = []
        let contractsFile = ''
        if (withChain) {
          chain = await startLocalChain({ port: opts.chainPort, dataDir: join(dataDir, 'chain') })
          contractsFile = join(dataDir, 'chain', 'contracts.json')
          contractsArgs = ['--contracts', contractsFile]
          await fund(chain.rpcUrl, builder.address)
        }
        const boot = spawnPeerhost('bootstrap', ['bootstrap', '--data-dir', join(dataDir, 'bootstrap'), '--listen', '/ip4/127.0.0.1/tcp/0'], logDir)
        children.push(boot)
        const { addrs } = await boot.ready
        const bootstrap = (addrs as string[]).join(',')
        const workers: NodeProcess[] = []
        for (let i = 0; i < opts.workers; i++) {
          const workerDir = join(dataDir, `worker-${i + 1}`)
          const args = ['worker', '--bootstrap', bootstrap, '--data-dir', workerDir, ...contractsArgs]
          if (withChain) {
            // each worker stakes from its own key: give that key funds first
            await fund(chain!.rpcUrl, loadSigner(workerDir).address)
            args.push('--stake', DEV_STAKE)
          }
          if (opts.unsafeDevExecutor === true) args.push('--unsafe-dev-executor')
          workers.push(spawnPeerhost(`worker-${i + 1}`, args, logDir))
        }
        children.push(...workers)
        const gatewayDir = join(dataDir, 'gateway')
        if (withChain) await fund(chain!.rpcUrl, loadSigner(gatewayDir).address)
        const projects = [EXAMPLES, ...opts.project.map(p => absolute(p))]
        const gatewayArgs = ['gateway', '--bootstrap', bootstrap, '--port', String(opts.port), '--data-dir', gatewayDir, ...contractsArgs]
        // with a chain the gateway stakes too, so it can publish its secret key (peerhost secret put)
        if (withChain) gatewayArgs.push('--stake', DEV_STAKE)
        else gatewayArgs.push('--owner', builder.address, ...projects.flatMap(p => ['--project', p]))
        const gateway = spawnPeerhost('gateway', gatewayArgs, logDir)
        children.push(gateway)
        await Promise.all(workers.map(async w => await w.ready))
        const gw = await gateway.ready
        // up means every worker is in the gateway's view (staked and admitted): before that,
        // requests would go to fewer workers, or to the chain
        await untilGatewaySees(gw.url, opts.workers)
        let functions: string[] = gw.functions ?? []
        if (withChain) {
          // deploy exactly as a builder would: `peerhost deploy` with the builder's key
          const key = readFileSync(join(builderDir, 'evm.key'), 'utf8').trim()
          functions = []
          for (const p of projects) functions.push(...await deploy(p, gw.url, contractsFile, key, logDir))
        }
        for (const c of children) {
          c.proc.once('exit', (code, signal) => {
            if (!stopped) process.stderr.write(`peerhost: ${c.name} exited (${signal ?? code}); see ${join(logDir, `${c.name}.log`)}\n`)
          })
        }
        const hello = functions.find(u => u.endsWith('/hello')) ?? functions[0]
        say(opts, [
          `PeerHost devnet is up (state in ${dataDir}, logs in ${logDir})`,
          withChain ? `  chain      ${chain!.rpcUrl} (chain id ${chain!.chainId}; contracts in ${contractsFile})` : '  chain      none (--no-chain)',
          `  bootstrap  ${(addrs as string[])[0]}`,
          `  gateway    ${gw.url}   status: ${gw.url}/_peerhost/status`,
          `  workers    ${opts.workers}${opts.unsafeDevExecutor === true ? ' (unsafe dev executor)' : ' (gVisor)'}${withChain ? `, each staked ${DEV_STAKE}` : ''}`,
          `  builder    ${builder.address}`,
          '',
          'Functions:',
          ...functions.map(u => `  ${u}`),
          '',
          'Try:',
          `  curl '${hello}?name=PeerHost'`,
          ...(withChain ? [`  curl -H 'x-peerhost-mode: onchain' '${hello}?name=chain'   # through ExecutionCoordinator`] : []),
          ...(withChain ? [`  printf 'from a secret' | PEERHOST_PRIVATE_KEY=$(cat ${join(builderDir, 'evm.key')}) npx peerhost secret put hello GREETING --gateway ${gw.url} --contracts ${contractsFile}   # then: curl ${functions.find(u => u.endsWith('/echo')) ?? hello}`] : []),
          'Press Ctrl-C to stop.'
        ].join('\n'), { event: 'ready', role: 'devnet', gateway: gw.url, bootstrap: addrs, functions, builder: builder.address, dataDir, chain: chain?.rpcUrl, contracts: withChain ? contractsFile : undefined })
      } catch (err) {
        await stop()
        throw err
      }
    })
}
