/**
 * Block storage: helia on the mesh libp2p, bitswap between two nodes on 127.0.0.1, persistence,
 * removal, and the SBX-15 caps (oversize, forged bytes, time).
 */
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { FsBlockstore } from 'blockstore-fs'
import { CID } from 'multiformats/cid'
import { rawCid } from '#protocol'
import { createMeshNode, silentLogger, type PeerHostLibp2p } from '#node'
import { blockStorage, STORAGE_LIMITS, type BlockStorage } from '../../node/storage/index.ts'

describe('storage: helia blocks over bitswap', function () {
  this.timeout(30_000)
  const dir = mkdtempSync(join(tmpdir(), 'peerhost-storage-'))
  let a: PeerHostLibp2p, b: PeerHostLibp2p
  let sa: BlockStorage, sb: BlockStorage

  before(async () => {
    a = await createMeshNode({ privateKey: await generateKeyPair('Ed25519') })
    b = await createMeshNode({ privateKey: await generateKeyPair('Ed25519') })
    await a.start(); await b.start()
    sa = blockStorage({ dataDir: join(dir, 'a') })({ libp2p: a, logger: silentLogger() })
    sb = blockStorage({ dataDir: join(dir, 'b'), fetchTimeoutMs: 3_000 })({ libp2p: b, logger: silentLogger() })
    await sa.start(); await sb.start()
    await b.dial(a.getMultiaddrs()[0])
  })
  after(async () => {
    await sa?.stop(); await sb?.stop()
    await a?.stop(); await b?.stop()
    rmSync(dir, { recursive: true, force: true })
  })

  it('fetches a 1 MB raw block over bitswap and verifies it', async () => {
    const bytes = new Uint8Array(randomBytes(1024 * 1024))
    const cid = rawCid(bytes)
    await sa.put(cid, bytes)
    assert.equal(await sb.has(cid), false)
    const got = await sb.fetch(cid, { from: a.peerId })
    assert.deepEqual(Buffer.from(got), Buffer.from(bytes))
    assert.equal(await sb.has(cid), true)
  })

  it('refuses a block whose bytes do not match its CID', async () => {
    const bytes = new TextEncoder().encode('real')
    await assert.rejects(sa.put(rawCid(new TextEncoder().encode('other')), bytes), { code: 'BLOCK_MISMATCH' })
  })

  it('refuses a block above the 2 MiB bitswap limit', async () => {
    const bytes = new Uint8Array(STORAGE_LIMITS.maxBlockBytes + 1)
    await assert.rejects(sa.put(rawCid(bytes), bytes), { code: 'BLOCK_TOO_LARGE' })
  })

  it('refuses forged bytes served over bitswap (SBX-15)', async () => {
    const claimed = new TextEncoder().encode(`the real bundle ${Math.random()}`)
    const cid = rawCid(claimed)
    // write forged bytes straight into a's blockstore, under the real CID, behind helia's back
    const raw = new FsBlockstore(join(dir, 'a', 'ipfs', 'blocks'))
    await raw.open()
    await raw.put(CID.parse(cid), new TextEncoder().encode('forged'))
    await raw.close()
    const started = Date.now()
    await assert.rejects(sb.fetch(cid, { from: a.peerId, timeoutMs: 2_000 }), (err: any) => ['BLOCK_MISMATCH', 'BLOCK_FETCH_TIMEOUT'].includes(err.code))
    assert.ok(Date.now() - started < 5_000, 'stopped at the time cap, not later')
    assert.equal(await sb.has(cid), false)
  })

  it('gives up on a block nobody has at the time cap', async () => {
    const cid = rawCid(new Uint8Array(randomBytes(64)))
    const started = Date.now()
    await assert.rejects(sb.fetch(cid, { timeoutMs: 500 }), { code: 'BLOCK_FETCH_TIMEOUT' })
    assert.ok(Date.now() - started < 3_500, 'stopped at the time cap, not later')
  })

  it('keeps blocks across restarts (FsBlockstore)', async () => {
    const bytes = new TextEncoder().encode('persistent')
    const cid = rawCid(bytes)
    await sa.put(cid, bytes)
    await sa.stop()
    sa = blockStorage({ dataDir: join(dir, 'a') })({ libp2p: a, logger: silentLogger() })
    await sa.start()
    assert.deepEqual(Buffer.from((await sa.getLocal(cid))!), Buffer.from(bytes))
  })

  it('removes a block: unpinned, gone from the blockstore, no longer served to peers; removing an absent block is fine', async () => {
    const bytes = new TextEncoder().encode(`removable ${Math.random()}`)
    const cid = rawCid(bytes)
    await sa.put(cid, bytes)
    assert.ok(await sa.helia.pins.isPinned(CID.parse(cid)))
    await sa.remove(cid)
    assert.equal(await sa.has(cid), false)
    assert.equal(await sa.getLocal(cid), undefined)
    assert.equal(await sa.helia.pins.isPinned(CID.parse(cid)), false)
    await assert.rejects(sb.fetch(cid, { from: a.peerId, timeoutMs: 1_000 }), { code: 'BLOCK_FETCH_TIMEOUT' })
    await sa.remove(cid)
    await sa.remove(rawCid(new Uint8Array(randomBytes(32))))
  })

  it('finds a block through the DHT from a node that is not connected to its holder', async () => {
    const dht = await createMeshNode({ privateKey: await generateKeyPair('Ed25519'), dhtServer: true })
    await dht.start()
    const boot = dht.getMultiaddrs().map(m => m.toString())
    const holder = await createMeshNode({ privateKey: await generateKeyPair('Ed25519'), bootstrap: boot })
    const seeker = await createMeshNode({ privateKey: await generateKeyPair('Ed25519'), bootstrap: boot })
    await holder.start(); await seeker.start()
    const sh = blockStorage({ dataDir: join(dir, 'h') })({ libp2p: holder, logger: silentLogger() })
    const ss = blockStorage({ dataDir: join(dir, 's') })({ libp2p: seeker, logger: silentLogger() })
    await sh.start(); await ss.start()
    try {
      await holder.dial(dht.getMultiaddrs()[0]); await seeker.dial(dht.getMultiaddrs()[0])
      const bytes = new TextEncoder().encode(`found through the DHT ${Math.random()}`)
      const cid = rawCid(bytes)
      await sh.put(cid, bytes)
      assert.equal(seeker.getConnections(holder.peerId).length, 0)
      let got: Uint8Array | undefined
      for (let i = 0; i < 5 && got === undefined; i++) {
        try { got = await ss.fetch(cid, { timeoutMs: 2_000 }) } catch {}
      }
      assert.equal(Buffer.from(got!).toString(), Buffer.from(bytes).toString())
    } finally {
      await sh.stop(); await ss.stop()
      await holder.stop(); await seeker.stop(); await dht.stop()
    }
  })
})
