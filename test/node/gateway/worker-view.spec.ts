import assert from 'node:assert/strict'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { TopicValidatorResult, type Message } from '@libp2p/gossipsub'
import type { PrivateKey } from '@libp2p/interface'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { rawCid, advertSigningBytes, encodeMessage, LIMITS, PROTOCOL_VERSION, workersTopic, type WorkerAdvert } from '#protocol'
import { ADVERT_VERDICTS, workerView } from '#node'

async function signed (key: PrivateKey, patch: Partial<WorkerAdvert> = {}, signer: PrivateKey = key): Promise<Message> {
  const peerId = peerIdFromPrivateKey(key)
  const unsigned: Omit<WorkerAdvert, 'sig'> = {
    v: PROTOCOL_VERSION, type: 'advert', peerId: peerId.toString(), address: '0x70997970C51812dc3A010C7d01b50e0d17dc79C8',
    addrs: ['/ip4/127.0.0.1/tcp/4100'], capacity: 8, load: 0, warm: [], ts: Date.now(), seq: 1, ...patch
  }
  const data = encodeMessage({ ...unsigned, sig: await signer.sign(advertSigningBytes(unsigned)) })
  return { type: 'signed', from: peerId, key: key.publicKey, topic: workersTopic(), data, sequenceNumber: 1n, signature: new Uint8Array(64) }
}

describe('gateway worker view', () => {
  it('maps every advert check to a gossip verdict, rejecting forgeries and ignoring late ones', () => {
    assert.equal(ADVERT_VERDICTS.OK, TopicValidatorResult.Accept)
    for (const c of ['UNSIGNED', 'OVERSIZE', 'MALFORMED', 'PEER_MISMATCH', 'BAD_SIGNATURE', 'FUTURE'] as const) assert.equal(ADVERT_VERDICTS[c], TopicValidatorResult.Reject, c)
    for (const c of ['STALE', 'OLD_SEQUENCE', 'UNSTAKED'] as const) assert.equal(ADVERT_VERDICTS[c], TopicValidatorResult.Ignore, c)
  })

  it('accepts a signed advert and records the worker', async () => {
    const key = await generateKeyPair('Ed25519')
    const view = workerView()
    assert.equal(await view.validate(await signed(key)), 'OK')
    assert.equal(view.size(), 1)
    assert.equal(view.list()[0].peerId, peerIdFromPrivateKey(key).toString())
  })

  it('rejects an advert signed by another key, one naming another peer, and garbage', async () => {
    const key = await generateKeyPair('Ed25519')
    const other = await generateKeyPair('Ed25519')
    const view = workerView()
    assert.equal(await view.validate(await signed(key, {}, other)), 'BAD_SIGNATURE')
    assert.equal(await view.validate(await signed(key, { peerId: peerIdFromPrivateKey(other).toString() })), 'PEER_MISMATCH')
    const good = await signed(key)
    assert.equal(await view.validate({ ...good, data: Uint8Array.from([0xc1]) } as Message), 'MALFORMED')
    assert.equal(await view.validate({ ...good, data: new Uint8Array(LIMITS.maxAdvertBytes + 1) } as Message), 'OVERSIZE')
    assert.equal(await view.validate({ type: 'unsigned', topic: workersTopic(), data: good.data }), 'UNSIGNED')
    assert.equal(view.size(), 0)
  })

  it('signs the full flag: a worker that says it is full is not picked, and a relay cannot add or flip the flag', async () => {
    const key = await generateKeyPair('Ed25519')
    const view = workerView()
    const cid = rawCid(new TextEncoder().encode('b'))
    assert.equal(await view.validate(await signed(key, { seq: 1 })), 'OK')
    assert.equal(view.pick(cid, new Set())?.peerId, peerIdFromPrivateKey(key).toString())
    assert.equal(await view.validate(await signed(key, { seq: 2, full: true })), 'OK')
    assert.equal(view.pick(cid, new Set()), undefined, 'a full worker gets no job')
    assert.equal(view.isFull(view.list()[0]), true)
    // a relay that adds `full` to a genuine advert (to starve the worker), or removes it, breaks the signature
    const peerId = peerIdFromPrivateKey(key)
    const unsigned: Omit<WorkerAdvert, 'sig'> = {
      v: PROTOCOL_VERSION, type: 'advert', peerId: peerId.toString(), address: '0x70997970C51812dc3A010C7d01b50e0d17dc79C8',
      addrs: ['/ip4/127.0.0.1/tcp/4100'], capacity: 8, load: 0, warm: [], ts: Date.now(), seq: 3
    }
    const sig = await key.sign(advertSigningBytes(unsigned))
    const tampered = encodeMessage({ ...unsigned, full: true, sig })
    assert.equal(await view.validate({ type: 'signed', from: peerId, key: key.publicKey, topic: workersTopic(), data: tampered, sequenceNumber: 1n, signature: new Uint8Array(64) }), 'BAD_SIGNATURE')
    const sigFull = await key.sign(advertSigningBytes({ ...unsigned, full: true }))
    const stripped = encodeMessage({ ...unsigned, sig: sigFull })
    assert.equal(await view.validate({ type: 'signed', from: peerId, key: key.publicKey, topic: workersTopic(), data: stripped, sequenceNumber: 1n, signature: new Uint8Array(64) }), 'BAD_SIGNATURE')
    // its own later advert with room makes it pickable again
    assert.equal(await view.validate(await signed(key, { seq: 4 })), 'OK')
    assert.equal(view.pick(cid, new Set())?.peerId, peerId.toString())
  })

  it('ignores stale and replayed adverts and rejects ones from the future', async () => {
    const key = await generateKeyPair('Ed25519')
    const view = workerView()
    assert.equal(await view.validate(await signed(key, { ts: Date.now() - LIMITS.advertMaxAgeMs - 1_000 })), 'STALE')
    assert.equal(await view.validate(await signed(key, { ts: Date.now() + LIMITS.advertMaxFutureMs + 5_000 })), 'FUTURE')
    const first = await signed(key, { seq: 5 })
    assert.equal(await view.validate(first), 'OK')
    assert.equal(await view.validate(first), 'OLD_SEQUENCE')
  })

  it('picks the least loaded warm worker, skips tried ones, and forgets silent workers', async () => {
    let now = Date.now()
    const warm = rawCid(new TextEncoder().encode('warm bundle'))
    const view = workerView({ now: () => now, expiryMs: 5_000 })
    const [a, b, c] = await Promise.all([1, 2, 3].map(async () => await generateKeyPair('Ed25519')))
    await view.validate(await signed(a, { load: 6, ts: now }))
    await view.validate(await signed(b, { load: 1, ts: now, warm: [warm] }))
    await view.validate(await signed(c, { load: 1, ts: now }))
    const idB = peerIdFromPrivateKey(b).toString()
    const idC = peerIdFromPrivateKey(c).toString()
    assert.equal(view.pick(warm, new Set())?.peerId, idB)
    assert.equal(view.pick(warm, new Set([idB]))?.peerId, idC)
    // a failing worker drops behind
    view.begin(idB); view.end(idB, { ok: false })
    assert.equal(view.pick(warm, new Set())?.peerId, idC)
    now += 6_000
    assert.equal(view.size(), 0)
    assert.equal(view.pick(warm, new Set()), undefined)
  })
})

describe('gateway worker view admission', () => {
  it('ignores genuine adverts from workers the admission check refuses', async () => {
    const staked = await generateKeyPair('Ed25519')
    const unstaked = await generateKeyPair('Ed25519')
    const allowed = peerIdFromPrivateKey(staked).toString()
    const view = workerView({ admit: async advert => advert.peerId === allowed })
    assert.equal(await view.validate(await signed(staked)), 'OK')
    assert.equal(await view.validate(await signed(unstaked)), 'UNSTAKED')
    assert.deepEqual(view.list().map(w => w.peerId), [allowed])
  })
})
