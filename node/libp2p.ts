/**
 * The one libp2p v3 setup every role shares: TCP and WebSockets, Noise, Yamux, identify, ping,
 * kad-dht, bootstrap discovery and gossipsub, with connection and stream limits set on purpose.
 */
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { bootstrap } from '@libp2p/bootstrap'
import { gossipsub, type GossipSub } from '@libp2p/gossipsub'
import { identify, type Identify } from '@libp2p/identify'
import type { Libp2p, PrivateKey } from '@libp2p/interface'
import { kadDHT, passthroughMapper, type KadDHT } from '@libp2p/kad-dht'
import { ping, type Ping } from '@libp2p/ping'
import { prometheusMetrics } from '@libp2p/prometheus-metrics'
import { webSockets } from '@libp2p/websockets'
import { createLibp2p } from 'libp2p'
import type { Registry } from 'prom-client'
import { LIMITS, workersTopic } from '#protocol'
import { NODE_DEFAULTS } from './constants.ts'
import { corkedTcp } from './corked-tcp.ts'

export type PeerHostServices = {
  identify: Identify
  ping: Ping
  dht: KadDHT
  pubsub: GossipSub
}

export type PeerHostLibp2p = Libp2p<PeerHostServices>

export interface MeshNodeInit {
  privateKey: PrivateKey
  /** multiaddrs to listen on; @default ['/ip4/127.0.0.1/tcp/0'] */
  listen?: string[]
  /**
   * multiaddrs other machines reach this node at, advertised instead of the listen addresses
   * (behind NAT or a port forward: the public IP and port); @default the listen addresses
   */
  announce?: string[]
  /** bootstrap multiaddrs (with /p2p/<id>); empty for a bootstrap node */
  bootstrap?: string[]
  /** DHT server mode: bootstrap nodes serve the DHT; other roles are clients. @default false */
  dhtServer?: boolean
  /** Prometheus registry that libp2p metrics join; none = no libp2p metrics */
  registry?: Registry
  /** region of the workers topic; @default 'global' */
  region?: string
  /**
   * libp2p's connection monitor: how often each connection's round trip is measured by a ping, and
   * how long a ping may take before it counts as failed (a failed ping never aborts the connection
   * here: NODE_DEFAULTS.abortConnectionOnPingFailure). @default libp2p's: 10 s, adaptive ≥ 5 s
   */
  ping?: { intervalMs: number, timeoutMs: number }
}

/**
 * Gossipsub peer-score parameters for the workers topic. A worker adverts every 2 s, so a mesh
 * peer that delivers nothing for several intervals is suspect; invalid messages (forged adverts)
 * weigh heavily (P4) so a forger is graylisted after a handful.
 */
function scoreParams (topic: string): any {
  return {
    topics: {
      [topic]: {
        topicWeight: 1,
        timeInMeshWeight: 0.01,
        timeInMeshQuantum: 1_000,
        timeInMeshCap: 100,
        firstMessageDeliveriesWeight: 1,
        firstMessageDeliveriesDecay: 0.9,
        firstMessageDeliveriesCap: 50,
        // P3 (mesh delivery deficit) stays off: on a small mesh honest peers can be quiet.
        meshMessageDeliveriesWeight: 0,
        meshMessageDeliveriesDecay: 0.9,
        meshMessageDeliveriesCap: 10,
        meshMessageDeliveriesThreshold: 1,
        meshMessageDeliveriesWindow: 10,
        meshMessageDeliveriesActivation: 30_000,
        meshFailurePenaltyWeight: 0,
        meshFailurePenaltyDecay: 0.9,
        invalidMessageDeliveriesWeight: -100,
        invalidMessageDeliveriesDecay: 0.5
      }
    },
    topicScoreCap: 100,
    appSpecificScore: () => 0,
    appSpecificWeight: 1,
    IPColocationFactorWeight: 0,
    behaviourPenaltyWeight: -10,
    behaviourPenaltyDecay: 0.9,
    decayInterval: 1_000,
    decayToZero: 0.01,
    retainScore: 60_000
  }
}

export async function createMeshNode (init: MeshNodeInit): Promise<PeerHostLibp2p> {
  const topic = workersTopic(init.region)
  const peerDiscovery = (init.bootstrap?.length ?? 0) > 0
    ? [bootstrap({ list: init.bootstrap ?? [], timeout: 10 })]
    : []
  return await createLibp2p({
    privateKey: init.privateKey,
    start: false,
    addresses: { listen: init.listen ?? ['/ip4/127.0.0.1/tcp/0'], ...(init.announce !== undefined && init.announce.length > 0 ? { announce: init.announce } : {}) },
    transports: [corkedTcp(), webSockets()],
    connectionEncrypters: [noise()],
    // A gateway under load opens dozens of job or session streams the moment it connects to a
    // worker; streams that arrive before the receiving node has finished setting up the
    // connection are "early", and past yamux's default of 10 the whole connection is aborted
    // (every job and session on it). 64 covers a gateway's per-worker burst; the window in which a
    // stream counts as early lasts only until the upgrade completes, so the buffered bytes an
    // attacker can hold this way stay small and short-lived.
    // and a stream's receive window at most 4 MiB (yamux grows it to 16 MiB with throughput): what
    // a paused relay (a client that stops reading a streamed body or a session) can still be sent
    // is bounded by it, per stream; at loopback or LAN round trips 4 MiB is no throughput limit
    streamMuxers: [yamux({ maxEarlyStreams: NODE_DEFAULTS.maxEarlyStreams, streamOptions: { maxStreamWindowSize: NODE_DEFAULTS.maxStreamWindowBytes } })],
    peerDiscovery,
    connectionManager: {
      maxConnections: NODE_DEFAULTS.maxConnections,
      maxIncomingPendingConnections: NODE_DEFAULTS.maxIncomingPendingConnections
    },
    // a ping answered late by a busy peer must not abort a live connection and its sessions: see
    // NODE_DEFAULTS.abortConnectionOnPingFailure
    connectionMonitor: {
      abortConnectionOnPingFailure: NODE_DEFAULTS.abortConnectionOnPingFailure,
      ...(init.ping !== undefined ? { pingInterval: init.ping.intervalMs, pingTimeout: { minTimeout: init.ping.timeoutMs, maxTimeout: init.ping.timeoutMs } } : {})
    },
    metrics: init.registry != null ? prometheusMetrics({ registry: init.registry, preserveExistingMetrics: true }) : undefined,
    services: {
      identify: identify(),
      ping: ping(),
      dht: kadDHT({
        protocol: '/peerhost/kad/1.0.0',
        clientMode: init.dhtServer !== true,
        // loopback and private addresses are how a local network is reachable
        peerInfoMapper: passthroughMapper
      }),
      pubsub: gossipsub({
        // every message is signed by its sender's peer key and verified before our validators run
        globalSignaturePolicy: 'StrictSign',
        allowPublishToZeroTopicPeers: true,
        emitSelf: false,
        // adverts are tiny; a peer sending more than a few of them per RPC is misbehaving
        maxInboundDataLength: LIMITS.maxAdvertBytes * 16,
        scoreParams: scoreParams(topic),
        scoreThresholds: { gossipThreshold: -10, publishThreshold: -50, graylistThreshold: -80, acceptPXThreshold: 10, opportunisticGraftThreshold: 2 },
        // a bootstrap node relays adverts for nodes that have no direct link yet
        fallbackToFloodsub: false
      } as any)
    }
  }) as PeerHostLibp2p
}

/** The node's dialable addresses, as strings with /p2p/<id>. */
export function dialableAddrs (node: PeerHostLibp2p): string[] {
  return node.getMultiaddrs().map(ma => ma.toString())
}
