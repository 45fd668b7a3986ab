import { Command } from '@commander-js/extra-typings'
import type { Executor } from '#sandbox'
import { ConfigError, NODE_DEFAULTS, NodeError, parseAmount, loadContracts } from '../light.ts'
import type { Logger } from '../deps.ts'
import { absolute, collect, intOption, multiaddrList, logger, onShutdown, registry, say } from '../util.ts'
import { checkPorts, multiaddrPorts } from '../ports.ts'

export async function chooseExecutor (unsafeDev: boolean, dataDir: string, capacity: number, log: Logger): Promise<Executor> {
  const sandbox = await import('#sandbox')
  if (unsafeDev) {
    log.warn('running functions with the development node:vm executor: this is NOT a security boundary; never use it with untrusted code')
    // one idle thread per job slot: a thread boot costs tens of ms, far more than a job
    return sandbox.devExecutor({ maxIdleThreads: capacity })({ logger: log.child({ component: 'peerhost:sandbox:dev' }) })
  }
  // the sandbox checks at start that runsc works and limits hold, and refuses to start otherwise
  return sandbox.gvisorExecutor({ dataDir })({ logger: log.child({ component: 'peerhost:sandbox:gvisor' }) })
}

export function workerCommand (): Command<any, any> {
  return new Command('worker')
    .description('run a worker: joins the mesh through bootstrap nodes, adverts its capacity and runs jobs in sandboxes')
    .option('--bootstrap <multiaddr...>', 'bootstrap node multiaddrs with /p2p/<id> (repeatable or comma-separated; env PEERHOST_BOOTSTRAP)', collect, collect(process.env.PEERHOST_BOOTSTRAP ?? ''))
    .option('--listen <multiaddr...>', 'multiaddrs to listen on (default /ip4/127.0.0.1/tcp/0: this machine only; /ip4/0.0.0.0/tcp/4002 for every interface)', multiaddrList('--listen'), [] as string[])
    .option('--announce <multiaddr...>', 'addresses other machines reach this node at, advertised instead of --listen (behind NAT or a port forward: the public IP and port); see docs/operators.md', multiaddrList('--announce'), [] as string[])
    .option('--data-dir <dir>', 'where the worker keeps its keys, bundles and sandboxes', process.env.PEERHOST_DATA_DIR ?? '.peerhost/worker')
    .option('--capacity <n>', 'jobs run at once', intOption('--capacity', 1, 1024))
    .option('--admin-port <port>', 'port for /_peerhost/health, /_peerhost/status and /_peerhost/metrics', intOption('--admin-port', 0, 65535))
    .option('--contracts <file>', 'contracts.json of the chain (from `peerhost chain up`): sign receipts in its domain, stake, bind the peer id, serve the chain fallback, and answer only tickets of staked gateways')
    .option('--stake <amount>', 'with --contracts: when the stake is below the minimum, stake this much (native currency, e.g. 1 or 0.5) from the worker\'s own address')
    .option('--unsafe-skip-registry-check', 'with --contracts: run any bundle a gateway names, even one FunctionRegistry does not list as the active version of its function (development only: for gateways serving --project folders that are not on the chain)')
    .option('--unsafe-dev-executor', 'run functions in node:vm instead of gVisor (NOT a security boundary; development only)')
    .option('--json', 'print machine-readable lines')
    .option('--log-level <level>', 'trace|debug|info|warn|error|silent')
    .action(async (opts) => {
      const { verifyChain, blockStorage, chainClient, chainDomain, chainWatcher, gatewayStake, loadSecretKey, registryCheck, stakeAndBind, createMeshNode, createWorker, loadSigner, loadPeerKey, prewarmCached, adminServer } = await import('../deps.ts')
      if (opts.bootstrap.length === 0) throw new ConfigError('NO_BOOTSTRAP', 'a worker needs at least one --bootstrap <multiaddr> to find the network')
      const dataDir = absolute(opts.dataDir)
      const log = logger(opts, 'worker')
      const reg = registry()
      const contracts = opts.contracts === undefined ? undefined : loadContracts(absolute(opts.contracts))
      const stake = parseAmount('--stake', opts.stake)
      await checkPorts([...multiaddrPorts(opts.listen, '--listen', 'the worker\'s libp2p'), ...(opts.adminPort === undefined ? [] : [{ flag: '--admin-port', port: opts.adminPort, what: 'the worker\'s admin HTTP' }])])
      // never stake on or sign receipts for a chain other than the one the contracts file describes
      if (contracts !== undefined) await verifyChain(contracts, { file: opts.contracts })
      const executor = await chooseExecutor(opts.unsafeDevExecutor === true, dataDir, opts.capacity ?? NODE_DEFAULTS.workerCapacity, log)
      const privateKey = await loadPeerKey(dataDir)
      const listen = opts.listen.length > 0 ? opts.listen : undefined
      // one libp2p for the mesh and for bitswap: bundles come by CID from whoever holds them
      const libp2p = await createMeshNode({ privateKey, listen, announce: opts.announce, bootstrap: opts.bootstrap, registry: reg })
      const storage = blockStorage({ dataDir })({ libp2p, logger: log })
      const signer = loadSigner(dataDir)
      // with a chain: stake and bind the peer id before joining, or refuse to start
      const chain = contracts === undefined ? undefined : chainClient(contracts, signer.account)
      const registration = chain === undefined ? undefined : await stakeAndBind(chain, privateKey, { stake, logger: log })
      await storage.start()
      // with a chain: run only bundles FunctionRegistry names as active (node/worker/registry-check.ts)
      const check = chain === undefined || opts.unsafeSkipRegistryCheck === true ? undefined : registryCheck()({ chain, storage, logger: log, registry: reg })
      // with a chain: answer only tickets of gateways staked now (node/worker/gateway-stake.ts)
      const gateways = chain === undefined ? undefined : gatewayStake()({ chain, logger: log, registry: reg })
      await gateways?.start()
      if (chain !== undefined && check === undefined) log.warn('--unsafe-skip-registry-check: this worker runs any bundle a gateway names, registered or not; never use it outside development')
      const worker = await createWorker({ dataDir, bootstrap: opts.bootstrap, listen, capacity: opts.capacity, domain: contracts === undefined ? undefined : chainDomain(contracts) }, {
        privateKey, signer, executor, logger: log, registry: reg, libp2p,
        checkJob: check === undefined ? undefined : async (job, from, signal) => await check.checkJob(job, { from, signal }),
        checkGateway: gateways === undefined ? undefined : async (gateway) => await gateways.refusal(gateway),
        async fetchBundle (cid, from, signal) {
          try {
            return await storage.fetch(cid, { from, signal })
          } catch (err: any) {
            if (err?.code === 'BLOCK_MISMATCH') throw new NodeError('BUNDLE_MISMATCH', err.message)
            throw err
          }
        }
      })
      await worker.start()
      const watcher = chain === undefined ? undefined : chainWatcher({ stateDir: dataDir })({ chain, worker, storage, sealKey: loadSecretKey(dataDir), logger: log })
      await watcher?.start()
      void prewarmCached(dataDir, executor, log)
      const admin = opts.adminPort === undefined
        ? undefined
        : adminServer({ port: opts.adminPort }, { registry: reg, status: () => ({ role: 'worker', peerId: worker.peerId.toString(), address: worker.address, running: worker.running, executor: executor.kind, warm: executor.warm() }) })
      await admin?.start()
      onShutdown(async () => { await admin?.stop(); await watcher?.stop(); await gateways?.stop(); await storage.stop(); await worker.stop() }, log)
      say(opts, `worker ${worker.peerId.toString()} (${worker.address}, executor ${executor.kind}) listening on:\n${worker.addrs().map(a => `  ${a}`).join('\n')}`,
        { event: 'ready', role: 'worker', peerId: worker.peerId.toString(), address: worker.address, addrs: worker.addrs(), executor: executor.kind, admin: admin?.url, stake: registration?.stake.toString() })
    })
}
