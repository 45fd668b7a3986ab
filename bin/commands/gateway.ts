import { Command } from '@commander-js/extra-typings'
import { isAddress, type Address } from 'viem'
import { addProject, ConfigError, createGateway, functionTable, loadSigner, loadPeerKey } from '../deps.ts'
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
    .option('--json', 'print machine-readable lines')
    .option('--log-level <level>', 'trace|debug|info|warn|error|silent')
    .action(async (opts) => {
      if (opts.bootstrap.length === 0) throw new ConfigError('NO_BOOTSTRAP', 'a gateway needs at least one --bootstrap <multiaddr> to find workers')
      if (opts.owner !== undefined && !isAddress(opts.owner)) throw new ConfigError('BAD_OWNER', `--owner must be a 0x-prefixed 20-byte address, got "${opts.owner}"`)
      const dataDir = absolute(opts.dataDir)
      const log = logger(opts, 'gateway')
      const signer = loadSigner(dataDir)
      const owner = (opts.owner ?? signer.address) as Address
      const functions = functionTable()
      const served = []
      for (const dir of opts.project) served.push(...await addProject(functions, owner, absolute(dir)))
      const gateway = await createGateway({ port: opts.port, host: opts.host, bootstrap: opts.bootstrap, listen: opts.listen.length > 0 ? opts.listen : undefined },
        { privateKey: await loadPeerKey(dataDir), signer, functions, logger: log, registry: registry() })
      await gateway.start()
      onShutdown(async () => await gateway.stop(), log)
      const urls = served.map(f => `${gateway.url}/${f.ref.wallet}/${f.ref.project}/${f.ref.name}`)
      say(opts, `gateway ${gateway.libp2p.peerId.toString()} serving ${gateway.url}\n${urls.map(u => `  ${u}`).join('\n')}`,
        { event: 'ready', role: 'gateway', peerId: gateway.libp2p.peerId.toString(), address: signer.address, url: gateway.url, functions: urls })
    })
}
