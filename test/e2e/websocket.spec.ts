/**
 * WebSocket sessions with real processes: a bootstrap node, a gateway and two gVisor workers
 * started through the CLI. The worker holding a session is SIGKILLed: the client must hear
 * 1011/1012 within 2 s, and a new connection must land on the other worker and work.
 */
import assert from 'node:assert/strict'
import { join, resolve } from 'node:path'
import { WebSocket } from 'ws'
import { cli } from '../helpers/cli.ts'
import { startTestNetwork, waitFor, type TestNetwork } from '../helpers/network.ts'

const root = resolve(import.meta.dirname, '..', '..')

async function open (url: string): Promise<{ ws: WebSocket, worker: string }> {
  const ws = new WebSocket(url)
  const worker = await new Promise<string>((resolve, reject) => {
    let w = ''
    ws.once('upgrade', res => { w = String(res.headers['x-peerhost-worker'] ?? '') })
    ws.once('open', () => resolve(w))
    ws.once('error', reject)
    ws.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)))
  })
  return { ws, worker }
}

async function echo (ws: WebSocket, text: string): Promise<string> {
  const reply = new Promise<string>((resolve, reject) => {
    ws.once('message', d => resolve(String(d)))
    ws.once('close', code => reject(new Error(`closed ${code}`)))
  })
  ws.send(text)
  return await reply
}

describe('WebSocket sessions across processes (gVisor workers)', function () {
  this.timeout(240_000)
  let net: TestNetwork
  let url: string

  before(async () => {
    // no --unsafe-dev-executor: the workers run gVisor
    net = await startTestNetwork({ workers: 2, workerArgs: [], projects: [join(root, 'test/fixtures/websocket')] })
    url = net.functions.find(u => u.endsWith('/ws/echo'))!.replace(/^http/, 'ws')
    await waitFor('both workers in the view', async () => {
      const st = await (await fetch(`${net.gatewayUrl}/_peerhost/status`)).json() as any
      return st.workers.length === 2
    }, 30_000)
  })
  after(async () => { await net?.stop() })

  it('`peerhost ws` sends, prints what comes back and checks the receipt itself: the worker it names signed exactly this client\'s transcript', async () => {
    const r = await cli(['ws', url, '--send', 'one', '--send', 'two, three', '--json'])
    assert.equal(r.code, 0, `${r.stdout}${r.stderr}`)
    assert.deepEqual(r.lines.filter(l => l.event === 'message').map(l => l.data), ['echo: one', 'echo: two, three'])
    const opened = r.lines.find(l => l.event === 'open')
    assert.match(String(opened?.jobId), /^0x[0-9a-f]{64}$/)
    assert.deepEqual(r.lines.find(l => l.event === 'close'), { event: 'close', code: 1000, reason: 'done' })
    const receipt = r.lines.find(l => l.event === 'receipt')
    assert.equal(receipt?.verified, true, receipt?.problem)
    const signer = net.workerInfo.find(w => String(w.address).toLowerCase() === String(receipt.signer).toLowerCase())
    assert.ok(signer !== undefined, `the signer ${receipt.signer} is one of the workers`)
    assert.equal(signer.peerId, opened.worker, 'the worker that served the session signed its receipt')
    assert.deepEqual([receipt.transcript.messagesIn, receipt.transcript.messagesOut, receipt.transcript.bytesIn], [2, 2, 'one'.length + 'two, three'.length])
    // stdin's lines, for people
    const piped = await cli(['ws', url.replace(/^ws/, 'http')], {}, 'from stdin\n')
    assert.equal(piped.code, 0, `${piped.stdout}${piped.stderr}`)
    assert.match(piped.stdout, /^connected to ws:.*\(job 0x[0-9a-f]{64}, worker \w+\)\necho: from stdin\nclosed 1000 done\nreceipt verified: worker 0x[0-9a-fA-F]{40} signed the transcript/)
    // a function that never accepts: the refusal, named
    const refused = await cli(['ws', url.replace(/\/echo$/, '/noaccept'), '--send', 'x'])
    assert.equal(refused.code, 1)
    assert.match(refused.stdout, /refused: HTTP 500 FUNCTION_ERROR: .*accept\(\)/)
  })

  it('SIGKILL of the worker holding a session: the client sees 1011/1012 within 2 s; a new session works', async () => {
    const { ws, worker } = await open(url)
    assert.equal(await echo(ws, 'before'), 'echo: before')
    const victim = net.workerInfo.findIndex(w => w.peerId === worker)
    assert.ok(victim >= 0, `the session's worker ${worker} is one of ours`)
    const gone = new Promise<{ code: number, ms: number }>(resolve => {
      const t0 = Date.now()
      ws.once('close', code => resolve({ code, ms: Date.now() - t0 }))
    })
    net.workers[victim].proc.kill('SIGKILL')
    const c = await gone
    assert.ok(c.code === 1011 || c.code === 1012, `close code ${c.code}`)
    assert.ok(c.ms <= 2_000, `the client heard it after ${c.ms} ms`)
    // a reconnect lands on the other worker (the dead one may linger in the view: retried past it)
    const again = await waitFor('a new session', async () => await open(url), 20_000, 200)
    assert.notEqual(again.worker, worker)
    assert.equal(await echo(again.ws, 'after'), 'echo: after')
    again.ws.close()
  })
})
