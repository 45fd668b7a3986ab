/**
 * A worker's stop (its SIGTERM shutdown, a test's teardown) with real libp2p nodes in one process:
 * the job running when stop begins is answered, and the gateway's job stream idling between jobs
 * (a gateway keeps it for the next job) does not hold the stop until the drain timeout. Before,
 * every stop of a worker a gateway had used waited the whole drain timeout (10 s).
 */
import assert from 'node:assert/strict'
import { join, resolve } from 'node:path'
import { generatePrivateKey } from 'viem/accounts'
import { addProject, fastSigner, NODE_DEFAULTS, type GatewayNode } from '#node'
import { inProcessMesh, type InProcessMesh } from '../helpers/in-process.ts'
import { waitFor } from '../helpers/network.ts'

const root = resolve(import.meta.dirname, '..', '..')

describe('worker stop (in-process mesh)', function () {
  this.timeout(60_000)
  let mesh: InProcessMesh
  let gateway: GatewayNode
  let base: string

  before(async () => {
    mesh = await inProcessMesh('peerhost-stop-')
    const owner = fastSigner(generatePrivateKey()).address
    await addProject(mesh.functions, owner, join(root, 'test/fixtures/slow'))
    gateway = await mesh.gateway()
    base = `${gateway.url}/${owner}/slow/slow`
  })
  after(async () => { await mesh?.stop() })

  it('answers the job running when stop begins, then stops without waiting out the idle job stream', async () => {
    const worker = await mesh.worker()
    await waitFor('the worker in the gateway view', () => gateway.view.size() === 1, 15_000)
    // two jobs one after the other: the gateway reuses its job stream, which then idles
    for (const ms of [1, 2]) {
      const r = await fetch(`${base}?ms=${ms}`)
      assert.equal(r.status, 200, await r.text())
    }
    const running = fetch(`${base}?ms=1500`)
    await waitFor('the job running on the worker', () => worker.running === 1, 15_000, 10)
    const started = Date.now()
    await worker.stop()
    const stopMs = Date.now() - started
    const res = await running
    assert.equal(res.status, 200, await res.clone().text())
    assert.deepEqual(await res.json(), { slept: 1500 }, 'the running job was answered, not cut')
    // the stop waited for the running job (1.5 s), not for the drain timeout
    assert.ok(stopMs < NODE_DEFAULTS.drainTimeoutMs - 2_000, `stop took ${stopMs} ms (drain timeout ${NODE_DEFAULTS.drainTimeoutMs} ms)`)
  })
})
