import { join } from 'node:path'
import { Command, Option } from '@commander-js/extra-typings'
import { peerIdFromString } from '@libp2p/peer-id'
import { isAddress, type Address } from 'viem'
import { parseAmount, ConfigError, loadContracts } from '../light.ts'
import type { BatchChecker, BatchCheckerComponents, GatewayNode, JobDialer } from '../deps.ts'
import { absolute, bigintOption, collect, intOption, multiaddrList, logger, onShutdown, registry, say } from '../util.ts'
import { checkPorts, multiaddrPorts } from '../ports.ts'

function gatewayOptions () {
  return new Command('gateway')
    .description('run a gateway: HTTP ingress at /<wallet>/<project>/<function>, dispatching jobs to workers over the mesh')
    .option('--bootstrap <multiaddr...>', 'bootstrap node multiaddrs with /p2p/<id> (env PEERHOST_BOOTSTRAP)', collect, collect(process.env.PEERHOST_BOOTSTRAP ?? ''))
    .option('--port <port>', 'HTTP port (env PEERHOST_PORT)', intOption('--port', 0, 65535), Number(process.env.PEERHOST_PORT ?? 8080))
    .option('--host <host>', 'HTTP host to bind', '127.0.0.1')
    .option('--listen <multiaddr...>', 'libp2p multiaddrs to listen on (default /ip4/127.0.0.1/tcp/0: this machine only; /ip4/0.0.0.0/tcp/4003 for every interface)', multiaddrList('--listen'), [] as string[])
    .option('--announce <multiaddr...>', 'addresses other machines reach this node at, advertised instead of --listen (behind NAT or a port forward: the public IP and port); see docs/operators.md', multiaddrList('--announce'), [] as string[])
    .option('--data-dir <dir>', 'where the gateway keeps its keys', process.env.PEERHOST_DATA_DIR ?? '.peerhost/gateway')
    .option('--project <dir...>', 'serve the functions of a project folder (repeatable)', collect, [] as string[])
    .option('--owner <address>', 'wallet that owns the --project functions (default: the gateway\'s own address)')
    .option('--contracts <file>', 'contracts.json of the chain (from `peerhost chain up`; env PEERHOST_CONTRACTS): serve what FunctionRegistry says, accept deploy uploads, sign tickets in its domain', process.env.PEERHOST_CONTRACTS)
    .option('--stake <amount>', 'with --contracts: stake this much (native currency, from the gateway\'s own address) as a gateway when its stake is below the minimum; a staked gateway publishes its endpoint and secret key on chain (needed for `peerhost secret put`)')
    .option('--public-url <url>', 'with --contracts: the URL builders and clients reach this gateway at, published on chain (default: its HTTP URL)')
    .option('--fallback-fee <amount>', 'with --contracts: fee offered per chain fallback request, native currency (default 0.001)')
    .addOption(new Option('--fallback-pay <who>', 'with --contracts: who pays a chain fallback request\'s fee: the project\'s escrow (escrow), the gateway (balance), or the escrow when it can (auto)').choices(['auto', 'escrow', 'balance'] as const).default('auto' as const))
    .option('--fallback-redundancy <n>', 'with --contracts: workers per chain fallback request (default: up to 3 known staked workers)', intOption('--fallback-redundancy', 1, 15))
    .option('--fallback-deadline <seconds>', 'with --contracts: chain deadline of a fallback request (default 60)', intOption('--fallback-deadline', 20, 86_400))
    .option('--fallback-mesh-share <percent>', 'with --contracts: share of a request\'s deadline the mesh gets before the chain is asked (default 50)', intOption('--fallback-mesh-share', 1, 100))
    .option('--registry-from-block <n>', 'with --contracts: read FunctionRegistry logs from this block, ignoring the saved cursor (default: the cursor in <data-dir>/registry.json, else contracts.json deployBlock)', bigintOption('--registry-from-block'))
    .option('--upload-quota <MiB>', 'bytes of uploads no registered version references yet, per wallet, in MiB (default 64)', intOption('--upload-quota', 1, 1_048_576))
    .option('--upload-lease <seconds>', 'how long an upload waits for a registered version to reference it before it is deleted (default 3600)', intOption('--upload-lease', 1, 30 * 86_400))
    .option('--upload-global-quota <MiB>', 'bytes of unreferenced uploads of all wallets together, in MiB (default 1024): wallets are free, so the per-wallet quota alone bounds nothing', intOption('--upload-global-quota', 1, 16_777_216))
    .option('--domain <domain>', 'also serve https://<wallet>.<domain>/<project>/<function>: one web origin per wallet (point *.<domain> at this gateway); the path form shares one origin and is unsafe for cookies')
    .option('--max-connections <n>', 'open HTTP connections held at once; more get 503 OVERLOADED and are closed (default 10000)', intOption('--max-connections', 1, 1_000_000))
    .option('--max-connections-per-ip <n>', 'open HTTP connections per client IP (IPv6: per /64) (default 256)', intOption('--max-connections-per-ip', 1, 1_000_000))
    .option('--max-requests <n>', 'HTTP requests handled at once; more get 429 RATE_LIMITED (default 1024)', intOption('--max-requests', 1, 1_000_000))
    .option('--max-requests-per-ip <n>', 'HTTP requests in flight per client IP (default 256)', intOption('--max-requests-per-ip', 1, 1_000_000))
    .option('--ip-rate-limit <n/seconds>', 'requests per client IP per window, e.g. 100/1 or 6000/60; over it 429 RATE_LIMITED (default: none)')
    .option('--chain-rate-limit <n/seconds>', 'with --contracts: chain-path requests per client IP per window (forced with x-peerhost-mode: onchain, or fallbacks after a failed mesh), each paid from an escrow or this gateway\'s balance; over it 429 RATE_LIMITED (default 10/60)')
    .option('--keep-versions <n>', 'with --contracts: versions of each project kept pinned besides the active one (default 5)', intOption('--keep-versions', 0, 1_000))
    .option('--json', 'print machine-readable lines')
    .option('--log-level <level>', 'trace|debug|info|warn|error|silent')
}

export type GatewayOptions = ReturnType<ReturnType<typeof gatewayOptions>['opts']>

/** The options `peerhost gateway <args>` would run with (devnet composes nodes in-process from the same flags). */
export function gatewayOptionsFrom (args: string[]): GatewayOptions {
  return gatewayOptions().exitOverride().parse(args, { from: 'user' }).opts()
}

/** Parts a caller composing a gateway in-process may replace (tests: a job dialer that fails, to cut the mesh). */
export interface GatewayParts {
  dial?: JobDialer
  /**
   * Checks the settlement batches naming this gateway (with --contracts); @default
   * batchChecker({ dataDir }). A composition returning undefined runs a gateway that checks nothing
   * (a watcher's test of a fault the gateway missed).
   */
  checker?: (components: BatchCheckerComponents) => BatchChecker | undefined
  /** told each start-up phase and how long it took (devnet prints them as its start-up timeline) */
  onPhase?: (phase: string, ms: number) => void
}

export interface RunningGateway {
  gateway: GatewayNode
  /** URLs of the --project functions */
  urls: string[]
  address: Address
  stop: () => Promise<void>
}

export function gatewayCommand (): Command<any, any> {
  return gatewayOptions().action(async (opts) => {
    const log = logger(opts, 'gateway')
    const { gateway, urls, address, stop } = await runGateway(opts, {}, log)
    onShutdown(stop, log)
    say(opts, `gateway ${gateway.libp2p.peerId.toString()} serving ${gateway.url}\n${urls.map(u => `  ${u}`).join('\n')}`,
      { event: 'ready', role: 'gateway', peerId: gateway.libp2p.peerId.toString(), address, url: gateway.url, functions: urls, registry: opts.contracts === undefined ? undefined : loadContracts(absolute(opts.contracts)).addresses.FunctionRegistry })
  })
}

/** Starts the gateway `peerhost gateway` runs, from its options (exported so tests compose it with `parts`). */
export async function runGateway (opts: GatewayOptions, parts: GatewayParts = {}, log = logger(opts, 'gateway')): Promise<RunningGateway> {
  // checked before the node runtime loads: a typo answers at once
  const ipRateLimit = parseRate(opts.ipRateLimit)
  const chainRateLimit = parseRate(opts.chainRateLimit, '--chain-rate-limit', 'BAD_CHAIN_RATE_LIMIT')
  const walletDomain = parseDomain(opts.domain)
  const { verifyChain, addProject, loadSecretKey, registerGateway, secretRoutes, secretStore, blockStorage, blockUploads, chainClient, chainDomain, chainFallback, stakingAdmission, createGateway, createMeshNode, deployRoutes, functionTable, loadSigner, loadPeerKey, registryPublicClient, registryTable, registryOwners, apiKeyStore, authGuard, keyRoutes, settlementClock, allowanceTracker, ticketLog, batchChecker } = await import('../deps.ts')
  if (opts.bootstrap.length === 0) throw new ConfigError('NO_BOOTSTRAP', 'a gateway needs at least one --bootstrap <multiaddr> to find workers')
  if (opts.publicUrl !== undefined && !/^https?:\/\/[^\s/]+/.test(opts.publicUrl)) throw new ConfigError('BAD_PUBLIC_URL', `--public-url must be an http(s) URL such as https://gateway.example.com, got "${opts.publicUrl}"`)
  if (opts.owner !== undefined && !isAddress(opts.owner)) throw new ConfigError('BAD_OWNER', `--owner must be a 0x-prefixed 20-byte address, got "${opts.owner}"`)
  await checkPorts([{ flag: '--port', port: opts.port, host: opts.host, what: 'the gateway\'s HTTP' }, ...multiaddrPorts(opts.listen, '--listen', 'the gateway\'s libp2p')])
  const dataDir = absolute(opts.dataDir)
  const signer = loadSigner(dataDir)
  const owner = (opts.owner ?? signer.address) as Address
  const contracts = opts.contracts === undefined ? undefined : loadContracts(absolute(opts.contracts))
  // never follow, stake on or sign for a chain other than the one the contracts file describes
  if (contracts !== undefined) await verifyChain(contracts, { file: opts.contracts })
  const reg = registry()
  const privateKey = await loadPeerKey(dataDir)
  const listen = opts.listen.length > 0 ? opts.listen : undefined
  // one libp2p for the mesh and for bitswap: workers fetch bundles from the gateway by CID
  const libp2p = await createMeshNode({ privateKey, listen, announce: opts.announce, bootstrap: opts.bootstrap, registry: reg })
  const storage = blockStorage({ dataDir })({ libp2p, logger: log })
  await storage.start()
  const table = contracts !== undefined
    ? registryTable({
      registry: contracts.addresses.FunctionRegistry,
      chainId: contracts.chainId,
      fromBlock: opts.registryFromBlock ?? contracts.deployBlock,
      resume: opts.registryFromBlock === undefined,
      cursorFile: join(dataDir, 'registry.json'),
      keepVersions: opts.keepVersions
    }, { client: registryPublicClient(contracts), storage, logger: log })
    : undefined
  const uploads = blockUploads({
    quotaBytes: opts.uploadQuota === undefined ? undefined : opts.uploadQuota * 1024 * 1024,
    leaseMs: opts.uploadLease === undefined ? undefined : opts.uploadLease * 1000,
    globalQuotaBytes: opts.uploadGlobalQuota === undefined ? undefined : opts.uploadGlobalQuota * 1024 * 1024,
    file: join(dataDir, 'uploads.json')
  })({ gateway: signer.address, storage, retains: table?.retains, logger: log })
  const local = functionTable()
  const served = []
  for (const dir of opts.project) served.push(...await addProject(local, owner, absolute(dir)))
  // --project bundles go to the blockstore too, so workers fetch them the same way (bitswap)
  for (const f of served) await storage.put(f.ref.bundleCid, local.bundle(f.ref.bundleCid)!)
  const functions = table === undefined
    ? local
    : {
        resolve: (w: string, p: string, f: string) => table.resolve(w, p, f) ?? local.resolve(w, p, f),
        bundle: (cid: string) => table.bundle(cid) ?? local.bundle(cid),
        list: () => [...table.list(), ...local.list()]
      }
  // with a chain: only staked, bound workers enter the view, and the chain answers when the mesh cannot
  const chain = contracts === undefined ? undefined : chainClient(contracts, signer.account)
  const admission = chain === undefined ? undefined : stakingAdmission()({ chain, logger: log })
  // secrets (and sealed chain requests): this gateway's X25519 key, published on chain below
  const secretKey = contracts === undefined ? undefined : loadSecretKey(dataDir)
  let view: GatewayNode['view'] | undefined
  const fallback = chain === undefined
    ? undefined
    : chainFallback({
      fee: parseAmount('--fallback-fee', opts.fallbackFee),
      pay: opts.fallbackPay,
      redundancy: opts.fallbackRedundancy,
      deadlineSec: opts.fallbackDeadline,
      meshShare: opts.fallbackMeshShare === undefined ? undefined : opts.fallbackMeshShare / 100
    })({
      chain,
      storage,
      sealKey: secretKey,
      peerId: libp2p.peerId.toString(),
      logger: log,
      knownWorkers: () => view?.size() ?? 0,
      workerPeer: (address) => {
        const w = view?.list().find(e => e.advert.address.toLowerCase() === address.toLowerCase())
        return w === undefined ? undefined : peerIdFromString(w.peerId)
      },
      // workers fetch the input over bitswap from connected peers: make sure they are connected
      reach: async () => {
        await Promise.allSettled((view?.list() ?? []).map(async w => {
          const peer = peerIdFromString(w.peerId)
          if (libp2p.getConnections(peer).length === 0) await libp2p.dial(peer, { signal: AbortSignal.timeout(2_000) })
        }))
      }
    })
  await admission?.start()
  if (chain !== undefined) {
    void chain.publicClient.getBalance({ address: signer.address }).then(balance => {
      if (balance === 0n) log.warn({ address: signer.address }, 'the gateway address holds no funds: the chain fallback cannot pay for requests until it is funded')
    }, () => {})
  }
  const secrets = contracts === undefined || secretKey === undefined
    ? undefined
    : secretStore({ dataDir, key: secretKey, chainId: contracts.chainId, gateway: signer.address, logger: log })
  // secrets and logs answer the project's current on-chain owner (transfers included), not the path's wallet
  const owners = contracts === undefined ? undefined : registryOwners()({ client: registryPublicClient(contracts), registry: contracts.addresses.FunctionRegistry })
  // API keys (functions with "auth": "api-key"): hashes only, in SQLite, changed by the project's owner
  const keys = apiKeyStore({ dataDir })
  const keyChanges = keyRoutes({ store: keys, chainId: contracts?.chainId, gateway: signer.address, logger: log, owners })
  const auth = authGuard({}, { keys, logger: log })
  const deploys = deployRoutes({ storage, table, uploads })
  const routes = secrets === undefined
    ? (app: Parameters<typeof deploys>[0]) => { deploys(app); keyChanges(app) }
    : (app: Parameters<typeof deploys>[0]) => { deploys(app); keyChanges(app); secretRoutes({ store: secrets, key: secretKey!, chainId: contracts!.chainId, gateway: signer.address, logger: log, owners })(app) }
  // tickets carry Settlement's own epoch, computed locally from the contract's genesis and length
  const clock = chain === undefined ? undefined : await settlementClock(chain)
  // every ticket is logged before it leaves, and batches naming this gateway are checked against the log
  const tickets = chain === undefined ? undefined : ticketLog({ dataDir })
  const checker = chain === undefined || tickets === undefined
    ? undefined
    : (parts.checker ?? batchChecker({ dataDir }))({ client: chain, tickets, fetch: async (cid, o) => await storage.fetch(cid, o), logger: log })
  const gateway = await createGateway({
    epochOf: clock?.epochAtMs,
    port: opts.port,
    host: opts.host,
    bootstrap: opts.bootstrap,
    listen,
    domain: contracts === undefined ? undefined : chainDomain(contracts),
    walletDomain,
    ingress: { maxConnections: opts.maxConnections, maxConnectionsPerIp: opts.maxConnectionsPerIp, maxRequests: opts.maxRequests, maxRequestsPerIp: opts.maxRequestsPerIp, ipRateLimit },
    chainRateLimit
  },
  { privateKey, signer, functions, logger: log, registry: reg, libp2p, routes, owners, spend: chain === undefined ? undefined : allowanceTracker()({ client: chain, gateway: signer.address }), admit: admission?.admit, fallback, secrets: secrets?.forJob, chainSecrets: fallback?.secretsFor, auth, dial: parts.dial, tickets, settlementStatus: checker?.status })
  view = gateway.view
  const t = performance.now()
  await gateway.start()
  parts.onPhase?.('http+mesh', Math.round(performance.now() - t))
  const timed = async (phase: string, p: Promise<unknown>): Promise<void> => {
    const t = performance.now()
    await p
    parts.onPhase?.(phase, Math.round(performance.now() - t))
  }
  const register = async (): Promise<void> => {
    if (chain === undefined || secretKey === undefined) return
    const stake = parseAmount('--stake', opts.stake)
    try {
      await registerGateway(chain, { endpoint: opts.publicUrl ?? gateway.url, encryptionKey: secretKey.publicKey }, { stake, logger: log })
    } catch (err: any) {
      // an unstaked gateway still starts (its requests go to the chain path), but staked
      // workers refuse its tickets (TICKET_INVALID) and builders cannot put secrets to it
      if (stake !== undefined || err?.code !== 'NOT_STAKED') throw err
      log.warn(`${String(err.message).replace(/;.*$/, '')}: staked workers refuse this gateway's tickets and builders cannot put secrets to it until it is staked (--stake <amount>)`)
    }
  }
  // the registry's first read, the upload store and the stake (transactions) wait on different things: at once
  await Promise.all([timed('registry', table?.start() ?? Promise.resolve()), uploads.start(), timed('stake', register())])
  const stop = async (): Promise<void> => { await fallback?.stop(); await admission?.stop(); await uploads.stop(); await table?.stop(); await storage.stop(); await gateway.stop(); checker?.close(); tickets?.close(); keys.close() }
  const urls = served.map(f => `${gateway.url}/${f.ref.wallet}/${f.ref.project}/${f.ref.name}`)
  return { gateway, urls, address: signer.address, stop }
}

/** `--ip-rate-limit 100/1`, `--chain-rate-limit 10/60`: requests per seconds. */
function parseRate (value: string | undefined, flag = '--ip-rate-limit', code = 'BAD_IP_RATE_LIMIT'): { requests: number, perSeconds: number } | undefined {
  if (value === undefined) return undefined
  const m = /^(\d{1,7})\/(\d{1,5})$/.exec(value.trim())
  if (m === null || Number(m[1]) < 1 || Number(m[2]) < 1) throw new ConfigError(code, `${flag} must be <requests>/<seconds> with both at least 1, such as 100/1 or 6000/60; got "${value}"`)
  return { requests: Number(m[1]), perSeconds: Number(m[2]) }
}

/** `--domain peerhost.example`: a DNS name whose subdomains are wallets. */
function parseDomain (value: string | undefined): string | undefined {
  if (value === undefined) return undefined
  const d = value.trim().toLowerCase().replace(/\.$/, '')
  if (!/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/.test(d)) throw new ConfigError('BAD_DOMAIN', `--domain must be a DNS name such as peerhost.example or localhost (no scheme, port or path); got "${value}"`)
  return d
}
