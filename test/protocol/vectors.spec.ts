import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { bytesToHex, hexToBytes, keccak256, toBytes } from 'viem'
import { privateKeyToAccount } from 'viem/accounts'
import {
  advertSigningBytes, canonicalError, canonicalRequest, canonicalResponse, decodeMessage, encodeMessage,
  inputHash, LIMITS, MESSAGE_TYPES, outputHash, RECEIPT_TYPE_STRING, RECEIPT_TYPEHASH, receiptDigest, recoverReceiptSigner,
  recoverTicketSigner, signReceipt, signTicket, TICKET_TYPE_STRING, TICKET_TYPEHASH, ticketDigest
} from '#protocol'
import { fromJson } from './vectors-json.ts'

/** The committed golden vectors: never regenerated here (see vectors.gen.ts). */
const vectors = fromJson(JSON.parse(readFileSync(join(import.meta.dirname, 'vectors.json'), 'utf8')))

describe('protocol golden vectors', () => {
  it('matches the EIP-712 type strings and type hashes', () => {
    const t = vectors.typehashes
    assert.equal(TICKET_TYPE_STRING, t.ticketTypeString)
    assert.equal(RECEIPT_TYPE_STRING, t.receiptTypeString)
    assert.equal(TICKET_TYPEHASH, t.ticketTypehash)
    assert.equal(RECEIPT_TYPEHASH, t.receiptTypehash)
    assert.equal(keccak256(toBytes(t.ticketTypeString)), t.ticketTypehash)
    assert.equal(keccak256(toBytes(t.receiptTypeString)), t.receiptTypehash)
  })

  it('covers every message type', () => {
    const types = new Set(vectors.messages.map((m: any) => m.message.type))
    assert.deepEqual([...types].sort(), [...MESSAGE_TYPES].sort())
  })

  for (const v of vectors.messages) {
    it(`encodes and decodes the ${v.name} message exactly`, () => {
      assert.equal(bytesToHex(encodeMessage(v.message)), v.hex)
      assert.deepEqual(decodeMessage(hexToBytes(v.hex), { maxBytes: LIMITS.maxBundleBytes }), v.message)
    })
  }

  for (const v of vectors.requests) {
    it(`gives the canonical request and inputHash of ${v.name}`, () => {
      assert.equal(bytesToHex(canonicalRequest(v.request)), v.canonical)
      assert.equal(inputHash(v.request), v.inputHash)
    })
  }

  for (const v of vectors.responses) {
    it(`gives the canonical response and outputHash of ${v.name}`, () => {
      assert.equal(bytesToHex(canonicalResponse(v.response)), v.canonical)
      assert.equal(outputHash({ response: v.response }), v.outputHash)
    })
  }

  for (const v of vectors.errors) {
    it(`gives the canonical error and outputHash of ${v.code}`, () => {
      assert.equal(bytesToHex(canonicalError(v.code)), v.canonical)
      assert.equal(outputHash({ error: { code: v.code, message: 'any message' } }), v.outputHash)
    })
  }

  it('gives the advert signing bytes', () => {
    for (const v of vectors.adverts) assert.equal(bytesToHex(advertSigningBytes(v.advert)), v.signingBytes)
  })

  for (const v of vectors.eip712) {
    it(`gives the ticket and receipt digests and signatures on the ${v.name} domain (chain ${v.domain.chainId})`, async () => {
      const account = privateKeyToAccount(vectors.signer.privateKey)
      assert.equal(account.address, vectors.signer.address)
      assert.equal(ticketDigest(v.domain, v.ticket), v.ticketDigest)
      assert.equal(receiptDigest(v.domain, v.receipt), v.receiptDigest)
      // RFC 6979 signatures are deterministic
      assert.equal(await signTicket(account, v.domain, v.ticket), v.ticketSig)
      assert.equal(await signReceipt(account, v.domain, v.receipt), v.receiptSig)
      assert.equal(await recoverTicketSigner(v.domain, v.ticket, v.ticketSig), account.address)
      assert.equal(await recoverReceiptSigner(v.domain, v.receipt, v.receiptSig), account.address)
    })
  }

  it('distinguishes the two domains', () => {
    const [a, b] = vectors.eip712
    assert.notEqual(a.ticketDigest, b.ticketDigest)
    assert.notEqual(a.receiptDigest, b.receiptDigest)
  })
})
