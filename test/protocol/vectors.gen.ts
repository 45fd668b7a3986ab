/**
 * Regenerates test/protocol/vectors.json (golden vectors). Run only when the wire format changes
 * on purpose, and review the diff:
 *
 *   node_modules/.bin/node test/protocol/vectors.gen.ts
 *
 * vectors.spec.ts never regenerates: it recomputes every value and compares with the committed file.
 */
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { bytesToHex, type Address } from 'viem'
import { privateKeyToAccount } from 'viem/accounts'
import {
  advertSigningBytes, canonicalError, canonicalRequest, canonicalResponse, DEV_DOMAIN, encodeMessage,
  inputHash, outputHash, peerHostDomain, RECEIPT_TYPE_STRING, RECEIPT_TYPEHASH, receiptDigest, receiptOf,
  signReceipt, signTicket, TICKET_TYPE_STRING, TICKET_TYPEHASH, ticketDigest, ticketOf,
  type WireErrorCode, type WireRequest, type WireResponse
} from '#protocol'
import { advert, fixtures, HARDHAT_KEY_0, job, OUTPUT_HASH } from './fixtures.ts'
import { toJson } from './vectors-json.ts'

const enc = new TextEncoder()
/** Hardhat's first contract address from account #0, as a stand-in Settlement contract on Amoy. */
export const AMOY_SETTLEMENT: Address = '0x5FbDB2315678afecb367f032d93F642f64180aa3'

export const REQUESTS: Array<{ name: string, request: WireRequest }> = [
  { name: 'get-empty', request: { method: 'GET', url: 'http://127.0.0.1:8080/0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266/demo/hello', headers: [], body: new Uint8Array() } },
  {
    name: 'get-query-headers',
    request: {
      method: 'get',
      url: 'https://gw.example/0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266/demo/hello/a%2fb/%7Euser?z=1&a=2&a=1&q=x+y&e=%e2%82%ac&flag#frag',
      headers: [['User-Agent', 'curl/8.5'], ['Accept', 'application/json'], ['cookie', 'b=2'], ['Cookie', 'a=1'], ['x-forwarded-for', '10.0.0.1']],
      body: new Uint8Array()
    }
  },
  {
    name: 'post-json',
    request: {
      method: 'POST',
      url: 'http://127.0.0.1:8080/0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266/demo/echo',
      headers: [['content-type', 'application/json'], ['authorization', 'Bearer abc'], ['origin', 'https://app.example']],
      body: enc.encode('{"hello":"world","n":[1,2,3]}')
    }
  }
]

export const RESPONSES: Array<{ name: string, response: WireResponse }> = [
  { name: 'ok-text', response: { status: 200, headers: [['Content-Type', 'text/plain;charset=UTF-8'], ['date', 'Tue, 24 Nov 2026 01:00:00 GMT'], ['x-peerhost-job', '0x11']], body: enc.encode('hello') } },
  { name: 'not-found-empty', response: { status: 404, headers: [], body: new Uint8Array() } },
  { name: 'set-cookies', response: { status: 302, headers: [['set-cookie', 'a=1'], ['location', '/next'], ['set-cookie', 'b=2']], body: new Uint8Array() } }
]

export const ERROR_CODES: WireErrorCode[] = ['FUNCTION_ERROR', 'LIMIT_TIMEOUT', 'RESULT_INVALID']

async function main (): Promise<void> {
  const account = privateKeyToAccount(HARDHAT_KEY_0)
  const j = job()
  j.inputHash = inputHash(j.request)
  const eip712 = []
  for (const [name, domain] of [['dev', DEV_DOMAIN], ['amoy', peerHostDomain(80002, AMOY_SETTLEMENT)]] as const) {
    const ticket = ticketOf(j)
    const receipt = receiptOf(j, OUTPUT_HASH)
    eip712.push({
      name,
      domain,
      ticket,
      ticketDigest: ticketDigest(domain, ticket),
      ticketSig: await signTicket(account, domain, ticket),
      receipt,
      receiptDigest: receiptDigest(domain, receipt),
      receiptSig: await signReceipt(account, domain, receipt)
    })
  }
  const { sig: _sig, ...unsignedAdvert } = advert()
  const vectors = {
    description: 'PeerHost protocol golden vectors. Binary values are {"$bytes": hex}, bigints {"$bigint": decimal}. Regenerate only on purpose with test/protocol/vectors.gen.ts.',
    signer: { privateKey: HARDHAT_KEY_0, address: account.address },
    typehashes: { ticketTypeString: TICKET_TYPE_STRING, ticketTypehash: TICKET_TYPEHASH, receiptTypeString: RECEIPT_TYPE_STRING, receiptTypehash: RECEIPT_TYPEHASH },
    messages: fixtures().map(({ name, message }) => ({ name, message, hex: bytesToHex(encodeMessage(message)) })),
    requests: REQUESTS.map(({ name, request }) => ({ name, request, canonical: bytesToHex(canonicalRequest(request)), inputHash: inputHash(request) })),
    responses: RESPONSES.map(({ name, response }) => ({ name, response, canonical: bytesToHex(canonicalResponse(response)), outputHash: outputHash({ response }) })),
    errors: ERROR_CODES.map(code => ({ code, canonical: bytesToHex(canonicalError(code)), outputHash: outputHash({ error: { code, message: '' } }) })),
    adverts: [unsignedAdvert, { ...unsignedAdvert, price: '25000000000000' }, { ...unsignedAdvert, full: false, price: '0' }, { ...unsignedAdvert, price: '25000000000000', sessionPrice: { perMessage: '1000000000', perMinute: '7' } }]
      .map(a => ({ advert: a, signingBytes: bytesToHex(advertSigningBytes(a)) })),
    eip712
  }
  writeFileSync(join(import.meta.dirname, 'vectors.json'), `${JSON.stringify(toJson(vectors), null, 2)}\n`)
}

await main()
