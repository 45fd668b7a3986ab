/**
 * The chain gate as data (issue 9, R9): a client forces the paid chain path only where the project
 * opted in with `"chainPath": "client"`, and each client IP has a small chain budget. From
 * peerhost.json through the one options schema into the manifest. The attacks against real
 * processes and a real chain are in test/e2e/fallback.spec.ts.
 */
import assert from 'node:assert/strict'
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { functionOptionsProblems } from '#protocol'
import { buildDeployment, chainGate, loadProjectConfig, NODE_DEFAULTS, parseManifest } from '#node'

const fixtures = resolve(import.meta.dirname, '..', '..', 'fixtures')

describe('gateway chain gate', () => {
  const closed = { project: 'app', name: 'fn' }
  const open = { project: 'app', name: 'fn', chainPath: 'client' as const }

  it('recognises x-peerhost-mode: onchain in any case and nothing else', () => {
    const g = chainGate()
    assert.equal(g.asked(new Headers({ 'x-peerhost-mode': 'onchain' })), true)
    assert.equal(g.asked(new Headers({ 'x-peerhost-mode': ' OnChain ' })), true)
    assert.equal(g.asked(new Headers({ 'x-peerhost-mode': 'mesh' })), false)
    assert.equal(g.asked(new Headers()), false)
  })

  it('refuses a forced chain request for a function that did not opt in, naming the setting, and takes no token', () => {
    const g = chainGate({ perIp: { requests: 1, perSeconds: 60 } })
    const cases: Array<{ project: string, name: string, chainPath?: 'fallback' }> = [closed, { ...closed, chainPath: 'fallback' }]
    for (const fn of cases) {
      const v = g.check(fn, '10.0.0.1', true, 0)
      assert.equal(v.ok, false)
      if (v.ok) return
      assert.equal(v.code, 'FORBIDDEN')
      assert.match(v.message, /"chainPath": "client"/)
      assert.equal(v.details.setting, 'chainPath')
      assert.equal(v.details.actual, fn.chainPath ?? 'fallback')
    }
    // the refusals above cost the client nothing: its one token is still there
    assert.equal(g.check(open, '10.0.0.1', true, 0).ok, true)
    // the gateway's own fallback (not forced) needs no opt-in
    assert.equal(g.check(closed, '10.0.0.2', false, 0).ok, true)
  })

  it('gives each client IP a budget of chain requests, forced or fallback alike; 429 with the wait; other IPs unaffected', () => {
    const g = chainGate({ perIp: { requests: 2, perSeconds: 60 } })
    assert.equal(g.check(open, '10.0.0.1', true, 0).ok, true)
    assert.equal(g.check(closed, '10.0.0.1', false, 0).ok, true, 'a mesh-failure fallback takes from the same budget')
    const over = g.check(open, '10.0.0.1', true, 0)
    assert.equal(over.ok, false)
    if (over.ok) return
    assert.equal(over.code, 'RATE_LIMITED')
    assert.deepEqual(over.details, { limit: 'chainRateLimit', requests: 2, perSeconds: 60, retryAfterSec: 30 })
    assert.match(over.message, /you asked for the chain path.*2 chain-path requests per 60 s.*chainRateLimit/)
    const fallbackOver = g.check(closed, '10.0.0.1', false, 0)
    assert.ok(!fallbackOver.ok && /^the mesh gave no result/.test(fallbackOver.message))
    assert.equal(g.check(open, '10.0.0.2', true, 0).ok, true, 'another address has its own budget')
    assert.equal(g.check(open, '10.0.0.1', true, 30_000).ok, true, 'one token back after perSeconds / requests')
  })

  it('defaults to a small budget', () => {
    const g = chainGate()
    assert.deepEqual(g.perIp, { requests: NODE_DEFAULTS.gatewayChainRateRequests, perSeconds: NODE_DEFAULTS.gatewayChainRatePerSeconds })
    assert.ok(NODE_DEFAULTS.gatewayChainRateRequests <= 10)
    const results = Array.from({ length: 20 }, () => g.check(open, '10.0.0.9', true, 0).ok)
    assert.equal(results.filter(Boolean).length, NODE_DEFAULTS.gatewayChainRateRequests)
  })
})

describe('chainPath: peerhost.json → one options schema → manifest', () => {
  it('accepts "fallback" and "client" in peerhost.json only (never on the wire or in strict options)', () => {
    assert.deepEqual(functionOptionsProblems({ chainPath: 'client' }, 'functions.f', 'config'), [])
    assert.deepEqual(functionOptionsProblems({ chainPath: 'fallback' }, 'defaults', 'config'), [])
    const bad = functionOptionsProblems({ chainPath: 'always' }, 'functions.f', 'config')
    assert.equal(bad.length, 1)
    assert.equal(bad[0].path, 'functions.f.chainPath')
    assert.match(bad[0].message, /expected "fallback" .* or "client"/)
    const strict = functionOptionsProblems({ memoryMb: 128, timeoutMs: 1000, network: [], isolation: 'function', chainPath: 'client' }, 'options', 'strict')
    assert.match(strict.map(p => p.path).join(','), /chainPath/)
  })

  it('resolves per function, then defaults, then "fallback"; the manifest records only "client" and keeps other functions\' bytes', async () => {
    const app = mkdtempSync(join(tmpdir(), 'peerhost-chainpath-'))
    try {
      cpSync(join(fixtures, 'deploy-app'), app, { recursive: true })
      const base = await buildDeployment({ dir: app, sourceCommit: `0x${'00'.repeat(32)}` })
      const names = Object.keys(base.manifest.functions)
      assert.ok(names.length >= 2, 'the fixture has two functions')
      const [first, second] = names
      writeFileSync(join(app, 'peerhost.json'), JSON.stringify({ name: 'app', functions: { [first]: { chainPath: 'client' } } }))
      const config = loadProjectConfig(app)
      assert.equal(config.chainPathFor(first), 'client')
      assert.equal(config.chainPathFor(second), 'fallback')
      const built = await buildDeployment({ dir: app, sourceCommit: `0x${'00'.repeat(32)}` })
      const parsed = parseManifest(built.manifestBytes)
      assert.equal(parsed.functions[first].chainPath, 'client')
      assert.equal(parsed.functions[second].chainPath, undefined)
      assert.ok(!new TextDecoder().decode(built.manifestBytes).includes('"chainPath":"fallback"'))
      writeFileSync(join(app, 'peerhost.json'), JSON.stringify({ name: 'app', defaults: { chainPath: 'client' }, functions: { [second]: { chainPath: 'fallback' } } }))
      const d = loadProjectConfig(app)
      assert.equal(d.chainPathFor(first), 'client', 'from defaults')
      assert.equal(d.chainPathFor(second), 'fallback', 'the function overrides defaults')
      writeFileSync(join(app, 'peerhost.json'), JSON.stringify({ name: 'app', defaults: { chainPath: 'yes' } }))
      assert.throws(() => loadProjectConfig(app), (err: any) => err.code === 'BAD_PROJECT_CONFIG' && /defaults\.chainPath: expected "fallback"/.test(err.message))
    } finally {
      rmSync(app, { recursive: true, force: true })
    }
  })

  it('refuses a manifest with another chainPath value', async () => {
    const app = mkdtempSync(join(tmpdir(), 'peerhost-chainpath-'))
    try {
      cpSync(join(fixtures, 'deploy-app'), app, { recursive: true })
      const built = await buildDeployment({ dir: app, sourceCommit: `0x${'00'.repeat(32)}` })
      const m = JSON.parse(new TextDecoder().decode(built.manifestBytes))
      const fn = Object.keys(m.functions)[0]
      m.functions[fn].chainPath = 'anyone'
      assert.throws(() => parseManifest(new TextEncoder().encode(JSON.stringify(m))), { code: 'BAD_MANIFEST' })
    } finally {
      rmSync(app, { recursive: true, force: true })
    }
  })
})
