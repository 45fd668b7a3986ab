import assert from 'node:assert/strict'
import { waitQueue } from '../../../node/gateway/wait-queue.ts'

describe('gateway wait queue (issue 10: past saturation, wait a bounded time rather than refuse)', () => {
  it('queues nothing while the completion rate is unknown: a mesh full of long jobs answers 503 at once', () => {
    const q = waitQueue({ minSamples: 8, rateWindowMs: 1_000 })
    for (let i = 0; i < 7; i++) q.completed()
    assert.equal(q.rate(), undefined)
    assert.equal(q.join(Date.now() + 30_000), undefined)
    assert.equal(q.stats.refused, 1)
    q.stop()
  })

  it('queues while the expected wait (place over measured rate) fits, and refuses at once beyond it', () => {
    let now = 1_000_000
    const q = waitQueue({ minSamples: 4, rateWindowMs: 1_000, maxWaitMs: 1_000, share: 1, now: () => now })
    // 10 completions in the last second: 10 per second, so each place in the queue is ~100 ms
    for (let i = 0; i < 10; i++) { now += 100; q.completed() }
    assert.equal(q.rate(), 10)
    const tickets = []
    for (let i = 0; i < 5; i++) {
      const t = q.join(now + 30_000)
      assert.ok(t !== undefined, `place ${i + 1} expects ${(i + 1) * 100} ms ≤ half of 1,000 ms`)
      tickets.push(t)
    }
    assert.equal(q.join(now + 30_000), undefined, 'place 6 expects 600 ms > half of 1,000 ms: refused at once')
    // a short deadline shortens the wait allowed (the default share, 50 %): 50 % of 1 s is a
    // 500 ms bound, half of it 250 ms
    const short = waitQueue({ minSamples: 1, rateWindowMs: 1_000, now: () => now })
    for (let i = 0; i < 10; i++) short.completed()
    assert.ok(short.join(now + 1_000) !== undefined)
    assert.ok(short.join(now + 1_000) !== undefined)
    assert.equal(short.join(now + 1_000), undefined, 'third place: 300 ms > 250 ms')
    for (const t of tickets) t.leave(false)
    assert.equal(q.waiting, 0)
    // completions age out of the window: the rate is unknown again
    now += 2_000
    assert.equal(q.rate(), undefined)
    q.stop()
    short.stop()
  })

  it('wakes waiters first come first served, one per freed slot, and a served waiter wakes the next', async () => {
    const q = waitQueue({ minSamples: 1, rateWindowMs: 10_000, maxWaitMs: 5_000, share: 1, pollMs: 60_000 })
    for (let i = 0; i < 100; i++) q.completed()
    const order: number[] = []
    const a = q.join(Date.now() + 30_000)!
    const b = q.join(Date.now() + 30_000)!
    const pa = a.wait().then(v => { order.push(1); return v })
    const pb = b.wait().then(v => { order.push(2); return v })
    q.completed()
    assert.equal(await pa, 'retry')
    assert.deepEqual(order, [1], 'only the first is woken by one freed slot')
    // the first took its slot: it wakes the second
    a.leave(true)
    assert.equal(await pb, 'retry')
    b.leave(true)
    assert.deepEqual(order, [1, 2])
    assert.equal(q.stats.served, 2)
    q.stop()
  })

  it('a waiter that finds no slot keeps its place; one not served within its bound leaves with timeout; an abort leaves at once', async () => {
    const q = waitQueue({ minSamples: 1, rateWindowMs: 10_000, maxWaitMs: 150, share: 1, pollMs: 20 })
    for (let i = 0; i < 1_000; i++) q.completed()
    const a = q.join(Date.now() + 30_000)!
    const behind = q.join(Date.now() + 30_000)!
    // the poll wakes the first repeatedly; it finds no slot and waits again, keeping its place
    assert.equal(await a.wait(), 'retry')
    assert.equal(q.waiting, 2)
    const started = Date.now()
    let v = await a.wait()
    while (v === 'retry') v = await a.wait()
    assert.equal(v, 'timeout')
    assert.ok(Date.now() - started < 1_000, 'bounded by maxWaitMs')
    assert.equal(q.stats.timedOut, 1)
    behind.leave(false)
    const b = q.join(Date.now() + 30_000)!
    const ac = new AbortController()
    const pb = b.wait(ac.signal)
    ac.abort()
    assert.equal(await pb, 'aborted')
    assert.equal(q.waiting, 0)
    q.stop()
  })

  it('refuses once maxLength wait (memory stays bounded under a flood)', () => {
    const q = waitQueue({ minSamples: 1, rateWindowMs: 1_000, maxLength: 3, maxWaitMs: 60_000, share: 1 })
    for (let i = 0; i < 10_000; i++) q.completed()
    for (let i = 0; i < 3; i++) assert.ok(q.join(Date.now() + 60_000) !== undefined)
    assert.equal(q.join(Date.now() + 60_000), undefined)
    q.stop()
  })
})
