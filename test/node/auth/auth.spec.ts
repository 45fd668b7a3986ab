/**
 * node/auth units: the API key store (SQLite, reopened as after kill -9), the wallet-signed request
 * format and the guard's refusals, each written as the attack it stops; peerhost.json `auth`
 * resolution and its manifest round trip.
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { hexToBigInt, numberToHex, type Hex } from 'viem'
import { privateKeyToAccount, generatePrivateKey } from 'viem/accounts'
import { apiKeyHash, apiKeyId, apiKeyStore, authGuard, buildDeployment, loadProjectConfig, mintApiKey, parseManifest, signRequest, silentLogger, SIGNATURE_HEADER, type AuthGuard, type FunctionAuth } from '#node'

const root = resolve(import.meta.dirname, '..', '..', '..')
const wallet = '0x1111111111111111111111111111111111111111'
const other = '0x2222222222222222222222222222222222222222'
const caller = privateKeyToAccount('0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d')
const stranger = privateKeyToAccount(generatePrivateKey())
const SECP256K1_N = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n

describe('node/auth', () => {
  const dir = mkdtempSync(join(tmpdir(), 'peerhost-auth-'))
  after(() => rmSync(dir, { recursive: true, force: true }))

  describe('API key store', () => {
    it('keeps only the hash, survives a reopen (as after kill -9), and keeps revocations', () => {
      const data = join(dir, 'store1')
      const key = mintApiKey()
      assert.match(key, /^phk_[A-Za-z0-9_-]{43}$/)
      const hash = apiKeyHash(key)
      let store = apiKeyStore({ dataDir: data })
      store.create(wallet, 'demo', { id: apiKeyId(hash), hash, name: 'ci', issued: 100 })
      assert.deepEqual(store.lookup(wallet, 'demo', key), { ok: true, id: apiKeyId(hash) })
      // no close(): the process "dies" with the database open
      store = apiKeyStore({ dataDir: data })
      assert.deepEqual(store.lookup(wallet.toUpperCase().replace('0X', '0x'), 'demo', key), { ok: true, id: apiKeyId(hash) })
      assert.equal(store.revoke(wallet, 'demo', apiKeyId(hash), 200), true)
      store = apiKeyStore({ dataDir: data })
      assert.deepEqual(store.lookup(wallet, 'demo', key), { ok: false, reason: 'revoked' })
      assert.deepEqual(store.list(wallet, 'demo'), [{ id: apiKeyId(hash), name: 'ci', created: 100, revoked: 200 }])
      store.close()
    })

    it('a revocation acknowledged by a process that is then killed with SIGKILL is still there on restart', async () => {
      const data = join(dir, 'killed')
      const key = mintApiKey()
      const child = spawn(process.execPath, [join(import.meta.dirname, 'helpers', 'revoke-then-hang.ts'), data, key], { stdio: ['ignore', 'pipe', 'inherit'] })
      await new Promise<void>((resolve, reject) => {
        child.stdout.on('data', d => { if (String(d).includes('revoked')) resolve() })
        child.once('exit', code => reject(new Error(`the child exited (${code}) before revoking`)))
      })
      child.kill('SIGKILL')
      await new Promise(resolve => child.once('exit', resolve))
      const store = apiKeyStore({ dataDir: data })
      assert.deepEqual(store.lookup(wallet, 'demo', key), { ok: false, reason: 'revoked' })
      store.close()
    })

    it('attack: re-creating a revoked key (a replayed create) is refused; the key stays revoked', () => {
      const store = apiKeyStore({ dataDir: join(dir, 'store2') })
      const key = mintApiKey()
      const hash = apiKeyHash(key)
      store.create(wallet, 'demo', { id: apiKeyId(hash), hash, name: 'ci', issued: 100 })
      store.revoke(wallet, 'demo', apiKeyId(hash), 150)
      assert.throws(() => store.create(wallet, 'demo', { id: apiKeyId(hash), hash, name: 'ci', issued: 300 }), { code: 'KEY_EXISTS' })
      assert.deepEqual(store.lookup(wallet, 'demo', key), { ok: false, reason: 'revoked' })
      store.close()
    })

    it('attack: a key of one project is refused for another project and for another wallet\'s project of the same name', () => {
      const store = apiKeyStore({ dataDir: join(dir, 'store3') })
      const key = mintApiKey()
      const hash = apiKeyHash(key)
      store.create(wallet, 'demo', { id: apiKeyId(hash), hash, name: 'ci', issued: 100 })
      assert.deepEqual(store.lookup(wallet, 'other', key), { ok: false, reason: 'other-project' })
      assert.deepEqual(store.lookup(other, 'demo', key), { ok: false, reason: 'other-project' })
      // and the same hash cannot be registered a second time under another project
      assert.throws(() => store.create(other, 'demo', { id: apiKeyId(hash), hash, name: 'x', issued: 100 }), { code: 'KEY_EXISTS' })
      assert.deepEqual(store.lookup(wallet, 'demo', mintApiKey()), { ok: false, reason: 'unknown' })
      store.close()
    })
  })

  describe('guard', () => {
    const walletAuth: FunctionAuth = { mode: 'wallet', allow: [caller.address.toLowerCase()] }
    const url = `http://gw.test/${wallet}/demo/hello/items?limit=2`
    let guard: AuthGuard
    let clock = Date.now()
    beforeEach(() => { clock = Date.now(); guard = authGuard({}, { logger: silentLogger(), now: () => clock }) })

    const req = (headers: Record<string, string>, body = 'payload', path = `/${wallet}/demo/hello/items?limit=2`, method = 'POST') => ({ wallet, project: 'demo', fn: 'hello', method, path, headers: new Headers(headers), body: new TextEncoder().encode(body) })

    it('accepts a request signed with signRequest by an allowed address, and strips the header', async () => {
      const h = await signRequest(caller, { method: 'POST', url, body: 'payload', timestamp: clock })
      const v = await guard.check(walletAuth, req(h))
      assert.deepEqual(v, { ok: true, strip: [SIGNATURE_HEADER], caller: caller.address.toLowerCase() })
    })

    it('the host form signs the same function as the path form', async () => {
      const h = await signRequest(caller, { method: 'GET', url: `http://${wallet}.peerhost.test/demo/hello`, timestamp: clock })
      assert.equal((await guard.check(walletAuth, req(h, '', '/demo/hello', 'GET'))).ok, true)
    })

    it('attack: a missing, malformed or unknown-signer request is refused with 401/403', async () => {
      assert.deepEqual(((await guard.check(walletAuth, req({}))) as any).code, 'UNAUTHORIZED')
      assert.deepEqual(((await guard.check(walletAuth, req({ [SIGNATURE_HEADER]: 'garbage' }))) as any).code, 'UNAUTHORIZED')
      const h = await signRequest(stranger, { method: 'POST', url, body: 'payload', timestamp: clock })
      const v = await guard.check(walletAuth, req(h)) as any
      assert.equal(v.code, 'FORBIDDEN')
      assert.match(v.message, new RegExp(stranger.address.toLowerCase()))
    })

    it('attack: a signature moved to another body, path, method or function is refused', async () => {
      const h = await signRequest(caller, { method: 'POST', url, body: 'payload', timestamp: clock })
      assert.equal((await guard.check(walletAuth, req(h, 'tampered'))).ok, false)
      assert.equal((await guard.check(walletAuth, req(h, 'payload', `/${wallet}/demo/hello/items?limit=200`))).ok, false)
      assert.equal((await guard.check(walletAuth, req(h, 'payload', undefined, 'PUT'))).ok, false)
      assert.equal((await guard.check(walletAuth, { ...req(h), fn: 'admin' })).ok, false)
      // the untouched request still passes: the refusals above did not consume it
      assert.equal((await guard.check(walletAuth, req(h))).ok, true)
    })

    it('attack: a replay is refused, also with the malleated (s → n − s) form of the signature', async () => {
      const h = await signRequest(caller, { method: 'POST', url, body: 'payload', timestamp: clock })
      assert.equal((await guard.check(walletAuth, req(h))).ok, true)
      const again = await guard.check(walletAuth, req(h)) as any
      assert.equal(again.code, 'UNAUTHORIZED')
      assert.match(again.message, /replay/)
      const [ts, sig] = h[SIGNATURE_HEADER].split('.') as [string, Hex]
      const s = hexToBigInt(`0x${sig.slice(66, 130)}`)
      const v = parseInt(sig.slice(130), 16)
      const malleated = `${sig.slice(0, 66)}${numberToHex(SECP256K1_N - s, { size: 32 }).slice(2)}${(v === 27 ? 28 : 27).toString(16)}`
      const m = await guard.check(walletAuth, req({ [SIGNATURE_HEADER]: `${ts}.${malleated}` })) as any
      assert.equal(m.ok, false)
      assert.match(m.message, /replay/)
    })

    it('attack: concurrent replays of one signature: exactly one passes', async () => {
      const h = await signRequest(caller, { method: 'POST', url, body: 'payload', timestamp: clock })
      const verdicts = await Promise.all(Array.from({ length: 8 }, async () => await guard.check(walletAuth, req(h))))
      assert.equal(verdicts.filter(v => v.ok).length, 1)
    })

    it('attack: a stale or future timestamp is refused', async () => {
      for (const skew of [-61_000, 61_000]) {
        const h = await signRequest(caller, { method: 'POST', url, body: 'payload', timestamp: clock + skew })
        const v = await guard.check(walletAuth, req(h)) as any
        assert.equal(v.code, 'UNAUTHORIZED')
        assert.match(v.message, /clock/)
      }
    })

    it('attack: a bad signature sent first over a client\'s message does not block the client\'s real request', async () => {
      const h = await signRequest(caller, { method: 'POST', url, body: 'payload', timestamp: clock })
      const [ts] = h[SIGNATURE_HEADER].split('.')
      const forged = await stranger.signMessage({ message: 'anything' })
      assert.equal((await guard.check(walletAuth, req({ [SIGNATURE_HEADER]: `${ts}.${forged}` }))).ok, false)
      assert.equal((await guard.check(walletAuth, req(h))).ok, true)
    })

    it('api-key: no key store means every api-key request is refused; forwardCredential keeps the header', async () => {
      const v = await guard.check({ mode: 'api-key' }, req({ authorization: `Bearer ${mintApiKey()}` })) as any
      assert.equal(v.code, 'UNAUTHORIZED')
      const store = apiKeyStore({ dataDir: join(dir, 'store4') })
      const key = mintApiKey()
      const hash = apiKeyHash(key)
      store.create(wallet, 'demo', { id: apiKeyId(hash), hash, name: 'ci', issued: 1 })
      const g = authGuard({}, { keys: store, logger: silentLogger() })
      assert.deepEqual(await g.check({ mode: 'api-key' }, req({ authorization: `Bearer ${key}` })), { ok: true, strip: ['authorization'] })
      assert.deepEqual(await g.check({ mode: 'api-key', forwardCredential: true }, req({ authorization: `bearer ${key}` })), { ok: true, strip: [] })
      for (const bad of [{} as Record<string, string>, { authorization: key }, { authorization: `Basic ${key}` }, { authorization: `Bearer ${key}x` }]) {
        const r = await g.check({ mode: 'api-key' }, req(bad)) as any
        assert.equal(r.code, 'UNAUTHORIZED', JSON.stringify(bad))
        assert.ok(!r.message.includes(key), 'the refusal never echoes the key')
      }
      store.close()
    })
  })

  describe('peerhost.json auth', () => {
    const project = (config: unknown): string => {
      const p = mkdtempSync(join(dir, 'proj-'))
      mkdirSync(join(p, 'functions'))
      writeFileSync(join(p, 'functions', 'hello.ts'), 'export default { fetch: () => new Response("hi") }\n')
      writeFileSync(join(p, 'peerhost.json'), JSON.stringify(config))
      return p
    }

    it('resolves api-key, wallet (allow lower-cased, sorted) and public', () => {
      const c = loadProjectConfig(join(root, 'test/fixtures/auth-app'))
      assert.deepEqual(c.authFor('keyed'), { mode: 'api-key' })
      assert.deepEqual(c.authFor('keyed-fwd'), { mode: 'api-key', forwardCredential: true })
      assert.deepEqual(c.authFor('signed'), { mode: 'wallet', allow: ['0x70997970c51812dc3a010c7d01b50e0d17dc79c8'] })
      assert.equal(c.authFor('open'), undefined)
    })

    it('refuses wallet without allow, allow without wallet, with a message naming the field', () => {
      assert.throws(() => loadProjectConfig(project({ functions: { hello: { auth: 'wallet' } } })), /functions\.hello: "auth": "wallet" needs "allow"/)
      assert.throws(() => loadProjectConfig(project({ defaults: { auth: 'api-key', allow: [caller.address] } })), /defaults: "allow" applies only/)
      assert.throws(() => loadProjectConfig(project({ functions: { hello: { auth: 'wallet', allow: ['0x12'] } } })), /functions\.hello\.allow: expected an array of 0x-prefixed 20-byte addresses/)
    })

    it('goes into the manifest only when not public (a public project keeps its CID), and back out', async () => {
      const d = await buildDeployment({ dir: join(root, 'test/fixtures/auth-app'), sourceCommit: `0x${'0'.repeat(64)}` })
      assert.deepEqual(d.manifest.functions.signed.auth, { mode: 'wallet', allow: ['0x70997970c51812dc3a010c7d01b50e0d17dc79c8'] })
      assert.equal('auth' in d.manifest.functions.open, false)
      assert.deepEqual(parseManifest(d.manifestBytes).functions.keyed.auth, { mode: 'api-key' })
      const tampered = JSON.parse(new TextDecoder().decode(d.manifestBytes))
      tampered.functions.keyed.auth = { mode: 'wallet' }
      assert.throws(() => parseManifest(new TextEncoder().encode(JSON.stringify(tampered))), /allow/)
    })
  })
})
