/**
 * The bundle cache keeps a bounded number of bytes in memory (NODE_DEFAULTS.bundleCacheBytes):
 * a gateway that names many large bundles cannot grow a worker's memory past it; evicted bundles
 * are read back from disk, verified.
 */
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { rawCid } from '#protocol'
import { bundleStore } from '#node'

function bundle (seed: number, size: number): { cid: string, bytes: Uint8Array } {
  const bytes = new Uint8Array(size).fill(seed)
  return { cid: rawCid(bytes), bytes }
}

describe('bundleStore memory bound', () => {
  const dir = mkdtempSync(join(tmpdir(), 'peerhost-bundles-'))
  after(() => rmSync(dir, { recursive: true, force: true }))

  it('keeps at most maxBytes in memory, dropping the least recently used, and reads evicted ones back from disk', () => {
    const store = bundleStore(dir, 1_000, 3 * 1024)
    // the attack: many distinct 1 KiB bundles, far past the 3 KiB budget
    const many = Array.from({ length: 50 }, (_, i) => bundle(i + 1, 1024))
    const first = many[0]
    store.put(first.cid, first.bytes)
    for (const b of many.slice(1)) {
      store.put(b.cid, b.bytes)
      // the first one stays hot: used after every put
      assert.ok(store.get(first.cid) !== undefined)
    }
    // on disk every bundle survives; change the file of an evicted one: a memory copy would hide it
    const evicted = many[10]
    writeFileSync(join(dir, evicted.cid), new Uint8Array(1024).fill(255))
    assert.equal(store.get(evicted.cid), undefined, 'an evicted bundle is re-read and re-verified from disk, not served from memory')
    const fresh = bundleStore(dir, 1_000, 3 * 1024)
    assert.deepEqual(fresh.get(many[20].cid), many[20].bytes)
    // the hot one and the latest ones are in memory: delete the files and they still answer
    for (const b of [first, many[49]]) rmSync(join(dir, b.cid))
    assert.deepEqual(store.get(first.cid), first.bytes)
    assert.deepEqual(store.get(many[49].cid), many[49].bytes)
    // but not more than the budget: of the 50, at most 3 answer without their files
    for (const b of many) rmSync(join(dir, b.cid), { force: true })
    const inMemory = many.filter(b => store.get(b.cid) !== undefined).length
    assert.ok(inMemory <= 3, `${inMemory} bundles of 1 KiB held in a 3 KiB budget`)
    assert.ok(inMemory >= 2)
  })
})
