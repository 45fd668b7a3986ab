/**
 * A local chain for development (`peerhost chain up`, `peerhost devnet`): starts `hardhat node` on
 * 127.0.0.1 as a child process with PeerHost's Hardhat config, waits until it answers JSON-RPC,
 * deploys FunctionRegistry, WorkerStaking, Settlement and ExecutionCoordinator (local parameters:
 * 60 s epochs, short windows; see docs/contracts.md) and writes `<dataDir>/contracts.json`.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { createWriteStream } from 'node:fs'
import { createServer } from 'node:net'
import { mkdir, writeFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { createPublicClient, createWalletClient, getAddress, http, type Address, type PublicClient } from 'viem'
import { hardhat } from 'viem/chains'
import { deployPeerHost, LOCAL_PARAMS } from '../../contracts/deploy.ts'
import { NodeError } from '../errors.ts'

export interface LocalChainInit {
  /** @default 8545 */
  port?: number
  /** @default '127.0.0.1' */
  host?: string
  /** where `contracts.json` and `chain.log` (the node's output) go */
  dataDir: string
  /** aborting stops the chain */
  signal?: AbortSignal
  /** how long to wait for the node to answer; @default 180000 (a Hardhat node takes a minute or more to boot on a loaded machine) */
  startTimeoutMs?: number
}

export interface LocalChain {
  rpcUrl: string
  chainId: number
  addresses: Record<string, `0x${string}`>
  /** deployer (hardhat node account 0) */
  deployer: Address
  /** stops the node; idempotent */
  stop: () => Promise<void>
}

/** What `<dataDir>/contracts.json` holds. */
export interface ContractsFile {
  chainId: number
  rpcUrl: string
  deployer: Address
  addresses: Record<string, `0x${string}`>
  params: Record<string, string | number>
  deployedAt: string
  /** the first block of the deployment, as a decimal string: nodes read logs from there */
  deployBlock: string
}

const ROOT = resolve(import.meta.dirname, '..', '..')
const HARDHAT_CLI = join(ROOT, 'node_modules', 'hardhat', 'dist', 'src', 'cli.js')
const CONFIG = join(ROOT, 'contracts', 'hardhat.config.ts')

export async function startLocalChain (init: LocalChainInit): Promise<LocalChain> {
  const host = init.host ?? '127.0.0.1'
  const port = init.port ?? 8545
  const rpcUrl = `http://${host}:${port}`
  await mkdir(init.dataDir, { recursive: true })
  const log = createWriteStream(join(init.dataDir, 'chain.log'), { flags: 'a' })
  init.signal?.throwIfAborted()

  // The port must be free before the node starts: with another chain on it, the node would die
  // (EADDRINUSE, only in chain.log) while the RPC checks below answered from the other chain.
  await assertPortFree(host, port)
  // Compile first (offline, incremental) so the node and the deployment see fresh artifacts.
  await run([HARDHAT_CLI, '--config', CONFIG, 'build', '--quiet', '--no-tests'], log, init.signal)

  const child = spawn(process.execPath, [HARDHAT_CLI, '--config', CONFIG, 'node', '--hostname', host, '--port', String(port)], {
    cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, FORCE_COLOR: '0' }
  })
  child.stdout?.pipe(log, { end: false })
  child.stderr?.pipe(log, { end: false })
  let exited = false
  const exit = new Promise<void>(resolve => child.once('exit', () => { exited = true; resolve() }))

  let stopping: Promise<void> | undefined
  const stop = async (): Promise<void> => {
    stopping ??= (async () => {
      init.signal?.removeEventListener('abort', onAbort)
      if (!exited) {
        child.kill('SIGTERM')
        const timer = setTimeout(() => { if (!exited) child.kill('SIGKILL') }, 5_000)
        await exit
        clearTimeout(timer)
      }
      await new Promise<void>(resolve => log.end(resolve))
    })()
    await stopping
  }
  const onAbort = (): void => { void stop() }
  init.signal?.addEventListener('abort', onAbort, { once: true })

  try {
    const publicClient = createPublicClient({ chain: hardhat, transport: http(rpcUrl, { retryCount: 0 }), pollingInterval: 50 }) as PublicClient
    await waitForRpc(publicClient, () => exited, init.startTimeoutMs ?? 180_000, init.signal)
    const chainId = await publicClient.getChainId()
    const [account] = await (publicClient.request as (a: { method: string }) => Promise<Address[]>)({ method: 'eth_accounts' })
    if (account === undefined) throw new NodeError('CHAIN_NO_ACCOUNTS', 'the local Hardhat node exposes no unlocked account to deploy from')
    const deployer = getAddress(account)
    const wallet = createWalletClient({ account: deployer, chain: { ...hardhat, id: chainId }, transport: http(rpcUrl), pollingInterval: 50 })
    // every deployment transaction lands after the current head
    const deployBlock = (await publicClient.getBlockNumber({ cacheTime: 0 })) + 1n
    const addresses = await deployPeerHost({ wallet, publicClient, params: LOCAL_PARAMS })
    // whoever answered, it must be our node: it is still running (it exits at once when it cannot bind)
    if (exited) throw new NodeError('CHAIN_EXITED', `the local chain exited while the contracts were deployed (see ${join(init.dataDir, 'chain.log')}); another program may hold port ${port}`)
    const file: ContractsFile = {
      chainId,
      rpcUrl,
      deployer,
      addresses,
      params: Object.fromEntries(Object.entries(LOCAL_PARAMS).map(([k, v]) => [k, typeof v === 'bigint' ? v.toString() : v])),
      deployedAt: new Date().toISOString(),
      deployBlock: deployBlock.toString()
    }
    await writeFile(join(init.dataDir, 'contracts.json'), JSON.stringify(file, null, 2) + '\n')
    return { rpcUrl, chainId, addresses, deployer, stop }
  } catch (err) {
    await stop()
    if (init.signal?.aborted === true) throw init.signal.reason
    if (err instanceof NodeError) throw err
    throw new NodeError('CHAIN_START_FAILED', `the local chain did not start on ${rpcUrl} (see ${join(init.dataDir, 'chain.log')})`, { cause: err })
  }
}

/** Throws NodeError CHAIN_PORT_BUSY when host:port cannot be bound now. */
async function assertPortFree (host: string, port: number): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const server = createServer()
    server.unref()
    server.once('error', (err: NodeJS.ErrnoException) => {
      reject(err.code === 'EADDRINUSE'
        ? new NodeError('CHAIN_PORT_BUSY', `port ${port} on ${host} is already in use by another program, so the local chain cannot listen there`)
        : err)
    })
    server.listen({ port, host, exclusive: true }, () => server.close(() => resolve()))
  })
}

async function waitForRpc (client: PublicClient, hasExited: () => boolean, timeoutMs: number, signal?: AbortSignal): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    signal?.throwIfAborted()
    if (hasExited()) throw new NodeError('CHAIN_EXITED', 'hardhat node exited before answering (is the port free?)')
    try {
      await client.getChainId()
      return
    } catch {}
    if (Date.now() > deadline) throw new NodeError('CHAIN_START_TIMEOUT', `hardhat node did not answer within ${timeoutMs} ms`)
    await new Promise(resolve => setTimeout(resolve, 100))
  }
}

async function run (args: string[], log: NodeJS.WritableStream, signal?: AbortSignal): Promise<void> {
  const child: ChildProcess = spawn(process.execPath, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], signal, env: { ...process.env, FORCE_COLOR: '0' } })
  child.stdout?.pipe(log, { end: false })
  child.stderr?.pipe(log, { end: false })
  const code = await new Promise<number | null>((resolve, reject) => { child.once('error', reject); child.once('exit', resolve) })
  if (code !== 0) throw new NodeError('CHAIN_BUILD_FAILED', `compiling the contracts failed (exit ${String(code)})`)
}
