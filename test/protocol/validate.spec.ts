import assert from 'node:assert/strict'
import {
  assertAdvertFresh, FUNCTION_OPTION_BOUNDS, LIMITS, ProtocolError, validateMessage, validateMessageOf, type Message
} from '#protocol'
import { advert, BUNDLE_CID, errorMessage, job, result, SIG_1 } from './fixtures.ts'

function rejects (x: unknown, code: string, messagePart?: string): void {
  try {
    validateMessage(x)
  } catch (err) {
    assert.ok(err instanceof ProtocolError, `expected a ProtocolError, got ${String(err)}`)
    assert.equal(err.code, code, err.message)
    if (messagePart !== undefined) assert.ok(err.message.includes(messagePart), `"${err.message}" does not include "${messagePart}"`)
    return
  }
  assert.fail('the message was accepted')
}

/** A job with one field changed through `edit`. */
function jobWith (edit: (j: any) => void): unknown {
  const j = job()
  edit(j)
  return j
}

describe('protocol/validate', () => {
  it('returns a normalized copy in definition order without undefined fields', () => {
    const r = { ...result(), error: undefined } as Message
    const out = validateMessage(r)
    assert.notEqual(out, r)
    assert.equal(Object.hasOwn(out, 'error'), false)
    assert.deepEqual(Object.keys(validateMessage(Object.fromEntries(Object.entries(job()).reverse()))), Object.keys(job()))
  })

  it('names the field and what was expected', () => {
    rejects(jobWith(j => { j.request.headers[2][0] = 'X-Custom' }), 'INVALID_FIELD', 'job.request.headers[2][0]: expected a lower-case header name')
    rejects(jobWith(j => { j.fn.bundleCid = 'nope' }), 'INVALID_FIELD', 'job.fn.bundleCid: expected a CIDv1')
  })

  it('rejects a missing field', () => {
    rejects(jobWith(j => { delete j.inputHash }), 'INVALID_FIELD', 'job.inputHash')
  })

  it('rejects unknown extra keys at every level', () => {
    rejects({ ...advert(), extra: 1 }, 'INVALID_FIELD', 'advert."extra": unexpected field')
    rejects(jobWith(j => { j.fn.extra = 1 }), 'INVALID_FIELD', 'job.fn."extra"')
    rejects(jobWith(j => { j.ticket.extra = 1 }), 'INVALID_FIELD', 'job.ticket."extra"')
  })

  it('rejects a wrong version and an unknown type', () => {
    rejects({ ...advert(), v: 2 }, 'UNSUPPORTED_VERSION')
    rejects({ ...advert(), type: 'nope' }, 'UNKNOWN_TYPE')
    rejects({ ...advert(), type: undefined }, 'INVALID_FIELD')
    rejects([], 'INVALID_FIELD')
    rejects(null, 'INVALID_FIELD')
  })

  it('rejects a message of another type than asked', () => {
    assert.throws(() => validateMessageOf(advert(), 'job'), (err: unknown) => err instanceof ProtocolError && err.code === 'INVALID_FIELD')
  })

  it('rejects objects that are not plain', () => {
    class Fake { v = 1; type = 'bundle-request'; cid = BUNDLE_CID }
    rejects(new Fake(), 'INVALID_FIELD')
  })

  it('checks hex fields exactly', () => {
    rejects(jobWith(j => { j.jobId = j.jobId.slice(0, 64) }), 'INVALID_FIELD', 'job.jobId')
    rejects(jobWith(j => { j.fn.id = j.fn.id.toUpperCase().replace('0X', '0x') }), 'INVALID_FIELD', 'job.fn.id')
    rejects(jobWith(j => { j.inputHash = 'deadbeef' }), 'INVALID_FIELD', 'job.inputHash')
    rejects(jobWith(j => { j.ticket.worker = '0x1234' }), 'INVALID_FIELD', 'job.ticket.worker')
    rejects(jobWith(j => { j.ticket.worker = '0xF39fd6e51aad88F6F4ce6aB8827279cffFb92266' }), 'INVALID_FIELD', 'checksum')
    assert.ok(validateMessage(jobWith(j => { j.ticket.worker = j.ticket.worker.toLowerCase() })))
  })

  it('accepts only 65-byte low-s signatures with v 27 or 28', () => {
    rejects(jobWith(j => { j.ticketSig = SIG_1.slice(0, -2) }), 'INVALID_FIELD', 'job.ticketSig')
    rejects(jobWith(j => { j.ticketSig = `${SIG_1.slice(0, -2)}00` }), 'INVALID_FIELD', 'job.ticketSig')
    // s replaced by n - s (its malleable twin) is high
    const n = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n
    const s = BigInt(`0x${SIG_1.slice(66, 130)}`)
    rejects(jobWith(j => { j.ticketSig = `${SIG_1.slice(0, 66)}${(n - s).toString(16).padStart(64, '0')}1c` }), 'INVALID_FIELD', 'job.ticketSig')
  })

  it('checks numbers are safe integers in range', () => {
    rejects({ ...result(), response: { ...result().response, status: 99 } }, 'INVALID_FIELD', 'result.response.status')
    rejects({ ...result(), response: { ...result().response, status: 600 } }, 'INVALID_FIELD', 'result.response.status')
    rejects(jobWith(j => { j.attempt = 0 }), 'INVALID_FIELD', 'job.attempt')
    rejects(jobWith(j => { j.attempt = LIMITS.maxAttempts + 1 }), 'INVALID_FIELD', 'job.attempt')
    rejects(jobWith(j => { j.attempt = 1.5 }), 'INVALID_FIELD', 'job.attempt')
    rejects(jobWith(j => { j.deadline = 2 ** 53 }), 'INVALID_FIELD', 'job.deadline')
    rejects({ ...advert(), capacity: -1 }, 'INVALID_FIELD', 'advert.capacity')
    rejects({ ...advert(), load: LIMITS.maxWorkerCapacity + 1 }, 'INVALID_FIELD', 'advert.load')
    rejects({ ...advert(), ts: Number.NaN }, 'INVALID_FIELD', 'advert.ts')
    rejects({ ...result(), timings: { ...result().timings, execMs: -1 } }, 'INVALID_FIELD', 'result.timings.execMs')
    rejects({ ...result(), timings: { ...result().timings, execMs: Infinity } }, 'INVALID_FIELD', 'result.timings.execMs')
  })

  it('checks decimal ticket amounts', () => {
    rejects(jobWith(j => { j.ticket.fee = '01' }), 'INVALID_FIELD', 'job.ticket.fee')
    rejects(jobWith(j => { j.ticket.fee = (2n ** 256n).toString() }), 'INVALID_FIELD', 'job.ticket.fee')
    rejects(jobWith(j => { j.ticket.epoch = (2n ** 64n).toString() }), 'INVALID_FIELD', 'job.ticket.epoch')
    rejects(jobWith(j => { j.ticket.deadline = 5 }), 'INVALID_FIELD', 'job.ticket.deadline')
  })

  it('checks headers, methods and URLs', () => {
    rejects(jobWith(j => { j.request.headers[0][1] = 'a\r\nx-injected: 1' }), 'INVALID_FIELD', 'job.request.headers[0][1]')
    rejects(jobWith(j => { j.request.headers[0][1] = 'ā' }), 'INVALID_FIELD', 'job.request.headers[0][1]')
    rejects(jobWith(j => { j.request.headers[0] = ['a', 'b', 'c'] }), 'INVALID_FIELD', 'job.request.headers[0]')
    rejects(jobWith(j => { j.request.headers = new Array(LIMITS.maxHeaders + 1).fill(['a', 'b']) }), 'INVALID_FIELD', 'job.request.headers')
    rejects(jobWith(j => { j.request.method = 'GET /' }), 'INVALID_FIELD', 'job.request.method')
    rejects(jobWith(j => { j.request.url = '/relative' }), 'INVALID_FIELD', 'job.request.url')
    rejects(jobWith(j => { j.request.url = 'file:///etc/passwd' }), 'INVALID_FIELD', 'job.request.url')
    rejects(jobWith(j => { j.request.url = 'http://h/a b' }), 'INVALID_FIELD', 'job.request.url')
    rejects(jobWith(j => { j.request.body = 'text' }), 'INVALID_FIELD', 'job.request.body')
  })

  it('checks names, CIDs, env and options', () => {
    rejects(jobWith(j => { j.fn.project = 'Demo' }), 'INVALID_FIELD', 'job.fn.project')
    rejects(jobWith(j => { j.fn.name = '' }), 'INVALID_FIELD', 'job.fn.name')
    rejects(jobWith(j => { j.env = JSON.parse('{"__proto__": "x"}') }), 'INVALID_FIELD', 'job.env')
    rejects(jobWith(j => { j.env = { 'BAD-NAME': 'x' } }), 'INVALID_FIELD', 'job.env')
    rejects(jobWith(j => { j.env = { A: 1 } }), 'INVALID_FIELD', 'job.env."A"')
    rejects(jobWith(j => { j.secrets = { 'A B': 'x' } }), 'INVALID_FIELD', 'job.secrets')
    rejects(jobWith(j => { j.secrets = { A: 'x'.repeat(LIMITS.maxSecretBytes + 1) } }), 'INVALID_FIELD', 'job.secrets."A"')
    rejects(jobWith(j => { j.secrets = Object.fromEntries(Array.from({ length: LIMITS.maxSecrets + 1 }, (_, i) => [`S${i}`, 'x'])) }), 'INVALID_FIELD', 'job.secrets')
    rejects(jobWith(j => { j.secrets = { [`N${'x'.repeat(LIMITS.maxEnvNameBytes)}`]: 'x' } }), 'INVALID_FIELD', 'job.secrets')
    rejects(jobWith(j => { j.secrets = ['x'] }), 'INVALID_FIELD', 'job.secrets')
    rejects(jobWith(j => { j.options.isolation = 'none' }), 'INVALID_FIELD', 'job.options.isolation')
    rejects(jobWith(j => { j.options.network = ['http://example.com'] }), 'INVALID_FIELD', 'job.options.network[0]')
    rejects(jobWith(j => { j.options.timeoutMs = LIMITS.maxDeadlineMs + 1 }), 'INVALID_FIELD', 'job.options.timeoutMs')
    // the wire bound is the builder's bound: a gateway cannot ask a worker for 16 GiB (issue 9 item 4)
    rejects(jobWith(j => { j.options.memoryMb = FUNCTION_OPTION_BOUNDS.memoryMb.max + 1 }), 'INVALID_FIELD', 'job.options.memoryMb')
    rejects(jobWith(j => { j.options.memoryMb = 16 * 1024 }), 'INVALID_FIELD', 'job.options.memoryMb')
    rejects(jobWith(j => { j.options.network = new Array(FUNCTION_OPTION_BOUNDS.maxNetworkHosts + 1).fill('a.example') }), 'INVALID_FIELD', 'job.options.network')
    rejects(jobWith(j => { j.options.verify = 'single' }), 'INVALID_FIELD', 'job.options."verify"')
    rejects({ ...advert(), warm: new Array(LIMITS.maxWarmFunctions + 1).fill(BUNDLE_CID) }, 'INVALID_FIELD', 'advert.warm')
    rejects({ ...advert(), warm: [BUNDLE_CID.toUpperCase()] }, 'INVALID_FIELD', 'advert.warm[0]')
    rejects({ ...advert(), peerId: 'not a peer id' }, 'INVALID_FIELD', 'advert.peerId')
    rejects({ ...advert(), addrs: ['ip4/1.2.3.4'] }, 'INVALID_FIELD', 'advert.addrs[0]')
    rejects({ ...advert(), sig: new Uint8Array(63) }, 'INVALID_FIELD', 'advert.sig')
  })

  it('checks strings are well-formed and within limits', () => {
    rejects({ ...result(), logs: '\ud800' }, 'INVALID_FIELD', 'result.logs')
    rejects({ ...result(), logs: 'é'.repeat(LIMITS.maxLogBytes / 2 + 1) }, 'INVALID_FIELD', 'result.logs')
    assert.ok(validateMessage({ ...result(), logs: 'é'.repeat(LIMITS.maxLogBytes / 2) }))
  })

  it('checks wire errors and results', () => {
    rejects({ ...errorMessage(), error: { code: 'NOPE', message: 'x' } }, 'INVALID_FIELD', 'error.error.code')
    rejects({ ...errorMessage(), error: { code: 'INTERNAL', message: 'x'.repeat(LIMITS.maxErrorMessageBytes + 1) } }, 'INVALID_FIELD', 'error.error.message')
    rejects({ ...errorMessage(), error: { code: 'INTERNAL', message: 'x', details: { a: {} } } }, 'INVALID_FIELD', 'error.error.details')
    rejects({ ...result(), error: { code: 'INTERNAL', message: 'x' } }, 'INVALID_FIELD', 'exactly one of response and error')
    rejects({ ...result(), response: undefined }, 'INVALID_FIELD', 'exactly one of response and error')
    rejects({ ...result(), response: null }, 'INVALID_FIELD', 'result.response')
  })

  describe('assertAdvertFresh', () => {
    it('accepts a recent advert and rejects a stale or future one with STALE', () => {
      const now = 1_764_000_000_000
      assertAdvertFresh({ ts: now - 1000 }, now)
      for (const ts of [now - LIMITS.advertMaxAgeMs - 1, now + LIMITS.advertMaxFutureMs + 1]) {
        assert.throws(() => assertAdvertFresh({ ts }, now), (err: unknown) => err instanceof ProtocolError && err.code === 'STALE')
      }
    })
  })
})
