/**
 * Streamed response bodies in a real gVisor sandbox (ExecuteOptions.stream): the total-bytes limit
 * cuts a stream, a host that does not pass chunks on makes the function's writes wait (the shim's
 * window), and a small whole body keeps the buffered fast path.
 */
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { rawCid } from '#protocol'
import { gvisorExecutor, type ExecutionJob, type GvisorExecutor, type StreamHooks } from '#sandbox'
import { startDevServer, type DevServer } from '../../node/dev/dev-server.ts'
import { waitFor } from '../helpers/network.ts'
import { sseArrivals } from '../helpers/sse.ts'

const MiB = 1024 * 1024

function job (source: string, timeoutMs = 20_000): ExecutionJob {
  const bytes = new TextEncoder().encode(source)
  return {
    jobId: `0x${'ab'.repeat(32)}`,
    bundle: { cid: rawCid(bytes), bytes },
    request: { method: 'GET', url: 'http://t/', headers: [], body: new Uint8Array() },
    env: {},
    options: { memoryMb: 128, timeoutMs, network: [], isolation: 'function' },
    deadline: Date.now() + timeoutMs + 10_000
  }
}

/** Hooks that record what arrives; `gate` (when set) holds every chunk until it resolves. */
function recorder (maxBytes: number, gate?: Promise<void>): StreamHooks & { head?: number, bytes: number, chunks: number } {
  const r = {
    head: undefined as number | undefined,
    bytes: 0,
    chunks: 0,
    maxBytes,
    onHead: (status: number) => { r.head = status },
    onChunk: async (data: Uint8Array) => { r.bytes += data.byteLength; r.chunks++; await gate }
  }
  return r
}

const ENDLESS = 'module.exports.default = { async fetch () { return new Response(new ReadableStream({ pull (c) { c.enqueue(new Uint8Array(256 * 1024).fill(120)) } })) } }'

describe('sandbox: streamed response bodies (real gVisor)', function () {
  this.timeout(120_000)
  let dataDir: string
  let ex: GvisorExecutor

  before(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'peerhost-stream-'))
    execFileSync('/usr/bin/runsc', ['--version'])
    ex = gvisorExecutor({ dataDir, selfTest: false })({})
    await ex.start()
  })
  after(async () => {
    await ex?.stop()
    rmSync(dataDir, { recursive: true, force: true })
  })

  it('keeps a small whole body on the buffered path (no head, no chunks)', async () => {
    const hooks = recorder(MiB)
    const r = await ex.execute(job('module.exports.default = { async fetch () { return new Response("hello") } }'), { stream: hooks })
    assert.equal(new TextDecoder().decode(r.response!.body), 'hello')
    assert.equal(r.streamed, undefined)
    assert.equal(hooks.head, undefined)
    assert.equal(hooks.chunks, 0)
  })

  it('cuts a stream at the total-bytes limit with LIMIT_RESPONSE_SIZE', async () => {
    const hooks = recorder(2 * MiB)
    const r = await ex.execute(job(ENDLESS), { stream: hooks })
    assert.equal(r.error?.code, 'LIMIT_RESPONSE_SIZE')
    assert.equal(hooks.head, 200)
    assert.ok(hooks.bytes <= 2 * MiB, `${hooks.bytes} bytes passed on; the limit is 2 MiB`)
    assert.deepEqual(r.streamed, { status: 200, bytes: hooks.bytes })
  })

  it('makes the function wait while the host does not pass chunks on (the shim\'s window)', async () => {
    let open!: () => void
    const gate = new Promise<void>(resolve => { open = resolve })
    const hooks = recorder(64 * MiB, gate)
    const src = 'module.exports.default = { async fetch () { let n = 0; return new Response(new ReadableStream({ pull (c) { if (n++ >= 64) c.close(); else c.enqueue(new Uint8Array(256 * 1024).fill(1)) } })) } }'
    const running = ex.execute(job(src), { stream: hooks })
    // the execution may first wait for a sandbox boot (the previous test's cut cost its sandbox):
    // measure from its first bytes, then give it 3 s to overrun the window if it could
    await waitFor('the first streamed bytes', () => hooks.bytes > 0, 60_000, 50)
    await new Promise(resolve => setTimeout(resolve, 3_000))
    // without the window the function would have sent all 16 MiB by now
    const held = hooks.bytes
    assert.ok(held > 0 && held <= 5 * MiB, `${(held / MiB).toFixed(2)} MiB sent while nothing was acknowledged`)
    open()
    const r = await running
    assert.equal(r.error, undefined)
    assert.deepEqual(r.streamed, { status: 200, bytes: 16 * MiB })
  })

  it('stops the function at once when nobody reads any more (a rejected chunk cancels the stream)', async () => {
    const t0 = performance.now()
    let n = 0
    const hooks: StreamHooks = { maxBytes: 64 * MiB, onHead: () => {}, onChunk: async () => { if (++n > 2) throw new Error('the reader is gone') } }
    const r = await ex.execute(job(ENDLESS, 30_000), { stream: hooks })
    const ms = performance.now() - t0
    // without the cancel the endless function would run to its 30 s limit
    assert.ok(ms < 15_000, `the execution ended after ${ms.toFixed(0)} ms`)
    assert.equal(r.error?.code, 'FUNCTION_ERROR')
    assert.ok(r.streamed !== undefined && r.streamed.bytes < 16 * MiB)
  })
})

describe('peerhost dev: streamed response bodies (same sandbox code path, gVisor)', function () {
  this.timeout(120_000)
  let dataDir: string
  let dev: DevServer

  before(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'peerhost-dev-stream-'))
    dev = await startDevServer({ dir: join(import.meta.dirname, '..', 'fixtures', 'stream'), port: 0, dataDir, onLog: () => {} }, {})
  })
  after(async () => {
    await dev?.stop()
    rmSync(dataDir, { recursive: true, force: true })
  })

  it('delivers SSE events as they are produced', async () => {
    const res = await fetch(`${dev.url}/sse`)
    assert.equal(res.status, 200)
    assert.equal(res.headers.get('x-peerhost-stream'), '1')
    const arrivals = await sseArrivals(res)
    assert.deepEqual(arrivals.map(a => a.i), [0, 1, 2, 3, 4])
    assert.ok(arrivals[0].arrivedAt < arrivals[4].producedAt, 'event 0 reached the client before event 4 was produced')
  })
})
