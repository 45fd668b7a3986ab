/**
 * The worker's own session limits (node/worker/session-guard.ts): idle and length timers behind
 * the gateway's by a grace, the message rate as a token bucket that passes an honest gateway's
 * bursts and stops a sustained flood, the size limit.
 */
import assert from 'node:assert/strict'
import { sessionGuard } from '../../../node/worker/session-guard.ts'

const wait = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }
const roomy = { idleMs: 60_000, maxMs: 60_000, messagesPerSec: 1_000, maxMessageBytes: 1024 }

describe('worker session guard', () => {
  it('closes an idle session with 4408 after the idle time plus the grace, and not before', async () => {
    const breaches: Array<[number, string]> = []
    let at = 0
    const t0 = performance.now()
    const g = sessionGuard({ ...roomy, idleMs: 100, graceMs: 100 }, (code, reason) => { at = performance.now(); breaches.push([code, reason]) })
    await waitUntil(() => breaches.length > 0, 5_000)
    assert.deepEqual(breaches, [[4408, 'idle timeout']])
    assert.ok(at - t0 >= 199, `not before idle + grace: ${at - t0} ms`)
    g.stop()
  })

  it('counts a message either way as activity', async () => {
    // however late the timers run on a loaded machine, the close comes 150 ms after the last activity
    let at = 0
    const activity: number[] = [performance.now()]
    const g = sessionGuard({ ...roomy, idleMs: 150, graceMs: 0 }, () => { at = performance.now() })
    for (let i = 0; i < 6 && at === 0; i++) {
      await wait(60)
      if (at !== 0) break
      activity.push(performance.now())
      if (i % 2 === 0) g.outbound()
      else assert.equal(g.inbound(10), undefined)
    }
    await waitUntil(() => at !== 0, 5_000)
    const last = Math.max(...activity.filter(t => t < at))
    assert.ok(at - last >= 149, `closed ${at - last} ms after the last activity`)
    assert.ok(activity.length > 1)
  })

  it('closes a session at its maximum length with 4410 however busy it is', async () => {
    const breaches: number[] = []
    const t0 = Date.now()
    const g = sessionGuard({ ...roomy, maxMs: 150, graceMs: 50 }, (code) => breaches.push(code))
    while (breaches.length === 0 && Date.now() - t0 < 5_000) { g.outbound(); await wait(20) }
    assert.deepEqual(breaches, [4410])
    assert.ok(Date.now() - t0 >= 199, `after ${Date.now() - t0} ms`)
    g.stop()
  })

  it('passes a burst of burstSec × the rate, refuses a sustained flood with 4429, and stops', () => {
    const fired: number[] = []
    const g = sessionGuard({ ...roomy, messagesPerSec: 10, burstSec: 4 }, (code) => fired.push(code))
    for (let i = 0; i < 40; i++) assert.equal(g.inbound(1), undefined, `message ${i} of the burst`)
    assert.deepEqual(g.inbound(1), { code: 4429, reason: 'more than 10 messages per second' })
    // stopped: nothing more is judged, and no timer fires
    assert.equal(g.inbound(1), undefined)
    assert.deepEqual(fired, [])
  })

  it('refills at the rate: an honest pace never trips it', async () => {
    const g = sessionGuard({ ...roomy, messagesPerSec: 100, burstSec: 1 }, () => {})
    for (let round = 0; round < 5; round++) {
      for (let i = 0; i < 10; i++) assert.equal(g.inbound(1), undefined)
      await wait(110)
    }
    g.stop()
  })

  it('refuses a message over the size limit with 1009', () => {
    const g = sessionGuard(roomy, () => {})
    assert.equal(g.inbound(1024), undefined)
    assert.deepEqual(g.inbound(1025), { code: 1009, reason: 'a client message over 1024 bytes' })
  })
})

async function waitUntil (cond: () => boolean, ms: number): Promise<void> {
  const t0 = Date.now()
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error(`condition not met in ${ms} ms`)
    await wait(10)
  }
}
