/**
 * The warm pool's boot policy (sandbox/gvisor/pool.ts), a unit test of the pool with stand-in
 * sandboxes (the gVisor sandboxes themselves are tested in gvisor-executor.spec.ts): background
 * boots wait for a quiet moment, a retiring sandbox serves on until its replacement is ready, and
 * one past its hard limit serves nothing more.
 */
import assert from 'node:assert/strict'
import { Pool, type PoolConfig } from '../../sandbox/gvisor/pool.ts'
import { BootGate, type MachineActivity } from '../../sandbox/gvisor/boot-gate.ts'
import type { Sandbox } from '../../sandbox/gvisor/sandbox.ts'

interface Stub {
  isReady: boolean
  ready: Promise<void>
  dead: boolean
  inflight: number
  sessions: number
  executions: number
  createdAt: number
  lastUsed: number
  memoryMb: number
  maintaining: boolean
  lastIdle?: { heap?: number }
  destroying: boolean
  boundTo?: string
  booted: () => void
  destroy: () => Promise<void>
  /** times an execution waiting for this boot hurried it */
  hurried: number
  hurry: () => void
}

const CID = 'bafkreihello'

function harness (overrides: Partial<PoolConfig> = {}, machine?: MachineActivity): { pool: Pool, boots: Stub[], clock: { t: number }, finishBoots: () => void, warm: (isolation?: 'function' | 'execution') => Promise<void> } {
  const clock = { t: 1_000_000 }
  const boots: Stub[] = []
  const config: PoolConfig = {
    genericSize: 0,
    perFunction: 1,
    maxPerFunction: 2,
    concurrency: 4,
    sessionMemoryMb: 1,
    maxExecutions: 3,
    maxAgeMs: 60_000,
    retireGraceFactor: 2,
    bootQuietMs: 500,
    maxSandboxes: 16,
    maxConcurrentBoots: 2,
    defaultMemoryMb: 128,
    maxWarmFunctions: 32,
    ...overrides
  }
  const pool = new Pool(config, (memoryMb) => {
    let resolve!: () => void
    const sb: Stub = {
      isReady: false,
      ready: new Promise<void>(r => { resolve = r }),
      dead: false,
      inflight: 0,
      sessions: 0,
      executions: 0,
      createdAt: clock.t,
      lastUsed: clock.t,
      memoryMb,
      maintaining: false,
      destroying: false,
      booted: () => { sb.isReady = true; resolve() },
      destroy: async () => { sb.dead = true; sb.destroying = true },
      hurried: 0,
      hurry: () => { sb.hurried++ }
    }
    boots.push(sb)
    return sb as unknown as Sandbox
  }, (err) => { throw err }, () => clock.t, machine)
  const finishBoots = (): void => { for (const b of boots) if (!b.isReady && !b.dead) b.booted() }
  /** CID wanted warm, its target sandbox booted and joined */
  const warm = async (isolation: 'function' | 'execution' = 'function'): Promise<void> => {
    pool.want(CID, 128, isolation)
    await tick()
    finishBoots()
    await tick()
  }
  return { pool, boots, clock, finishBoots, warm }
}

/** lets setImmediate-scheduled refills run */
const tick = async (): Promise<void> => { for (let i = 0; i < 3; i++) await new Promise(resolve => setImmediate(resolve)) }

/** one execution: acquire, count it as the sandbox does, release */
async function run (pool: Pool): Promise<Sandbox> {
  const sb = await pool.acquire(CID, 128, 'function')
  ;(sb as unknown as Stub).executions++
  pool.release(sb, CID, 'function', true)
  return sb
}

describe('sandbox pool: boots wait for quiet, retiring sandboxes serve until replaced', () => {
  it('boots to its targets at once when idle', async () => {
    const { pool, boots } = harness()
    pool.want(CID, 128, 'function')
    await tick()
    assert.equal(boots.length, 1, 'one per-function sandbox boots for the target')
    await pool.stop()
  })

  it('an execution that finds its version\'s pre-warm boot still running waits for it and hurries it to normal priority', async () => {
    const { pool, boots, finishBoots } = harness()
    pool.want(CID, 128, 'function')
    await tick()
    assert.equal(boots.length, 1)
    assert.equal(boots[0].hurried, 0, 'a pre-warm boots in the background')
    const waiting = pool.acquire(CID, 128, 'function')
    await tick()
    // no second boot beside it: both would be late (at the devnet's start, one extra boot per
    // version per worker, all on the same two cores)
    assert.equal(boots.length, 1, 'no second boot for an execution that waits for the version\'s first')
    assert.deepEqual(boots.map(b => b.hurried > 0), boots.map(() => true), 'every boot it may get its slot from is hurried')
    boots[0].booted()
    const first = await waiting
    assert.equal(first, boots[0] as unknown as Sandbox)
    // a version with a sandbox ready (here at its concurrency, 4) waits for its slot: its boots
    // stay in the background
    const busy = await Promise.all(Array.from({ length: 3 }, async () => await pool.acquire(CID, 128, 'function')))
    const before = boots.map(b => b.hurried)
    const next = pool.acquire(CID, 128, 'function')
    await tick()
    assert.deepEqual(boots.slice(0, before.length).map(b => b.hurried), before, 'no boot hurried while a sandbox of the version runs')
    for (const b of [first, ...busy]) pool.release(b, CID, 'function', true)
    finishBoots()
    pool.release(await next, CID, 'function', true)
    await pool.stop()
  })

  it('boots a version\'s own sandboxes before the generic ones', async () => {
    const { pool, boots } = harness({ genericSize: 1, maxConcurrentBoots: 1 })
    pool.want(CID, 128, 'function')
    await tick()
    assert.equal(boots.length, 1, 'one boot at a time')
    boots[0].booted()
    await tick()
    assert.equal(pool.idleFor(CID), 1, 'the first boot was the version\'s pre-warm')
    assert.equal(pool.idleGeneric, 0, 'and not the generic sandbox')
    assert.equal(boots.length, 2, 'the generic one boots next')
    boots[1].booted()
    await tick()
    assert.equal(pool.idleGeneric, 1)
    await pool.stop()
  })

  it('puts off a background boot while executions run, and boots once bootQuietMs passed without one', async () => {
    const { pool, boots, clock, finishBoots, warm } = harness({ genericSize: 0 })
    await warm()
    const sb = await pool.acquire(CID, 128, 'function')
    // another function is deployed while an execution runs: its prewarm boot waits
    pool.want(`${CID}-other`, 128, 'function')
    await tick()
    assert.equal(boots.length, 1, 'the new version\'s sandbox boots only when quiet: not yet')
    pool.release(sb, CID, 'function', true)
    await tick()
    assert.equal(boots.length, 1 + 0, `nothing boots right after an execution ended (booted ${boots.length - 1} more)`)
    assert.ok(pool.deferred >= 1, 'the refill was deferred')
    clock.t += 600
    await new Promise(resolve => setTimeout(resolve, 600))
    await tick()
    assert.equal(boots.length, 1 + 1, 'once quiet: the new version\'s sandbox')
    await pool.stop()
  })

  it('puts off its background boots while another pool of the machine runs an execution (the devnet\'s workers share two cores)', async () => {
    const gate = new BootGate({ slots: 1 })
    const a = harness({ genericSize: 0, bootQuietMs: 100 }, gate)
    const b = harness({ genericSize: 0, bootQuietMs: 100 }, gate)
    await b.warm()
    const running = await b.pool.acquire(CID, 128, 'function')
    // pool a has run nothing at all: alone, it would boot at once
    a.pool.want(CID, 128, 'function')
    await tick()
    assert.equal(a.boots.length, 0, 'no boot in pool a while pool b executes')
    await new Promise(resolve => setTimeout(resolve, 250))
    await tick()
    assert.equal(a.boots.length, 0, 'still none while the execution runs (a\'s own pool has been quiet all along)')
    b.pool.release(running, CID, 'function', true)
    await new Promise(resolve => setTimeout(resolve, 350))
    await tick()
    assert.equal(a.boots.length, 1, 'it boots once the machine was quiet for bootQuietMs')
    await a.pool.stop()
    await b.pool.stop()
  })

  it('a pool stopped with executions in flight stops counting them on the machine', async () => {
    const gate = new BootGate({ slots: 1 })
    const b = harness({ genericSize: 0 }, gate)
    await b.warm()
    await b.pool.acquire(CID, 128, 'function')
    assert.equal(gate.idleMs(Date.now() + 10_000), 0, 'an execution runs')
    await b.pool.stop()
    assert.ok(gate.idleMs(Date.now() + 10_000) > 0, 'the stopped pool\'s execution no longer holds the machine busy')
  })

  it('a sandbox whose live heap after a collection holds over half its memory retires, and is replaced at the first quiet moment', async () => {
    const { pool, boots, clock, finishBoots, warm } = harness({ maxExecutions: 1_000 })
    await warm()
    const first = boots[0]
    assert.equal(await run(pool), first as unknown as Sandbox)
    first.lastIdle = { heap: 40 * 1024 * 1024 }
    clock.t += 600
    await new Promise(resolve => setTimeout(resolve, 600))
    await tick()
    assert.equal(boots.length, 1, 'a sandbox holding 40 of its 128 MB after a collection serves on')
    first.lastIdle = { heap: 70 * 1024 * 1024 }
    assert.equal(await run(pool), first as unknown as Sandbox, 'it serves while its replacement is not there')
    clock.t += 600
    await new Promise(resolve => setTimeout(resolve, 600))
    await tick()
    assert.equal(boots.length, 2, 'holding 70 of 128 MB it retires: the replacement boots once quiet')
    finishBoots()
    await tick()
    assert.equal(await run(pool), boots[1] as unknown as Sandbox, 'the replacement serves')
    assert.equal(first.dead, true, 'the heavy sandbox is gone')
    await pool.stop()
  })

  it('a retiring sandbox serves on while busy, is replaced at the first quiet moment, and goes once the replacement is ready', async () => {
    const { pool, boots, clock, finishBoots, warm } = harness()
    await warm()
    const first = boots[0]
    // back-to-back executions (never quiet): past maxExecutions (3) the same sandbox serves on
    for (let i = 0; i < 5; i++) {
      assert.equal(await run(pool), first as unknown as Sandbox, `execution ${i + 1} runs in the first sandbox`)
    }
    assert.equal(boots.length, 1, 'no boot while executions follow each other')
    assert.equal(first.dead, false)
    // quiet: the replacement boots; the old one serves until it is ready, then goes
    clock.t += 600
    await new Promise(resolve => setTimeout(resolve, 600))
    await tick()
    assert.equal(boots.length, 2, 'the replacement boots once the pool is quiet')
    assert.equal(await run(pool), first as unknown as Sandbox, 'the retiring sandbox serves while its replacement boots')
    finishBoots()
    await tick()
    const next = await run(pool)
    assert.equal(next, boots[1] as unknown as Sandbox, 'the replacement serves once ready')
    assert.equal(first.dead, true, 'the retired sandbox was destroyed once replaced and idle')
    await pool.stop()
  })

  it('past retireGraceFactor × maxExecutions a sandbox serves nothing more, even with no replacement ready', async () => {
    const { pool, boots, finishBoots, warm } = harness({ maxPerFunction: 1 })
    await warm()
    const first = boots[0]
    for (let i = 0; i < 6; i++) await run(pool) // 2 × 3: the hard limit
    const pending = pool.acquire(CID, 128, 'function')
    await tick()
    assert.equal(first.dead, true, 'the sandbox past its hard limit is gone')
    assert.equal(boots.length, 2, 'the request that found no sandbox boots one at once (not put off)')
    finishBoots()
    const sb = await pending
    assert.equal(sb, boots[1] as unknown as Sandbox)
    pool.release(sb, CID, 'function', true)
    await pool.stop()
  })

  it('an execution finding every sandbox of its version at its concurrency waits for a slot; one more boots in the background, and a later execution takes it once ready', async () => {
    const { pool, boots, finishBoots, warm } = harness({ concurrency: 2 })
    await warm()
    const a = await pool.acquire(CID, 128, 'function')
    const b = await pool.acquire(CID, 128, 'function')
    let third: Sandbox | undefined
    const pending = pool.acquire(CID, 128, 'function').then(sb => { third = sb })
    await tick()
    assert.equal(boots.length, 2, 'a second sandbox boots for the demand')
    assert.equal(third, undefined, 'the execution waits (it is not bound to the boot)')
    pool.release(a, CID, 'function', true)
    await pending
    assert.equal(third, boots[0] as unknown as Sandbox, 'it took the slot the running sandbox freed, before the boot ended')
    finishBoots()
    await tick()
    const fourth = await pool.acquire(CID, 128, 'function')
    assert.equal(fourth, boots[1] as unknown as Sandbox, 'once ready, the new sandbox (least loaded) takes the next one')
    for (const sb of [b, third!, fourth]) pool.release(sb, CID, 'function', true)
    assert.equal(boots.length, 2, 'no more than maxPerFunction (2) sandboxes')
    await pool.stop()
  })

  it('a version at its bound of sandboxes waits for a slot instead of taking a generic sandbox', async () => {
    const { pool, boots, finishBoots } = harness({ genericSize: 1, maxPerFunction: 1, concurrency: 1 })
    pool.want(CID, 128, 'function')
    await tick()
    finishBoots()
    await tick()
    assert.equal(pool.idleGeneric, 1, 'one generic sandbox idles')
    const a = await pool.acquire(CID, 128, 'function')
    let second: Sandbox | undefined
    const pending = pool.acquire(CID, 128, 'function').then(sb => { second = sb })
    await tick()
    assert.equal(second, undefined, 'the second execution waits for the version\'s one slot')
    assert.equal(pool.idleGeneric, 1, 'the generic sandbox stays free for a version that has none')
    pool.release(a, CID, 'function', true)
    await pending
    assert.equal(second, a, 'it runs in the version\'s sandbox once the slot is free')
    pool.release(second!, CID, 'function', true)
    assert.equal(boots.length, 2, 'nothing booted for the load')
    await pool.stop()
  })

  it('a single-use (isolation execution) version still takes a generic sandbox at its bound', async () => {
    const { pool, boots, finishBoots } = harness({ genericSize: 2, maxPerFunction: 1 })
    // another version's pre-warm sets the pool filling: it and the generic sandboxes boot
    pool.want(`${CID}-other`, 128, 'function')
    for (let i = 0; i < 3; i++) { await tick(); finishBoots() } // two boots at a time
    await tick()
    assert.equal(pool.idleGeneric, 2)
    const booted = boots.length
    const first = await pool.acquire(CID, 128, 'execution')
    // the version now holds one sandbox (in flight): its bound; the next execution needs its own
    const second = await Promise.race([pool.acquire(CID, 128, 'execution'), new Promise<undefined>(resolve => setTimeout(() => resolve(undefined), 200))])
    assert.ok(second !== undefined && second !== first, 'the second execution got a sandbox of its own while the first ran')
    assert.equal(boots.length, booted, 'no boot: both took generic sandboxes')
    pool.release(first, CID, 'execution', true)
    pool.release(second, CID, 'execution', true)
    await pool.stop()
  })

  it('isolation-execution versions get their replacement at once, busy or not', async () => {
    const { pool, boots, finishBoots, warm } = harness()
    await warm('execution')
    const otherP = pool.acquire('bafkreiother', 128, 'function') // keeps the pool busy
    await tick()
    finishBoots()
    const other = await otherP
    const sb = await pool.acquire(CID, 128, 'execution')
    ;(sb as unknown as Stub).executions++
    pool.release(sb, CID, 'execution', true)
    await tick()
    assert.ok(boots.filter(b => !b.dead).length >= 2, `a replacement boots for the single-use version while another execution runs (${boots.length} boots)`)
    pool.release(other, 'bafkreiother', 'function', true)
    await pool.stop()
  })
})
