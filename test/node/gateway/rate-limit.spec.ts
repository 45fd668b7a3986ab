/** Rate limits as data: the token bucket, the client key, and `rateLimit` from peerhost.json into the manifest. */
import assert from 'node:assert/strict'
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { buildDeployment, clientKey, loadProjectConfig, parseManifest, rateLimiter, routeOf } from '#node'

const fixtures = resolve(import.meta.dirname, '..', '..', 'fixtures')

describe('gateway rate limits', () => {
  it('lets a burst of `requests` through, then one more per refill interval, with the wait in Retry-After', () => {
    const r = rateLimiter()
    const limit = { requests: 3, perSeconds: 30 }
    const t = 1_000_000
    assert.deepEqual([0, 1, 2].map(() => r.take('p', limit, t).ok), [true, true, true])
    assert.deepEqual(r.take('p', limit, t), { ok: false, retryAfterSec: 10 })
    assert.deepEqual(r.take('p', limit, t + 5_000), { ok: false, retryAfterSec: 5 })
    assert.equal(r.take('p', limit, t + 10_000).ok, true)
    assert.equal(r.take('q', limit, t).ok, true, 'another key has its own bucket')
  })

  it('forgets the least recently seen key past maxKeys (bounded memory under many sources)', () => {
    const r = rateLimiter({ maxKeys: 100 })
    for (let i = 0; i < 1_000; i++) r.take(`ip-${i}`, { requests: 1, perSeconds: 60 }, 0)
    assert.equal(r.size, 100)
  })

  it('keys clients by IPv4, by IPv4-mapped IPv6 as IPv4, and by IPv6 /64', () => {
    assert.equal(clientKey('127.0.0.2'), '127.0.0.2')
    assert.equal(clientKey('::ffff:10.1.2.3'), '10.1.2.3')
    assert.equal(clientKey('2001:db8:1:2:aaaa::1'), clientKey('2001:db8:1:2:bbbb:cccc:dddd:eeee'))
    assert.notEqual(clientKey('2001:db8:1:2::1'), clientKey('2001:db8:1:3::1'))
    assert.equal(clientKey('::1'), '0:0:0:0::/64')
  })

  it('routes by wallet host only under the configured domain', () => {
    const w = `0x${'ab'.repeat(20)}`
    assert.deepEqual(routeOf(`${w}.peerhost.test:8080`, '/app/hi/rest', 'peerhost.test'), { wallet: w, project: 'app', fn: 'hi' })
    assert.deepEqual(routeOf('gw.example', `/${w}/app/hi`, 'peerhost.test'), { wallet: w, project: 'app', fn: 'hi' })
    assert.ok('error' in routeOf('www.peerhost.test', `/${w}/app/hi`, 'peerhost.test'), 'a non-wallet label under the domain never falls back to the path form')
    assert.ok('error' in routeOf(`x.${w}.peerhost.test`, '/app/hi', 'peerhost.test'))
  })

  it('carries peerhost.json `rateLimit` into the manifest, and refuses a bad one naming the field', async () => {
    const built = await buildDeployment({ dir: join(fixtures, 'limited'), sourceCommit: `0x${'00'.repeat(32)}` })
    assert.deepEqual(built.manifest.rateLimit, { requests: 3, perSeconds: 60 })
    assert.deepEqual(parseManifest(built.manifestBytes).rateLimit, { requests: 3, perSeconds: 60 })
    const dir = mkdtempSync(join(tmpdir(), 'peerhost-rl-'))
    try {
      cpSync(join(fixtures, 'limited'), dir, { recursive: true })
      writeFileSync(join(dir, 'peerhost.json'), JSON.stringify({ name: 'x', rateLimit: { requests: 0, perSeconds: 1, burst: 2 } }))
      assert.throws(() => loadProjectConfig(dir), (e: any) => e.code === 'BAD_PROJECT_CONFIG' && /rateLimit\.requests/.test(e.message) && /rateLimit/.test(e.message))
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
