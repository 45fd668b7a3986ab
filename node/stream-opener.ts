/**
 * Opens protocol streams to a peer without tripping the peer's early-stream limit.
 *
 * Streams that reach a node before it has finished setting up the connection ("early" streams:
 * its muxer exists, its connection object and stream listener not yet) are held by the muxer, and
 * past `maxEarlyStreams` (NODE_DEFAULTS, node/libp2p.ts) the receiver aborts the whole connection,
 * every stream on it included. A gateway that meets a burst of session opens for a worker it is
 * not yet connected to opens them all at once on the new connection: 200 at once lost all 200
 * (test/integration/stream-burst.spec.ts). So on a connection not yet known to be set up at the
 * far end, at most `earlyLimit` opens are in flight and they negotiate fully (the peer's answer to
 * the protocol selection proves its stream listener is in place); the others queue for a bounded
 * time (their own signal), and once one open has been answered every later open goes straight on.
 */
import type { Connection, PeerId, Stream } from '@libp2p/interface'
import { NODE_DEFAULTS } from './constants.ts'
import type { PeerHostLibp2p } from './libp2p.ts'

export interface StreamOpenOptions {
  signal: AbortSignal
  negotiateFully?: boolean
  maxOutboundStreams?: number
}

/** Thrown when an open waited for a connection still being set up and its signal ended the wait. */
export class StreamOpenQueued extends Error {
  readonly code = 'STREAM_OPEN_QUEUED'
  constructor (message: string) { super(message); this.name = 'StreamOpenQueued' }
}

export type StreamOpener = (peer: PeerId, protocol: string, options: StreamOpenOptions) => Promise<Stream>

export interface StreamOpenerInit {
  /** opens in flight at once on a connection not yet set up at the far end; @default half of NODE_DEFAULTS.maxEarlyStreams (the rest is left to identify, ping, DHT and pubsub streams) */
  earlyLimit?: number
}

interface Gate { opening: number, waiters: Set<() => void> }

export function streamOpener (libp2p: Pick<PeerHostLibp2p, 'getConnections' | 'dial'>, init: StreamOpenerInit = {}): StreamOpener {
  const earlyLimit = init.earlyLimit ?? Math.floor(NODE_DEFAULTS.maxEarlyStreams / 2)
  if (!Number.isInteger(earlyLimit) || earlyLimit < 1) throw new RangeError(`earlyLimit must be a positive integer, got ${earlyLimit}`)
  /** connections on which the far end answered a protocol selection */
  const ready = new WeakSet<Connection>()
  /** per peer: opens in flight on a connection not yet ready, and the opens waiting for room */
  const gates = new Map<string, Gate>()

  const openConnection = (peer: PeerId): Connection | undefined => libp2p.getConnections(peer).find(c => c.status === 'open')

  /** Waits until the gate has room or `signal` ends; the gate is left without the caller's place. */
  async function room (gate: Gate, signal: AbortSignal, peer: PeerId): Promise<void> {
    signal.throwIfAborted()
    await new Promise<void>((resolve, reject) => {
      const wake = (): void => { signal.removeEventListener('abort', onAbort); gate.waiters.delete(wake); resolve() }
      const onAbort = (): void => {
        gate.waiters.delete(wake)
        reject(new StreamOpenQueued(`the connection to ${peer.toString()} is still being set up and ${gate.opening} stream opens are in flight on it`))
      }
      gate.waiters.add(wake)
      signal.addEventListener('abort', onAbort, { once: true })
    })
  }

  function wakeAll (gate: Gate): void {
    for (const w of [...gate.waiters]) w()
  }

  return async function open (peer, protocol, options) {
    const existing = openConnection(peer)
    if (existing !== undefined && ready.has(existing)) return await existing.newStream(protocol, options)
    const key = peer.toString()
    let gate: Gate
    for (;;) {
      const conn = openConnection(peer)
      if (conn !== undefined && ready.has(conn)) return await conn.newStream(protocol, options)
      // looked up each time: a gate left empty is dropped, and a woken waiter must join the current one
      gate = gates.get(key) ?? { opening: 0, waiters: new Set() }
      gates.set(key, gate)
      if (gate.opening < earlyLimit) break
      await room(gate, options.signal, peer)
    }
    gate.opening++
    try {
      const conn = openConnection(peer) ?? await libp2p.dial(peer, { signal: options.signal })
      if (ready.has(conn)) return await conn.newStream(protocol, options)
      const stream = await conn.newStream(protocol, { ...options, negotiateFully: true })
      ready.add(conn)
      return stream
    } finally {
      gate.opening--
      // ready: every waiter goes straight on; not: one place freed
      wakeAll(gate)
      if (gate.opening === 0 && gate.waiters.size === 0) gates.delete(key)
    }
  }
}
