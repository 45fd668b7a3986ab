/**
 * Behaviour under load with real libp2p nodes in one process (bootstrap, gateways and workers on
 * 127.0.0.1; the dev executor runs test/fixtures/slow): a saturated worker refuses at once with
 * OVERLOADED and says so in its advert, and a gateway whose job streams all fail (an injected
 * failing dialer) spends at most its retry budget on retries.
 */
import assert from 'node:assert/strict'
import { join, resolve } from 'node:path'
import { generatePrivateKey } from 'viem/accounts'
import { addProject, fastSigner, NODE_DEFAULTS } from '#node'
import { inProcessMesh, type InProcessMesh } from '../helpers/in-process.ts'
import { waitFor } from '../helpers/network.ts'

const root = resolve(import.meta.dirname, '..', '..')

describe('load (in-process mesh)', function () {
  this.timeout(90_000)
  let mesh: InProcessMesh
  let owner: `0x${string}`
  const worker = async (capacity: number): Promise<Awaited<ReturnType<InProcessMesh['worker']>>> => await mesh.worker({ capacity })
  const gateway: InProcessMesh['gateway'] = async (init, components) => await mesh.gateway(init, components)

  before(async () => {
    mesh = await inProcessMesh('peerhost-load-')
    owner = fastSigner(generatePrivateKey()).address
    await addProject(mesh.functions, owner, join(root, 'test/fixtures/slow'))
  })
  after(async () => { await mesh?.stop() })

  it('a saturated worker refuses at once with OVERLOADED (503, Retry-After) and adverts itself full', async () => {
    const w = await worker(1)
    const g = await gateway()
    const base = `${g.url}/${owner}/slow/slow`
    await waitFor('the worker in the view', () => g.view.get(w.peerId.toString()) !== undefined, 15_000)
    // one job teaches the worker its service time (400 ms: longer than any job may queue, NODE_DEFAULTS.workerMaxQueueMs)
    assert.equal((await fetch(`${base}?ms=400`)).status, 200)

    let longDone = false
    const long = fetch(`${base}?ms=4000`).then(r => { longDone = true; return r })
    await waitFor('the long job running', () => w.running === 1, 10_000, 10)
    const refused = await fetch(`${base}?ms=1`)
    const body = await refused.json() as any
    assert.equal(longDone, false, 'answered while the worker was busy, not after')
    assert.equal(refused.status, 503, JSON.stringify(body))
    assert.equal(body.error.code, 'OVERLOADED')
    assert.match(refused.headers.get('retry-after') ?? '', /^[1-9][0-9]*$/)
    assert.ok(Number(refused.headers.get('x-peerhost-attempts')) <= 1)

    // the worker said it is full in a signed advert, and the gateway stopped sending it jobs
    await waitFor('an advert saying full', () => g.view.get(w.peerId.toString())?.advert.full === true ? true : undefined, 5_000, 20)
    const skipped = await fetch(`${base}?ms=1`)
    assert.equal(skipped.status, 503)
    assert.equal(skipped.headers.get('x-peerhost-attempts'), '0', 'no job sent to a worker that advertised itself full')

    assert.equal((await long).status, 200)
    await waitFor('an advert with room again', () => g.view.get(w.peerId.toString())?.advert.full !== true ? true : undefined, 5_000, 20)
    assert.equal((await fetch(`${base}?ms=1`)).status, 200)
  })

  it('caps retries with the retry budget when every job stream fails (injected failing dialer)', async () => {
    await worker(8)
    await worker(8)
    let dials = 0
    const g = await gateway({}, { dial: async () => { dials++; throw new Error('connection refused (injected)') } })
    await waitFor('three workers in the view', () => g.view.size() === 3 ? true : undefined, 15_000)
    const base = `${g.url}/${owner}/slow/slow`
    const n = 60
    const answers = await Promise.all(Array.from({ length: n }, async () => {
      const r = await fetch(`${base}?ms=1`)
      return { status: r.status, attempts: Number(r.headers.get('x-peerhost-attempts')), code: ((await r.json()) as any).error?.code }
    }))
    for (const a of answers) {
      assert.equal(a.status, 502)
      assert.equal(a.code, 'WORKER_FAILED')
    }
    const attempts = answers.reduce((s, a) => s + a.attempts, 0)
    assert.equal(attempts, dials, 'every attempt dialed once')
    // without a budget: 3 attempts per request (180); with it: n + 10 % + the reserve
    const cap = n + Math.floor(n * NODE_DEFAULTS.retryBudgetRatio) + NODE_DEFAULTS.retryBudgetMinRetries
    assert.ok(attempts >= n, `each request tried at least once (${attempts})`)
    assert.ok(attempts <= cap, `${attempts} attempts for ${n} requests; the budget allows ${cap}`)
  })
})
