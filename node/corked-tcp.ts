/**
 * `@libp2p/tcp` with one socket write per event-loop turn instead of one per chunk.
 *
 * Why (issue 10, hot path): `@libp2p/tcp` writes each chunk it is handed with its own
 * `socket.write`, and every Noise message reaches it as two chunks (the 2-byte length prefix, then
 * the ciphertext), a Yamux data frame as two Noise messages: one job frame became four `write`
 * system calls per hop, and `strace` counted ≈ 12 writes per request across gateway and worker
 * (docs/benchmarks.md, "Where a request's writes go"). Corking the socket on the first write of a
 * turn and uncorking it on `process.nextTick` makes Node hand everything written meanwhile to the
 * kernel as one `writev`: same bytes, same order, same backpressure (`write` still answers false
 * past the socket's high-water mark and `drain` still follows), a fraction of the system calls.
 * Each one costs ~10–30 µs here and far more under gVisor-style interception.
 *
 * How: the transport is `@libp2p/tcp`'s own; only the connection handed to the upgrader (its
 * public interface, for inbound and outbound connections alike) gets a `sendData` that corks first.
 */
import type { MultiaddrConnection, Transport, Upgrader } from '@libp2p/interface'
import { tcp, type TCPComponents, type TCPOptions } from '@libp2p/tcp'
import { Socket } from 'node:net'

/** `sendData` as `@libp2p/tcp`'s connection defines it (not part of the public interface). */
interface SendsData { socket?: unknown, sendData?: (data: unknown) => unknown }

/** Makes `maConn` cork its socket for the rest of the turn on each first write. Unknown shapes are left alone. */
export function corkWrites (maConn: MultiaddrConnection): MultiaddrConnection {
  const conn = maConn as unknown as SendsData
  const socket = conn.socket
  const send = conn.sendData
  if (!(socket instanceof Socket) || typeof send !== 'function') return maConn
  let corked = false
  const uncork = (): void => {
    corked = false
    socket.uncork()
  }
  conn.sendData = function (data: unknown) {
    if (!corked && !socket.destroyed) {
      corked = true
      socket.cork()
      process.nextTick(uncork)
    }
    return send.call(this, data)
  }
  return maConn
}

function corkingUpgrader (upgrader: Upgrader): Upgrader {
  return new Proxy(upgrader, {
    get (target, prop) {
      if (prop === 'upgradeInbound') return async (maConn: MultiaddrConnection, opts: any) => await target.upgradeInbound(corkWrites(maConn), opts)
      if (prop === 'upgradeOutbound') return async (maConn: MultiaddrConnection, opts: any) => await target.upgradeOutbound(corkWrites(maConn), opts)
      const value = Reflect.get(target, prop, target)
      return typeof value === 'function' ? value.bind(target) : value
    }
  })
}

/** `tcp(init)` whose connections write once per event-loop turn (see the module comment). */
export function corkedTcp (init?: TCPOptions): (components: TCPComponents) => Transport {
  const make = tcp(init)
  return (components) => {
    const transport = make(components)
    const dial = transport.dial.bind(transport)
    const createListener = transport.createListener.bind(transport)
    transport.dial = async (ma, options) => await dial(ma, { ...options, upgrader: corkingUpgrader(options.upgrader) })
    transport.createListener = (options) => createListener({ ...options, upgrader: corkingUpgrader(options.upgrader) })
    return transport
  }
}
