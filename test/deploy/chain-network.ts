/**
 * A local network that follows a chain, for deploy tests and bench/deploy.ts: a Hardhat chain
 * with the contracts (startLocalChain), a bootstrap node, a gateway with --contracts and N
 * workers (dev executor) with funded keys, each a real `peerhost` process on 127.0.0.1.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Hex } from 'viem'
import { spawnPeerhost, type NodeProcess } from '../../bin/spawn.ts'
import { loadContracts, startLocalChain, type ChainContracts, type LocalChain } from '#node'
import { freePort, startupTimeline, waitFor } from '../helpers/network.ts'

/** Hardhat's funded account #1 (the deployer is #0): the builder */
export const BUILDER_KEY: Hex = '0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d'
/** Hardhat's funded accounts #3–#5: worker keys, so workers can stake */
const WORKER_KEYS: Hex[] = [
  '0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6',
  '0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a',
  '0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba'
]
/** Hardhat's funded account #2: the gateway's key when it stakes (so it can publish its secret key) */
export const GATEWAY_KEY: Hex = '0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a'
/** what each worker stakes on start (above the local minimum) */
const STAKE_ARGS = ['--stake', '1']

export interface ChainNetwork {
  dir: string
  chain: LocalChain
  contracts: ChainContracts
  contractsFile: string
  gatewayUrl: string
  bootstrapAddrs: string[]
  procs: NodeProcess[]
  stop: () => Promise<void>
  /** when each part was ready, ms after the start (also printed to stderr as one line) */
  timeline: Record<string, number>
}


export interface ChainNetworkInit {
  /** @default 2 */
  workers?: number
  /** @default 'dev' (the unsafe dev executor); 'gvisor' runs every function in runsc */
  executor?: 'dev' | 'gvisor'
  /**
   * the gateway stakes from a funded key and publishes its endpoint and secret key; @default true:
   * workers with a chain answer only tickets of staked gateways (node/worker/gateway-stake.ts)
   */
  stakeGateway?: boolean
  /** extra `peerhost gateway` flags */
  gatewayArgs?: string[]
  /** extra `peerhost worker` flags (e.g. `--admin-port 0` to read its metrics) */
  workerArgs?: string[]
}

export async function startChainNetwork (init: ChainNetworkInit = {}): Promise<ChainNetwork> {
  const dir = mkdtempSync(join(tmpdir(), 'peerhost-deploy-net-'))
  const logDir = join(dir, 'logs')
  const procs: NodeProcess[] = []
  let chain: LocalChain | undefined
  const timeline = startupTimeline(`chain network of ${init.workers ?? 2} worker(s)`)
  const stop = async (): Promise<void> => {
    await Promise.all(procs.map(async p => await p.stop(5_000)))
    await chain?.stop()
    if (process.env.PEERHOST_KEEP_TEST_DIRS !== '1') rmSync(dir, { recursive: true, force: true })
  }
  try {
    // the bootstrap node needs nothing from the chain: both start at once (each is seconds of CPU
    // loading Hardhat or the node runtime); the gateway and workers follow once both are up
    const boot = spawnPeerhost('bootstrap', ['bootstrap', '--data-dir', join(dir, 'bootstrap'), '--listen', '/ip4/127.0.0.1/tcp/0', '--log-level', 'warn'], logDir)
    procs.push(boot)
    const booted = boot.ready.then(ready => { timeline.mark('bootstrap'); return ready.addrs as string[] })
    booted.catch(() => {})
    chain = await startLocalChain({ port: await freePort(), dataDir: join(dir, 'chain'), onPhase: (phase) => { timeline.mark(`chain ${phase}`) } })
    const contractsFile = join(dir, 'chain', 'contracts.json')
    const bootstrapAddrs = await booted
    const bootstrap = bootstrapAddrs.join(',')
    const workers = Array.from({ length: init.workers ?? 2 }, (_, i) => {
      const data = join(dir, `worker-${i + 1}`)
      mkdirSync(data, { recursive: true, mode: 0o700 })
      writeFileSync(join(data, 'evm.key'), `${WORKER_KEYS[i]}\n`, { mode: 0o600 })
      return spawnPeerhost(`worker-${i + 1}`, ['worker', '--bootstrap', bootstrap, '--data-dir', data, '--contracts', contractsFile, ...STAKE_ARGS, ...(init.executor === 'gvisor' ? [] : ['--unsafe-dev-executor']), '--log-level', 'info', ...(init.workerArgs ?? [])], logDir)
    })
    procs.push(...workers)
    const gatewayDir = join(dir, 'gateway')
    const gatewayArgs = ['gateway', '--bootstrap', bootstrap, '--port', '0', '--data-dir', gatewayDir, '--contracts', contractsFile, '--log-level', 'info', ...(init.gatewayArgs ?? [])]
    if (init.stakeGateway !== false) {
      mkdirSync(gatewayDir, { recursive: true, mode: 0o700 })
      writeFileSync(join(gatewayDir, 'evm.key'), `${GATEWAY_KEY}\n`, { mode: 0o600 })
      gatewayArgs.push(...STAKE_ARGS)
    }
    const gateway = spawnPeerhost('gateway', gatewayArgs, logDir)
    procs.push(gateway)
    await Promise.all(workers.map(async (w, i) => { await w.ready; timeline.mark(`worker-${i + 1}`) }))
    const gatewayUrl: string = (await gateway.ready).url
    timeline.mark('gateway')
    await waitFor('every worker in the gateway view', async () => {
      const st = await (await fetch(`${gatewayUrl}/_peerhost/status`)).json() as any
      return st.workers.length >= workers.length
    }, 20_000)
    timeline.mark('workers in view')
    return { dir, chain, contracts: loadContracts(contractsFile), contractsFile, gatewayUrl, bootstrapAddrs, procs, stop, timeline: timeline.print() }
  } catch (err) {
    await stop()
    throw err
  }
}
