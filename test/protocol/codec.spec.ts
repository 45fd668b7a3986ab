import assert from 'node:assert/strict'
import fc from 'fast-check'
import { Packr } from 'msgpackr'
import {
  decodeMessage, decodeMessageOf, encodeMessage, LIMITS, PROTOCOL_ERROR_CODES, ProtocolError,
  validateMessage, type Message, type ProtocolErrorCode
} from '#protocol'
import { advert, bundleResponse, codeOf, fixtures, job, messageArb, result } from './fixtures.ts'

/** A msgpack encoder that does not validate, to build hostile frames. */
const raw = new Packr({ useRecords: false, moreTypes: false, variableMapSize: true })
const pack = (x: unknown): Uint8Array => raw.pack(x)


/** Decodes, accepting success or a ProtocolError — never any other exception. */
function decodeOrProtocolError (bytes: Uint8Array): Message | ProtocolErrorCode {
  try {
    return decodeMessage(bytes)
  } catch (err) {
    if (!(err instanceof ProtocolError)) throw new Error(`a non-ProtocolError escaped: ${String(err)}`, { cause: err })
    assert.ok(Object.hasOwn(PROTOCOL_ERROR_CODES, err.code))
    return err.code
  }
}

/** A map `{ a: <inner> }` around hand-written msgpack bytes. */
function inMap (inner: number[]): Uint8Array {
  return Uint8Array.from([0x81, 0xa1, 0x61, ...inner])
}

describe('protocol/codec', () => {
  describe('round trip', () => {
    for (const { name, message } of fixtures()) {
      it(`round-trips the ${name} fixture`, () => {
        const bytes = encodeMessage(message)
        assert.deepEqual(decodeMessage(bytes, { maxBytes: LIMITS.maxBundleBytes }), message)
        assert.deepEqual(decodeMessageOf(bytes, message.type), message)
      })
    }

    it('round-trips arbitrary valid messages (property)', () => {
      fc.assert(fc.property(messageArb, msg => {
        const bytes = encodeMessage(msg)
        const decoded = decodeMessage(bytes)
        assert.deepEqual(decoded, validateMessage(msg))
        assert.deepEqual(encodeMessage(decoded), bytes)
      }), { numRuns: 500 })
    })

    it('encodes equal messages to equal bytes whatever their key order', () => {
      const m = job()
      const shuffled = Object.fromEntries(Object.entries(m).reverse()) as unknown as Message
      assert.deepEqual(encodeMessage(shuffled), encodeMessage(m))
    })

    it('leaves the input frame untouched', () => {
      const bytes = encodeMessage(job())
      const snapshot = bytes.slice()
      decodeMessage(bytes)
      assert.deepEqual(Object.getOwnPropertyNames(bytes), Object.getOwnPropertyNames(snapshot))
      assert.deepEqual(bytes, snapshot)
    })

    it('returns plain objects and plain Uint8Array copies that do not alias the frame', () => {
      const bytes = encodeMessage(job())
      const copy = bytes.slice()
      const decoded = decodeMessageOf(copy, 'job')
      assert.equal(Object.getPrototypeOf(decoded), Object.prototype)
      assert.equal(Object.getPrototypeOf(decoded.request), Object.prototype)
      assert.equal(Object.getPrototypeOf(decoded.request.body), Uint8Array.prototype)
      assert.notEqual(decoded.request.body.buffer, copy.buffer)
      copy.fill(0)
      assert.deepEqual(decoded.request.body, job().request.body)
    })

    it('keeps earlier encodings intact after later ones', () => {
      const first = encodeMessage(advert())
      const snapshot = first.slice()
      for (let i = 0; i < 200; i++) encodeMessage(job())
      assert.deepEqual(first, snapshot)
    })
  })

  describe('encodeMessage', () => {
    it('rejects an invalid message with INVALID_FIELD', () => {
      assert.equal(codeOf(() => encodeMessage({ ...advert(), capacity: -1 })), 'INVALID_FIELD')
      assert.equal(codeOf(() => encodeMessage({ ...advert(), type: 'nope' } as unknown as Message)), 'INVALID_FIELD')
      assert.equal(codeOf(() => encodeMessage({ ...advert(), v: 2 })), 'INVALID_FIELD')
      assert.equal(codeOf(() => encodeMessage(null as unknown as Message)), 'INVALID_FIELD')
    })

    it('rejects a message that would exceed its frame limit', () => {
      const env: Record<string, string> = {}
      for (let i = 0; i < 200; i++) env[`K${i}`] = 'x'.repeat(LIMITS.maxStringBytes)
      assert.equal(codeOf(() => encodeMessage({ ...job(), env })), 'FRAME_TOO_LARGE')
    })
  })

  describe('decodeMessage rejects', () => {
    it('rejects a frame over maxBytes', () => {
      const bytes = encodeMessage(job())
      assert.equal(codeOf(() => decodeMessage(bytes, { maxBytes: bytes.byteLength - 1 })), 'FRAME_TOO_LARGE')
      assert.equal(codeOf(() => decodeMessage(new Uint8Array(LIMITS.maxFrameBytes + 1))), 'FRAME_TOO_LARGE')
    })

    it('rejects an advert over the advert limit by default', () => {
      const a = advert()
      const bytes = pack({ ...a, peerId: 'x'.repeat(LIMITS.maxAdvertBytes) })
      assert.equal(codeOf(() => decodeMessageOf(bytes, 'advert')), 'FRAME_TOO_LARGE')
    })

    it('accepts a bundle larger than maxBinaryBytes when the frame limit is raised for bundles', () => {
      const big = { ...bundleResponse(), bytes: new Uint8Array(LIMITS.maxBinaryBytes + 1) }
      const bytes = encodeMessage(big)
      assert.equal(codeOf(() => decodeMessage(bytes)), 'LIMIT_EXCEEDED')
      assert.equal(decodeMessage(bytes, { maxBytes: LIMITS.maxBundleBytes }).type, 'bundle')
      assert.equal(decodeMessageOf(bytes, 'bundle').type, 'bundle')
    })

    it('rejects a frame with a wrong version', () => {
      assert.equal(codeOf(() => decodeMessage(pack({ ...advert(), v: 2 }))), 'UNSUPPORTED_VERSION')
      assert.equal(codeOf(() => decodeMessage(pack({ ...advert(), v: 0 }))), 'UNSUPPORTED_VERSION')
      assert.equal(codeOf(() => decodeMessage(pack({ ...advert(), v: '1' }))), 'INVALID_FIELD')
    })

    it('rejects a frame with an unknown type', () => {
      assert.equal(codeOf(() => decodeMessage(pack({ v: 1, type: 'gossip' }))), 'UNKNOWN_TYPE')
      assert.equal(codeOf(() => decodeMessage(pack({ v: 1, type: 7 }))), 'INVALID_FIELD')
    })

    it('rejects a frame of another type than expected', () => {
      assert.equal(codeOf(() => decodeMessageOf(encodeMessage(advert()), 'job')), 'INVALID_FIELD')
      assert.equal(codeOf(() => decodeMessageOf(pack({ v: 1, type: 'gossip' }), 'job')), 'UNKNOWN_TYPE')
    })

    it('rejects extra keys', () => {
      assert.equal(codeOf(() => decodeMessage(pack({ ...advert(), extra: 1 }))), 'INVALID_FIELD')
      const j = job() as unknown as { request: Record<string, unknown> }
      j.request.extra = 'x'
      assert.equal(codeOf(() => decodeMessage(pack(j))), 'INVALID_FIELD')
    })

    it('rejects __proto__, constructor and prototype keys and leaves Object.prototype unpolluted', () => {
      const hostile = [
        JSON.parse('{"__proto__": {"polluted": true}, "v": 1, "type": "bundle-request"}'),
        { ...job(), env: JSON.parse('{"__proto__": {"polluted": true}}') },
        { ...advert(), constructor: { prototype: { polluted: true } } },
        { ...advert(), prototype: { polluted: true } }
      ]
      for (const h of hostile) {
        const bytes = pack(h)
        assert.equal(codeOf(() => decodeMessage(bytes)), 'MALFORMED')
      }
      assert.equal(({} as Record<string, unknown>).polluted, undefined)
      assert.equal(Object.prototype.hasOwnProperty.call(Object.prototype, 'polluted'), false)
    })

    it('rejects nesting deeper than maxDepth', () => {
      const deep = inMap([...new Array(LIMITS.maxDepth + 4).fill(0x91), 0xc0])
      assert.equal(codeOf(() => decodeMessage(deep)), 'LIMIT_EXCEEDED')
      const deepMaps = Uint8Array.from([...new Array(LIMITS.maxDepth + 4).fill([0x81, 0xa1, 0x61]).flat(), 0xc0])
      assert.equal(codeOf(() => decodeMessage(deepMaps)), 'LIMIT_EXCEEDED')
    })

    it('rejects huge declared lengths without allocating', () => {
      const before = process.memoryUsage().arrayBuffers
      // a bare 5-byte str32 header claiming 4 GiB
      assert.equal(codeOf(() => decodeMessage(Uint8Array.from([0xdb, 0xff, 0xff, 0xff, 0xff]))), 'MALFORMED')
      for (const header of [
        [0xdb, 0xff, 0xff, 0xff, 0xff], // str32
        [0xc6, 0xff, 0xff, 0xff, 0xff], // bin32
        [0xdd, 0xff, 0xff, 0xff, 0xff], // array32
        [0xdf, 0xff, 0xff, 0xff, 0xff] // map32
      ]) {
        assert.equal(codeOf(() => decodeMessage(inMap(header))), 'LIMIT_EXCEEDED')
      }
      // within the limits but beyond the bytes that remain
      assert.equal(codeOf(() => decodeMessage(inMap([0xc6, 0x00, 0x00, 0x10, 0x00]))), 'MALFORMED')
      assert.equal(codeOf(() => decodeMessage(Uint8Array.from([0xdf, 0xff, 0xff, 0xff, 0xff]))), 'LIMIT_EXCEEDED')
      assert.ok(process.memoryUsage().arrayBuffers - before < 1024 * 1024, 'rejection allocated memory')
    })

    it('rejects more values than maxValues', () => {
      // 20 arrays of 1024 nils: every length is within limits, the total is not
      const parts: number[] = [0xdc, 0x00, 20]
      for (let i = 0; i < 20; i++) parts.push(0xdc, 0x04, 0x00, ...new Array(1024).fill(0xc0))
      assert.equal(codeOf(() => decodeMessage(inMap(parts))), 'LIMIT_EXCEEDED')
    })

    it('rejects malformed msgpack', () => {
      const good = encodeMessage(advert())
      const cases: Array<[string, Uint8Array]> = [
        ['empty', new Uint8Array(0)],
        ['not a map', pack([1, 2, 3])],
        ['trailing bytes', Uint8Array.from([...good, 0xc0])],
        ['extension type', inMap([0xd4, 0x01, 0x00])],
        ['timestamp extension', inMap([0xd6, 0xff, 0, 0, 0, 0])],
        ['never-used 0xc1', inMap([0xc1])],
        ['non-string map key', Uint8Array.from([0x81, 0x01, 0xc0])],
        ['duplicate keys', Uint8Array.from([0x82, 0xa1, 0x76, 0x01, 0xa1, 0x76, 0x01])],
        ['invalid UTF-8', inMap([0xa2, 0xc3, 0x28])],
        ['UTF-8 surrogate', inMap([0xa3, 0xed, 0xa0, 0x80])],
        ['overlong UTF-8', inMap([0xa2, 0xc0, 0xaf])]
      ]
      for (const [name, bytes] of cases) assert.equal(codeOf(() => decodeMessage(bytes)), 'MALFORMED', name)
    })

    it('rejects a string longer than maxStringBytes', () => {
      const bytes = pack({ ...result(), logs: 'x'.repeat(LIMITS.maxStringBytes + 1) })
      assert.equal(codeOf(() => decodeMessage(bytes)), 'LIMIT_EXCEEDED')
    })

    it('rejects non-binary input', () => {
      assert.equal(codeOf(() => decodeMessage('hello' as unknown as Uint8Array)), 'MALFORMED')
    })

    it('rejects 64-bit integers beyond the safe range', () => {
      const bytes = encodeMessage(advert())
      const hostile = pack({ ...advert(), seq: 2n ** 63n })
      assert.ok(bytes.byteLength > 0)
      assert.equal(codeOf(() => decodeMessage(hostile)), 'INVALID_FIELD')
    })
  })

  describe('hostile bytes (properties)', () => {
    for (const { name, message } of fixtures()) {
      it(`rejects every truncation of the ${name} fixture frame with a ProtocolError`, () => {
        const bytes = encodeMessage(message)
        for (let n = 0; n < bytes.byteLength; n++) {
          const code = codeOf(() => decodeMessage(bytes.subarray(0, n)))
          assert.ok(code === 'MALFORMED', `prefix of ${n} bytes gave ${code}`)
        }
      })
    }

    it('rejects or accepts byte flips of valid frames, never throwing anything but a ProtocolError', () => {
      const frames = fixtures().map(f => encodeMessage(f.message))
      fc.assert(fc.property(
        fc.constantFrom(...frames), fc.array(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 })), { minLength: 1, maxLength: 4 }),
        (frame, flips) => {
          const bytes = frame.slice()
          for (const [i, x] of flips) bytes[i % bytes.byteLength] ^= x
          const out = decodeOrProtocolError(bytes)
          if (typeof out !== 'string') assert.deepEqual(decodeMessage(encodeMessage(out)), out)
        }
      ), { numRuns: 3000 })
    })

    it('never throws anything but a ProtocolError on random bytes', () => {
      fc.assert(fc.property(
        fc.oneof(
          fc.uint8Array({ maxLength: 300 }),
          fc.uint8Array({ maxLength: 300 }).map(b => Uint8Array.from([0x8a, ...b])),
          fc.uint8Array({ maxLength: 300 }).map(b => Uint8Array.from([0xde, 0x00, 0x0b, ...b]))
        ),
        bytes => { decodeOrProtocolError(bytes) }
      ), { numRuns: 3000 })
    })

    it('never throws anything but a ProtocolError on arbitrary msgpack values', () => {
      fc.assert(fc.property(fc.anything({ withTypedArray: true, withBigInt: true, withMap: true, withSet: true, withDate: true, withNullPrototype: true }), value => {
        let bytes: Uint8Array
        try {
          bytes = pack(value)
        } catch {
          return
        }
        decodeOrProtocolError(bytes)
      }), { numRuns: 2000 })
    })

    it('never throws anything but a ProtocolError on mutated valid messages', () => {
      fc.assert(fc.property(messageArb, fc.anything(), fc.nat(), (msg, junk, k) => {
        const obj = { ...msg } as Record<string, unknown>
        const keys = Object.keys(obj)
        obj[keys[k % keys.length]] = junk
        let bytes: Uint8Array
        try {
          bytes = pack(obj)
        } catch {
          return
        }
        decodeOrProtocolError(bytes)
      }), { numRuns: 1000 })
    })
  })
})
