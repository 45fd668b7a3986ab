import { Command } from '@commander-js/extra-typings'
import { isAddress, type Address } from 'viem'
import { addProject, blockStorage, chainDomain, ConfigError, createGateway, createMeshNode, deployRoutes, loadContracts, functionTable, loadSigner, loadPeerKey, registryPublicClient, registryTable } from '../deps.ts'
import { absolute, collect, intOption, logger, onShutdown, registry, say } from '../util.ts'

export function gatewayCommand (): Command<any, any> {
  return new Command('gateway')
    .description('run a gateway: HTTP ingress at /<wallet>/<project>/<function>, dispatching jobs to workers over the mesh')
    .option('--bootstrap <multiaddr...>', 'bootstrap node multiaddrs with /p2p/<id> (env PEERHOST_BOOTSTRAP)', collect, collect(process.env.PEERHOST_BOOTSTRAP ?? ''))
    .option('--port <port>', 'HTTP port (env PEERHOST_PORT)', intOption('--port', 0, 65535), Number(process.env.PEERHOST_PORT ?? 8080))
    .option('--host <host>', 'HTTP host to bind', '127.0.0.1')
    .option('--listen <multiaddr...>', 'libp2p multiaddrs to listen on', collect, [] as string[])
    .option('--data-dir <dir>', 'where the gateway keeps its keys', process.env.PEERHOST_DATA_DIR ?? '.peerhost/gateway')
    .option('--project <dir...>', 'serve the functions of a project folder (repeatable)', collect, [] as string[])
    .option('--owner <address>', 'wallet that owns the --project functions (default: the gateway\'s own address)')
    .option('--contracts <file>', 'contracts.json of the chain (from `peerhost chain up`; env PEERHOST_CONTRACTS): serve what FunctionRegistry says, accept deploy uploads, sign tickets in its domain', process.env.PEERHOST_CONTRACTS)
    .option('--json', 'print machine-readable lines')
    .option('--log-level <level>', 'trace|debug|info|warn|error|silent')
    .action(async (opts) => {
      if (opts.bootstrap.length === 0) throw new ConfigError('NO_BOOTSTRAP', 'a gateway needs at least one --bootstrap <multiaddr> to find workers')
      if (opts.owner !== undefined && !isAddress(opts.owner)) throw new ConfigError('BAD_OWNER', `--owner must be a 0x-prefixed 20-byte address, got "${opts.owner}"`)
      const dataDir = absolute(opts.dataDir)
      const log = logger(opts, 'gateway')
      const signer = loadSigner(dataDir)
      const owner = (opts.owner ?? signer.address) as Address
      const contracts = opts.contracts === undefined ? undefined : loadContracts(absolute(opts.contracts))
      const reg = registry()
      const privateKey = await loadPeerKey(dataDir)
      const listen = opts.listen.length > 0 ? opts.listen : undefined
      // one libp2p for the mesh and for bitswap: workers fetch bundles from the gateway by CID
      const libp2p = await createMeshNode({ privateKey, listen, bootstrap: opts.bootstrap, registry: reg })
      const storage = blockStorage({ dataDir })({ libp2p, logger: log })
      await storage.start()
      const table = contracts !== undefined
        ? registryTable({ registry: contracts.addresses.FunctionRegistry }, { client: registryPublicClient(contracts), storage, logger: log })
        : undefined
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
      const gateway = await createGateway({ port: opts.port, host: opts.host, bootstrap: opts.bootstrap, listen, domain: contracts === undefined ? undefined : chainDomain(contracts) },
        { privateKey, signer, functions, logger: log, registry: reg, libp2p, routes: deployRoutes({ storage, table }) })
      await gateway.start()
      await table?.start()
      onShutdown(async () => { await table?.stop(); await storage.stop(); await gateway.stop() }, log)
      const urls = served.map(f => `${gateway.url}/${f.ref.wallet}/${f.ref.project}/${f.ref.name}`)
      say(opts, `gateway ${gateway.libp2p.peerId.toString()} serving ${gateway.url}\n${urls.map(u => `  ${u}`).join('\n')}`,
        { event: 'ready', role: 'gateway', peerId: gateway.libp2p.peerId.toString(), address: signer.address, url: gateway.url, functions: urls, registry: contracts?.addresses.FunctionRegistry })
    })
}
