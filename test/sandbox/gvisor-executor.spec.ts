/**
 * The gVisor executor with real runsc (never skipped: a missing runsc fails these tests).
 * Each hostile function yields its stable code or a clean result, nothing leaks, and a normal
 * function answers right after.
 */
import assert from 'node:assert/strict'
import { execFileSync, spawn } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { BootGate, buildOciSpec, gvisorExecutor, GVISOR_POOL_DEFAULTS, leftovers, runscGlobalArgs, SANDBOX_LIMITS, type GvisorExecutor } from '#sandbox'
import { anyAddress, bundleOf, jobFor, text, DEFAULT_OPTIONS } from './fixtures.ts'

const CANARY = 'CANARY-HOST-7f3a9c'

async function hello (ex: GvisorExecutor): Promise<void> {
  assert.equal(text(await ex.execute(jobFor('hello', { url: 'http://t/?name=after' }))), 'Hello, after!')
}

/** Waits until `ex` holds `n` idle sandboxes of `cid`, at most `ms` (the assertions after it say what a shortfall means). */
async function idleFor (ex: GvisorExecutor, cid: string, n: number, ms: number): Promise<void> {
  const until = Date.now() + ms
  while (ex.idleFor(cid) < n && Date.now() < until) await new Promise(resolve => setTimeout(resolve, 20))
}

describe('sandbox/gvisor executor (real runsc)', function () {
  this.timeout(60_000)
  let dataDir: string
  let canaryFile: string
  let ex: GvisorExecutor
  let server: Server
  let port: number

  before(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'peerhost-gvisor-'))
    canaryFile = join(dataDir, 'canary.txt')
    writeFileSync(canaryFile, CANARY)
    // runsc must be present: this throws (fails the suite) rather than skipping
    execFileSync('/usr/bin/runsc', ['--version'])
    ex = gvisorExecutor({ dataDir })({ addressFilter: anyAddress })
    await ex.start()
    server = createServer((req, res) => { res.end(`allowed ${req.url}`) })
    await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
    port = (server.address() as AddressInfo).port
  })

  after(async () => {
    await ex?.stop()
    server?.close()
    rmSync(dataDir, { recursive: true, force: true })
  })

  it('runs a function with Web Request/Response, env, logs and timings', async () => {
    const r = await ex.execute(jobFor('echo', { method: 'POST', body: 'abc', headers: [['x-test', 'yes']], env: { A: '1' } }))
    const out = JSON.parse(text(r))
    assert.deepEqual([out.method, out.body, out.header, out.env], ['POST', 'abc', 'yes', { A: '1' }])
    assert.equal(r.logs, 'echo POST 3\n')
    assert.ok(r.timings.execMs > 0)
  })

  it('hides host files and offers no child_process or worker_threads (escaped realm)', async () => {
    const r = await ex.execute(jobFor('escape', { url: `http://t/?canary=${encodeURIComponent(canaryFile)}` }))
    const body = text(r)
    assert.ok(!body.includes(CANARY) && !r.logs.includes(CANARY))
    const out = JSON.parse(body)
    for (const k of ['passwd', 'shadow', 'root', 'proc1', 'home', 'childProcess', 'worker', 'dmesg']) assert.match(out[k], /^ERR (ERR_ACCESS_DENIED|ENOENT)$/, k)
    assert.match(out.canary, /^ERR (ERR_ACCESS_DENIED|ENOENT)$/)
    await hello(ex)
  })

  it('has no network: TCP, DNS and the metadata address fail fast', async () => {
    const r = await ex.execute(jobFor('network', { url: `http://t/?port=${port}`, options: { timeoutMs: 10_000 } }))
    const out = JSON.parse(text(r))
    assert.match(out.metadata, /^ERR /)
    assert.match(out.loopback, /^ERR /)
    assert.match(out.public, /^ERR /)
    assert.match(out.dns, /^ERR /)
    assert.ok(out.ms < 4000, `network attempts took ${out.ms} ms`)
  })

  it('brokers fetch to an allow-listed host and refuses others', async () => {
    const allowed = `http://127.0.0.1:${port}/x`
    const ok = await ex.execute(jobFor('fetchUrl', { url: `http://t/f?u=${encodeURIComponent(allowed)}`, options: { network: [`127.0.0.1:${port}`] } }))
    assert.equal(text(ok), 'status=200 body=allowed /x')
    const refused = await ex.execute(jobFor('fetchUrl', { url: `http://t/f?u=${encodeURIComponent('http://169.254.169.254/latest/meta-data')}`, options: { network: [`127.0.0.1:${port}`] } }))
    assert.match(text(refused), /^refused: fetch refused: 169.254.169.254 is not in this function's network allow-list/)
    const none = await ex.execute(jobFor('fetchUrl', { url: `http://t/f?u=${encodeURIComponent(allowed)}` }))
    assert.match(text(none), /fetch\(\) is disabled/)
  })

  it('caps subrequests on the host: an escaped realm writing fetch frames to the channel gets at most the per-execution count and concurrency', async () => {
    let hits = 0
    let inFlight = 0
    let peak = 0
    const slow = createServer((req, res) => {
      hits++
      peak = Math.max(peak, ++inFlight)
      setTimeout(() => { inFlight--; res.end('x') }, 30)
    })
    await new Promise<void>(resolve => slow.listen(0, '127.0.0.1', resolve))
    const slowPort = (slow.address() as AddressInfo).port
    try {
      const target = `http://127.0.0.1:${slowPort}/loop`
      const r = await ex.execute(jobFor('escapedFetchLoop', { url: `http://t/?u=${encodeURIComponent(target)}`, options: { network: [`127.0.0.1:${slowPort}`], timeoutMs: 10_000 } }))
      const out = JSON.parse(text(r))
      assert.equal(typeof out.id, 'number', 'the function learnt its execution id (the attack ran)')
      // 1 legitimate + 200 forged frames reached the host; the broker let 50 through, 6 at a time
      assert.equal(hits, SANDBOX_LIMITS.maxSubrequests)
      assert.ok(peak <= SANDBOX_LIMITS.maxConcurrentSubrequests, `peak ${peak} concurrent fetches`)
    } finally {
      slow.close()
    }
    await hello(ex)
  })

  it('stops a fork bomb (no child_process, no worker_threads) and keeps serving', async () => {
    const r = await ex.execute(jobFor('forkBomb', { options: { timeoutMs: 5_000 } }))
    assert.deepEqual(JSON.parse(text(r)), { cp: 'ERR ERR_ACCESS_DENIED', wt: 'ERR ERR_ACCESS_DENIED' })
    await hello(ex)
  })

  it('stops heap and buffer memory bombs with LIMIT_MEMORY and keeps serving', async () => {
    for (const name of ['memoryBomb', 'bufferBomb']) {
      const r = await ex.execute(jobFor(name, { options: { timeoutMs: 10_000 } }))
      assert.equal(r.error?.code, 'LIMIT_MEMORY', `${name}: ${JSON.stringify(r.error)} ${r.logs}`)
      assert.equal(r.error?.details?.configured, 128)
    }
    await hello(ex)
  })

  it('an allocation the sandbox refuses is the function\'s LIMIT_MEMORY (not FUNCTION_ERROR), measured by the cgroup; the sandbox keeps serving', async () => {
    const r = await ex.execute(jobFor('impossibleBuffer', { options: { timeoutMs: 10_000 } }))
    assert.equal(r.error?.code, 'LIMIT_MEMORY', `${JSON.stringify(r.error)} ${r.logs}`)
    assert.equal(r.error?.details?.reason, 'allocation-failed')
    assert.equal(r.error?.details?.source, 'cgroup-peak')
    assert.equal(typeof r.error?.details?.measured, 'number')
    assert.match(r.logs, /Uncaught RangeError: Array buffer allocation failed/)
    await hello(ex)
  })

  it('stops endless loops with LIMIT_CPU and a never-settling promise with LIMIT_TIMEOUT, long before the job deadline', async () => {
    for (const [name, code] of [['syncLoop', 'LIMIT_CPU'], ['asyncLoop', 'LIMIT_CPU'], ['neverSettles', 'LIMIT_TIMEOUT']]) {
      const t0 = Date.now()
      const r = await ex.execute(jobFor(name, { options: { timeoutMs: 500 } }))
      assert.equal(r.error?.code, code, name)
      assert.equal(r.error?.details?.configured, 500)
      // stopped by the function's own limit, not by the job deadline (limit + 10 s): the kill
      // latency itself (SBX-06, ≤ limit + 1 s) is a figure for bench:sandbox, not a timed test
      const ms = Date.now() - t0 - r.timings.queueMs
      assert.ok(ms < 500 + 5_000, `${name}: ${ms} ms`)
    }
    await hello(ex)
  })

  it('reports measured figures with limit errors: peak memory from the cgroup, CPU time from cgroup accounting (not the wall clock)', async () => {
    const mem = await ex.execute(jobFor('bufferBomb', { options: { timeoutMs: 20_000, isolation: 'execution' } }))
    assert.equal(mem.error?.code, 'LIMIT_MEMORY', `${JSON.stringify(mem.error)} ${mem.logs}`)
    const md = mem.error?.details as Record<string, unknown>
    assert.equal(md.source, 'cgroup-peak')
    assert.equal(typeof md.measured, 'number')
    // the sandbox's cgroup limit is memoryMb + headroom (256 MiB); its peak lies near it, never past it
    assert.ok((md.measured as number) > 128 && (md.measured as number) <= (md.sandboxLimitMb as number) + 1, JSON.stringify(md))

    const cpu = await ex.execute(jobFor('syncLoop', { options: { timeoutMs: 1_000 } }))
    assert.equal(cpu.error?.code, 'LIMIT_CPU')
    const cd = cpu.error?.details as Record<string, unknown>
    assert.equal(cd.source, 'cgroup')
    // one core of quota: CPU time is positive and at most the wall time (plus accounting slack);
    // on a loaded machine the spinning sandbox gets less than a whole core, so no lower bound
    assert.ok(typeof cd.measured === 'number' && cd.measured > 0 && cd.measured <= (cd.wallMs as number) + 200, JSON.stringify(cd))

    // blocked without computing: the wall clock ran out, the CPU did not, and the figure says so
    const blocked = await ex.execute(jobFor('atomicsWait', { options: { timeoutMs: 1_000 } }))
    assert.equal(blocked.error?.code, 'LIMIT_CPU', JSON.stringify(blocked.error))
    const bd = blocked.error?.details as Record<string, unknown>
    assert.ok((bd.wallMs as number) >= 1_000, JSON.stringify(bd))
    assert.ok(typeof bd.measured === 'number' && bd.measured < 300, JSON.stringify(bd))
    await hello(ex)
  })

  it('truncates gigantic console output at the cap and flags it', async () => {
    const r = await ex.execute(jobFor('gigantic_stdout', { options: { timeoutMs: 10_000 } }))
    assert.equal(text(r), 'done')
    assert.equal(r.logsTruncated, true)
    assert.ok(Buffer.byteLength(r.logs) <= 64 * 1024)
  })

  it('refuses huge responses with LIMIT_RESPONSE_SIZE', async () => {
    for (const name of ['hugeResponse', 'hugeStreamResponse']) {
      const r = await ex.execute(jobFor(name, { options: { timeoutMs: 10_000 } }))
      assert.equal(r.error?.code, 'LIMIT_RESPONSE_SIZE', name)
      assert.equal(r.error?.details?.configured, 6 * 1024 * 1024)
    }
  })

  it('reports a non-Response as RESULT_INVALID and a throw as FUNCTION_ERROR', async () => {
    assert.equal((await ex.execute(jobFor('notResponse'))).error?.code, 'RESULT_INVALID')
    assert.equal((await ex.execute(jobFor('returnsUndefined'))).error?.code, 'RESULT_INVALID')
    const t = await ex.execute(jobFor('throws'))
    assert.equal(t.error?.code, 'FUNCTION_ERROR')
    assert.match(t.logs, /boom from function/)
    assert.equal((await ex.execute(jobFor('throwsAtLoad'))).error?.code, 'FUNCTION_ERROR')
    await hello(ex)
  })

  it('leaves no globals or /tmp state for the next execution (isolation function: same sandbox, fresh realm)', async () => {
    const set = JSON.parse(text(await ex.execute(jobFor('stateProbe', { url: 'http://t/?mode=set' }))))
    assert.deepEqual(set.tmp, ['canary'])
    const get = JSON.parse(text(await ex.execute(jobFor('stateProbe', { url: 'http://t/?mode=get' }))))
    // same sandbox (the shim's token survived), yet the realm global and /tmp are fresh
    assert.equal(get.token, set.token)
    assert.equal(get.canary, null)
    assert.deepEqual(get.tmp, [])
  })

  it('runs concurrent executions in one sandbox, each in its own realm: no globals, env or logs cross', async function () {
    // an executor of its own: the version's sandboxes are booted before the burst (a boot is no
    // part of this test), and no other function's pool competes with them
    this.timeout(180_000)
    const local = gvisorExecutor({ dataDir: join(dataDir, 'concurrent'), selfTest: false, genericPoolSize: 0 })()
    await local.start()
    try {
      const b = bundleOf('concurrentProbe')
      await local.prewarm(b, { memoryMb: 128, timeoutMs: 2000, network: [], isolation: 'function' })
      await idleFor(local, b.cid, GVISOR_POOL_DEFAULTS.maxSandboxesPerFunction, 120_000)
      const booted = local.booted
      const runs = await Promise.all(Array.from({ length: 8 }, async (_, i) => await local.execute(jobFor('concurrentProbe', { url: `http://t/?me=run-${i}`, env: { WHO: `env-${i}` } }))))
      const outs = runs.map(r => JSON.parse(text(r)))
      outs.forEach((o, i) => {
        assert.deepEqual([o.me, o.before, o.after, o.env], [`run-${i}`, null, `run-${i}`, `env-${i}`], `run ${i}`)
        assert.equal(runs[i].logs, `log of run-${i}\n`)
      })
      // really concurrent: 8 executions over at most 2 sandboxes of this version, none booted for them
      const tokens = new Set(outs.map(o => o.token))
      assert.ok(tokens.size <= GVISOR_POOL_DEFAULTS.maxSandboxesPerFunction, `${tokens.size} sandboxes`)
      assert.equal(local.booted, booted)
    } finally {
      await local.stop()
    }
  })

  it('a function\'s stray errors (a throw in a timer or an event listener, a rejection nobody awaits) go to its own log; its sandbox and the executions sharing it serve on', async function () {
    this.timeout(180_000)
    // one sandbox for the version, four executions at once in it
    const local = gvisorExecutor({ dataDir: join(dataDir, 'stray'), selfTest: false, genericPoolSize: 0, perFunctionPoolSize: 1, maxSandboxesPerFunction: 1, concurrencyPerSandbox: 4 })()
    await local.start()
    try {
      const b = bundleOf('strayErrors')
      await local.prewarm(b, DEFAULT_OPTIONS)
      await idleFor(local, b.cid, 1, 120_000)
      const booted = local.booted
      const kinds = ['timer', 'listener', 'rejection', 'none']
      for (const round of [1, 2]) {
        const runs = await Promise.all(kinds.map(async k => await local.execute(jobFor('strayErrors', { url: `http://t/?kind=${k}` }))))
        runs.forEach((r, i) => {
          assert.equal(text(r), `survived ${kinds[i]}`, `round ${round}, ${kinds[i]}`)
          if (kinds[i] === 'none') assert.doesNotMatch(r.logs, /Uncaught/, 'no one else\'s error in its log')
        })
        assert.match(runs[0].logs, /Uncaught Error: stray-timer/)
        assert.match(runs[1].logs, /Uncaught Error: stray-listener/)
        assert.match(runs[2].logs, /Uncaught \(in promise\) Error: stray-rejection/)
      }
      assert.equal(local.booted, booted, 'the sandbox served on: none was booted to replace it')
    } finally {
      await local.stop()
    }
  })

  it('never boots a sandbox for load: executions beyond the version\'s slots wait for one', async function () {
    this.timeout(180_000)
    const local = gvisorExecutor({ dataDir: join(dataDir, 'bounded'), selfTest: false, genericPoolSize: 0, perFunctionPoolSize: 1, maxSandboxesPerFunction: 1, concurrencyPerSandbox: 2 })()
    await local.start()
    try {
      const b = bundleOf('concurrentProbe')
      await local.prewarm(b, { memoryMb: 128, timeoutMs: 5000, network: [], isolation: 'function' })
      await idleFor(local, b.cid, 1, 120_000)
      const booted = local.booted
      // 12 at once on a version with 1 sandbox × 2 slots: 10 wait, none boots a sandbox
      const runs = await Promise.all(Array.from({ length: 12 }, async (_, i) => await local.execute(jobFor('concurrentProbe', { url: `http://t/?me=q-${i}` }))))
      runs.forEach((r, i) => assert.equal(JSON.parse(text(r)).after, `q-${i}`))
      assert.equal(local.booted, booted, 'no sandbox booted for the burst')
      assert.ok(local.waitedForSlot >= 10, `waited ${local.waitedForSlot}`)
      assert.equal(new Set(runs.map(r => JSON.parse(text(r)).token)).size, 1)
      // both slots busy: a job whose deadline passes while it waits is DEADLINE_EXCEEDED (504 for a
      // client still there), one whose caller leaves first is SANDBOX_INFRA "aborted"; neither ran
      const busy = [0, 1].map(async i => await local.execute(jobFor('concurrentProbe', { url: `http://t/?me=busy-${i}` })))
      const late = jobFor('concurrentProbe', { url: 'http://t/?me=late' })
      late.deadline = Date.now() + 50
      const [expired, left] = await Promise.all([
        local.execute(late, { signal: AbortSignal.timeout(60) }),
        local.execute(jobFor('concurrentProbe', { url: 'http://t/?me=left' }), { signal: AbortSignal.timeout(60) })
      ])
      assert.equal(expired.error?.code, 'DEADLINE_EXCEEDED')
      assert.deepEqual([left.error?.code, left.error?.details?.reason], ['SANDBOX_INFRA', 'aborted'])
      for (const b of await Promise.all(busy)) assert.match(text(b), /busy-/)
    } finally {
      await local.stop()
    }
  })

  it('stops a /tmp fill with ENOSPC inside and wipes it for the next execution', async () => {
    // twice in the same sandbox: the second run finds /tmp empty again
    for (let i = 0; i < 2; i++) {
      const r = JSON.parse(text(await ex.execute(jobFor('tmpFill'))))
      assert.equal(r.code, 'ENOSPC')
      assert.ok(r.mb >= 8 && r.mb <= 16, `run ${i}: wrote ${r.mb} MiB`)
    }
    await hello(ex)
  })

  it('gives every execution its own sandbox with isolation execution', async () => {
    const options = { isolation: 'execution' as const }
    const set = JSON.parse(text(await ex.execute(jobFor('stateProbe', { url: 'http://t/?mode=set', options }))))
    const get = JSON.parse(text(await ex.execute(jobFor('stateProbe', { url: 'http://t/?mode=get', options }))))
    assert.ok(typeof set.token === 'string')
    assert.deepEqual([get.token, get.canary, get.tmp], [null, null, []])
  })

  it('attack: an escaped realm claiming a full heap only retires its own sandbox, replaced at a quiet moment of the machine: no boot beside running executions, and it serves on meanwhile', async () => {
    const gate = new BootGate()
    const local = gvisorExecutor({ dataDir: join(dataDir, 'forged-idle'), selfTest: false, genericPoolSize: 0, perFunctionPoolSize: 1, bootGate: gate })()
    const other = gvisorExecutor({ dataDir: join(dataDir, 'forged-idle-other'), selfTest: false, genericPoolSize: 0, perFunctionPoolSize: 1, bootGate: gate })()
    await local.start()
    await other.start()
    try {
      const forged = bundleOf('forgedIdle')
      await local.prewarm(forged, DEFAULT_OPTIONS)
      await idleFor(local, forged.cid, 1, 20_000)
      const h = bundleOf('hello')
      await other.prewarm(h, DEFAULT_OPTIONS)
      await idleFor(other, h.cid, 1, 20_000)
      const before = local.booted
      assert.equal(text(await local.execute(jobFor('forgedIdle'))), 'forged', 'the attack ran')
      // the other executor (another worker on the same machine) serves back to back meanwhile:
      // the retired sandbox's replacement must not boot beside it
      const until = Date.now() + 2_000
      let served = 0
      while (Date.now() < until) { assert.equal(text(await other.execute(jobFor('hello', { url: 'http://t/?name=x' }))), 'Hello, x!'); served++ }
      assert.ok(served > 10, `the other executor served ${served} executions`)
      assert.equal(local.booted, before, 'no replacement booted while the machine ran executions')
      assert.equal(text(await local.execute(jobFor('forgedIdle'))), 'forged', 'the retiring sandbox serves on until replaced')
      const until2 = Date.now() + 20_000
      while (local.booted < before + 1 && Date.now() < until2) await new Promise(resolve => setTimeout(resolve, 20))
      assert.equal(local.booted, before + 1, 'one replacement, once the machine was quiet')
      assert.equal(other.booted, 1, 'the other executor booted nothing beyond its own pre-warm')
    } finally {
      await local.stop()
      await other.stop()
    }
  })

  it('keeps prewarmed sandboxes per function version and retires one after N executions: it serves on while busy, and is replaced at the next quiet moment', async () => {
    const local = gvisorExecutor({ dataDir: join(dataDir, 'recycle'), selfTest: false, genericPoolSize: 0, perFunctionPoolSize: 1, maxExecutionsPerSandbox: 2 })()
    await local.start()
    try {
      const b = bundleOf('hello')
      await local.prewarm(b, { memoryMb: 128, timeoutMs: 1000, network: [], isolation: 'function' })
      await idleFor(local, b.cid, 1, 20_000)
      assert.deepEqual(local.warm(), [b.cid])
      const before = local.booted
      for (let i = 0; i < 4; i++) assert.equal(text(await local.execute(jobFor('hello'))), 'Hello, world!')
      // 4 executions back to back at 2 per sandbox: the retiring sandbox served them all (its
      // hard limit is 4 × 2), no boot ran beside them; the quiet moment after them boots its replacement
      assert.equal(local.booted, before, 'no boot beside back-to-back executions')
      const until2 = Date.now() + 20_000
      while (local.booted < before + 1 && Date.now() < until2) await new Promise(resolve => setTimeout(resolve, 20))
      assert.ok(local.booted >= before + 1, `the replacement booted once quiet: booted ${local.booted} vs ${before}`)
      assert.equal(text(await local.execute(jobFor('hello'))), 'Hello, world!')
    } finally {
      await local.stop()
    }
    assert.deepEqual(await leftovers(local), { containers: [], cgroups: [] })
  })

  // also the stop test: four sandboxes run when it stops, and none (nor a cgroup) is left after
  it('starts with the pool targets it is given (the devnet\'s: one of each) and the rootfs in a shared folder; leaves no container or cgroup after stop', async () => {
    // the devnet's workers also share one rootfs folder
    const local = gvisorExecutor({ dataDir: join(dataDir, 'targets'), rootfsDir: join(dataDir, 'shared'), selfTest: false, genericPoolSize: 1, perFunctionPoolSize: 1 })()
    await local.start()
    try {
      const b = bundleOf('hello')
      await local.prewarm(b, { memoryMb: 128, timeoutMs: 1000, network: [], isolation: 'function' })
      const until = Date.now() + 30_000
      while (!(local.idleFor(b.cid) >= 1 && local.idleGeneric() >= 1)) {
        if (Date.now() > until) assert.fail(`targets not reached: generic ${local.idleGeneric()}, ${b.cid} ${local.idleFor(b.cid)}, booted ${local.booted}`)
        await new Promise(resolve => setTimeout(resolve, 20))
      }
      assert.ok(await local.settled(30_000))
      assert.equal(local.idleGeneric(), 1)
      assert.equal(local.idleFor(b.cid), 1)
      assert.equal(local.booted, 2, 'one generic and one for the function, not two of each')
      assert.equal(readdirSync(join(dataDir, 'shared', 'rootfs')).length, 1, 'the rootfs is built in the shared folder')
      assert.equal(existsSync(join(dataDir, 'targets', 'sandbox', 'rootfs')), false, 'and not in the worker\'s own')
      assert.equal(text(await local.execute(jobFor('hello'))), 'Hello, world!')
      assert.ok((await leftovers(local)).containers.length > 0, 'running sandboxes are listed (what stop must remove)')
    } finally {
      await local.stop()
    }
    assert.deepEqual(await leftovers(local), { containers: [], cgroups: [] })
  })

  it('boots through its gate: with one slot one boot at a time, the function version\'s before the generic ones; boots stopped while they wait start no runsc', async () => {
    const gate = new BootGate({ slots: 1 })
    const local = gvisorExecutor({ dataDir: join(dataDir, 'gated'), rootfsDir: join(dataDir, 'shared'), selfTest: false, genericPoolSize: 2, perFunctionPoolSize: 1, bootGate: gate })()
    let most = 0
    const sampler = setInterval(() => { most = Math.max(most, gate.active) }, 5)
    try {
      await local.start()
      const b = bundleOf('hello')
      await local.prewarm(b, { memoryMb: 128, timeoutMs: 1000, network: [], isolation: 'function' })
      const until = Date.now() + 30_000
      while (local.idleFor(b.cid) + local.idleGeneric() === 0) {
        if (Date.now() > until) assert.fail(`nothing booted: ${JSON.stringify(local.stats?.())}`)
        await new Promise(resolve => setTimeout(resolve, 10))
      }
      assert.equal(local.idleFor(b.cid), 1, 'the version\'s sandbox was ready first')
      assert.equal(local.idleGeneric(), 0, 'before any generic one')
      assert.ok(await local.settled(60_000))
      assert.equal(local.idleGeneric(), 2)
      assert.equal(most, 1, 'never two boots at once through a one-slot gate')
      assert.equal(text(await local.execute(jobFor('hello'))), 'Hello, world!')
    } finally {
      clearInterval(sampler)
      await local.stop()
    }
    // the slot held elsewhere: this executor's boots wait at the gate, and stop() ends them there
    const held = new BootGate({ slots: 1 })
    const hold = held.enter(0)
    const waiting = gvisorExecutor({ dataDir: join(dataDir, 'gated-2'), rootfsDir: join(dataDir, 'shared'), selfTest: false, genericPoolSize: 2, perFunctionPoolSize: 1, bootGate: held })()
    await waiting.start()
    await new Promise(resolve => setTimeout(resolve, 100))
    assert.equal(held.queued, 2, 'both generic boots wait for the slot')
    await waiting.stop()
    assert.equal(held.queued, 0, 'stop() took them out of the line')
    hold.done()
    await new Promise(resolve => setTimeout(resolve, 300))
    assert.equal(held.active, 0, 'and none started once the slot was free')
    assert.deepEqual(await leftovers(waiting), { containers: [], cgroups: [] })
  })

  it('detects a sandbox killed from outside and replaces it', async () => {
    await ex.execute(jobFor('hello'))
    const { containers } = await leftovers(ex)
    assert.ok(containers.length > 0)
    const before = ex.booted
    for (const id of containers) {
      try { execFileSync('/usr/bin/runsc', [`--root=${ex.runscRoot}`, 'kill', id, 'KILL'], { stdio: 'ignore' }) } catch {}
    }
    // the deaths are noticed (stdout end, process exit) and the pool refills; a job that races
    // a death is retried on another sandbox and at worst answered SANDBOX_INFRA, never a user code
    await new Promise(resolve => setTimeout(resolve, 1000))
    await hello(ex)
    const until = Date.now() + 20_000
    while (ex.booted <= before && Date.now() < until) await new Promise(resolve => setTimeout(resolve, 50))
    assert.ok(ex.booted > before, 'replacement sandboxes booted')
  })

  it('removes containers and cgroups a crashed predecessor left behind', async () => {
    const dir = join(dataDir, 'crash')
    const child = spawn(process.execPath, [new URL('./helpers/crashing-worker.ts', import.meta.url).pathname, dir], { stdio: ['ignore', 'pipe', 'inherit'] })
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (d: Buffer) => { if (d.toString().includes('ready')) resolve() })
      child.on('exit', () => { reject(new Error('crashing worker exited early')) })
    })
    child.kill('SIGKILL')
    await new Promise(resolve => setTimeout(resolve, 200))
    // its sandboxes exit by themselves when their stdin closes; leave a container that cannot:
    // created, never started, in the same runsc root and cgroup parent
    const second = gvisorExecutor({ dataDir: dir, selfTest: false, genericPoolSize: 0 })()
    const rootfsBase = join(dir, 'sandbox', 'rootfs')
    const rootfs = join(rootfsBase, readdirSync(rootfsBase).filter(d => !d.startsWith('.'))[0])
    const bundle = join(dir, 'stale-bundle')
    mkdirSync(bundle, { recursive: true })
    writeFileSync(join(bundle, 'config.json'), JSON.stringify(buildOciSpec({ rootfs, memoryMb: 64, memoryHeadroomMb: 64, cpus: 1, tmpfsMb: 1, cgroupsPath: `/${second.cgroupParent}/stale`, maxFrameBytes: 1024 })))
    execFileSync('/usr/bin/runsc', [...runscGlobalArgs({ binary: '/usr/bin/runsc', root: second.runscRoot, platform: 'ptrace' }), 'create', `--bundle=${bundle}`, 'ph-stale'], { stdio: 'ignore' })
    assert.deepEqual((await leftovers(second)).containers, ['ph-stale'])
    await second.start()
    assert.deepEqual((await leftovers(second)).containers, [])
    await second.stop()
    assert.deepEqual(await leftovers(second), { containers: [], cgroups: [] })
  })

  it('refuses to start without runsc, saying how to fix it', async () => {
    const bad = gvisorExecutor({ dataDir: join(dataDir, 'bad'), runsc: '/nonexistent/runsc' })()
    await assert.rejects(bad.start(), (err: any) => err.code === 'RUNSC_MISSING' && /apt-get install runsc/.test(err.message))
  })

})

describe('sandbox/gvisor alone (Node permission model off: what gVisor itself exposes)', function () {
  this.timeout(60_000)
  let dataDir: string
  let ex: GvisorExecutor

  before(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'peerhost-gvisor-bare-'))
    writeFileSync(join(dataDir, 'canary.txt'), CANARY)
    ex = gvisorExecutor({ dataDir, selfTest: false, permissionModel: false, genericPoolSize: 1 })()
    await ex.start()
  })
  after(async () => {
    await ex?.stop()
    assert.deepEqual(await leftovers(ex), { containers: [], cgroups: [] })
    rmSync(dataDir, { recursive: true, force: true })
  })

  it('shows only the minimal rootfs: no host files, no host processes', async () => {
    const r = await ex.execute(jobFor('escape', { url: `http://t/?canary=${encodeURIComponent(join(dataDir, 'canary.txt'))}` }))
    const out = JSON.parse(text(r))
    assert.ok(!text(r).includes(CANARY))
    assert.equal(out.root, 'dev,lib,lib64,node,peerhost,proc,sys,tmp')
    for (const k of ['passwd', 'shadow', 'canary', 'home', 'dmesg']) assert.equal(out[k], 'ERR ENOENT', k)
    // pid 1 of gVisor's own procfs is the shim, not the host's init
    assert.match(out.proc1, /^\/node\0.*\/peerhost\/shim\.js\0$/)
  })

  it('has no network device: TCP, DNS and the metadata address fail', async () => {
    const out = JSON.parse(text(await ex.execute(jobFor('network', { options: { timeoutMs: 10_000 } }))))
    for (const k of ['metadata', 'loopback', 'public', 'dns']) assert.match(out[k], /^ERR /, k)
  })

  it('bounds a process/thread fork bomb by the memory limit and keeps serving', async () => {
    const r = await ex.execute(jobFor('forkBomb', { options: { timeoutMs: 5_000 } }))
    assert.ok(r.error !== undefined && ['LIMIT_MEMORY', 'LIMIT_CPU', 'LIMIT_TIMEOUT'].includes(r.error.code) || /ERR/.test(text(r)), JSON.stringify(r.error))
    await hello(ex)
  })
})
