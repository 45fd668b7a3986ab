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
import { privateKeyToAccount } from 'viem/accounts'
import { rawCid } from '#protocol'
import { blockStorage, buildDeployment, canonicalJson, createKeystore, createMeshNode, deployRoutes, encodeManifest, openKeystore, parseManifest, silentLogger, STORAGE_LIMITS, type PeerHostLibp2p, type BlockStorage } from '#node'
import { cloneRepo, isGitUrl, repoName, sourceCommit } from '../../node/deploy/index.ts'

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
  let libp2p: PeerHostLibp2p
  let storage: BlockStorage
  const app = new Hono()
  before(async () => {
    libp2p = await createMeshNode({ privateKey: await generateKeyPair('Ed25519') })
    storage = blockStorage({ dataDir: dir })({ libp2p, logger: silentLogger() })
    await storage.start()
    deployRoutes({ storage })(app)
  })
  after(async () => {
    await storage.stop()
    await libp2p.stop()
    rmSync(dir, { recursive: true, force: true })
  })

  it('stores and pins a block that matches its CID', async () => {
    const bytes = new TextEncoder().encode('bundle bytes')
    const cid = rawCid(bytes)
    const res = await app.request(`/_peerhost/blocks/${cid}`, { method: 'POST', body: bytes })
    assert.equal(res.status, 201)
    assert.deepEqual(await res.json(), { cid, bytes: bytes.byteLength })
    assert.ok(await storage.helia.pins.isPinned((await import('multiformats/cid')).CID.parse(cid)))
    const back = await app.request(`/_peerhost/blocks/${cid}`)
    assert.equal(Buffer.from(await back.arrayBuffer()).toString(), 'bundle bytes')
  })

  it('answers 400 to bytes that do not match the CID, and to a CID that is not raw CIDv1', async () => {
    const res = await app.request(`/_peerhost/blocks/${rawCid(new TextEncoder().encode('a'))}`, { method: 'POST', body: 'b' })
    assert.equal(res.status, 400)
    assert.match(((await res.json()) as any).error.message, /do not match/)
    const bad = await app.request('/_peerhost/blocks/QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG', { method: 'POST', body: 'b' })
    assert.equal(bad.status, 400)
  })

  it('answers 413 to a block above 2 MiB', async () => {
    const bytes = new Uint8Array(STORAGE_LIMITS.maxBlockBytes + 1)
    const res = await app.request(`/_peerhost/blocks/${rawCid(bytes)}`, { method: 'POST', body: bytes })
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
})
