/**
 * The boot gate (sandbox/gvisor/boot-gate.ts): at most `slots` sandbox boots at once on a machine,
 * the most wanted first. Unit tests of the gate itself; the gate with real runsc boots is in
 * gvisor-executor.spec.ts.
 */
import assert from 'node:assert/strict'
import { BootGate, type BootPriority, type BootTicket } from '../../sandbox/gvisor/boot-gate.ts'

/** enters `priority` and records when it is admitted */
function enter (gate: BootGate, order: string[], name: string, priority: BootPriority): BootTicket {
  const t = gate.enter(priority)
  t.admitted.then(() => { order.push(name) }, () => { order.push(`${name} cancelled`) })
  return t
}

const settle = async (): Promise<void> => { for (let i = 0; i < 3; i++) await new Promise(resolve => setImmediate(resolve)) }

describe('sandbox boot gate: a few boots at a time, most wanted first', () => {
  it('admits at most `slots` boots; the others wait until one is done', async () => {
    const gate = new BootGate({ slots: 2 })
    const order: string[] = []
    const a = enter(gate, order, 'a', 1)
    const b = enter(gate, order, 'b', 1)
    const c = enter(gate, order, 'c', 1)
    await settle()
    assert.deepEqual(order, ['a', 'b'])
    assert.equal(gate.active, 2)
    assert.equal(gate.queued, 1)
    a.done()
    a.done() // (twice: frees one slot only)
    await settle()
    assert.deepEqual(order, ['a', 'b', 'c'])
    assert.equal(gate.active, 2)
    b.done(); c.done()
    assert.equal(gate.active, 0)
  })

  it('admits a boot a request waits for first, then a function version\'s, then generic ones; in arrival order within each', async () => {
    const gate = new BootGate({ slots: 1 })
    const order: string[] = []
    const tickets = new Map<string, BootTicket>()
    for (const [name, priority] of [['first', 1], ['generic-1', 2], ['version-1', 1], ['generic-2', 2], ['urgent', 0], ['version-2', 1]] as const) {
      tickets.set(name, enter(gate, order, name, priority))
    }
    // the one admitted last finishes, and the next is admitted
    for (let i = 0; i < tickets.size; i++) {
      await settle()
      tickets.get(order.at(-1)!)?.done()
    }
    assert.deepEqual(order, ['first', 'urgent', 'version-1', 'version-2', 'generic-1', 'generic-2'])
  })

  it('raise(): a waiting boot that a request now waits for goes first', async () => {
    const gate = new BootGate({ slots: 1 })
    const order: string[] = []
    const running = enter(gate, order, 'running', 1)
    const v = enter(gate, order, 'version', 1)
    const g = enter(gate, order, 'generic', 2)
    await settle()
    g.raise()
    running.done()
    await settle()
    assert.deepEqual(order, ['running', 'generic'])
    g.done(); v.done()
  })

  it('done() while waiting leaves the line: admitted rejects and no slot is taken', async () => {
    const gate = new BootGate({ slots: 1 })
    const order: string[] = []
    const running = enter(gate, order, 'running', 1)
    const gone = enter(gate, order, 'gone', 0)
    const next = enter(gate, order, 'next', 1)
    await settle()
    gone.done()
    await assert.rejects(gone.admitted, /cancelled before it started/)
    assert.equal(gate.queued, 1)
    running.done()
    await settle()
    assert.deepEqual(order, ['running', 'gone cancelled', 'next'])
    assert.equal(gate.active, 1)
    next.done()
  })

  it('a boot that hangs gives its slot up after maxHoldMs: the others go on', async () => {
    const gate = new BootGate({ slots: 1, maxHoldMs: 50 })
    const order: string[] = []
    const hung = enter(gate, order, 'hung', 0)
    const next = enter(gate, order, 'next', 1)
    await settle()
    assert.deepEqual(order, ['hung'])
    const started = performance.now()
    await next.admitted
    assert.ok(performance.now() - started >= 40, 'next waited for the hung boot\'s hold to run out')
    hung.done() // late: frees nothing more
    assert.equal(gate.active, 1, 'next holds the slot')
    next.done()
    assert.equal(gate.active, 0)
  })

  it('defaults to a slot per core and at least one', () => {
    assert.ok(new BootGate().slots >= 1)
    assert.equal(new BootGate({ slots: 0 }).slots, 1)
  })
})
