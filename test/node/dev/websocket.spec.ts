/**
 * `peerhost dev` serves WebSockets the same way as the mesh: real gVisor sandbox, real `ws` client.
 */
import assert from 'node:assert/strict'
import { cpSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { WebSocket } from 'ws'
import { startDevServer, type DevServer } from '../../../node/dev/dev-server.ts'

const root = resolve(import.meta.dirname, '..', '..', '..')

describe('peerhost dev: WebSockets (gVisor)', function () {
  this.timeout(120_000)
  const dir = mkdtempSync(join(tmpdir(), 'peerhost-devws-'))
  let dev: DevServer

  before(async () => {
    cpSync(join(root, 'test/fixtures/websocket'), dir, { recursive: true })
    // the fixtures reference the builder types by a relative path from the repository
    dev = await startDevServer({ dir, port: 0, dataDir: join(dir, '.peerhost', 'dev'), onLog: () => {} })
  })
  after(async () => {
    await dev?.stop()
    rmSync(dir, { recursive: true, force: true })
  })

  it('echoes text and binary and delivers the function\'s close code and reason', async () => {
    const ws = new WebSocket(`${dev.url.replace(/^http/, 'ws')}/echo`)
    await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject) })
    const got: Array<[string, boolean]> = []
    ws.on('message', (d, binary) => { got.push([binary ? [...(d as Buffer)].join(',') : String(d), binary]) })
    const closed = new Promise<[number, string]>(resolve => ws.once('close', (c, r) => resolve([c, String(r)])))
    ws.send('one')
    ws.send(Buffer.from([7, 8, 9]))
    await new Promise(resolve => setTimeout(resolve, 300))
    ws.send('close:4100:dev bye')
    assert.deepEqual(await closed, [4100, 'dev bye'])
    assert.deepEqual(got, [['echo: one', false], ['7,8,9', true]])
  })

  it('answers a function that never accepts with a plain HTTP error', async () => {
    const ws = new WebSocket(`${dev.url.replace(/^http/, 'ws')}/noaccept`)
    const status = await new Promise<number>((resolve, reject) => {
      ws.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0))
      ws.once('open', () => reject(new Error('the upgrade completed')))
      ws.once('error', () => {})
    })
    assert.equal(status, 500)
  })
})
