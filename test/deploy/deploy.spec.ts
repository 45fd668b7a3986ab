/**
 * The deploy path without a network: deterministic builds from git, the manifest format, the
 * upload route's checks, and wallet keystores.
 */
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { Hono } from 'hono'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts'
import { rawCid } from '#protocol'
import { blockStorage, blockUploads, signUpload, UPLOAD_HEADER, type BlockUploads, buildDeployment, canonicalJson, createKeystore, createMeshNode, deployRoutes, encodeManifest, openKeystore, parseManifest, silentLogger, STORAGE_LIMITS, type PeerHostLibp2p, type BlockStorage } from '#node'
import { cloneRepo, isGitUrl, repoName, sourceCommit } from '../../node/deploy/index.ts'
import { waitFor } from '../helpers/network.ts'

const fixtures = resolve(import.meta.dirname, '..', 'fixtures')
const GIT_ENV = { ...process.env, GIT_AUTHOR_NAME: 't', GIT_AUTHOR_EMAIL: 't@example.com', GIT_COMMITTER_NAME: 't', GIT_COMMITTER_EMAIL: 't@example.com' }

describe('deploy: deterministic builds and the manifest', function () {
  this.timeout(60_000)
  const dir = mkdtempSync(join(tmpdir(), 'peerhost-deploy-'))
  after(() => rmSync(dir, { recursive: true, force: true }))

  it('gives identical CIDs for the same git commit deployed from two different directories', async () => {
    const origin = join(dir, 'origin')
    cpSync(join(fixtures, 'deploy-app'), origin, { recursive: true })
    for (const args of [['init', '--quiet'], ['add', '-A'], ['commit', '--quiet', '-m', 'x']]) execFileSync('git', ['-C', origin, ...args], { env: GIT_ENV })
    const a = await cloneRepo(`file://${origin}`)
    // a plain copy of the work tree elsewhere, under another folder name, at another time
    const b = join(dir, 'somewhere', 'else', 'checkout')
    cpSync(origin, b, { recursive: true })
    const commitA = await sourceCommit(a.dir)
    const commitB = await sourceCommit(b)
    assert.equal(commitA, commitB)
    assert.notEqual(commitA, `0x${'0'.repeat(64)}`)
    const one = await buildDeployment({ dir: a.dir, sourceCommit: commitA })
    const two = await buildDeployment({ dir: b, sourceCommit: commitB })
    assert.equal(one.manifestCid, two.manifestCid)
    assert.deepEqual(one.bundles.map(x => x.cid), two.bundles.map(x => x.cid))
    assert.deepEqual(Buffer.from(one.manifestBytes), Buffer.from(two.manifestBytes))
    assert.equal(one.project, 'app')
    rmSync(a.tmp, { recursive: true, force: true })
  })

  it('uses a zero source commit for a folder outside git', async () => {
    const plain = join(dir, 'plain')
    cpSync(join(fixtures, 'deploy-app'), plain, { recursive: true })
    // tmpdir is not inside a git work tree
    assert.equal(await sourceCommit(plain), `0x${'0'.repeat(64)}`)
  })

  it('refuses a bundle above the 2 MiB bitswap block limit with a clear error', async () => {
    const big = join(dir, 'big')
    cpSync(join(fixtures, 'deploy-app'), big, { recursive: true })
    writeFileSync(join(big, 'functions', 'huge.ts'), `const blob = ${JSON.stringify('x'.repeat(STORAGE_LIMITS.maxBlockBytes + 10))}\nexport default { fetch: () => new Response(blob) }\n`)
    await assert.rejects(buildDeployment({ dir: big, sourceCommit: `0x${'0'.repeat(64)}` }), (err: any) => err.code === 'BUNDLE_TOO_LARGE' && /"huge" bundles to \d+ bytes; the limit is 2097152/.test(err.message))
  })

  it('writes the manifest as canonical JSON and reads it back', async () => {
    const built = await buildDeployment({ dir: join(fixtures, 'deploy-app'), project: 'other', env: { EXTRA: '1' }, sourceCommit: `0x${'ab'.repeat(20)}${'0'.repeat(24)}` })
    const text = new TextDecoder().decode(built.manifestBytes)
    assert.equal(text, canonicalJson(JSON.parse(text)))
    assert.ok(text.startsWith('{"env":{"EXTRA":"1","GREETING":"hello"},"functions":{"greet":{"bundle":"bafkrei'))
    assert.equal(built.manifestCid, rawCid(built.manifestBytes))
    assert.equal(built.project, 'other')
    assert.equal(built.manifest.functions.time.options.timeoutMs, 3000)
    assert.deepEqual(parseManifest(built.manifestBytes), built.manifest)
    assert.equal(encodeManifest(parseManifest(built.manifestBytes)).cid, built.manifestCid)
  })

  it('rejects malformed manifests from the network', () => {
    const bad = (v: unknown): Uint8Array => new TextEncoder().encode(JSON.stringify(v))
    assert.throws(() => parseManifest(new Uint8Array([0xff, 0xfe])), { code: 'BAD_MANIFEST' })
    assert.throws(() => parseManifest(bad({ type: 'peerhost-manifest', v: 1 })), { code: 'BAD_MANIFEST' })
    assert.throws(() => parseManifest(bad({ type: 'peerhost-manifest', v: 1, sourceCommit: `0x${'0'.repeat(64)}`, env: {}, functions: { x: { bundle: 'QmNotRaw', entry: 'a', options: { memoryMb: 128, timeoutMs: 10, network: [], isolation: 'function' } } } })), { code: 'BAD_MANIFEST' })
    assert.throws(() => parseManifest(new Uint8Array(STORAGE_LIMITS.maxManifestBytes + 1)), { code: 'BAD_MANIFEST' })
    // the options bounds are the wire's and peerhost.json's (protocol/options.ts): no 4 GiB, no extra fields
    const manifestWith = (fn: Record<string, unknown>): Uint8Array => bad({ type: 'peerhost-manifest', v: 1, sourceCommit: `0x${'0'.repeat(64)}`, env: {}, functions: { x: { bundle: rawCid(new Uint8Array([1])), entry: 'a', ...fn } } })
    const options = { memoryMb: 128, timeoutMs: 10, network: [], isolation: 'function' }
    assert.throws(() => parseManifest(manifestWith({ options: { ...options, memoryMb: 4096 } })), (err: any) => err.code === 'BAD_MANIFEST' && /memoryMb: expected an integer from 16 to 2048/.test(err.message))
    assert.throws(() => parseManifest(manifestWith({ options: { ...options, verify: 'single' } })), { code: 'BAD_MANIFEST' })
    assert.throws(() => parseManifest(manifestWith({ options, deterministic: 'yes' })), { code: 'BAD_MANIFEST' })
    // a manifest written before `deterministic` existed reads as not deterministic
    assert.equal(parseManifest(manifestWith({ options })).functions.x.deterministic, false)
  })

  it('carries `deterministic` and `verify: { quorum }` from peerhost.json into the manifest, and refuses bad options naming the field', async () => {
    const app = join(dir, 'det')
    cpSync(join(fixtures, 'deploy-app'), app, { recursive: true })
    writeFileSync(join(app, 'peerhost.json'), JSON.stringify({ name: 'app', defaults: { memoryMb: 64 }, functions: { greet: { deterministic: true } } }))
    const built = await buildDeployment({ dir: app, sourceCommit: `0x${'0'.repeat(64)}` })
    assert.equal(built.manifest.functions.greet.deterministic, true)
    assert.equal(built.manifest.functions.time.deterministic, false)
    assert.equal(built.manifest.functions.greet.options.memoryMb, 64)
    assert.equal(parseManifest(built.manifestBytes).functions.greet.deterministic, true)
    assert.ok(new TextDecoder().decode(built.manifestBytes).includes('"deterministic":true'))
    assert.equal(built.manifest.functions.greet.quorum, undefined, '"single" writes no quorum (the manifest bytes of before)')
    // quorum: carried into the manifest, read back by the registry's parser
    writeFileSync(join(app, 'peerhost.json'), JSON.stringify({ name: 'app', functions: { greet: { deterministic: true, verify: { quorum: 3 } } } }))
    const q = await buildDeployment({ dir: app, sourceCommit: `0x${'0'.repeat(64)}` })
    assert.equal(q.manifest.functions.greet.quorum, 3)
    assert.equal(parseManifest(q.manifestBytes).functions.greet.quorum, 3)
    assert.equal(q.manifest.functions.time.quorum, undefined)
    // a manifest that claims quorum for a non-deterministic function is refused when read (a hand-made one)
    assert.throws(() => parseManifest(new TextEncoder().encode(new TextDecoder().decode(q.manifestBytes).replace('"deterministic":true', '"deterministic":false'))), (err: any) => err.code === 'BAD_MANIFEST')
    for (const [fn, pattern] of [
      [{ verify: { quorum: 3 } }, /functions\.greet\.verify: \{ "quorum": 3 \} needs "deterministic": true/],
      [{ deterministic: true, verify: { quorum: 1 } }, /functions\.greet\.verify\.quorum: expected an integer from 2 to 15/],
      [{ deterministic: true, verify: { quorum: 3, extra: 1 } }, /functions\.greet\.verify: expected "single" or \{ "quorum": n \}/],
      [{ auth: 'nobody' }, /functions\.greet\.auth: expected "public", "api-key" or "wallet"/],
      [{ memoryMb: 4096 }, /functions\.greet\.memoryMb: expected an integer from 16 to 2048/],
      [{ deterministic: 1 }, /functions\.greet\.deterministic: expected true or false/]
    ] as const) {
      writeFileSync(join(app, 'peerhost.json'), JSON.stringify({ name: 'app', functions: { greet: fn } }))
      await assert.rejects(buildDeployment({ dir: app, sourceCommit: `0x${'0'.repeat(64)}` }), (err: any) => err.code === 'BAD_PROJECT_CONFIG' && pattern.test(err.message), JSON.stringify(fn))
    }
  })

  it('carries `websocket` session limits from peerhost.json into the manifest (defaults merged per field), and refuses out-of-range ones at deploy naming the field and the range', async () => {
    const app = join(dir, 'ws-limits')
    cpSync(join(fixtures, 'deploy-app'), app, { recursive: true })
    writeFileSync(join(app, 'peerhost.json'), JSON.stringify({ name: 'app', defaults: { websocket: { idleTimeoutMs: 30_000, maxSessions: 50 } }, functions: { greet: { websocket: { maxMessageBytes: 1024, maxSessions: 10 } } } }))
    const built = await buildDeployment({ dir: app, sourceCommit: `0x${'0'.repeat(64)}` })
    assert.deepEqual(built.manifest.functions.greet.websocket, { idleTimeoutMs: 30_000, maxSessions: 10, maxMessageBytes: 1024 })
    assert.deepEqual(built.manifest.functions.time.websocket, { idleTimeoutMs: 30_000, maxSessions: 50 })
    assert.deepEqual(parseManifest(built.manifestBytes).functions.greet.websocket, { idleTimeoutMs: 30_000, maxSessions: 10, maxMessageBytes: 1024 })
    // none set: no field, the manifest bytes of before
    writeFileSync(join(app, 'peerhost.json'), JSON.stringify({ name: 'app' }))
    const plain = await buildDeployment({ dir: app, sourceCommit: `0x${'0'.repeat(64)}` })
    assert.equal(plain.manifest.functions.greet.websocket, undefined)
    assert.ok(!new TextDecoder().decode(plain.manifestBytes).includes('websocket'))
    // a hand-made manifest with an out-of-range limit is refused when read
    assert.throws(() => parseManifest(new TextEncoder().encode(new TextDecoder().decode(built.manifestBytes).replace('"maxMessageBytes":1024', '"maxMessageBytes":99999999'))), (err: any) => err.code === 'BAD_MANIFEST' && /websocket\.maxMessageBytes: expected an integer from 1 to 1048576/.test(err.message))
    for (const [ws, pattern] of [
      [{ maxMessageBytes: 2 * 1024 * 1024 }, /functions\.greet\.websocket\.maxMessageBytes: expected an integer from 1 to 1048576/],
      [{ idleTimeoutMs: 10 }, /functions\.greet\.websocket\.idleTimeoutMs: expected an integer from 1000 to 3600000/],
      [{ maxSessionMs: 1.5 }, /functions\.greet\.websocket\.maxSessionMs: expected an integer from 1000 to 86400000/],
      [{ messagesPerSecond: 0 }, /functions\.greet\.websocket\.messagesPerSecond: expected an integer from 1 to 100000/],
      [{ maxSessions: -1 }, /functions\.greet\.websocket\.maxSessions: expected an integer from 1 to 1000000/],
      [{ maxMesageBytes: 10 }, /functions\.greet\.websocket\."maxMesageBytes": unexpected field; expected one of maxMessageBytes, idleTimeoutMs/],
      ['small', /functions\.greet\.websocket: expected a map of WebSocket session limits/]
    ] as const) {
      writeFileSync(join(app, 'peerhost.json'), JSON.stringify({ name: 'app', functions: { greet: { websocket: ws } } }))
      await assert.rejects(buildDeployment({ dir: app, sourceCommit: `0x${'0'.repeat(64)}` }), (err: any) => err.code === 'BAD_PROJECT_CONFIG' && pattern.test(err.message), JSON.stringify(ws))
    }
  })

  it('recognises git URLs and names projects after the repository', () => {
    for (const u of ['https://github.com/me/app.git', 'ssh://git@host/me/app', 'git@github.com:me/app.git', 'file:///tmp/app']) assert.ok(isGitUrl(u), u)
    for (const u of ['.', './app', '/tmp/app', 'app']) assert.ok(!isGitUrl(u), u)
    assert.equal(repoName('git@github.com:me/app.git'), 'app')
    assert.equal(repoName('file:///tmp/x/my-app/'), 'my-app')
  })
})

describe('deploy: the gateway upload route', function () {
  this.timeout(30_000)
  const dir = mkdtempSync(join(tmpdir(), 'peerhost-upload-'))
  const GATEWAY = privateKeyToAccount(generatePrivateKey()).address
  const alice = privateKeyToAccount(generatePrivateKey())
  const bob = privateKeyToAccount(generatePrivateKey())
  const LEASE_MS = 1_500
  const QUOTA = 100 * 1024
  let libp2p: PeerHostLibp2p
  let storage: BlockStorage
  let uploads: BlockUploads
  const app = new Hono()
  const block = (label: string, size = 0): Uint8Array => new Uint8Array(Buffer.concat([Buffer.from(`${label} ${Math.random()}`), Buffer.alloc(size)]))
  async function post (bytes: Uint8Array, header?: string, cid = rawCid(bytes)): Promise<Response> {
    return await app.request(`/_peerhost/blocks/${cid}`, { method: 'POST', body: bytes, headers: header === undefined ? {} : { [UPLOAD_HEADER]: header } })
  }
  before(async () => {
    libp2p = await createMeshNode({ privateKey: await generateKeyPair('Ed25519') })
    storage = blockStorage({ dataDir: dir })({ libp2p, logger: silentLogger() })
    await storage.start()
    uploads = blockUploads({ quotaBytes: QUOTA, leaseMs: LEASE_MS, sweepIntervalMs: 100, file: join(dir, 'uploads.json') })({ gateway: GATEWAY, storage, logger: silentLogger() })
    await uploads.start()
    deployRoutes({ storage, uploads })(app)
  })
  after(async () => {
    await uploads.stop()
    await storage.stop()
    await libp2p.stop()
    rmSync(dir, { recursive: true, force: true })
  })

  it('tells builders what to sign for', async () => {
    const res = await app.request('/_peerhost/uploads')
    assert.deepEqual(await res.json(), { gateway: GATEWAY, header: 'x-peerhost-upload', format: 'x-peerhost-upload: <wallet 0x…>.<issuedAt unix seconds>.<EIP-191 signature 0x…>', quotaBytes: QUOTA, globalQuotaBytes: STORAGE_LIMITS.uploadGlobalQuotaBytes, leaseSec: 2, clockSkewSec: 600 })
  })

  it('stores and pins a signed block that matches its CID', async () => {
    const bytes = new TextEncoder().encode('bundle bytes')
    const cid = rawCid(bytes)
    const res = await post(bytes, await signUpload(alice, GATEWAY, cid))
    assert.equal(res.status, 201)
    assert.deepEqual(await res.json(), { cid, bytes: bytes.byteLength })
    assert.ok(await storage.helia.pins.isPinned((await import('multiformats/cid')).CID.parse(cid)))
    const back = await app.request(`/_peerhost/blocks/${cid}`)
    assert.equal(Buffer.from(await back.arrayBuffer()).toString(), 'bundle bytes')
  })

  it('answers 401 naming the header to an unsigned upload, and stores nothing', async () => {
    const bytes = block('unsigned')
    const res = await post(bytes)
    assert.equal(res.status, 401)
    const body = await res.json() as any
    assert.equal(body.error.code, 'UNAUTHORIZED')
    assert.match(body.error.message, /x-peerhost-upload: <wallet 0x…>\.<issuedAt unix seconds>\.<EIP-191 signature 0x…>/)
    assert.equal(await storage.has(rawCid(bytes)), false)
  })

  it('answers 401 to a header replayed for another block, for another gateway, signed by someone else, expired or malformed', async () => {
    const bytes = block('replayed')
    const cid = rawCid(bytes)
    const now = Math.floor(Date.now() / 1000)
    const forOther = await signUpload(alice, GATEWAY, rawCid(block('the block alice meant')))
    const otherGateway = await signUpload(alice, privateKeyToAccount(generatePrivateKey()).address, cid)
    const byBob = (await signUpload(bob, GATEWAY, cid)).replace(bob.address, alice.address)
    const expired = await signUpload(alice, GATEWAY, cid, now - 11 * 60)
    const future = await signUpload(alice, GATEWAY, cid, now + 11 * 60)
    const cases: Array<[string, RegExp]> = [
      [forOther, /signature is not .* over this block/],
      [otherGateway, /signature is not .* for this gateway/],
      [byBob, /signature is not 0x/],
      [expired, /more than 600 s from the gateway's clock/],
      [future, /more than 600 s from the gateway's clock/],
      [`${alice.address}.${now}`, /malformed x-peerhost-upload header/],
      [`${alice.address}.${now}.0x${'00'.repeat(65)}`, /does not parse|signature is not/]
    ]
    for (const [header, message] of cases) {
      const res = await post(bytes, header)
      assert.equal(res.status, 401, header)
      assert.match((await res.json() as any).error.message, message)
    }
    assert.equal(await storage.has(cid), false)
    // within the clock skew it is accepted
    assert.equal((await post(bytes, await signUpload(alice, GATEWAY, cid, now - 9 * 60))).status, 201)
  })

  it('answers 429 when a wallet\'s unreferenced uploads would exceed its quota, then deletes them when their lease ends', async () => {
    const carol = privateKeyToAccount(generatePrivateKey())
    const one = block('carol 1', 60 * 1024)
    const two = block('carol 2', 60 * 1024)
    assert.equal((await post(one, await signUpload(carol, GATEWAY, rawCid(one)))).status, 201)
    assert.equal(uploads.used(carol.address), one.byteLength)
    const res = await post(two, await signUpload(carol, GATEWAY, rawCid(two)))
    assert.equal(res.status, 429)
    const body = await res.json() as any
    assert.equal(body.error.code, 'RATE_LIMITED')
    assert.match(body.error.message, /quota is 102400 bytes/)
    assert.equal(await storage.has(rawCid(two)), false)
    // another wallet has its own quota
    assert.equal((await post(two, await signUpload(bob, GATEWAY, rawCid(two)))).status, 201)
    // no registered version references them: after the lease both are gone, and the quota is free again
    await waitFor('the leases to end', async () => !(await storage.has(rawCid(one))) && !(await storage.has(rawCid(two))), 5_000, 100)
    assert.equal((await app.request(`/_peerhost/blocks/${rawCid(one)}`)).status, 404)
    assert.equal(uploads.used(carol.address), 0)
    assert.equal((await post(two, await signUpload(carol, GATEWAY, rawCid(two)))).status, 201)
  })

  it('keeps leases across a restart', async () => {
    const bytes = block('across a restart')
    const cid = rawCid(bytes)
    await uploads.stop()
    const again = blockUploads({ quotaBytes: QUOTA, leaseMs: LEASE_MS, sweepIntervalMs: 100, file: join(dir, 'uploads.json') })({ gateway: GATEWAY, storage, logger: silentLogger() })
    assert.equal(await again.store(alice.address, cid, bytes), 'stored')
    await again.stop()
    // a third instance (the restarted gateway) knows the lease from the file and ends it
    const third = blockUploads({ leaseMs: LEASE_MS, sweepIntervalMs: 100, file: join(dir, 'uploads.json') })({ gateway: GATEWAY, storage, logger: silentLogger() })
    await third.start()
    try {
      assert.equal(third.used(alice.address), bytes.byteLength)
      await waitFor('the lease to end', async () => !(await storage.has(cid)), 5_000, 100)
    } finally {
      await third.stop()
      await uploads.start()
    }
  })

  it('never deletes a block it held before someone uploaded it', async () => {
    const bytes = block('a --project bundle')
    const cid = rawCid(bytes)
    await storage.put(cid, bytes)
    assert.equal((await post(bytes, await signUpload(alice, GATEWAY, cid))).status, 201)
    assert.equal(uploads.used(alice.address) >= bytes.byteLength, false)
    await new Promise(resolve => setTimeout(resolve, LEASE_MS + 500))
    assert.equal(await storage.has(cid), true)
  })

  it('answers 400 to bytes that do not match the CID, and to a CID that is not raw CIDv1', async () => {
    const cid = rawCid(new TextEncoder().encode('a'))
    const res = await post(new TextEncoder().encode('b'), await signUpload(alice, GATEWAY, cid), cid)
    assert.equal(res.status, 400)
    assert.match(((await res.json()) as any).error.message, /do not match/)
    const v0 = 'QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG'
    const bad = await post(new TextEncoder().encode('b'), await signUpload(alice, GATEWAY, v0), v0)
    assert.equal(bad.status, 400)
  })

  it('answers 413 to a block above 2 MiB', async () => {
    const bytes = new Uint8Array(STORAGE_LIMITS.maxBlockBytes + 1)
    const res = await post(bytes, await signUpload(alice, GATEWAY, rawCid(bytes)))
    assert.equal(res.status, 413)
  })
})

describe('deploy: wallets', function () {
  this.timeout(60_000)
  it('writes a standard v3 JSON keystore that opens with its password only', async () => {
    const key = '0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d' as const
    const { address, keystore } = await createKeystore('correct horse', key, { scryptN: 1024 })
    assert.equal(address, privateKeyToAccount(key).address)
    assert.equal(keystore.version, 3)
    assert.equal((keystore.crypto as any).kdf, 'scrypt')
    assert.equal(keystore.address, address.slice(2).toLowerCase())
    assert.equal((keystore.crypto as any).kdfparams.n, 1024)
    const json = JSON.stringify(keystore)
    assert.equal(await openKeystore(json, 'correct horse'), key)
    await assert.rejects(openKeystore(json, 'wrong'), { code: 'BAD_PASSWORD' })
    await assert.rejects(openKeystore('{"version":1}', 'x'), { code: 'BAD_KEYSTORE' })
  })
})

describe('deploy: worker pre-warm', () => {
  it('pre-warms sandboxes for the most recently fetched cached bundles, skipping tampered files', async () => {
    const { prewarmCached, bundleStore } = await import('#node')
    const dir = mkdtempSync(join(tmpdir(), 'peerhost-prewarm-'))
    try {
      const store = bundleStore(join(dir, 'bundles'))
      const cids: string[] = []
      for (let i = 0; i < 6; i++) {
        const bytes = new TextEncoder().encode(`module.exports = ${i}`)
        const cid = rawCid(bytes)
        store.put(cid, bytes)
        cids.push(cid)
        await new Promise(resolve => setTimeout(resolve, 5))
      }
      // the newest file no longer matches its CID
      writeFileSync(join(dir, 'bundles', cids[5]), 'tampered')
      const warmed: string[] = []
      const result = await prewarmCached(dir, { prewarm: async (b) => { warmed.push(b.cid) } }, silentLogger())
      assert.deepEqual(result, warmed)
      assert.deepEqual(new Set(warmed), new Set([cids[4], cids[3], cids[2]]))
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it('a restart pre-warms what the previous run used, not old versions only earlier runs used (and a pre-warm marks nothing used)', async () => {
    const { prewarmCached, bundleStore } = await import('#node')
    const dir = mkdtempSync(join(tmpdir(), 'peerhost-prewarm-'))
    const warm = async (): Promise<string[]> => await prewarmCached(dir, { prewarm: async () => {} }, silentLogger())
    try {
      const cids = [0, 1, 2].map(i => { const bytes = new TextEncoder().encode(`module.exports = ${i}`); bundleStore(join(dir, 'bundles')).put(rawCid(bytes), bytes); return rawCid(bytes) })
      await new Promise(resolve => setTimeout(resolve, 20))
      // run 1: no earlier start on record, every cached bundle; it uses only the first (a new process loads it)
      assert.deepEqual(new Set(await warm()), new Set(cids))
      await new Promise(resolve => setTimeout(resolve, 20))
      assert.ok(bundleStore(join(dir, 'bundles')).get(cids[0]) !== undefined)
      await new Promise(resolve => setTimeout(resolve, 20))
      // run 2: only what run 1 used; it uses nothing
      assert.deepEqual(await warm(), [cids[0]])
      await new Promise(resolve => setTimeout(resolve, 20))
      // run 3: the pre-warm of run 2 did not count as a use
      assert.deepEqual(await warm(), [])
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
