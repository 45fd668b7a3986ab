import { Command } from '@commander-js/extra-typings'
import { absolute, collect, intOption, multiaddrList, logger, onShutdown, registry, say } from '../util.ts'
import { checkPorts, multiaddrPorts } from '../ports.ts'

export function bootstrapCommand (): Command<any, any> {
  return new Command('bootstrap')
    .description('run a bootstrap node: a stable peer id and address that workers and gateways dial first (DHT server, gossip relay; runs no jobs)')
    .option('--listen <multiaddr...>', 'multiaddrs to listen on (repeatable or comma-separated; default /ip4/127.0.0.1/tcp/4001: this machine only; /ip4/0.0.0.0/tcp/4001 for every interface)', multiaddrList('--listen'), [] as string[])
    .option('--announce <multiaddr...>', 'addresses other machines reach this node at, advertised instead of --listen (behind NAT or a port forward: the public IP and port); see docs/operators.md', multiaddrList('--announce'), [] as string[])
    .option('--peer <multiaddr...>', 'other bootstrap nodes to peer with', collect, [] as string[])
    .option('--data-dir <dir>', 'where the node keeps its identity', process.env.PEERHOST_DATA_DIR ?? '.peerhost/bootstrap')
    .option('--admin-port <port>', 'port for /_peerhost/health, /_peerhost/status and /_peerhost/metrics', intOption('--admin-port', 0, 65535))
    .option('--json', 'print machine-readable lines')
    .option('--log-level <level>', 'trace|debug|info|warn|error|silent')
    .action(async (opts) => {
      const { createBootstrap, loadPeerKey } = await import('../deps.ts')
      const dataDir = absolute(opts.dataDir)
      const log = logger(opts, 'bootstrap')
      const listen = opts.listen.length > 0 ? opts.listen : ['/ip4/127.0.0.1/tcp/4001']
      await checkPorts([...multiaddrPorts(listen, '--listen', 'the bootstrap node\'s libp2p'), ...(opts.adminPort === undefined ? [] : [{ flag: '--admin-port', port: opts.adminPort, what: 'the bootstrap node\'s admin HTTP' }])])
      const node = await createBootstrap({
        listen,
        announce: opts.announce,
        peers: opts.peer,
        adminPort: opts.adminPort
      }, { privateKey: await loadPeerKey(dataDir), logger: log, registry: registry() })
      await node.start()
      onShutdown(async () => await node.stop(), log)
      say(opts, `bootstrap node ${node.libp2p.peerId.toString()} listening on:\n${node.addrs().map(a => `  ${a}`).join('\n')}${node.admin !== undefined ? `\nadmin: ${node.admin.url}/_peerhost/health` : ''}`,
        { event: 'ready', role: 'bootstrap', peerId: node.libp2p.peerId.toString(), addrs: node.addrs(), admin: node.admin?.url })
    })
}
