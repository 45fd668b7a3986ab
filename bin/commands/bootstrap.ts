import { Command } from '@commander-js/extra-typings'
import type { BootstrapNode } from '#bootstrap'
import { absolute, collect, intOption, multiaddrList, logger, onShutdown, registry, say } from '../util.ts'
import { checkPorts, multiaddrPorts } from '../ports.ts'

function bootstrapOptions () {
  return new Command('bootstrap')
    .description('run a bootstrap node: a stable peer id and address that workers and gateways dial first (DHT server, gossip relay; runs no jobs)')
    .option('--listen <multiaddr...>', 'multiaddrs to listen on (repeatable or comma-separated; default /ip4/127.0.0.1/tcp/4001: this machine only; /ip4/0.0.0.0/tcp/4001 for every interface)', multiaddrList('--listen'), [] as string[])
    .option('--announce <multiaddr...>', 'addresses other machines reach this node at, advertised instead of --listen (behind NAT or a port forward: the public IP and port); see docs/operators.md', multiaddrList('--announce'), [] as string[])
    .option('--peer <multiaddr...>', 'other bootstrap nodes to peer with', collect, [] as string[])
    .option('--data-dir <dir>', 'where the node keeps its identity', process.env.PEERHOST_DATA_DIR ?? '.peerhost/bootstrap')
    .option('--admin-port <port>', 'port for /_peerhost/health, /_peerhost/status and /_peerhost/metrics', intOption('--admin-port', 0, 65535))
    .option('--json', 'print machine-readable lines')
    .option('--log-level <level>', 'trace|debug|info|warn|error|silent')
}

export type BootstrapOptions = ReturnType<ReturnType<typeof bootstrapOptions>['opts']>

/** The options `peerhost bootstrap <args>` would run with (devnet composes nodes in-process from the same flags). */
export function bootstrapOptionsFrom (args: string[]): BootstrapOptions {
  return bootstrapOptions().exitOverride().parse(args, { from: 'user' }).opts()
}

export function bootstrapCommand (): Command<any, any> {
  return bootstrapOptions().action(async (opts) => {
    const log = logger(opts, 'bootstrap')
    const node = await runBootstrap(opts, log)
    onShutdown(async () => await node.stop(), log)
    say(opts, `bootstrap node ${node.libp2p.peerId.toString()} listening on:\n${node.addrs().map(a => `  ${a}`).join('\n')}${node.admin !== undefined ? `\nadmin: ${node.admin.url}/_peerhost/health` : ''}`,
      { event: 'ready', role: 'bootstrap', peerId: node.libp2p.peerId.toString(), addrs: node.addrs(), admin: node.admin?.url })
  })
}

/** Starts the bootstrap node `peerhost bootstrap` runs, from its options (exported so devnet composes it in-process). */
export async function runBootstrap (opts: BootstrapOptions, log = logger(opts, 'bootstrap')): Promise<BootstrapNode> {
  const { createBootstrap, loadPeerKey } = await import('../deps.ts')
  const dataDir = absolute(opts.dataDir)
  const listen = opts.listen.length > 0 ? opts.listen : ['/ip4/127.0.0.1/tcp/4001']
  await checkPorts([...multiaddrPorts(listen, '--listen', 'the bootstrap node\'s libp2p'), ...(opts.adminPort === undefined ? [] : [{ flag: '--admin-port', port: opts.adminPort, what: 'the bootstrap node\'s admin HTTP' }])])
  const node = await createBootstrap({
    listen,
    announce: opts.announce,
    peers: opts.peer,
    adminPort: opts.adminPort
  }, { privateKey: await loadPeerKey(dataDir), logger: log, registry: registry() })
  await node.start()
  return node
}
