import assert from 'node:assert/strict'
import fc from 'fast-check'
import { bytesToHex, keccak256 } from 'viem'
import {
  canonicalError, canonicalRequest, canonicalResponse, inputHash, outputHash, ProtocolError,
  type WireRequest, type WireResponse
} from '#protocol'
import { codeOf } from './fixtures.ts'

const enc = new TextEncoder()

function req (over: Partial<WireRequest> = {}): WireRequest {
  return {
    method: 'POST',
    url: 'http://gw-a.example:8080/0xabc/demo/hello/x?b=2&a=1&a=0',
    headers: [['content-type', 'application/json'], ['accept', 'text/plain'], ['cookie', 'a=1'], ['cookie', 'b=2'], ['user-agent', 'curl/8']],
    body: enc.encode('{"x":1}'),
    ...over
  }
}

function res (over: Partial<WireResponse> = {}): WireResponse {
  return { status: 200, headers: [['content-type', 'text/plain'], ['x-a', '1']], body: enc.encode('ok'), ...over }
}


describe('protocol/canonical', () => {
  describe('inputHash', () => {
    const base = inputHash(req())

    it('is the keccak256 of the canonical request', () => {
      assert.equal(base, keccak256(canonicalRequest(req())))
      assert.match(base, /^0x[0-9a-f]{64}$/)
    })

    it('ignores header order, name case and headers outside the allow-list', () => {
      const shuffled = req({ headers: [['Cookie', 'a=1'], ['ACCEPT', 'text/plain'], ['x-forwarded-for', '1.2.3.4'], ['Content-Type', 'application/json'], ['cookie', 'b=2']] })
      assert.equal(inputHash(shuffled), base)
    })

    it('keeps the order of repeated headers', () => {
      const swapped = req({ headers: [['content-type', 'application/json'], ['accept', 'text/plain'], ['cookie', 'b=2'], ['cookie', 'a=1']] })
      assert.notEqual(inputHash(swapped), base)
    })

    it('ignores query order, scheme, host, port and fragment', () => {
      assert.equal(inputHash(req({ url: 'https://other-gateway.example/0xabc/demo/hello/x?a=0&a=1&b=2#frag' })), base)
      assert.equal(inputHash(req({ url: 'http://127.0.0.1:1/0xabc/demo/hello/x?a=1&b=2&a=0' })), base)
    })

    it('normalizes percent-encoding of unreserved characters and hex case', () => {
      const a = inputHash(req({ url: 'http://h/p/%7Euser/a%2fb?k%65y=v%2c' }))
      assert.equal(inputHash(req({ url: 'http://h/p/~user/a%2Fb?key=v%2C' })), a)
    })

    it('keeps escaped reserved characters distinct from literal ones', () => {
      assert.notEqual(inputHash(req({ url: 'http://h/a%2Fb' })), inputHash(req({ url: 'http://h/a/b' })))
      assert.notEqual(inputHash(req({ url: 'http://h/p?a=%2B' })), inputHash(req({ url: 'http://h/p?a=+' })))
      assert.notEqual(inputHash(req({ url: 'http://h/p?a%3Db=c' })), inputHash(req({ url: 'http://h/p?a=b%3Dc' })))
    })

    it('treats + and %20 in the query as the same space', () => {
      assert.equal(inputHash(req({ url: 'http://h/p?q=a+b' })), inputHash(req({ url: 'http://h/p?q=a%20b' })))
    })

    it('changes with a body byte, the method, the path, a query value or a hashed header value', () => {
      const body = req().body.slice()
      body[0] ^= 1
      const changed = [
        req({ body }),
        req({ method: 'PUT' }),
        req({ url: 'http://gw-a.example:8080/0xabc/demo/hello/y?b=2&a=1&a=0' }),
        req({ url: 'http://gw-a.example:8080/0xabc/demo/hello/x?b=3&a=1&a=0' }),
        req({ headers: [['content-type', 'text/plain'], ['accept', 'text/plain'], ['cookie', 'a=1'], ['cookie', 'b=2']] })
      ]
      const hashes = new Set(changed.map(r => inputHash(r)))
      assert.equal(hashes.size, changed.length)
      assert.ok(!hashes.has(base))
    })

    it('upper-cases the method', () => {
      assert.equal(inputHash(req({ method: 'post' })), base)
    })

    it('is independent of header order and query order (property)', () => {
      const header = fc.tuple(fc.constantFrom('accept', 'content-type', 'origin', 'range', 'x-other'), fc.string({ unit: fc.constantFrom(...'abc =;,'.split('')), maxLength: 8 }))
      const param = fc.tuple(fc.string({ unit: fc.constantFrom(...'abk%2B+'.split('')), maxLength: 4 }), fc.string({ unit: fc.constantFrom(...'xyz'.split('')), maxLength: 3 }))
      fc.assert(fc.property(fc.uniqueArray(header, { selector: h => h[0], maxLength: 5 }), fc.array(param, { maxLength: 6 }), fc.nat(), (headers, params, seed) => {
        const query = (ps: typeof params): string => ps.map(([k, v]) => `${k}=${v}`).join('&')
        const rotate = <T>(xs: T[]): T[] => xs.length === 0 ? xs : [...xs.slice(seed % xs.length), ...xs.slice(0, seed % xs.length)]
        const a = req({ url: `http://h/p?${query(params)}`, headers })
        const b = req({ url: `http://h2/p?${query([...params].reverse())}`, headers: rotate(headers).map(([n, v]) => [n.toUpperCase(), v]) })
        assert.equal(inputHash(a), inputHash(b))
      }), { numRuns: 300 })
    })

    it('rejects a malformed request with INVALID_FIELD', () => {
      assert.equal(codeOf(() => inputHash(req({ method: 'GE T' }))), 'INVALID_FIELD')
      assert.equal(codeOf(() => inputHash(req({ url: '/relative' }))), 'INVALID_FIELD')
      assert.equal(codeOf(() => inputHash(req({ url: 'ftp://h/x' }))), 'INVALID_FIELD')
      assert.equal(codeOf(() => inputHash(req({ headers: [['a']] as unknown as Array<[string, string]> }))), 'INVALID_FIELD')
      assert.equal(codeOf(() => inputHash(req({ body: 'x' as unknown as Uint8Array }))), 'INVALID_FIELD')
    })

    it('rejects lone surrogates in headers so distinct values cannot collide', () => {
      assert.equal(codeOf(() => inputHash(req({ headers: [['accept', '\ud800']] }))), 'INVALID_FIELD')
    })

    it('never throws anything but a ProtocolError on arbitrary input (property)', () => {
      fc.assert(fc.property(
        fc.oneof(fc.string(), fc.constantFrom('GET', 'post')),
        fc.oneof(fc.string(), fc.webUrl({ withQueryParameters: true }), fc.string({ unit: 'binary' }).map(s => `http://h/${s}`)),
        fc.oneof(fc.array(fc.tuple(fc.string({ unit: 'binary' }), fc.string({ unit: 'binary' }))), fc.anything()),
        fc.oneof(fc.uint8Array({ maxLength: 8 }), fc.anything()),
        (method, url, headers, body) => {
          try {
            inputHash({ method, url, headers, body } as WireRequest)
          } catch (err) {
            assert.ok(err instanceof ProtocolError, String(err))
          }
        }
      ), { numRuns: 1000 })
    })

    it('encodes the documented layout', () => {
      const bytes = canonicalRequest({ method: 'get', url: 'http://h/a?x=1', headers: [['Accept', ' */* ']], body: Uint8Array.of(9) })
      const field = (s: string): string => `${s.length.toString(16).padStart(8, '0')}${Buffer.from(s).toString('hex')}`
      const expected = '0x' +
        field('peerhost-request-v1') + field('GET') + field('/a') +
        '00000001' + field('x') + field('1') +
        '00000001' + field('accept') + field('*/*') +
        '00000001' + '09'
      assert.equal(bytesToHex(bytes), expected)
    })
  })

  describe('outputHash', () => {
    const base = outputHash({ response: res() })

    it('ignores header order, name case, date and x-peerhost-* headers', () => {
      const other = res({ headers: [['X-A', '1'], ['Date', 'Tue, 24 Nov 2026 01:00:00 GMT'], ['x-peerhost-worker', 'w'], ['Content-Type', 'text/plain']] })
      assert.equal(outputHash({ response: other }), base)
    })

    it('changes with the status, a header or a body byte', () => {
      assert.notEqual(outputHash({ response: res({ status: 201 }) }), base)
      assert.notEqual(outputHash({ response: res({ headers: [['content-type', 'text/html'], ['x-a', '1']] }) }), base)
      assert.notEqual(outputHash({ response: res({ body: enc.encode('ok!') }) }), base)
    })

    it('hashes an error by its code only', () => {
      const a = outputHash({ error: { code: 'FUNCTION_ERROR', message: 'one', details: { a: 1 } } })
      assert.equal(outputHash({ error: { code: 'FUNCTION_ERROR', message: 'two' } }), a)
      assert.notEqual(outputHash({ error: { code: 'LIMIT_TIMEOUT', message: 'one' } }), a)
      assert.equal(a, keccak256(canonicalError('FUNCTION_ERROR')))
      assert.notEqual(a, base)
    })

    it('is the keccak256 of the canonical response', () => {
      assert.equal(base, keccak256(canonicalResponse(res())))
    })

    it('never throws anything but a ProtocolError on arbitrary input (property)', () => {
      fc.assert(fc.property(fc.anything(), fc.boolean(), (x, asError) => {
        try {
          outputHash((asError ? { error: x } : { response: x }) as { response: WireResponse })
        } catch (err) {
          assert.ok(err instanceof ProtocolError, String(err))
        }
      }), { numRuns: 1000 })
    })

    it('rejects an unknown error code or a bad status with INVALID_FIELD', () => {
      assert.equal(codeOf(() => outputHash({ error: { code: 'NOPE' as 'INTERNAL', message: 'x' } })), 'INVALID_FIELD')
      assert.equal(codeOf(() => outputHash({ response: res({ status: 99 }) })), 'INVALID_FIELD')
    })
  })
})
