/**
 * A bootstrap node: a stable peer id and address that workers and gateways dial first, a kad-dht
 * server, and a relay for the workers topic (it validates adverts exactly as a gateway does, so
 * forged adverts die here). It runs no jobs.
 */
import type { PrivateKey } from '@libp2p/interface'
import { Gauge, type Registry } from 'prom-client'
import { workersTopic } from '#protocol'
import { adminServer, createMeshNode, dialableAddrs, workerView, ADVERT_VERDICTS, type AdminServer, type Logger, type PeerHostLibp2p } from '#node'

export interface BootstrapInit {
  /** @default ['/ip4/127.0.0.1/tcp/0'] */
  listen?: string[]
  /** addresses advertised to other machines instead of the listen addresses (NAT, port forward) */
  announce?: string[]
  /** other bootstrap nodes to peer with */
  peers?: string[]
  /** admin HTTP port for health and metrics; undefined = none */
  adminPort?: number
  region?: string
}

export interface BootstrapComponents {
  privateKey: PrivateKey
  logger: Logger
  registry: Registry
}

export interface BootstrapNode {
  readonly libp2p: PeerHostLibp2p
  readonly admin?: AdminServer
  addrs: () => string[]
  start: () => Promise<void>
  stop: () => Promise<void>
}

export async function createBootstrap (init: BootstrapInit, components: BootstrapComponents): Promise<BootstrapNode> {
  const log = components.logger.child({ component: 'peerhost:bootstrap' })
  const topic = workersTopic(init.region)
  const libp2p = await createMeshNode({ privateKey: components.privateKey, listen: init.listen, announce: init.announce, bootstrap: init.peers, dhtServer: true, registry: components.registry, region: init.region })
  const view = workerView()
  new Gauge({ name: 'peerhost_bootstrap_connections', help: 'open connections', registers: [components.registry], collect () { this.set(libp2p.getConnections().length) } })
  const admin = init.adminPort === undefined
    ? undefined
    : adminServer({ port: init.adminPort }, {
      registry: components.registry,
      status: () => ({
        role: 'bootstrap',
        peerId: libp2p.peerId.toString(),
        addrs: dialableAddrs(libp2p),
        connections: libp2p.getConnections().length,
        peers: libp2p.getPeers().map(p => p.toString()),
        workersSeen: view.size()
      })
    })
  return {
    libp2p,
    admin,
    addrs: () => dialableAddrs(libp2p),
    async start () {
      await libp2p.start()
      libp2p.services.pubsub.topicValidators.set(topic, async (_peer, message) => ADVERT_VERDICTS[await view.validate(message)])
      libp2p.services.pubsub.subscribe(topic)
      await admin?.start()
      log.info({ peerId: libp2p.peerId.toString(), addrs: dialableAddrs(libp2p), admin: admin?.url }, 'bootstrap node started')
    },
    async stop () {
      await admin?.stop()
      await libp2p.stop()
    }
  }
}
