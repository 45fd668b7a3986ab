/**
 * Gateway edge cases with real libp2p nodes in one process on 127.0.0.1 (bootstrap, gateway and
 * workers as in-process nodes; the dev executor runs the functions).
 */
import assert from 'node:assert/strict'
import { join, resolve } from 'node:path'
import { generatePrivateKey } from 'viem/accounts'
import { addProject, fastSigner, type GatewayNode } from '#node'
import { inProcessMesh, type InProcessMesh } from '../helpers/in-process.ts'
import { waitFor } from '../helpers/network.ts'

const root = resolve(import.meta.dirname, '..', '..')

describe('gateway (in-process mesh)', function () {
  this.timeout(60_000)
  let mesh: InProcessMesh
  let gateway: GatewayNode
  let base: string

  before(async () => {
    mesh = await inProcessMesh('peerhost-gw-')
    const owner = fastSigner(generatePrivateKey()).address
    await addProject(mesh.functions, owner, join(root, 'test/fixtures/slow'))
    gateway = await mesh.gateway()
    base = `${gateway.url}/${owner}/slow/slow`
  })
  after(async () => { await mesh?.stop() })

  it('is not ready and answers 503 NO_WORKER while it knows no worker', async () => {
    const ready = await fetch(`${gateway.url}/_peerhost/ready`)
    assert.equal(ready.status, 503)
    const res = await fetch(`${base}?ms=1`)
    assert.equal(res.status, 503)
    assert.equal(((await res.json()) as any).error.code, 'NO_WORKER')
  })

  it('serves once a worker joins, and answers 504 with LIMIT_TIMEOUT when the function overruns', async () => {
    await mesh.worker()
    await waitFor('the worker in the view', () => gateway.view.size() === 1, 10_000)
    assert.equal((await fetch(`${gateway.url}/_peerhost/ready`)).status, 200)
    const ok = await fetch(`${base}?ms=5`)
    assert.equal(ok.status, 200, await ok.clone().text())
    assert.deepEqual(await ok.json(), { slept: 5 })
    // the fixture's timeoutMs is 8000
    const slow = await fetch(`${base}?ms=20000`)
    assert.equal(slow.status, 504)
    const body = (await slow.json()) as any
    assert.equal(body.error.code, 'LIMIT_TIMEOUT')
    assert.equal(slow.headers.get('x-peerhost-attempts'), '1', 'a function timeout is the function\'s fault: not retried')
  })

  it('answers 400 with JSON to a malformed HTTP request', async () => {
    const { connect } = await import('node:net')
    const url = new URL(gateway.url)
    const raw = await new Promise<string>((resolve, reject) => {
      const s = connect(Number(url.port), url.hostname, () => s.write('GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n'))
      let out = ''
      s.on('data', d => { out += String(d) })
      s.on('end', () => resolve(out))
      s.on('error', reject)
    })
    assert.match(raw, /^HTTP\/1.1 400/)
    assert.match(raw, /"code":"BAD_REQUEST"/)
  })
})
