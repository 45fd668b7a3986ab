/**
 * `peerhost dev` (startDevServer) with the real gVisor executor: the hostile functions through
 * HTTP, rebuild on change, logs and timings, and no container left after stop.
 */
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { rmSync, writeFileSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { startDevServer, type DevServer } from '../../node/dev/dev-server.ts'
import { anyAddress, hostileProject } from './fixtures.ts'

const CANARY = 'CANARY-DEV-51c2'

describe('node/dev startDevServer (gVisor)', function () {
  this.timeout(60_000)
  let dir: string
  let dev: DevServer
  let server: Server
  let port: number
  const lines: string[] = []

  before(async () => {
    server = createServer((req, res) => { res.end(`allowed ${req.url}`) })
    await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
    port = (server.address() as AddressInfo).port
    dir = hostileProject({ prefix: 'peerhost-dev-', name: 'devtest', canary: CANARY, port, env: { GREETING: 'hi' } })
    dev = await startDevServer({ dir, port: 0, dataDir: join(dir, '.peerhost', 'dev'), onLog: (l) => { lines.push(l) } }, { addressFilter: anyAddress })
  })

  after(async () => {
    await dev?.stop()
    server?.close()
    // nothing left in the dev server's runsc root
    const list = execFileSync('/usr/bin/runsc', [`--root=${join(dir, '.peerhost', 'dev', 'sandbox', 'runsc')}`, 'list', '--quiet'], { encoding: 'utf8' })
    assert.equal(list.trim(), '')
    rmSync(dir, { recursive: true, force: true })
  })

  const get = async (path: string): Promise<{ status: number, body: string, json: () => any }> => {
    const r = await fetch(`${dev.url}${path}`)
    const body = await r.text()
    return { status: r.status, body, json: () => JSON.parse(body) }
  }

  it('serves a function and reports its timing line', async () => {
    const r = await get('/hello?name=dev')
    assert.equal(r.status, 200)
    assert.equal(r.body, 'Hello, dev!')
    assert.ok(lines.some(l => /^GET \/hello\?name=dev 200 [\d.]+ ms \(exec [\d.]+ ms, sandbox [\d.]+ ms, queue [\d.]+ ms\)$/.test(l)), lines.join('\n'))
  })

  it('answers unknown functions with a JSON 404', async () => {
    const r = await get('/nope')
    assert.equal(r.status, 404)
    assert.equal(r.json().error.code, 'NOT_FOUND')
  })

  it('hides host files and has no network', async () => {
    const esc = await get(`/escape?canary=${encodeURIComponent(join(dir, 'canary.txt'))}`)
    assert.ok(!esc.body.includes(CANARY))
    for (const v of Object.values(esc.json())) assert.match(String(v), /^ERR /)
    const net = (await get(`/network?port=${port}`)).json()
    for (const k of ['metadata', 'loopback', 'public', 'dns']) assert.match(net[k], /^ERR /, k)
  })

  it('brokers fetch to the allow-listed host only', async () => {
    assert.equal((await get(`/fetchurl?u=${encodeURIComponent(`http://127.0.0.1:${port}/ok`)}`)).body, 'status=200 body=allowed /ok')
    const refused = await get(`/fetchurl?u=${encodeURIComponent('http://169.254.169.254/')}`)
    assert.equal(refused.status, 502)
    assert.match(refused.body, /not in this function's network allow-list/)
  })

  it('maps each hostile function to its stable code, then still serves', async () => {
    assert.deepEqual((await get('/forkbomb')).json(), { cp: 'ERR ERR_ACCESS_DENIED', wt: 'ERR ERR_ACCESS_DENIED' })
    const expect: Array<[string, number, string]> = [
      ['/memorybomb', 507, 'LIMIT_MEMORY'],
      ['/asyncloop', 508, 'LIMIT_CPU'],
      ['/neversettles', 504, 'LIMIT_TIMEOUT'],
      ['/notresponse', 502, 'RESULT_INVALID'],
      ['/throws', 500, 'FUNCTION_ERROR']
    ]
    for (const [path, status, code] of expect) {
      const r = await get(path)
      assert.equal(r.status, status, path)
      assert.equal(r.json().error.code, code, path)
    }
    assert.ok(lines.some(l => l.includes('[throws] [error] Uncaught Error: boom from function')))
    // an 8 MiB body (over the 6 MiB a buffered answer may carry) is streamed, whole, within the
    // stream limit; the cut at the stream limit is tested in test/sandbox/stream.spec.ts
    const huge = await get('/hugeresponse')
    assert.equal(huge.status, 200)
    assert.equal(huge.body.length, 8 * 1024 * 1024)
    assert.equal((await get('/hello')).body, 'Hello, world!')
  })

  it('truncates gigantic output and flags it in the log', async () => {
    assert.equal((await get('/gigantic-stdout')).body, 'done')
    assert.ok(lines.some(l => l.includes('[gigantic-stdout] (logs truncated')))
  })

  it('leaves no state between requests', async () => {
    const set = (await get('/stateprobe?mode=set')).json()
    const got = (await get('/stateprobe?mode=get')).json()
    assert.equal(got.token, set.token)
    assert.deepEqual([got.canary, got.tmp], [null, []])
  })

  it('rebuilds when a file changes', async () => {
    const rebuilt = dev.rebuilt()
    writeFileSync(join(dir, 'functions', 'hello.js'), 'export default { fetch () { return new Response("changed") } }')
    await rebuilt
    assert.equal((await get('/hello')).body, 'changed')
    assert.ok(lines.some(l => l.startsWith('rebuilt ')))
  })

  it('gives functions the secrets in .dev.vars, keeps their values out of the logs, and reports a bad file', async () => {
    const token = 'dev-token-8f2a61c0'
    let rebuilt = dev.rebuilt()
    writeFileSync(join(dir, 'functions', 'secret.js'), 'export default { fetch (req, env) { console.log("using", env.API_TOKEN); return Response.json({ token: env.API_TOKEN, greeting: env.GREETING }) } }')
    writeFileSync(join(dir, '.dev.vars'), `# local secrets\nAPI_TOKEN="${token}"\n\nGREETING=overridden\n`)
    await rebuilt
    const first = lines.length
    assert.deepEqual((await get('/secret')).json(), { token, greeting: 'overridden' })
    const logged = lines.slice(first).join('\n')
    assert.match(logged, /\[secret\] using \[secret API_TOKEN\]/)
    assert.ok(!logged.includes(token))
    rebuilt = dev.rebuilt()
    writeFileSync(join(dir, '.dev.vars'), 'API_TOKEN\nbad-name=1\n')
    await rebuilt
    assert.ok(lines.some(l => /build failed .*\.dev\.vars has 2 problems: line 1: expected NAME=value.*; line 2: expected NAME=value/.test(l)), lines.slice(-3).join('\n'))
    assert.equal((await get('/secret')).json().token, token, 'the previous build (and its secrets) still serves')
  })
})
