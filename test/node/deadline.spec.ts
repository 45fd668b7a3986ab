import assert from 'node:assert/strict'
import { deadline } from '../../node/deadline.ts'

const sleep = async (ms: number): Promise<void> => await new Promise(resolve => setTimeout(resolve, ms))

describe('clearable deadlines (hot-path time limits)', () => {
  it('aborts with a TimeoutError after its time, as AbortSignal.timeout does', async () => {
    const d = deadline(20)
    assert.equal(d.signal.aborted, false)
    await sleep(60)
    assert.equal(d.signal.aborted, true)
    assert.equal((d.signal.reason as DOMException).name, 'TimeoutError')
  })

  it('follows a linked signal, with its reason, and one already aborted at once', async () => {
    const outer = new AbortController()
    const d = deadline(10_000, undefined, outer.signal)
    outer.abort(new Error('client left'))
    assert.equal(d.signal.aborted, true)
    assert.equal((d.signal.reason as Error).message, 'client left')
    const late = deadline(10_000, outer.signal)
    assert.equal(late.signal.aborted, true)
    assert.equal((late.signal.reason as Error).message, 'client left')
  })

  it('once cleared, neither its timer nor a linked signal aborts it, and it leaves no listener behind', async () => {
    const outer = new AbortController()
    let listeners = 0
    const add = outer.signal.addEventListener.bind(outer.signal)
    const remove = outer.signal.removeEventListener.bind(outer.signal)
    outer.signal.addEventListener = ((...a: Parameters<typeof add>) => { listeners++; add(...a) }) as typeof add
    outer.signal.removeEventListener = ((...a: Parameters<typeof remove>) => { listeners--; remove(...a) }) as typeof remove
    const d = deadline(20, outer.signal)
    assert.equal(listeners, 1)
    d.clear()
    d.clear()
    assert.equal(listeners, 0)
    await sleep(60)
    outer.abort()
    assert.equal(d.signal.aborted, false)
  })
})
