/**
 * Gateway–worker connections under a burst (issue 12, docs/benchmarks.md "500 sessions at once"),
 * with real libp2p nodes (createMeshNode: TCP, Noise, Yamux) on 127.0.0.1:
 *
 * - a burst of stream opens on a brand-new connection: past the receiver's early-stream limit
 *   (NODE_DEFAULTS.maxEarlyStreams) it aborts the whole connection; the gateway's stream opener
 *   (node/stream-opener.ts) queues the burst until the far end has set the connection up;
 * - a peer that answers libp2p's connection-monitor ping late (a busy event loop) keeps its
 *   connection and the streams on it: libp2p's connection monitor aborted live connections whose
 *   ping took more than 5 s (NODE_DEFAULTS.abortConnectionOnPingFailure);
 * - a burst of stream opens on a ready connection whose answers arrive while the opening node's
 *   event loop is stalled past their dial timeout: each open is a protocol-selection round trip
 *   (libp2p's `negotiateFully: false` is not implemented by the installed multistream-select),
 *   and after a stall Node ran the due timers before reading the answers (node/deadline.ts).
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { createServer, type AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { createInterface } from 'node:readline'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { Stream } from '@libp2p/interface'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { createMeshNode, NODE_DEFAULTS, type PeerHostLibp2p } from '#node'
import { deadline } from '../../node/deadline.ts'
import { streamOpener, StreamOpenQueued } from '../../node/stream-opener.ts'
import { waitFor } from '../helpers/network.ts'

const ECHO = '/peerhost/test-echo/1.0.0'
const PING = '/ipfs/ping/1.0.0'

/** Echoes every message on an echo stream (as a worker answers its job streams). */
async function serveEcho (node: PeerHostLibp2p): Promise<void> {
  await node.handle(ECHO, (stream) => {
    stream.addEventListener('message', evt => { stream.send(evt.data) })
  }, { maxInboundStreams: 1_000 })
}

/** Sends one byte and waits for it to come back, or rejects (bounded). */
async function echoOnce (stream: Stream, byte: number, timeoutMs = 20_000): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => { reject(new Error(`no echo in ${timeoutMs} ms`)) }, timeoutMs)
    stream.addEventListener('message', evt => {
      clearTimeout(timer)
      const got = evt.data.subarray()[0]
      if (got === byte) resolve(); else reject(new Error(`echo ${got}, expected ${byte}`))
    }, { once: true })
    stream.addEventListener('close', evt => { clearTimeout(timer); reject(evt.error ?? new Error('stream closed')) }, { once: true })
    stream.send(new Uint8Array([byte]))
  })
}

describe('gateway–worker connections under a burst (real libp2p)', function () {
  this.timeout(90_000)
  const nodes: PeerHostLibp2p[] = []
  async function node (ping?: { intervalMs: number, timeoutMs: number }): Promise<PeerHostLibp2p> {
    const n = await createMeshNode({ privateKey: await generateKeyPair('Ed25519'), ...(ping !== undefined ? { ping } : {}) })
    nodes.push(n)
    await n.start()
    return n
  }
  afterEach(async () => { await Promise.all(nodes.splice(0).map(async n => { await n.stop() })) })

  it('200 stream opens at once on a new connection all succeed on that one connection (the far end holds 64 early streams at most)', async () => {
    const gateway = await node()
    const worker = await node()
    await serveEcho(worker)
    await gateway.peerStore.merge(worker.peerId, { multiaddrs: worker.getMultiaddrs() })
    const open = streamOpener(gateway)
    const N = 200
    assert.ok(N > NODE_DEFAULTS.maxEarlyStreams * 3, 'the burst is well past the early-stream limit')
    const connections = new Set<string>()
    const failures: string[] = []
    await Promise.all(Array.from({ length: N }, async (_, i) => {
      try {
        const stream = await open(worker.peerId, ECHO, { signal: AbortSignal.timeout(30_000), negotiateFully: false, maxOutboundStreams: 900 })
        await echoOnce(stream, i % 256)
        for (const c of gateway.getConnections(worker.peerId)) connections.add(c.id)
      } catch (err) { failures.push((err as Error).message) }
    }))
    assert.deepEqual(failures, [], `${failures.length} of ${N} opens failed`)
    assert.equal(connections.size, 1, 'one connection carried the whole burst (none was aborted and redialled)')
    // once set up, opens go straight on
    const later = await open(worker.peerId, ECHO, { signal: AbortSignal.timeout(10_000), maxOutboundStreams: 900 })
    await echoOnce(later, 7)
  })

  it('an open that waits for a connection still being set up ends with StreamOpenQueued when its signal does, not a reset', async () => {
    const gateway = await node()
    // a "worker" whose TCP port accepts and then says nothing: the first open's dial hangs
    const silent = createServer(() => {})
    await new Promise<void>(resolve => silent.listen(0, '127.0.0.1', resolve))
    try {
      const peer = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
      await gateway.peerStore.merge(peer, { multiaddrs: [multiaddr(`/ip4/127.0.0.1/tcp/${(silent.address() as AddressInfo).port}`)] })
      const open = streamOpener(gateway, { earlyLimit: 1 })
      const first = open(peer, ECHO, { signal: AbortSignal.timeout(3_000) })
      await assert.rejects(open(peer, ECHO, { signal: AbortSignal.timeout(500) }), (err: Error) => err instanceof StreamOpenQueued && /still being set up/.test(err.message))
      await assert.rejects(first, (err: Error) => !(err instanceof StreamOpenQueued))
      assert.throws(() => streamOpener(gateway, { earlyLimit: 0 }), /earlyLimit must be a positive integer/)
    } finally {
      silent.close()
    }
  })

  it('a peer that answers the connection monitor\'s ping late (a busy event loop) keeps its connection and streams', async () => {
    // the gateway's monitor pings every second and gives up on a ping after 1 s (libp2p's
    // defaults, 10 s and ≥ 5 s, behave the same, only slower)
    const gateway = await node({ intervalMs: 1_000, timeoutMs: 1_000 })
    const worker = await node()
    await serveEcho(worker)
    // the worker's ping answers come 2.5 s late: past the gateway's ping timeout
    const pingsSeen: number[] = []
    await worker.unhandle(PING)
    await worker.handle(PING, (stream) => {
      pingsSeen.push(Date.now())
      stream.addEventListener('message', evt => { const data = evt.data; setTimeout(() => { try { stream.send(data) } catch {} }, 2_500) })
    }, { maxInboundStreams: 8 })
    await gateway.peerStore.merge(worker.peerId, { multiaddrs: worker.getMultiaddrs() })
    const stream = await streamOpener(gateway)(worker.peerId, ECHO, { signal: AbortSignal.timeout(10_000) })
    await echoOnce(stream, 1)
    const [conn] = gateway.getConnections(worker.peerId)
    // past the first ping's timeout and its late answer
    const first = await waitFor('the gateway\'s monitor to ping', () => pingsSeen[0], 10_000, 50)
    await new Promise(resolve => setTimeout(resolve, Math.max(0, first + 3_500 - Date.now())))
    assert.ok(pingsSeen.length >= 2, `the monitor went on pinging (${pingsSeen.length} pings)`)
    assert.equal(conn.status, 'open')
    assert.deepEqual(gateway.getConnections(worker.peerId).map(c => c.id), [conn.id], 'the same connection')
    await echoOnce(stream, 2)
  })

  it('100 stream opens whose answers arrive while the opening event loop is stalled past their 2 s dial timeout all succeed', async () => {
    const gateway = await node()
    const dir = mkdtempSync(join(tmpdir(), 'stream-burst-'))
    const flag = join(dir, 'answered')
    const N = 100
    // the far end in its own process, so it answers while this one is stalled
    const child = spawn(process.execPath, [resolve(import.meta.dirname, '../helpers/echo-node.ts'), '--flag', flag, '--after', String(N + 1)], { stdio: ['ignore', 'pipe', 'inherit'] })
    const exited = new Promise<void>(resolve => child.once('exit', () => resolve()))
    try {
      const line = await new Promise<string>((resolve, reject) => {
        createInterface({ input: child.stdout! }).once('line', resolve)
        child.once('exit', code => reject(new Error(`echo node exited ${code}`)))
      })
      const addr = multiaddr((JSON.parse(line) as { addrs: string[] }).addrs[0])
      const peer = (await gateway.dial(addr)).remotePeer
      const open = streamOpener(gateway)
      // the first open answers the protocol selection: the connection is ready, later opens go straight on
      await echoOnce(await open(peer, ECHO, { signal: AbortSignal.timeout(30_000) }), 0)
      // N opens at once, each bounded as the gateway bounds a job-stream open (node/gateway/dispatch.ts)
      const opens = Array.from({ length: N }, async () => {
        const limit = deadline(NODE_DEFAULTS.dialTimeoutMs)
        try { return await open(peer, ECHO, { signal: limit.signal, negotiateFully: false, maxOutboundStreams: 900 }) } finally { limit.clear() }
      })
      // once their selections are on the wire (written in this turn, flushed on the next tick), this
      // process stalls until the far end has answered them all and the dial timeout has passed
      let stalledMs = 0
      setImmediate(() => {
        const t0 = Date.now()
        const until = t0 + NODE_DEFAULTS.dialTimeoutMs + 500
        while ((Date.now() < until || !existsSync(flag)) && Date.now() - t0 < 60_000) { /* busy, as a CPU-starved node */ }
        stalledMs = Date.now() - t0
      })
      const settled = await Promise.allSettled(opens)
      assert.ok(existsSync(flag), `the far end answered all ${N} selections within the 60 s stall`)
      assert.ok(stalledMs > NODE_DEFAULTS.dialTimeoutMs, `stalled ${stalledMs} ms, past the dial timeout`)
      const failed = settled.flatMap(r => r.status === 'rejected' ? [(r.reason as Error).message] : [])
      assert.deepEqual(failed, [], `${failed.length} of ${N} opens failed after the stall`)
      const streams = settled.map(r => (r as PromiseFulfilledResult<Stream>).value)
      await Promise.all(streams.map(async (s, i) => { await echoOnce(s, i + 1) }))
    } finally {
      child.kill('SIGTERM')
      await exited
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
