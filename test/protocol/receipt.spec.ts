import assert from 'node:assert/strict'
import { privateKeyToAccount } from 'viem/accounts'
import {
  advertSigningBytes, assertInputHash, DEV_DOMAIN, inputHash, jobHashOf, newJobId, receiptOf,
  recoverReceiptSigner, recoverTicketSigner, signReceipt, signTicket, ticketOf
} from '#protocol'
import { advert, BUNDLE_CID, codeOf, HARDHAT_KEY_0, job, OUTPUT_HASH } from './fixtures.ts'


describe('protocol/receipt', () => {
  describe('ticketOf and receiptOf', () => {
    it('builds the EIP-712 ticket of a job', () => {
      const j = job()
      assert.deepEqual(ticketOf(j), {
        jobId: j.jobId,
        attempt: 1,
        functionId: j.fn.id,
        jobHash: jobHashOf(j),
        inputHash: j.inputHash,
        worker: j.ticket.worker,
        gateway: j.ticket.gateway,
        fee: 1_000_000_000_000_000n,
        epoch: 7n,
        deadline: 1_764_000_030n
      })
    })

    it('builds the EIP-712 receipt of a job', () => {
      const j = job()
      const r = receiptOf(j, OUTPUT_HASH)
      assert.equal(r.outputHash, OUTPUT_HASH)
      assert.equal(r.fee, 1_000_000_000_000_000n)
      assert.equal(r.epoch, 7n)
      assert.equal(r.functionId, j.fn.id)
      assert.equal(r.jobHash, jobHashOf(j))
      assert.equal(r.deadline, 1_764_000_030n)
      assert.equal(codeOf(() => receiptOf(j, '0x12')), 'INVALID_FIELD')
    })

    it('binds the bundle, options, env, secret names, input and deadline in the job hash', () => {
      const j = job()
      const base = jobHashOf(j)
      const variants = [
        { ...j, fn: { ...j.fn, bundleCid: j.fn.bundleCid.slice(0, -1) + (j.fn.bundleCid.endsWith('a') ? 'b' : 'a') } },
        { ...j, options: { ...j.options, memoryMb: j.options.memoryMb + 1 } },
        { ...j, options: { ...j.options, timeoutMs: j.options.timeoutMs + 1 } },
        { ...j, options: { ...j.options, network: [...j.options.network, 'example.com'] } },
        { ...j, options: { ...j.options, isolation: j.options.isolation === 'function' ? 'execution' as const : 'function' as const } },
        { ...j, env: { ...j.env, EXTRA: '1' } },
        { ...j, secrets: { TOKEN: 'x' } },
        { ...j, deadline: j.deadline + 1 },
        { ...j, inputHash: `0x${'77'.repeat(32)}` as const }
      ]
      const hashes = new Set([base, ...variants.map(v => jobHashOf(v))])
      assert.equal(hashes.size, variants.length + 1)
      // secret values are not covered, only names: the value never reaches a signature
      assert.equal(jobHashOf({ ...j, secrets: { TOKEN: 'a' } }), jobHashOf({ ...j, secrets: { TOKEN: 'b' } }))
      // env and network order do not matter
      assert.equal(jobHashOf({ ...j, env: { A: '1', B: '2' } }), jobHashOf({ ...j, env: { B: '2', A: '1' } }))
    })

    it('rejects a ticket amount that is not a decimal integer', () => {
      const j = job()
      j.ticket.fee = '1e18'
      assert.equal(codeOf(() => ticketOf(j)), 'INVALID_FIELD')
    })

    it('signs and recovers tickets and receipts', async () => {
      const account = privateKeyToAccount(HARDHAT_KEY_0)
      const j = job()
      const ticketSig = await signTicket(account, DEV_DOMAIN, ticketOf(j))
      assert.equal(await recoverTicketSigner(DEV_DOMAIN, ticketOf(j), ticketSig), account.address)
      const receiptSig = await signReceipt(account, DEV_DOMAIN, receiptOf(j, OUTPUT_HASH))
      assert.equal(await recoverReceiptSigner(DEV_DOMAIN, receiptOf(j, OUTPUT_HASH), receiptSig), account.address)
      const tampered = { ...receiptOf(j, OUTPUT_HASH), fee: 2n }
      assert.notEqual(await recoverReceiptSigner(DEV_DOMAIN, tampered, receiptSig), account.address)
    })
  })

  describe('assertInputHash', () => {
    it('accepts a job whose inputHash matches its request and rejects one that does not', () => {
      const j = job()
      j.inputHash = inputHash(j.request)
      assertInputHash(j)
      j.request.body = new TextEncoder().encode('other')
      assert.equal(codeOf(() => assertInputHash(j)), 'INVALID_FIELD')
    })
  })

  describe('advertSigningBytes', () => {
    it('starts with the domain tag and excludes sig', () => {
      const a = advert()
      const bytes = advertSigningBytes(a)
      assert.equal(new TextDecoder().decode(bytes.subarray(4, 22)), 'peerhost-advert-v1')
      const { sig: _sig, ...unsigned } = a
      assert.deepEqual(advertSigningBytes(unsigned), bytes)
      assert.deepEqual(advertSigningBytes({ ...a, sig: new Uint8Array(64).fill(9) }), bytes)
    })

    it('does not depend on key order or address case', () => {
      const a = advert()
      const reordered = Object.fromEntries(Object.entries(a).reverse()) as unknown as typeof a
      assert.deepEqual(advertSigningBytes(reordered), advertSigningBytes(a))
      assert.deepEqual(advertSigningBytes({ ...a, address: a.address.toLowerCase() as typeof a.address }), advertSigningBytes(a))
    })

    it('changes when any signed field changes', () => {
      const a = advert()
      const base = Buffer.from(advertSigningBytes(a)).toString('hex')
      const variants = [
        { peerId: '12D3KooWRSfQupY9xjpwjpPsCYVaZy891mEigJFUQgeADvQbLCqZ' },
        { address: '0x70997970c51812dc3a010c7d01b50e0d17dc79c8' as const },
        { addrs: ['/ip4/127.0.0.1/tcp/40001'] },
        { capacity: 9 },
        { load: 4 },
        { warm: [] },
        { warm: [BUNDLE_CID, BUNDLE_CID] },
        { ts: a.ts + 1 },
        { seq: a.seq + 1 },
        // the price is signed: a relay cannot lower or raise a worker's advertised price
        { price: '0' },
        { price: '1' },
        { price: '10' },
        { full: true },
        { full: false },
        { full: false, price: '1' },
        { full: true, price: '1' }
      ]
      const seen = new Set([base])
      for (const v of variants) {
        const hex = Buffer.from(advertSigningBytes({ ...a, ...v })).toString('hex')
        assert.ok(!seen.has(hex), JSON.stringify(v))
        seen.add(hex)
      }
    })

    it('rejects an invalid advert with INVALID_FIELD', () => {
      for (const price of ['-1', '01', '1.5', '', 'abc', (1n << 256n).toString()]) {
        assert.equal(codeOf(() => advertSigningBytes({ ...advert(), price })), 'INVALID_FIELD', `price ${JSON.stringify(price)}`)
      }
      assert.equal(codeOf(() => advertSigningBytes({ ...advert(), price: 5 as unknown as string })), 'INVALID_FIELD', 'a number price')
      assert.equal(codeOf(() => advertSigningBytes({ ...advert(), capacity: -1 })), 'INVALID_FIELD')
    })
  })

  describe('newJobId', () => {
    it('returns 32 random bytes as lower-case hex', () => {
      const ids = new Set(Array.from({ length: 100 }, () => newJobId()))
      assert.equal(ids.size, 100)
      for (const id of ids) assert.match(id, /^0x[0-9a-f]{64}$/)
    })
  })
})
