import assert from 'node:assert/strict'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { rawCid } from '#protocol'
import { devExecutor, DEV_EXECUTOR_DEFAULTS, type ExecutionResult, type Executor, type SessionControl } from '#sandbox'
import { anyAddress, jobFor, text } from './fixtures.ts'

describe('sandbox/dev-executor (not a security boundary)', function () {
  this.timeout(20_000)
  let ex: Executor
  let server: Server
  let port: number

  before(async () => {
    ex = devExecutor({})({ addressFilter: anyAddress })
    await ex.start()
    server = createServer((req, res) => { res.setHeader('content-type', 'text/plain'); res.end(`allowed ${req.url}`) })
    await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
    port = (server.address() as AddressInfo).port
  })
  after(async () => {
    await ex.stop()
    server.close()
  })

  it('a function\'s stray errors (a throw in a timer or an event listener, a rejection nobody awaits) go to its log; the thread serves on', async () => {
    for (const kind of ['timer', 'listener', 'rejection', 'timer', 'none']) {
      const r = await ex.execute(jobFor('strayErrors', { url: `http://t/?kind=${kind}` }))
      assert.equal(text(r), `survived ${kind}`)
      if (kind === 'none') assert.doesNotMatch(r.logs, /Uncaught/)
      else assert.match(r.logs, new RegExp(`Uncaught (\\(in promise\\) )?Error: stray-${kind}`))
    }
  })

  it('remembers a bounded number of warm function versions however many it runs (least recently used forgotten)', async () => {
    // a worker serving many functions: 100 distinct versions, each run once, then the first again
    const local = devExecutor({})({})
    await local.start()
    try {
      const cids: string[] = []
      for (let i = 0; i < 100; i++) {
        const bytes = new TextEncoder().encode(`module.exports.default = { fetch () { return new Response('v${i}') } }`)
        const job = jobFor('hello')
        job.bundle = { cid: rawCid(bytes), bytes }
        cids.push(job.bundle.cid)
        assert.equal(text(await local.execute(job)), `v${i}`)
      }
      const max = DEV_EXECUTOR_DEFAULTS.maxWarmFunctions
      assert.ok(max < 100, 'the bound is below the number of versions run')
      const warm = local.warm()
      assert.equal(warm.length, max)
      assert.deepEqual(warm, cids.slice(-max).reverse(), 'the most recently used versions, newest first')
      // using an old version again makes it the newest; the oldest remembered one falls out
      await local.prewarm({ cid: cids[0], bytes: new TextEncoder().encode('module.exports.default = { fetch () { return new Response(\'v0\') } }') }, jobFor('hello').options)
      assert.equal(local.warm()[0], cids[0])
      assert.equal(local.warm().length, max)
      assert.ok(!local.warm().includes(cids[100 - max]))
    } finally {
      await local.stop()
    }
  })

  it('runs a function with a Web Request and returns its Response, logs and timings', async () => {
    const r = await ex.execute(jobFor('echo', { method: 'POST', body: 'abc', headers: [['x-test', 'yes']], env: { A: '1' } }))
    const out = JSON.parse(text(r))
    assert.equal(out.method, 'POST')
    assert.equal(out.body, 'abc')
    assert.equal(out.header, 'yes')
    assert.deepEqual(out.env, { A: '1' })
    assert.equal(r.response?.status, 200)
    assert.equal(r.logs, 'echo POST 3\n')
    assert.equal(r.logsTruncated, false)
    assert.ok(r.timings.execMs >= 0 && r.timings.sandboxMs >= 0 && r.timings.queueMs >= 0)
  })

  it('reports a throw as FUNCTION_ERROR with the stack in the logs', async () => {
    const r = await ex.execute(jobFor('throws'))
    assert.equal(r.error?.code, 'FUNCTION_ERROR')
    assert.match(r.logs, /boom from function/)
    const r2 = await ex.execute(jobFor('throwsAtLoad'))
    assert.equal(r2.error?.code, 'FUNCTION_ERROR')
  })

  it('reports a non-Response return as RESULT_INVALID', async () => {
    assert.equal((await ex.execute(jobFor('notResponse'))).error?.code, 'RESULT_INVALID')
    assert.equal((await ex.execute(jobFor('returnsUndefined'))).error?.code, 'RESULT_INVALID')
  })

  it('stops a never-settling promise (LIMIT_TIMEOUT), a sync and an async loop (LIMIT_CPU) at the limit', async () => {
    for (const [name, code, limit] of [['neverSettles', 'LIMIT_TIMEOUT', 'timeoutMs'], ['syncLoop', 'LIMIT_CPU', 'cpuMs'], ['asyncLoop', 'LIMIT_CPU', 'cpuMs']]) {
      const t0 = Date.now()
      const r = await ex.execute(jobFor(name, { options: { timeoutMs: 300 } }))
      assert.equal(r.error?.code, code, name)
      assert.equal(r.error?.details?.limit, limit)
      assert.equal(r.error?.details?.configured, 300)
      // no cgroup CPU accounting for a thread: a CPU figure would be the wall clock in disguise
      if (code === 'LIMIT_CPU') assert.equal(r.error?.details?.measured, undefined)
      // limit + 1 s is the target; the slack absorbs a thread restart on a loaded 2-core machine
      assert.ok(Date.now() - t0 < 300 + 2500, `${name} took ${Date.now() - t0} ms`)
    }
    assert.equal(text(await ex.execute(jobFor('hello'))), 'Hello, world!')
  })

  it('refuses a response over the size limit with LIMIT_RESPONSE_SIZE', async () => {
    for (const name of ['hugeResponse', 'hugeStreamResponse']) {
      const r = await ex.execute(jobFor(name))
      assert.equal(r.error?.code, 'LIMIT_RESPONSE_SIZE', name)
      assert.equal(r.error?.details?.configured, 6 * 1024 * 1024)
    }
  })

  it('truncates gigantic console output at the cap and flags it', async () => {
    const r = await ex.execute(jobFor('gigantic_stdout', { options: { timeoutMs: 10_000 } }))
    assert.equal(text(r), 'done')
    assert.equal(r.logsTruncated, true)
    assert.ok(Buffer.byteLength(r.logs) <= 64 * 1024)
  })

  it('stops a memory bomb with LIMIT_MEMORY and keeps serving', async () => {
    const r = await ex.execute(jobFor('memoryBomb', { options: { memoryMb: 64, timeoutMs: 10_000 } }))
    assert.equal(r.error?.code, 'LIMIT_MEMORY')
    assert.equal(r.error?.details?.limit, 'memoryMb')
    // nothing measures a thread's memory here: no value rather than a guess
    assert.equal(r.error?.details?.measured, undefined)
    assert.equal(text(await ex.execute(jobFor('hello', { options: { memoryMb: 64 } }))), 'Hello, world!')
  })

  it('an allocation the thread cannot get is LIMIT_MEMORY (reason allocation-failed), not FUNCTION_ERROR', async () => {
    const r = await ex.execute(jobFor('impossibleBuffer'))
    assert.equal(r.error?.code, 'LIMIT_MEMORY', JSON.stringify(r.error))
    assert.deepEqual([r.error?.details?.reason, r.error?.details?.source, r.error?.details?.measured], ['allocation-failed', 'unavailable', undefined])
    assert.equal(text(await ex.execute(jobFor('hello'))), 'Hello, world!')
  })

  it('gives every execution fresh globals', async () => {
    assert.equal(text(await ex.execute(jobFor('setGlobal'))), 'set')
    const out = JSON.parse(text(await ex.execute(jobFor('readGlobal'))))
    assert.deepEqual(out, { canary: null, polluted: null, evil: null })
    const g = JSON.parse(text(await ex.execute(jobFor('globalsVisible'))))
    // nodejs_compat: Buffer is a global and `require` is the bundle's compat require (only the
    // subset of sandbox/runtime/compat.ts); there is still no process
    assert.deepEqual(g, { process: 'undefined', require: 'function', Buffer: 'function' })
  })

  it('runs ctx.waitUntil work before returning', async () => {
    const r = await ex.execute(jobFor('waitUntil'))
    assert.equal(text(r), 'early')
    assert.match(r.logs, /after response/)
  })

  it('brokers fetch to allow-listed hosts only', async () => {
    const allowed = `http://127.0.0.1:${port}/x`
    const ok = await ex.execute(jobFor('fetchUrl', { url: `http://t/f?u=${encodeURIComponent(allowed)}`, options: { network: [`127.0.0.1:${port}`] } }))
    assert.equal(text(ok), 'status=200 body=allowed /x')
    const refused = await ex.execute(jobFor('fetchUrl', { url: `http://t/f?u=${encodeURIComponent('http://example.com/')}`, options: { network: [`127.0.0.1:${port}`] } }))
    assert.match(text(refused), /^refused: fetch refused: example.com is not in this function's network allow-list/)
    const none = await ex.execute(jobFor('fetchUrl', { url: `http://t/f?u=${encodeURIComponent(allowed)}` }))
    assert.match(text(none), /fetch\(\) is disabled/)
  })

  it('reports too many subrequests as LIMIT_SUBREQUESTS', async () => {
    const allowed = `http://127.0.0.1:${port}/x`
    const r = await ex.execute(jobFor('manySubrequests', { url: `http://t/f?u=${encodeURIComponent(allowed)}`, options: { network: [`127.0.0.1:${port}`], timeoutMs: 10_000 } }))
    assert.equal(r.error?.code, 'LIMIT_SUBREQUESTS')
    assert.equal(r.error?.details?.configured, 50)
  })

  it('refuses private addresses when not in test mode', async () => {
    const strict = devExecutor()()
    await strict.start()
    try {
      const allowed = `http://127.0.0.1:${port}/x`
      const r = await strict.execute(jobFor('fetchUrl', { url: `http://t/f?u=${encodeURIComponent(allowed)}`, options: { network: [`127.0.0.1:${port}`] } }))
      assert.match(text(r), /refused: fetch refused: 127.0.0.1 is a private or reserved address/)
      const m = await strict.execute(jobFor('fetchUrl', { url: `http://t/f?u=${encodeURIComponent('http://localhost:' + port + '/')}`, options: { network: ['localhost'] } }))
      assert.match(text(m), /refused: fetch refused: (localhost resolves only to private|localhost is not in)/)
    } finally {
      await strict.stop()
    }
  })

  it('ends a WebSocket session whose message listener holds the thread with LIMIT_CPU at timeoutMs + grace (CPU per event, as under gVisor), and keeps serving', async () => {
    const source = `module.exports.default = { async fetch (request) {
      const { 0: client, 1: server } = new WebSocketPair()
      server.accept()
      server.addEventListener('message', (event) => { if (String(event.data) === 'spin') { for (;;) {} } server.send('echo: ' + String(event.data)) })
      return new Response(null, { status: 101, webSocket: client })
    } }`
    const timeoutMs = 300
    // a session far longer than the test: only the per-event limit can end it
    const { control, got, run } = await devSession(ex, 'session-spin', source, timeoutMs)
    control.send(new TextEncoder().encode('hi'), false)
    const t0 = Date.now()
    while (got.length === 0 && Date.now() - t0 < 5_000) await new Promise(resolve => setTimeout(resolve, 10))
    assert.deepEqual(got, ['echo: hi'], 'a listener that returns is fine')
    const t1 = Date.now()
    control.send(new TextEncoder().encode('spin'), false)
    const r = await run
    const ms = Date.now() - t1
    assert.equal(r.error?.code, 'LIMIT_CPU')
    assert.equal(r.error?.details?.source, 'event')
    assert.equal(r.error?.details?.configured, timeoutMs)
    // timeoutMs + 500 ms of grace; the slack absorbs a loaded 2-core machine (not the 60 s session)
    assert.ok(ms >= timeoutMs && ms < 10_000, `ended ${ms} ms after the spin`)
    assert.equal(text(await ex.execute(jobFor('hello'))), 'Hello, world!')
  })

  it('a WebSocket listener that throws is reported in the function\'s logs, and a close answered with the host\'s 1001 (as the issue\'s echo example does) is allowed; the session and the runtime serve on', async () => {
    const source = `module.exports.default = { async fetch (request) {
      const { 0: client, 1: server } = new WebSocketPair()
      server.accept()
      server.addEventListener('message', (event) => { if (String(event.data) === 'throw') throw new Error('listener threw'); server.send('echo: ' + String(event.data)) })
      server.addEventListener('close', (event) => { server.close(event.code, 'bye') })
      return new Response(null, { status: 101, webSocket: client })
    } }`
    const { control, got, run } = await devSession(ex, 'session-throw', source, 5_000)
    const until = async (n: number): Promise<void> => { const t0 = Date.now(); while (got.length < n && Date.now() - t0 < 10_000) await new Promise(resolve => setTimeout(resolve, 10)) }
    control.send(new TextEncoder().encode('throw'), false)
    control.send(new TextEncoder().encode('after'), false)
    await until(1)
    assert.deepEqual(got, ['echo: after'], 'the message after the one whose listener threw is answered')
    // the host ends the session as a worker does when its gateway went away
    control.close(1001, 'the gateway went away')
    const r = await run
    assert.equal(r.error, undefined, `the session ends without an error: ${JSON.stringify(r.error)}`)
    const logs = JSON.stringify(r.logs)
    assert.match(logs, /Uncaught Error: listener threw/)
    // 1001 is a code a Close frame may carry: the close listener's answer is not an error
    assert.doesNotMatch(logs, /close code 1001 is not allowed/)
    assert.equal(text(await ex.execute(jobFor('hello'))), 'Hello, world!')
  })
})

/**
 * Opens a WebSocket session of `source` on the dev executor (60 s long, its listeners bounded by
 * `timeoutMs` per event) and resolves once the function has accepted: the host's control, what the
 * function sent (as text) and the execution's end.
 */
async function devSession (ex: Executor, jobId: string, source: string, timeoutMs: number): Promise<{ control: SessionControl, got: string[], run: Promise<ExecutionResult> }> {
  const bytes = new TextEncoder().encode(source)
  let control: SessionControl | undefined
  const got: string[] = []
  let opened!: () => void
  const open = new Promise<void>(resolve => { opened = resolve })
  const run = ex.execute({
    jobId,
    bundle: { cid: rawCid(bytes), bytes },
    request: { method: 'GET', url: 'http://t/ws', headers: [['upgrade', 'websocket']], body: new Uint8Array() },
    env: {},
    options: { memoryMb: 128, timeoutMs, network: [], isolation: 'function' },
    deadline: Date.now() + 20_000
  }, {
    session: {
      maxSessionMs: 60_000,
      bind: (c) => { control = c },
      onOpen: () => { opened() },
      onMessage: (data) => { got.push(new TextDecoder().decode(data)) },
      onClose: () => {}
    }
  })
  await Promise.race([open, run])
  if (control === undefined) throw new Error(`the session did not open: ${JSON.stringify((await run).error)}`)
  return { control, got, run }
}
