import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { bytesToHex, keccak256 as viemKeccak } from 'viem'
import { keccak256 } from '#protocol'

describe('keccak-256 (WebAssembly, hot path)', () => {
  it('equals viem\'s keccak on every size around the 136-byte rate, on large inputs and on hex input', () => {
    const sizes = [0, 1, 31, 32, 33, 64, 135, 136, 137, 271, 272, 273, 1000, 65_536, 1024 * 1024 + 7]
    for (const n of sizes) {
      const data = new Uint8Array(randomBytes(n))
      assert.equal(keccak256(data), viemKeccak(data), `${n} bytes`)
      assert.equal(keccak256(bytesToHex(data)), viemKeccak(bytesToHex(data)), `${n} bytes as hex`)
    }
    // the known vector: keccak256("") (not SHA3-256's a7ffc6f8…)
    assert.equal(keccak256(new Uint8Array(0)), '0xc5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470')
  })

  it('keeps no state between digests (one instance, reset each time)', () => {
    const a = new Uint8Array(randomBytes(200))
    const first = keccak256(a)
    keccak256(new Uint8Array(randomBytes(5000)))
    assert.equal(keccak256(a), first)
  })
})
