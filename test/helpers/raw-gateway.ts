/**
 * A raw gateway-side peer for session tests: a libp2p node that speaks the job protocol's frames
 * straight to a worker (its own ticket key, test/helpers/jobs.ts), serves the one bundle its jobs
 * name as a gateway does, opens sessions and reads a session's frames until it ends.
 */
import assert from 'node:assert/strict'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { Stream } from '@libp2p/interface'
import { multiaddr } from '@multiformats/multiaddr'
import { BUNDLE_PROTOCOL, JOB_PROTOCOL, PROTOCOL_VERSION, type JobRequest, type Message } from '#protocol'
import { createMeshNode, frames, type FrameStream, type PeerHostLibp2p } from '#node'

/** A WebSocket echo bundle (CommonJS, as the sandbox loads it) that raw-client session tests serve. */
export const RAW_ECHO_SOURCE = `module.exports.default = { async fetch (request) {
  const { 0: client, 1: server } = new WebSocketPair()
  server.accept()
  server.addEventListener('message', (event) => { server.send('echo: ' + String(event.data)) })
  return new Response(null, { status: 101, webSocket: client })
} }`

export interface RawSession { f: FrameStream, stream: Stream, t0: number }

/** A started mesh node that answers BUNDLE_PROTOCOL requests for `cid` with `bytes`. */
export async function rawGateway (cid: string, bytes: Uint8Array): Promise<PeerHostLibp2p> {
  const client = await createMeshNode({ privateKey: await generateKeyPair('Ed25519') })
  await client.start()
  await client.handle(BUNDLE_PROTOCOL, async (stream) => {
    const f = frames(stream, 4096)
    const req = await f.read('bundle-request', AbortSignal.timeout(10_000))
    if (req.type !== 'bundle-request' || req.cid !== cid) { stream.abort(new Error('unknown bundle')); return }
    await frames(stream, bytes.byteLength + 1024).write({ v: PROTOCOL_VERSION, type: 'bundle', cid, bytes })
    await stream.close()
  })
  return client
}

/** Sends the session job frame to the worker at `addr` and waits for its session-open (a cold sandbox boot may take long). */
export async function openRawSession (client: PeerHostLibp2p, addr: string, job: JobRequest, openTimeoutMs = 60_000): Promise<RawSession> {
  const stream = await client.dialProtocol(multiaddr(addr), JOB_PROTOCOL)
  const f = frames(stream)
  await f.write(job, AbortSignal.timeout(10_000))
  const first = await f.readAny(AbortSignal.timeout(openTimeoutMs))
  assert.equal(first.type, 'session-open', `expected session-open, got ${JSON.stringify(first).slice(0, 300)}`)
  return { f, stream, t0: Date.now() }
}

/** Frames from the worker until its session-end (or `timeoutMs`, then an error naming what came), in order. */
export async function untilSessionEnd (s: Pick<RawSession, 'f'>, timeoutMs: number): Promise<Message[]> {
  const out: Message[] = []
  const signal = AbortSignal.timeout(timeoutMs)
  for (;;) {
    let msg: Message
    try {
      msg = await s.f.readAny(signal)
    } catch (err) {
      throw new Error(`no session-end within ${timeoutMs} ms; frames so far: ${out.map(m => m.type === 'ws-close' ? `ws-close ${m.code}` : m.type).join(', ')} (${(err as Error).message})`)
    }
    out.push(msg)
    if (msg.type === 'session-end' || msg.type === 'error' || msg.type === 'result') return out
  }
}
