/**
 * WebSocket session frames (session-open, ws, ws-close, ticket, segment, segment-end, session-end) and the transcript hash.
 */
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { encodeAbiParameters } from 'viem'
import { atFee, atSegment, bodyHasher, decodeMessage, encodeMessage, keccak256, LIMITS, PROTOCOL_VERSION, ProtocolError, segmentJobId, sessionFeeCap, sessionOwed, sessionPriceFits, streamOutputHash, ticketOf, transcript, transcriptOutputHash, validateMessage } from '#protocol'
import { job } from './fixtures.ts'

const rejects = (x: unknown, field: RegExp): void => {
  assert.throws(() => validateMessage(x), (err: unknown) => err instanceof ProtocolError && field.test(err.message))
}

describe('protocol: session frames', () => {
  it('round-trips a job with session: true and refuses any other session value', () => {
    const j = { ...job(), session: true as const }
    assert.equal((decodeMessage(encodeMessage(j)) as any).session, true)
    rejects({ ...job(), session: false }, /job\.session/)
    rejects({ ...job(), session: 1 }, /job\.session/)
  })

  it('bounds ws messages to LIMITS.maxWsMessageBytes and requires the binary flag', () => {
    const ok = { v: PROTOCOL_VERSION, type: 'ws', binary: true, data: new Uint8Array(LIMITS.maxWsMessageBytes) }
    assert.equal((decodeMessage(encodeMessage(ok as any)) as any).data.byteLength, LIMITS.maxWsMessageBytes)
    rejects({ ...ok, data: new Uint8Array(LIMITS.maxWsMessageBytes + 1) }, /ws\.data/)
    rejects({ v: PROTOCOL_VERSION, type: 'ws', data: new Uint8Array(1) }, /ws/)
    rejects({ v: PROTOCOL_VERSION, type: 'ws', binary: false, data: 'text' }, /ws\.data/)
  })

  it('accepts only close codes that may be sent, and reasons of at most 123 bytes', () => {
    const close = (code: number, reason = ''): unknown => ({ v: PROTOCOL_VERSION, type: 'ws-close', code, reason })
    for (const code of [1000, 1001, 1009, 1011, 1012, 3000, 4408, 4999]) validateMessage(close(code))
    for (const code of [999, 1004, 1005, 1006, 1015, 2000, 5000, 1000.5]) rejects(close(code), /ws-close\.code/)
    rejects(close(1000, 'é'.repeat(62)), /ws-close\.reason/)
    // the gateway's count of delivered messages: a whole number ≥ 0, or absent
    assert.equal((validateMessage({ ...close(1000) as object, delivered: 3 }) as { delivered?: number }).delivered, 3)
    for (const delivered of [-1, 1.5, '3', null, 2 ** 53]) rejects({ ...close(1000) as object, delivered }, /ws-close\.delivered/)
  })

  it('refuses a session-end with a malformed transcript', () => {
    const end = {
      v: PROTOCOL_VERSION,
      type: 'session-end',
      jobId: `0x${'ab'.repeat(32)}`,
      attempt: 1,
      transcript: { inHash: `0x${'11'.repeat(32)}`, outHash: `0x${'22'.repeat(32)}`, messagesIn: 1, messagesOut: 1, bytesIn: 1, bytesOut: 1 },
      outputHash: `0x${'33'.repeat(32)}`,
      receiptSig: job().ticketSig,
      logs: '',
      logsTruncated: false
    }
    validateMessage(end)
    rejects({ ...end, transcript: { ...end.transcript, messagesIn: -1 } }, /transcript\.messagesIn/)
    rejects({ ...end, transcript: { ...end.transcript, extra: 1 } }, /transcript/)
    rejects({ ...end, transcript: { ...end.transcript, inHash: '0x11' } }, /transcript\.inHash/)
  })
})

describe('protocol: cumulative session tickets', () => {
  const ticket = { v: PROTOCOL_VERSION, type: 'ticket', jobId: `0x${'ab'.repeat(32)}`, attempt: 1, fee: '1000', ticketSig: job().ticketSig }

  it('round-trips a ticket frame and refuses a bad fee, signature, attempt or extra field', () => {
    assert.deepEqual(decodeMessage(encodeMessage(ticket as any)), ticket)
    rejects({ ...ticket, fee: '-1' }, /ticket\.fee: expected a uint256/)
    rejects({ ...ticket, fee: '01' }, /ticket\.fee/)
    rejects({ ...ticket, fee: 1000 }, /ticket\.fee/)
    rejects({ ...ticket, fee: (1n << 256n).toString() }, /ticket\.fee/)
    rejects({ ...ticket, ticketSig: '0x12' }, /ticket\.ticketSig/)
    rejects({ ...ticket, attempt: 0 }, /ticket\.attempt/)
    rejects({ ...ticket, extra: 1 }, /ticket\."extra": unexpected field/)
    const { fee: _fee, ...noFee } = ticket
    rejects(noFee, /ticket\.fee/)
  })

  it('carries an optional fee on session-end, in the type\'s key order', () => {
    const end = { v: PROTOCOL_VERSION, type: 'session-end', jobId: ticket.jobId, attempt: 1, transcript: { inHash: `0x${'11'.repeat(32)}`, outHash: `0x${'22'.repeat(32)}`, messagesIn: 0, messagesOut: 0, bytesIn: 0, bytesOut: 0 }, outputHash: `0x${'33'.repeat(32)}`, receiptSig: job().ticketSig, logs: '', logsTruncated: false }
    const a = validateMessage({ ...end, fee: '5' })
    const b = validateMessage({ fee: '5', ...end })
    assert.deepEqual(Object.keys(a), Object.keys(b))
    assert.equal((a as any).fee, '5')
    rejects({ ...end, fee: 'x' }, /session-end\.fee/)
  })

  it('validates a worker\'s session price in adverts', async () => {
    const { advert } = await import('./fixtures.ts')
    validateMessage({ ...advert(), sessionPrice: { perMessage: '0', perMinute: '0' } })
    rejects({ ...advert(), sessionPrice: { perMessage: '1' } }, /advert\.sessionPrice\.perMinute/)
    rejects({ ...advert(), sessionPrice: { perMessage: '1', perMinute: '-1' } }, /advert\.sessionPrice\.perMinute/)
    rejects({ ...advert(), sessionPrice: '1' }, /advert\.sessionPrice/)
  })

  it('meters what a session owes and caps it per billing unit of maxFee', () => {
    const price = { perMessage: '3', perMinute: '600' }
    assert.equal(sessionOwed(10n, price, 0, 0), 10n)
    assert.equal(sessionOwed(10n, price, 100, 0), 310n)
    // per minute accrues per millisecond, rounded down
    assert.equal(sessionOwed(10n, price, 0, 30_000), 310n)
    assert.equal(sessionOwed(10n, price, 0, 99), 10n)
    assert.equal(sessionFeeCap(1000n, 0, 0), 1000n)
    assert.equal(sessionFeeCap(1000n, 1, 1), 3000n)
    assert.equal(sessionFeeCap(1000n, 100, 60_000), 3000n)
    assert.equal(sessionFeeCap(1000n, 101, 60_001), 5000n)
    assert.equal(sessionPriceFits(300n, 10n, price), false)
    assert.equal(sessionPriceFits(600n, 10n, price), true)
    assert.equal(sessionPriceFits(600n, 601n, price), false)
    assert.equal(sessionPriceFits(0n, 0n, undefined), true)
  })

  it('signs a cumulative ticket as the opening ticket with only the fee changed', () => {
    const j = job()
    const t = ticketOf(atFee(j, '12345'))
    assert.deepEqual({ ...t, fee: 0n }, { ...ticketOf(j), fee: 0n })
    assert.equal(t.fee, 12345n)
    assert.equal(j.ticket.fee, job().ticket.fee)
  })
})

describe('protocol: transcript hash', () => {
  it('depends on every message, its direction, its kind and its order within a direction', () => {
    const of = (steps: Array<['in' | 'out', boolean, string]>): string => {
      const t = transcript()
      for (const [dir, binary, text] of steps) t.add(dir, binary, new TextEncoder().encode(text))
      return transcriptOutputHash(t.summary())
    }
    const base = of([['in', false, 'a'], ['out', false, 'b'], ['in', true, 'c']])
    // the interleaving of the two directions does not matter (each side sees it differently)
    assert.equal(of([['in', false, 'a'], ['in', true, 'c'], ['out', false, 'b']]), base)
    assert.notEqual(of([['in', true, 'c'], ['in', false, 'a'], ['out', false, 'b']]), base, 'order within a direction')
    assert.notEqual(of([['in', false, 'a'], ['out', false, 'b'], ['in', false, 'c']]), base, 'text vs binary')
    assert.notEqual(of([['in', false, 'a'], ['in', false, 'b'], ['in', true, 'c']]), base, 'direction')
    assert.notEqual(of([['in', false, 'a'], ['out', false, 'b']]), base, 'a dropped message')
    assert.notEqual(of([['in', false, 'a'], ['out', false, 'b'], ['in', true, 'd']]), base, 'a changed message')
  })

  it('counts messages and bytes each way', () => {
    const t = transcript()
    t.add('in', false, new Uint8Array(3))
    t.add('out', true, new Uint8Array(5))
    t.add('out', true, new Uint8Array(0))
    const s = t.summary()
    assert.deepEqual([s.messagesIn, s.bytesIn, s.messagesOut, s.bytesOut], [1, 3, 2, 5])
  })

  it('rewinds the function → client chain to what was delivered, within the kept states only', () => {
    const msgs = ['a', 'bb', 'ccc', 'dddd', 'eeeee'].map(m => new TextEncoder().encode(m))
    const upTo = (n: number): ReturnType<ReturnType<typeof transcript>['summary']> => {
      const t = transcript()
      t.add('in', false, msgs[0])
      for (const m of msgs.slice(0, n)) t.add('out', false, m)
      return t.summary()
    }
    const t = transcript({ rewindable: 3 })
    t.add('in', false, msgs[0])
    for (const m of msgs) t.add('out', false, m)
    assert.equal(t.rewindOut(6), false, 'more than were sent')
    assert.equal(t.rewindOut(1), false, 'further back than the 3 kept states')
    assert.deepEqual(t.summary(), upTo(5), 'a refused rewind changes nothing')
    assert.equal(t.rewindOut(5), true)
    assert.equal(t.rewindOut(3), true)
    assert.deepEqual(t.summary(), upTo(3))
    // and it goes on from there as if the rest had never been sent
    t.add('out', false, msgs[3])
    assert.deepEqual(t.summary(), upTo(4))
    assert.equal(transcript().rewindOut(0), true)
    assert.equal(transcript({ rewindable: 0 }).rewindOut(-1), false)
  })
})

describe('protocol: streamed body frames and the stream receipt hash', () => {
  it('bounds stream-chunk to LIMITS.maxStreamChunkBytes and stream-end bytes to LIMITS.maxStreamBytes', () => {
    const chunk = { v: PROTOCOL_VERSION, type: 'stream-chunk', data: new Uint8Array(LIMITS.maxStreamChunkBytes) }
    assert.equal((decodeMessage(encodeMessage(chunk as any)) as any).data.byteLength, LIMITS.maxStreamChunkBytes)
    rejects({ ...chunk, data: new Uint8Array(LIMITS.maxStreamChunkBytes + 1) }, /stream-chunk\.data/)
    const end = {
      v: PROTOCOL_VERSION, type: 'stream-end', jobId: job().jobId, attempt: 1, bytes: 9, bodyHash: `0x${'33'.repeat(32)}`,
      outputHash: `0x${'44'.repeat(32)}`, receiptSig: `0x${'11'.repeat(64)}1b`, logs: '', logsTruncated: false, timings: { queueMs: 0, execMs: 0, sandboxMs: 0 }
    }
    rejects({ ...end, bytes: LIMITS.maxStreamBytes + 1 }, /stream-end\.bytes/)
    rejects({ v: PROTOCOL_VERSION, type: 'stream-head', jobId: job().jobId, attempt: 1, status: 101, headers: [] }, /stream-head\.status/)
  })

  it('hashes a body the same however it was chunked', () => {
    const body = new Uint8Array(1000).map((_, i) => i % 256)
    const whole = bodyHasher()
    whole.add(body)
    const pieces = bodyHasher()
    for (let i = 0; i < body.length; i += 7) pieces.add(body.subarray(i, i + 7))
    assert.equal(pieces.digest(), whole.digest())
    assert.equal(pieces.bytes, 1000)
    assert.equal(whole.digest(), `0x${createHash('sha256').update(body).digest('hex')}`)
  })

  it('binds status, body hash, byte count and error, and never equals a session\'s hash', () => {
    const s = { status: 200, bodyHash: `0x${'33'.repeat(32)}` as const, bytes: 9 }
    const h = streamOutputHash(s)
    const others = [streamOutputHash({ ...s, status: 201 }), streamOutputHash({ ...s, bytes: 10 }), streamOutputHash({ ...s, bodyHash: `0x${'34'.repeat(32)}` }), streamOutputHash({ ...s, error: 'LIMIT_RESPONSE_SIZE' })]
    assert.equal(new Set([h, ...others]).size, 5)
    assert.notEqual(h, transcriptOutputHash({ inHash: s.bodyHash, outHash: s.bodyHash, messagesIn: 200, messagesOut: 9, bytesIn: 0, bytesOut: 0 }))
    // golden value: a change to the encoding changes every stream receipt
    assert.equal(h, '0x5c09186db572b62b5b0adfa4203cdd17f4af9c5e66bc5bf6fc2832906713c674')
  })
})

describe('protocol: session segments (sessions that outlive their epoch)', () => {
  const jobId = `0x${'ab'.repeat(32)}` as const
  const sig = job().ticketSig
  const segment = { v: PROTOCOL_VERSION, type: 'segment', jobId, attempt: 1, segment: 1, closeFee: '1040', closeSig: sig, segmentJobId: segmentJobId(jobId, 1), epoch: '11', fee: '0', ticketSig: sig }
  const summary = { inHash: `0x${'11'.repeat(32)}`, outHash: `0x${'22'.repeat(32)}`, messagesIn: 2, messagesOut: 2, bytesIn: 2, bytesOut: 10 }
  const end = { v: PROTOCOL_VERSION, type: 'segment-end', jobId, attempt: 1, segment: 0, fee: '1040', transcript: summary, outputHash: `0x${'33'.repeat(32)}`, receiptSig: sig }

  it('derives a segment\'s job id as keccak256(abi.encode(jobId, k)), segment 0 being the session\'s own', () => {
    assert.equal(segmentJobId(jobId, 0), jobId)
    assert.equal(segmentJobId(jobId, 1), keccak256(encodeAbiParameters([{ type: 'bytes32' }, { type: 'uint256' }], [jobId, 1n])))
    assert.notEqual(segmentJobId(jobId, 1), segmentJobId(jobId, 2))
    const j = job()
    const t = ticketOf(atSegment(j, segmentJobId(j.jobId, 2), '9', '7'))
    assert.deepEqual([t.jobId, t.epoch, t.fee, t.deadline, t.jobHash], [segmentJobId(j.jobId, 2), 9n, 7n, ticketOf(j).deadline, ticketOf(j).jobHash])
  })

  it('bounds and validates a gateway\'s segment frame: every field, no extra one', () => {
    assert.deepEqual(decodeMessage(encodeMessage(segment as any)), segment)
    rejects({ ...segment, segment: 0 }, /segment\.segment/)
    rejects({ ...segment, segment: LIMITS.maxSessionSegments + 1 }, /segment\.segment/)
    rejects({ ...segment, segment: 1.5 }, /segment\.segment/)
    rejects({ ...segment, epoch: (1n << 63n).toString() }, /segment\.epoch/)
    rejects({ ...segment, closeFee: '-1' }, /segment\.closeFee/)
    rejects({ ...segment, fee: (1n << 256n).toString() }, /segment\.fee/)
    rejects({ ...segment, segmentJobId: '0x12' }, /segment\.segmentJobId/)
    rejects({ ...segment, closeSig: '0x12' }, /segment\.closeSig/)
    rejects({ ...segment, ticketSig: 7 }, /segment\.ticketSig/)
    rejects({ ...segment, attempt: 0 }, /segment\.attempt/)
    rejects({ ...segment, extra: 1 }, /segment\."extra": unexpected field/)
    const { closeFee: _c, ...noClose } = segment
    rejects(noClose, /segment\.closeFee/)
  })

  it('validates a worker\'s segment-end and a session-end naming its segment', () => {
    assert.deepEqual(decodeMessage(encodeMessage(end as any)), end)
    rejects({ ...end, segment: -1 }, /segment-end\.segment/)
    rejects({ ...end, fee: 'x' }, /segment-end\.fee/)
    rejects({ ...end, transcript: { ...summary, messagesIn: -1 } }, /segment-end\.transcript\.messagesIn/)
    const sessionEnd = { v: PROTOCOL_VERSION, type: 'session-end', jobId, attempt: 1, transcript: summary, outputHash: `0x${'33'.repeat(32)}`, receiptSig: sig, logs: '', logsTruncated: false }
    assert.equal((validateMessage({ ...sessionEnd, fee: '5', segment: 3 }) as any).segment, 3)
    rejects({ ...sessionEnd, segment: 'x' }, /session-end\.segment/)
  })
})
