import assert from 'node:assert/strict'
import { privateKeyToAccount } from 'viem/accounts'
import { bytesToHex, hexToBytes, type Hex } from 'viem'
import { DEV_DOMAIN, EIP712_TYPES, receiptDigest, recoverReceiptSigner, type Receipt } from '#protocol'
import { fastSigner, recoverDigestSigner } from '#node'

const KEY: Hex = '0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d'
const N = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n

const receipt: Receipt = {
  jobId: `0x${'ab'.repeat(32)}`, attempt: 2, functionId: `0x${'cd'.repeat(32)}`, jobHash: `0x${'ef'.repeat(32)}`, inputHash: `0x${'01'.repeat(32)}`,
  outputHash: `0x${'02'.repeat(32)}`, worker: privateKeyToAccount(KEY).address, gateway: '0x70997970C51812dc3A010C7d01b50e0d17dc79C8', fee: 5n, epoch: 7n, deadline: 1_800_000_000n
}

describe('native secp256k1 signing', () => {
  it('makes the same signature as viem and recovers the same address', async () => {
    const fast = fastSigner(KEY)
    const viemSig = await privateKeyToAccount(KEY).signTypedData({ domain: DEV_DOMAIN, types: EIP712_TYPES, primaryType: 'Receipt', message: receipt })
    const fastSig = await fast.signTypedData({ domain: DEV_DOMAIN, types: EIP712_TYPES, primaryType: 'Receipt', message: receipt })
    assert.equal(fastSig, viemSig)
    assert.equal(recoverDigestSigner(receiptDigest(DEV_DOMAIN, receipt), fastSig), fast.address.toLowerCase())
    assert.equal(await recoverReceiptSigner(DEV_DOMAIN, receipt, fastSig), fast.address)
  })

  it('refuses the high-s twin of a valid signature and malformed ones', () => {
    const fast = fastSigner(KEY)
    const digest = receiptDigest(DEV_DOMAIN, receipt)
    const sig = hexToBytes(fast.signDigest(digest))
    const s = BigInt(bytesToHex(sig.subarray(32, 64)))
    const twin = new Uint8Array(sig)
    twin.set(hexToBytes(`0x${(N - s).toString(16).padStart(64, '0')}`), 32)
    twin[64] = sig[64] === 27 ? 28 : 27
    assert.equal(recoverDigestSigner(digest, bytesToHex(twin)), undefined)
    assert.equal(recoverDigestSigner(digest, '0x1234'), undefined)
    assert.equal(recoverDigestSigner(digest, `0x${'00'.repeat(65)}`), undefined)
  })

  it('recovers another address for another digest', () => {
    const fast = fastSigner(KEY)
    const sig = fast.signDigest(receiptDigest(DEV_DOMAIN, receipt))
    assert.notEqual(recoverDigestSigner(receiptDigest(DEV_DOMAIN, { ...receipt, fee: 6n }), sig), fast.address)
  })
})

describe('EIP-712 digests', () => {
  it('computes the same ticket and receipt digests as viem\'s generic hashTypedData on any domain', async () => {
    const { ticketDigest, typedDataDigest, peerHostDomain } = await import('#protocol')
    const fc = (await import('fast-check')).default
    const hex32 = fc.uint8Array({ minLength: 32, maxLength: 32 }).map(b => bytesToHex(b))
    const addr = fc.uint8Array({ minLength: 20, maxLength: 20 }).map(b => bytesToHex(b))
    const u64 = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n })
    fc.assert(fc.property(
      fc.integer({ min: 1, max: 2 ** 31 }), addr, hex32, hex32, hex32, hex32, addr, addr, fc.bigInt({ min: 0n, max: (1n << 256n) - 1n }), u64, u64, fc.integer({ min: 1, max: 16 }),
      (chainId, contract, jobId, functionId, inputHash, outputHash, worker, gateway, fee, epoch, deadline, attempt) => {
        const domain = peerHostDomain(chainId, contract as `0x${string}`)
        const jobHash = outputHash.replace(/^0x../, '0x5a') as `0x${string}`
        const r = { jobId, attempt, functionId, jobHash, inputHash, outputHash, worker: worker as `0x${string}`, gateway: gateway as `0x${string}`, fee, epoch, deadline }
        assert.equal(receiptDigest(domain, r), typedDataDigest(domain, 'Receipt', r))
        const t = { jobId, attempt, functionId, jobHash, inputHash, worker: worker as `0x${string}`, gateway: gateway as `0x${string}`, fee, epoch, deadline }
        assert.equal(ticketDigest(domain, t), typedDataDigest(domain, 'Ticket', t))
      }), { numRuns: 200 })
  })
})
