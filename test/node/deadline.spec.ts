import assert from 'node:assert/strict'
import { once } from 'node:events'
import { createServer, connect, type AddressInfo, type Socket } from 'node:net'
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

  it('an answer that arrived while the event loop was stalled past the deadline is read before the deadline aborts', async () => {
    // a real TCP pair on 127.0.0.1: the answer is in the kernel's buffer during the stall
    const server = createServer()
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    const accepted = once(server, 'connection') as Promise<[Socket]>
    const client = connect((server.address() as AddressInfo).port, '127.0.0.1')
    await once(client, 'connect')
    const [peer] = await accepted
    try {
      const d = deadline(20)
      let abortedWhenRead: boolean | undefined
      const read = new Promise<void>(resolve => client.once('data', () => { abortedWhenRead = d.signal.aborted; d.clear(); resolve() }))
      // From a check-phase callback the loop goes to its timers (the deadline is due after the
      // stall) before it polls the socket: the order a stalled process meets its timers in.
      setImmediate(() => {
        peer.write('answer')
        const until = Date.now() + 100
        while (Date.now() < until) { /* the process is busy past the deadline */ }
      })
      await read
      assert.equal(abortedWhenRead, false, 'the answer is read before the deadline aborts')
      await sleep(20)
      assert.equal(d.signal.aborted, false, 'cleared once the answer was in: nothing aborts later')
      // with nothing to read the deadline still aborts (one turn after its timer). Waited for by
      // its event, not by a later timer: a process held off the CPU past both (a loaded machine)
      // runs both timers in one phase, and the later one's callback came before the abort
      const idle = deadline(20)
      setImmediate(() => { const until = Date.now() + 100; while (Date.now() < until) { /* busy */ } })
      await Promise.race([once(idle.signal, 'abort'), sleep(5_000)])
      assert.equal(idle.signal.aborted, true, 'the deadline aborted within 5 s of its 20 ms')
    } finally {
      client.destroy(); peer.destroy(); server.close()
    }
  })
})
