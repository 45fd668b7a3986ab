/**
 * The load policy's pure parts: the retry budget's window, the worker admission queue's refusals,
 * when the chain fallback may be asked, and the mesh's share of a deadline.
 */
import assert from 'node:assert/strict'
import { admission, chainFallbackAllowed, meshDeadline, NODE_DEFAULTS, retryBudget } from '#node'

describe('load policy', () => {
  it('retry budget: retries stay within 10 % of first attempts plus the reserve, and the window slides', () => {
    let now = 1_000_000
    const b = retryBudget({ ratio: 0.1, windowMs: 10_000, minRetries: 3, now: () => now })
    for (let i = 0; i < 100; i++) b.deposit()
    let granted = 0
    for (let i = 0; i < 100; i++) if (b.withdraw()) granted++
    assert.equal(granted, 13)
    assert.equal(b.withdraw(), false)
    // a full window later the spent retries have expired, and so have the deposits
    now += 11_000
    assert.deepEqual(b.stats(), { requests: 0, retries: 0 })
    granted = 0
    for (let i = 0; i < 10; i++) if (b.withdraw()) granted++
    assert.equal(granted, 3)
  })

  it('admission: refuses at once when the expected wait exceeds the job\'s queue time, queues otherwise', async () => {
    let now = 0
    const fulls: boolean[] = []
    const a = admission({ capacity: 1, queueFactor: 2, maxQueueMs: 250, now: () => now, onFullChange: f => fulls.push(f) })
    assert.deepEqual(await a.acquire(10_000), { ok: true })
    // no service time known yet: the job queues (bounded by its time in the queue)
    const queued = a.acquire(10_000)
    assert.equal(a.queued, 1)
    a.release(400)
    assert.deepEqual(await queued, { ok: true })
    // now one job takes ~400 ms: a job behind it cannot start within 250 ms
    const refused = await a.acquire(10_000)
    assert.equal(refused.ok, false)
    assert.equal(a.queued, 0, 'refused without queueing')
    assert.equal(a.full, true)
    assert.deepEqual(fulls, [true])
    a.release(400)
    assert.equal(a.full, false)
    assert.deepEqual(fulls, [true, false])
  })

  it('admission: a queued job that cannot start in its share of the deadline is refused when that time runs out', async () => {
    const a = admission({ capacity: 1, maxQueueMs: 50 })
    assert.deepEqual(await a.acquire(Date.now() + 10_000), { ok: true })
    const r = await a.acquire(Date.now() + 10_000)
    assert.equal(r.ok, false)
    assert.equal(a.queued, 0)
    a.release()
    assert.equal(a.running, 0)
  })

  it('chain fallback: never for overload, a deadline running out or a function error, only for an unreachable mesh or a failing worker with time left', () => {
    const failed = (code: string) => ({ attempts: [{ attempt: 1, worker: 'w', ok: false, code, ms: 1 }], error: { code: 'WORKER_FAILED' as const, message: 'x' } })
    assert.equal(chainFallbackAllowed(failed('WORKER_FAILED'), 10_000), true)
    assert.equal(chainFallbackAllowed({ attempts: [], error: { code: 'NO_WORKER', message: 'x' } }, 10_000), true)
    assert.equal(chainFallbackAllowed(failed('WORKER_FAILED'), NODE_DEFAULTS.chainPathMinMs - 1), false, 'no time left for the chain path')
    assert.equal(chainFallbackAllowed(failed('OVERLOADED'), 10_000), false)
    assert.equal(chainFallbackAllowed({ attempts: [], error: { code: 'OVERLOADED', message: 'x' } }, 10_000), false)
    assert.equal(chainFallbackAllowed({ attempts: [{ attempt: 1, worker: 'a', ok: false, code: 'WORKER_FAILED', ms: 1 }, { attempt: 2, worker: 'b', ok: false, code: 'OVERLOADED', ms: 1 }], error: { code: 'WORKER_FAILED', message: 'x' } }, 10_000), false)
    assert.equal(chainFallbackAllowed({ attempts: [], error: { code: 'LIMIT_MEMORY', message: 'x' } }, 10_000), false)
    // a deadline running out on a live mesh is load, not an unreachable mesh: never the chain
    assert.equal(chainFallbackAllowed(failed('DEADLINE_EXCEEDED'), 10_000), false)
    assert.equal(chainFallbackAllowed({ attempts: [{ attempt: 1, worker: 'a', ok: false, code: 'DEADLINE_EXCEEDED', ms: 6_000 }, { attempt: 2, worker: 'b', ok: false, code: 'WORKER_FAILED', ms: 1 }], error: { code: 'WORKER_FAILED', message: 'x' } }, 10_000), false)
  })

  it('mesh deadline: at least the function limit plus grace, never past the request deadline', () => {
    assert.equal(meshDeadline(0, 12_000, 10_000, 0.5), 10_000 + NODE_DEFAULTS.limitGraceMs)
    assert.equal(meshDeadline(0, 60_000, 1_000, 0.5), 30_000)
    assert.equal(meshDeadline(0, 5_000, 10_000, 0.5), 5_000)
  })
})
