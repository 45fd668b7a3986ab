import { Command } from '@commander-js/extra-typings'
import type { Executor } from '#sandbox'
import { ConfigError, NODE_DEFAULTS, NodeError, parseAmount, loadContracts } from '../light.ts'
import type { Logger, WorkerNode } from '../deps.ts'
import { recordSelfTestKey, selfTestKey, selfTestProven } from '../self-test-cache.ts'
import { absolute, collect, intOption, multiaddrList, logger, onShutdown, registry, say } from '../util.ts'
import { checkPorts, multiaddrPorts } from '../ports.ts'

export async function chooseExecutor (unsafeDev: boolean, dataDir: string, capacity: number, log: Logger, options: { selfTest?: boolean, rootfsDir?: string, sandboxCpuShares?: number, genericPoolSize?: number, perFunctionPoolSize?: number, maxSandboxesPerFunction?: number } = {}): Promise<Executor> {
  const sandbox = await import('#sandbox')
  if (unsafeDev) {
    log.warn('running functions with the development node:vm executor: this is NOT a security boundary; never use it with untrusted code')
    // one idle thread per job slot: a thread boot costs tens of ms, far more than a job
    return sandbox.devExecutor({ maxIdleThreads: capacity })({ logger: log.child({ component: 'peerhost:sandbox:dev' }) })
  }
  // the sandbox checks at start that runsc works and limits hold, and refuses to start otherwise
  // (skipped only when this machine boot already proved the same runsc and rootfs: bin/self-test-cache.ts)
  return sandbox.gvisorExecutor({ dataDir, selfTest: options.selfTest, rootfsDir: options.rootfsDir, sandboxCpuShares: options.sandboxCpuShares, genericPoolSize: options.genericPoolSize, perFunctionPoolSize: options.perFunctionPoolSize, maxSandboxesPerFunction: options.maxSandboxesPerFunction })({ logger: log.child({ component: 'peerhost:sandbox:gvisor' }) })
}

function workerOptions () {
  return new Command('worker')
    .description('run a worker: joins the mesh through bootstrap nodes, adverts its capacity and runs jobs in sandboxes')
    .option('--bootstrap <multiaddr...>', 'bootstrap node multiaddrs with /p2p/<id> (repeatable or comma-separated; env PEERHOST_BOOTSTRAP)', collect, collect(process.env.PEERHOST_BOOTSTRAP ?? ''))
    .option('--listen <multiaddr...>', 'multiaddrs to listen on (default /ip4/127.0.0.1/tcp/0: this machine only; /ip4/0.0.0.0/tcp/4002 for every interface)', multiaddrList('--listen'), [] as string[])
    .option('--announce <multiaddr...>', 'addresses other machines reach this node at, advertised instead of --listen (behind NAT or a port forward: the public IP and port); see docs/operators.md', multiaddrList('--announce'), [] as string[])
    .option('--data-dir <dir>', 'where the worker keeps its keys, bundles and sandboxes', process.env.PEERHOST_DATA_DIR ?? '.peerhost/worker')
    .option('--capacity <n>', 'jobs run at once', intOption('--capacity', 1, 1024))
    .option('--max-sessions <n>', `WebSocket sessions held at once; past it a new session is refused with 503 OVERLOADED and goes to another worker (default ${NODE_DEFAULTS.workerMaxSessions})`, intOption('--max-sessions', 1, 100_000))
    .option('--max-stream-mb <n>', 'most MiB one streamed response body may carry; past it the stream is cut with LIMIT_RESPONSE_SIZE (default 1024)', intOption('--max-stream-mb', 1, 1024))
    .option('--admin-port <port>', 'port for /_peerhost/health, /_peerhost/status and /_peerhost/metrics', intOption('--admin-port', 0, 65535))
    .option('--contracts <file>', 'contracts.json of the chain (from `peerhost chain up`): sign receipts in its domain, stake, bind the peer id, serve the chain fallback, and answer only tickets of staked gateways')
    .option('--stake <amount>', 'with --contracts: when the stake is below the minimum, stake this much (native currency, e.g. 1 or 0.5) from the worker\'s own address')
    .option('--price <amount>', 'the price per request (native currency, e.g. 0.00001): advertised to gateways, and tickets with a lower fee are refused; with --contracts the worker settles its receipts through Settlement batches (default 0: free)')
    .option('--session-price-per-message <amount>', 'a WebSocket session\'s metered price per message either way (native currency), on top of --price, paid by the gateway\'s cumulative tickets during the session (default 0)')
    .option('--session-price-per-minute <amount>', 'a WebSocket session\'s metered price per minute (native currency), on top of --price (default 0)')
    .option('--unsafe-skip-registry-check', 'with --contracts: run any bundle a gateway names, even one FunctionRegistry does not list as the active version of its function (development only: for gateways serving --project folders that are not on the chain)')
    .option('--unsafe-dev-executor', 'run functions in node:vm instead of gVisor (NOT a security boundary; development only)')
    .option('--json', 'print machine-readable lines')
    .option('--log-level <level>', 'trace|debug|info|warn|error|silent')
}

export type WorkerOptions = ReturnType<ReturnType<typeof workerOptions>['opts']>

/** The options `peerhost worker <args>` would run with (devnet composes nodes in-process from the same flags). */
export function workerOptionsFrom (args: string[]): WorkerOptions {
  return workerOptions().exitOverride().parse(args, { from: 'user' }).opts()
}

/** Parts a caller composing a worker in-process may supply (devnet: one executor it has proven). */
export interface WorkerParts {
  /** the sandbox executor; default: the one `--unsafe-dev-executor` selects, self-tested unless this machine proved it (bin/self-test-cache.ts) */
  executor?: Executor
  /** told each start-up phase and how long it took (devnet prints them as its start-up timeline) */
  onPhase?: (phase: string, ms: number) => void
}

export interface RunningWorker {
  worker: WorkerNode
  executor: Executor
  address: string
  stake?: bigint
  admin?: string
  stop: () => Promise<void>
}

export function workerCommand (): Command<any, any> {
  return workerOptions().action(async (opts) => {
    const log = logger(opts, 'worker')
    const { worker, executor, address, stake, admin, stop } = await runWorker(opts, {}, log)
    onShutdown(stop, log)
    say(opts, `worker ${worker.peerId.toString()} (${address}, executor ${executor.kind}) listening on:\n${worker.addrs().map(a => `  ${a}`).join('\n')}`,
      { event: 'ready', role: 'worker', peerId: worker.peerId.toString(), address, addrs: worker.addrs(), executor: executor.kind, admin, stake: stake?.toString() })
  })
}

/** Starts the worker `peerhost worker` runs, from its options (exported so devnet and tests compose it with `parts`). */
export async function runWorker (opts: WorkerOptions, parts: WorkerParts = {}, log = logger(opts, 'worker')): Promise<RunningWorker> {
  const { verifyChain, blockStorage, chainClient, chainDomain, chainWatcher, gatewayStake, loadSecretKey, registryCheck, stakeAndBind, createMeshNode, createWorker, loadSigner, loadPeerKey, prewarmCached, adminServer, receiptLog, settler, rawCid, settlementClock, ticketEpochCheck, sessionEpochs } = await import('../deps.ts')
  if (opts.bootstrap.length === 0) throw new ConfigError('NO_BOOTSTRAP', 'a worker needs at least one --bootstrap <multiaddr> to find the network')
  const dataDir = absolute(opts.dataDir)
  const reg = registry()
  const contracts = opts.contracts === undefined ? undefined : loadContracts(absolute(opts.contracts))
  const stake = parseAmount('--stake', opts.stake)
  const price = parseAmount('--price', opts.price)
  const sessionPrice = { perMessage: parseAmount('--session-price-per-message', opts.sessionPricePerMessage) ?? 0n, perMinute: parseAmount('--session-price-per-minute', opts.sessionPricePerMinute) ?? 0n }
  await checkPorts([...multiaddrPorts(opts.listen, '--listen', 'the worker\'s libp2p'), ...(opts.adminPort === undefined ? [] : [{ flag: '--admin-port', port: opts.adminPort, what: 'the worker\'s admin HTTP' }])])
  // never stake on or sign receipts for a chain other than the one the contracts file describes
  if (contracts !== undefined) await verifyChain(contracts, { file: opts.contracts })
  const proofKey = parts.executor === undefined && opts.unsafeDevExecutor !== true ? await selfTestKey(dataDir) : undefined
  const proven = selfTestProven(proofKey)
  if (proven) log.info({ key: proofKey }, 'gVisor self-test already passed on this machine boot with this runsc and rootfs; not repeated')
  const executor = parts.executor ?? await chooseExecutor(opts.unsafeDevExecutor === true, dataDir, opts.capacity ?? NODE_DEFAULTS.workerCapacity, log, { selfTest: !proven })
  const timed = async <T>(phase: string, p: Promise<T>): Promise<T> => {
    const t = performance.now()
    const v = await p
    parts.onPhase?.(phase, Math.round(performance.now() - t))
    return v
  }
  // the sandboxes (runsc checks, rootfs, self-test, the first pool boots) and the chain (stake,
  // bind) need nothing from each other: the executor starts while the node stakes and joins.
  // worker.start() starts it too (idempotent), and reports its failure.
  const executorStarted = timed('sandbox', executor.start())
  executorStarted.catch(() => {})
  // the functions this worker served before get their sandboxes while the rest starts (an
  // executor handed in is its owner's to pre-warm: the devnet does it as its sandboxes start,
  // before the chain is up)
  if (parts.executor === undefined) void executorStarted.then(async () => await prewarmCached(dataDir, executor, log), () => {})
  // a start that fails after the executor started stops it: its sandboxes are runsc processes
  const { worker, storage, gateways, receipts, chain, registration } = await (async () => {
    const privateKey = await loadPeerKey(dataDir)
    const listen = opts.listen.length > 0 ? opts.listen : undefined
    // one libp2p for the mesh and for bitswap: bundles come by CID from whoever holds them
    const libp2p = await timed('libp2p', createMeshNode({ privateKey, listen, announce: opts.announce, bootstrap: opts.bootstrap, registry: reg }))
    const storage = blockStorage({ dataDir })({ libp2p, logger: log })
    const signer = loadSigner(dataDir)
    // with a chain: stake and bind the peer id before joining, or refuse to start
    const chain = contracts === undefined ? undefined : chainClient(contracts, signer.account)
    const registration = chain === undefined ? undefined : await timed('stake', stakeAndBind(chain, privateKey, { stake, logger: log }))
    await storage.start()
    // with a chain: run only bundles FunctionRegistry names as active (node/worker/registry-check.ts)
    const check = chain === undefined || opts.unsafeSkipRegistryCheck === true ? undefined : registryCheck()({ chain, storage, logger: log, registry: reg })
    // with a chain: answer only tickets of gateways staked now (node/worker/gateway-stake.ts)
    const gateways = chain === undefined ? undefined : gatewayStake()({ chain, logger: log, registry: reg })
    await gateways?.start()
    if (chain !== undefined && check === undefined) log.warn('--unsafe-skip-registry-check: this worker runs any bundle a gateway names, registered or not; never use it outside development')
    // one receipt log, shared by the job path (writes) and the settler (reads the batches)
    const receipts = receiptLog({ dataDir })({ logger: log })
    // with a chain: refuse tickets whose epoch could never be settled (future, or batch already built)
    const clock = chain === undefined ? undefined : await settlementClock(chain)
    // receipts recorded for an earlier chain (a devnet restarted on a fresh chain, same id and
    // addresses) keep their tickets refused but are never batched for this Settlement
    if (contracts !== undefined && clock !== undefined) receipts.bindSettlement(`${contracts.chainId}:${contracts.addresses.Settlement.toLowerCase()}:${clock.genesis}`)
    const worker = await createWorker({ dataDir, bootstrap: opts.bootstrap, listen, capacity: opts.capacity, maxSessions: opts.maxSessions, price, sessionPrice, ...(opts.maxStreamMb !== undefined ? { maxStreamBytes: opts.maxStreamMb * 1024 * 1024 } : {}), domain: contracts === undefined ? undefined : chainDomain(contracts) }, {
      privateKey, signer, executor, logger: log, registry: reg, libp2p, receipts,
      checkJob: check === undefined ? undefined : async (job, from, signal) => await check.checkJob(job, { from, signal }),
      checkGateway: gateways === undefined ? undefined : async (gateway) => await gateways.refusal(gateway),
      checkEpoch: clock === undefined ? undefined : ticketEpochCheck(clock),
      sessionEpochs: clock === undefined ? undefined : sessionEpochs(clock),
      async fetchBundle (cid, from, signal) {
        try {
          return await storage.fetch(cid, { from, signal })
        } catch (err: any) {
          if (err?.code === 'BLOCK_MISMATCH') throw new NodeError('BUNDLE_MISMATCH', err.message)
          throw err
        }
      }
    })
    await executorStarted
    await timed('mesh', worker.start())
    return { worker, storage, gateways, receipts, chain, registration }
  })().catch(async (err) => {
    await executorStarted.catch(() => {})
    await executor.stop().catch(() => {})
    throw err
  })
  // the self-test passed (the executor refuses to start otherwise): later starts on this machine boot may skip it
  if (!proven) recordSelfTestKey(proofKey)
  const watcher = chain === undefined ? undefined : chainWatcher({ stateDir: dataDir })({ chain, worker, storage, sealKey: loadSecretKey(dataDir), logger: log })
  // joining the chain fallback's draw pool (a transaction) runs while the rest starts
  const watching = watcher === undefined ? undefined : timed('chain-watcher', watcher.start())
  // with a chain: commit one batch per (project, gateway, epoch) and finalize it (node/settlement)
  const settle = chain === undefined
    ? undefined
    : settler({ dataDir })({
      client: chain,
      receipts,
      logger: log,
      // the batch's leaves, where gateways and watchers fetch them over bitswap
      publish: async (bytes) => { const cid = rawCid(bytes); await storage.put(cid, bytes); return cid }
    })
  const admin = opts.adminPort === undefined
    ? undefined
    : adminServer({ port: opts.adminPort }, { registry: reg, status: () => ({ role: 'worker', peerId: worker.peerId.toString(), address: worker.address, running: worker.running, sessions: worker.sessions, executor: executor.kind, warm: executor.warm() }) })
  await Promise.all([admin?.start(), watching])
  const stop = async (): Promise<void> => { settle?.close(); await admin?.stop(); await watcher?.stop(); await gateways?.stop(); await storage.stop(); await worker.stop(); receipts.close() }
  return { worker, executor, address: worker.address, stake: registration?.stake, admin: admin?.url, stop }
}
