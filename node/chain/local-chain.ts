/**
 * A local chain for development (`peerhost chain up`, `peerhost devnet`): starts `hardhat node` on
 * 127.0.0.1 as a child process with PeerHost's Hardhat config (contracts/node.config.ts: without
 * the plugins), compiles the contracts meanwhile when their sources changed, waits until it answers JSON-RPC,
 * deploys FunctionRegistry, WorkerStaking, Settlement and ExecutionCoordinator (local parameters:
 * 60 s epochs, short windows; see docs/contracts.md) and writes `<dataDir>/contracts.json`.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { createWriteStream } from 'node:fs'
import { createServer } from 'node:net'
import { cp, mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { createPublicClient, createWalletClient, getAddress, http, type Address, type PublicClient } from 'viem'
import { deployPeerHost, LOCAL_PARAMS, type Artifact, type PeerHostParams } from '../../contracts/deploy.ts'
import { contractSourcesHash, prebuiltReader, readPrebuilt } from '../../contracts/prebuilt.ts'
import { NodeError } from '../errors.ts'
import { chainOf } from './client.ts'

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
  /**
   * a folder where compiled artifacts are kept by the hash of their sources, shared by every
   * checkout on this machine: a fresh checkout (or worktree) copies them instead of compiling
   * (minutes of solc on a small machine). bin passes `~/.cache/peerhost/contract-artifacts`.
   * @default none: compile in this checkout
   */
  artifactCache?: string
  /** told each start-up phase (`compile`, `node`, `contracts`) and how long it took, for a start-up timeline */
  onPhase?: (phase: string, ms: number) => void
  /**
   * Contract parameters over LOCAL_PARAMS (the devnet shortens Settlement's epoch and windows to
   * seconds, so a batch commits and finalizes while you watch). @default LOCAL_PARAMS
   */
  params?: Partial<PeerHostParams>
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
/** `hardhat node` runs without the plugins the main config loads (contracts/node.config.ts) */
const NODE_CONFIG = join(ROOT, 'contracts', 'node.config.ts')
/** the hash of the sources the artifacts were last built from (the artifacts folder is not in git) */
const ARTIFACTS = join(ROOT, 'contracts', 'artifacts')
const BUILD_STAMP = join(ARTIFACTS, '.peerhost-sources.sha256')

/** The source hash the artifacts were built from, or undefined when unknown or an artifact is missing. */
async function builtFrom (): Promise<string | undefined> {
  try {
    const stamp = (await readFile(BUILD_STAMP, 'utf8')).trim()
    // a deleted artifact means a build even when the stamp matches
    for (const name of ['FunctionRegistry', 'WorkerStaking', 'Settlement', 'ExecutionCoordinator']) await readFile(join(ROOT, 'contracts', 'artifacts', 'contracts', 'src', `${name}.sol`, `${name}.json`))
    return stamp
  } catch {
    return undefined
  }
}

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
  // The contracts compile (offline, incremental) while the node boots: the node needs no artifacts
  // to start (it watches the build-info folder and names contracts from builds that land later),
  // only the deployment does. Even with nothing to compile, a `hardhat build` process costs seconds
  // of CPU to load Hardhat: skipped when the artifacts were built from exactly these sources,
  // config and compiler.
  const timed = async (name: string, p: Promise<unknown>): Promise<void> => {
    const t = performance.now()
    await p
    init.onPhase?.(name, Math.round(performance.now() - t))
  }
  // the committed bytecode (contracts/abi/bytecode.json) when it was built from these sources and
  // no build of them is here: a fresh checkout deploys at once instead of compiling for minutes
  let read: ((name: string) => Promise<Artifact>) | undefined
  const building = timed('compile', (async () => {
    const sourceHash = await contractSourcesHash()
    if (await builtFrom() !== sourceHash) {
      const prebuilt = await readPrebuilt()
      if (prebuilt?.sourcesHash === sourceHash) { read = prebuiltReader(prebuilt); return }
    }
    await buildContracts({ log, signal: init.signal, artifactCache: init.artifactCache })
  })())
  building.catch(() => {})

  const child = spawn(process.execPath, [HARDHAT_CLI, '--config', NODE_CONFIG, 'node', '--hostname', host, '--port', String(port)], {
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
    // the chain id is the node's to say: asked first, then every client is built for it
    const probe = createPublicClient({ transport: http(rpcUrl, { retryCount: 0 }), pollingInterval: 50 }) as PublicClient
    await Promise.all([timed('node', waitForRpc(probe, () => exited, init.startTimeoutMs ?? 180_000, init.signal)), building])
    const deploying = performance.now()
    const chainId = await probe.getChainId()
    const publicClient = createPublicClient({ chain: chainOf({ chainId, rpcUrl }), transport: http(rpcUrl, { retryCount: 0 }), pollingInterval: 50 }) as PublicClient
    const [account] = await (publicClient.request as (a: { method: string }) => Promise<Address[]>)({ method: 'eth_accounts' })
    if (account === undefined) throw new NodeError('CHAIN_NO_ACCOUNTS', 'the local Hardhat node exposes no unlocked account to deploy from')
    const deployer = getAddress(account)
    const wallet = createWalletClient({ account: deployer, chain: chainOf({ chainId, rpcUrl }), transport: http(rpcUrl), pollingInterval: 50 })
    // every deployment transaction lands after the current head
    const deployBlock = (await publicClient.getBlockNumber({ cacheTime: 0 })) + 1n
    const params: PeerHostParams = { ...LOCAL_PARAMS, ...init.params }
    const addresses = await deployPeerHost({ wallet, publicClient, params, read })
    // whoever answered, it must be our node: it is still running (it exits at once when it cannot bind)
    if (exited) throw new NodeError('CHAIN_EXITED', `the local chain exited while the contracts were deployed (see ${join(init.dataDir, 'chain.log')}); another program may hold port ${port}`)
    const file: ContractsFile = {
      chainId,
      rpcUrl,
      deployer,
      addresses,
      params: Object.fromEntries(Object.entries(params).map(([k, v]) => [k, typeof v === 'bigint' ? v.toString() : v])),
      deployedAt: new Date().toISOString(),
      deployBlock: deployBlock.toString()
    }
    await writeFile(join(init.dataDir, 'contracts.json'), JSON.stringify(file, null, 2) + '\n')
    init.onPhase?.('contracts', Math.round(performance.now() - deploying))
    return { rpcUrl, chainId, addresses, deployer, stop }
  } catch (err) {
    await stop()
    if (init.signal?.aborted === true) throw init.signal.reason
    if (err instanceof NodeError) throw err
    throw new NodeError('CHAIN_START_FAILED', `the local chain did not start on ${rpcUrl} (see ${join(init.dataDir, 'chain.log')})`, { cause: err })
  }
}

/** The build this process runs now, if any: one at a time, so two callers never compile into the same folder at once. */
let buildInFlight: Promise<void> | undefined

/**
 * Compiles the contracts unless the artifacts were built from exactly these sources, config and
 * compiler (or `artifactCache` holds them). `startLocalChain` calls it while its node boots; the
 * test runner calls it early, beside the type check, so the first chain test finds the artifacts
 * built. Calls in one process are serialized: a second one waits for the first, then finds the
 * stamp and returns.
 */
export async function buildContracts (opts: { log?: NodeJS.WritableStream, signal?: AbortSignal, artifactCache?: string } = {}): Promise<void> {
  while (buildInFlight !== undefined) await buildInFlight.catch(() => {})
  const mine = (async () => {
    const sourceHash = await contractSourcesHash()
    if (await builtFrom() === sourceHash) return
    const cached = opts.artifactCache === undefined ? undefined : join(opts.artifactCache, sourceHash)
    if (cached !== undefined) {
      await cp(cached, ARTIFACTS, { recursive: true, force: true }).catch(() => {})
      if (await builtFrom() === sourceHash) return
    }
    await run([HARDHAT_CLI, '--config', CONFIG, 'build', '--quiet', '--no-tests'], opts.log, opts.signal)
    await writeFile(BUILD_STAMP, `${sourceHash}\n`)
    if (cached !== undefined) {
      // best effort, complete or absent: copied beside it, then renamed into place
      const tmp = `${cached}.${process.pid}.tmp`
      try {
        await cp(ARTIFACTS, tmp, { recursive: true })
        await rename(tmp, cached)
      } catch {
        await rm(tmp, { recursive: true, force: true }).catch(() => {})
      }
    }
  })()
  buildInFlight = mine
  try {
    await mine
  } finally {
    if (buildInFlight === mine) buildInFlight = undefined
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

async function run (args: string[], log: NodeJS.WritableStream | undefined, signal?: AbortSignal): Promise<void> {
  const child: ChildProcess = spawn(process.execPath, args, { cwd: ROOT, stdio: ['ignore', log === undefined ? 'ignore' : 'pipe', log === undefined ? 'ignore' : 'pipe'], signal, env: { ...process.env, FORCE_COLOR: '0' } })
  if (log !== undefined) {
    child.stdout?.pipe(log, { end: false })
    child.stderr?.pipe(log, { end: false })
  }
  const code = await new Promise<number | null>((resolve, reject) => { child.once('error', reject); child.once('exit', resolve) })
  if (code !== 0) throw new NodeError('CHAIN_BUILD_FAILED', `compiling the contracts failed (exit ${String(code)})`)
}
