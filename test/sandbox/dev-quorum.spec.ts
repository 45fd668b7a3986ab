/**
 * `peerhost dev` (startDevServer, real gVisor executor) with `verify: { quorum: n }`: each request
 * runs n times and answers as the mesh does, so a builder sees locally that a function declared
 * deterministic is not — the majority with `x-peerhost-quorum`, a warning line whenever the runs
 * differ, and 502 QUORUM_DISAGREEMENT naming each output hash when no output has a majority.
 */
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { startDevServer, type DevServer } from '../../node/dev/dev-server.ts'
import { anyAddress } from './fixtures.ts'

const root = resolve(import.meta.dirname, '..', '..')

describe('node/dev startDevServer: quorum functions (gVisor)', function () {
  this.timeout(120_000)
  let dir: string
  let dataDir: string
  let dev: DevServer
  let server: Server
  /** what the `flaky` function's fetch gets: the nth call of a request series answers `answers[n]` */
  let answers: string[] = []
  let calls = 0
  const lines: string[] = []

  before(async () => {
    server = createServer((_req, res) => { res.end(answers[calls++] ?? 'none') })
    await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
    const port = (server.address() as AddressInfo).port
    dir = mkdtempSync(join(tmpdir(), 'peerhost-dev-quorum-'))
    mkdirSync(join(dir, 'functions'))
    const fixture = join(root, 'test/fixtures/quorum-mesh')
    cpSync(join(fixture, 'lib'), join(dir, 'lib'), { recursive: true })
    for (const f of ['digest.ts', 'dice.ts']) cpSync(join(fixture, 'functions', f), join(dir, 'functions', f))
    // deterministic in form, but its output follows an outside counter: one run of three differs
    writeFileSync(join(dir, 'functions', 'flaky.ts'), `export default { async fetch () { return new Response(await (await fetch('http://127.0.0.1:${port}/')).text()) } }\n`)
    writeFileSync(join(dir, 'functions', 'single.ts'), 'export default { fetch () { return new Response(String(Math.random())) } }\n')
    writeFileSync(join(dir, 'peerhost.json'), JSON.stringify({
      name: 'devquorum',
      functions: {
        digest: { deterministic: true, verify: { quorum: 3 } },
        dice: { deterministic: true, verify: { quorum: 3 } },
        flaky: { deterministic: true, verify: { quorum: 3 }, network: [`127.0.0.1:${port}`] }
      }
    }))
    dataDir = mkdtempSync(join(tmpdir(), 'peerhost-dev-quorum-data-'))
    dev = await startDevServer({ dir, port: 0, dataDir, onLog: (l) => { lines.push(l) } }, { addressFilter: anyAddress })
  })

  after(async () => {
    await dev?.stop()
    server?.close()
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true })
    if (dataDir === undefined) return
    // n runs per request leave no sandbox behind
    const list = execFileSync('/usr/bin/runsc', [`--root=${join(dataDir, 'sandbox', 'runsc')}`, 'list', '--quiet'], { encoding: 'utf8' })
    rmSync(dataDir, { recursive: true, force: true })
    assert.equal(list.trim(), '')
  })

  const since = (n: number): string => lines.slice(n).join('\n')

  it('runs a deterministic quorum function n times and answers with the agreed output', async () => {
    const first = lines.length
    const res = await fetch(`${dev.url}/digest?text=dev`)
    assert.equal(res.status, 200)
    assert.deepEqual(await res.json(), { text: 'dev', length: 3, reversed: 'ved', sum: [...'dev'].reduce((s, ch) => (s * 31 + ch.codePointAt(0)!) >>> 0, 0) })
    assert.equal(res.headers.get('x-peerhost-quorum'), '3/3', 'all three runs agree')
    assert.match(res.headers.get('x-peerhost-output-hash') ?? '', /^0x[0-9a-f]{64}$/)
    assert.match(since(first), /^GET \/digest\?text=dev 200 [\d.]+ ms quorum 3\/3 \(exec /m)
    assert.ok(!since(first).includes('warning:'), since(first))
  })

  it('answers 502 QUORUM_DISAGREEMENT naming every output hash when no output has a majority, and warns in the log', async () => {
    const first = lines.length
    const res = await fetch(`${dev.url}/dice`)
    const body = await res.json() as { error: { code: string, message: string, details: { outputHashes: Array<{ outputHash: string, runs: number }>, [k: string]: unknown } }, roll?: number }
    assert.equal(res.status, 502, JSON.stringify(body))
    assert.equal(body.error.code, 'QUORUM_DISAGREEMENT')
    assert.equal(body.roll, undefined, 'no run\'s output is answered')
    const hashes = body.error.details.outputHashes
    assert.equal(hashes.length, 3)
    assert.ok(hashes.every(h => /^0x[0-9a-f]{64}$/.test(h.outputHash) && h.runs === 1))
    for (const h of hashes) assert.ok(body.error.message.includes(h.outputHash), 'the message names each output hash')
    assert.match(body.error.message, /the 3 runs of quorum function dice disagree: 3 different outputs/)
    assert.equal(res.headers.get('x-peerhost-quorum'), '1/3')
    const warning = lines.slice(first).find(l => l.startsWith('warning: dice is declared deterministic'))
    assert.ok(warning !== undefined, since(first))
    assert.match(warning, /3 different outputs .*on the mesh every such request fails with 502 QUORUM_DISAGREEMENT/)
    assert.match(since(first), /^GET \/dice 502 [\d.]+ ms QUORUM_DISAGREEMENT /m)
  })

  it('answers the majority when one run differs, and still warns', async () => {
    calls = 0
    answers = ['minority', 'majority', 'majority']
    const first = lines.length
    const res = await fetch(`${dev.url}/flaky`)
    assert.equal(res.status, 200)
    assert.equal(await res.text(), 'majority', 'never the minority output')
    assert.equal(calls, 3, 'three runs')
    assert.equal(res.headers.get('x-peerhost-quorum'), '2/3')
    assert.match(since(first), /^warning: flaky is declared deterministic but 3 runs of one request gave 2 different outputs \(0x[0-9a-f]{64} ×2, 0x[0-9a-f]{64} ×1\); the majority answers here, but on the mesh the workers with another output are outvoted/m)
  })

  it('runs a function without quorum once, and refuses a WebSocket to a quorum function as the mesh does', async () => {
    const res = await fetch(`${dev.url}/single`)
    assert.equal(res.status, 200)
    assert.equal(res.headers.get('x-peerhost-quorum'), null)
    await res.text()
    const ws = new WebSocket(`${dev.url.replace('http', 'ws')}/digest`)
    const refused = await new Promise<string>((resolve) => {
      ws.onopen = () => { resolve('opened'); ws.close() }
      ws.onerror = () => { resolve('refused') }
    })
    assert.equal(refused, 'refused')
    assert.ok(lines.some(l => l === 'WS /digest 400 refused: quorum function'), lines.slice(-3).join('\n'))
  })
})
