import assert from 'node:assert/strict'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { TopicValidatorResult, type Message } from '@libp2p/gossipsub'
import type { PrivateKey } from '@libp2p/interface'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { rawCid, advertSigningBytes, encodeMessage, LIMITS, PROTOCOL_VERSION, workersTopic, type WorkerAdvert } from '#protocol'
import { ADVERT_VERDICTS, NODE_DEFAULTS, workerView } from '#node'

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

  it('picks a session\'s worker by session share, never one whose advertised session room is full, and counts its own sessions between adverts', async () => {
    const [a, b] = await Promise.all([generateKeyPair('Ed25519'), generateKeyPair('Ed25519')])
    const [ida, idb] = [a, b].map(k => peerIdFromPrivateKey(k).toString())
    const view = workerView()
    const cid = rawCid(new TextEncoder().encode('session-fn'))
    // a is busy with jobs but holds few sessions; b has idle job slots but its session room is full
    assert.equal(await view.validate(await signed(a, { seq: 1, load: 8, capacity: 8, sessions: 10, maxSessions: 256 })), 'OK')
    assert.equal(await view.validate(await signed(b, { seq: 1, load: 0, capacity: 8, sessions: 256, maxSessions: 256 })), 'OK')
    assert.equal(view.pickForSession(cid, new Set())?.peerId, ida, 'the worker with session room, whatever its job load')
    assert.equal(view.pickForSession(cid, new Set([ida])), undefined, 'a worker whose session room is full gets no session')
    assert.equal(view.pick(cid, new Set())?.peerId, idb, 'jobs still go by job load')
    // b frees room; this gateway then opens sessions there until its own count fills b's room
    assert.equal(await view.validate(await signed(b, { seq: 2, load: 0, capacity: 8, sessions: 0, maxSessions: 2 })), 'OK')
    assert.equal(view.pickForSession(cid, new Set([ida]))?.peerId, idb)
    view.sessionDelta(idb, 1)
    view.sessionDelta(idb, 1)
    assert.equal(view.pickForSession(cid, new Set([ida])), undefined, 'its own two sessions fill b before b adverts them')
    view.sessionDelta(idb, -1)
    assert.equal(view.pickForSession(cid, new Set([ida]))?.peerId, idb)
  })

  it('a worker that failed one session open takes a smaller share of a burst, not none of it; one that keeps failing is passed over', async () => {
    const keys = await Promise.all([0, 1, 2].map(async () => await generateKeyPair('Ed25519')))
    const ids = keys.map(k => peerIdFromPrivateKey(k).toString())
    const cid = rawCid(new TextEncoder().encode('session-burst'))
    const burst = async (failures: number): Promise<number[]> => {
      const view = workerView()
      for (const k of keys) assert.equal(await view.validate(await signed(k, { seq: 1, sessions: 0, maxSessions: 256, warm: [cid] })), 'OK')
      for (let i = 0; i < failures; i++) { view.begin(ids[2]); view.end(ids[2], { ok: false }) }
      const counts = [0, 0, 0]
      for (let i = 0; i < 150; i++) {
        const w = view.pickForSession(cid, new Set())
        assert.ok(w !== undefined)
        counts[ids.indexOf(w.peerId)]++
        view.sessionDelta(w.peerId, 1)
      }
      return counts
    }
    const once = await burst(1)
    // one failure is worth NODE_DEFAULTS.sessionFailureWeight of share (16 sessions at 256 room):
    // the failed worker trails the others by about that, it is not cut out (at weight 1 it got 0 here)
    assert.ok(once[2] >= 30 && once[2] <= 45, `one failure: ${once.join(', ')}`)
    assert.ok(Math.abs(once[0] - once[1]) <= 1, `the others split the rest: ${once.join(', ')}`)
    const keeps = await burst(12)
    assert.equal(keeps[2], 0, `twelve failures in a row: ${keeps.join(', ')}`)
  })

  it('an attempt the client abandoned says nothing about the worker: no failure is counted', async () => {
    const [a, b] = await Promise.all([generateKeyPair('Ed25519'), generateKeyPair('Ed25519')])
    const [ida, idb] = [a, b].map(k => peerIdFromPrivateKey(k).toString())
    const cid = rawCid(new TextEncoder().encode('abandoned'))
    const view = workerView()
    for (const k of [a, b]) assert.equal(await view.validate(await signed(k, { seq: 1, warm: [cid] })), 'OK')
    // five clients left while their jobs ran on a; one real failure on b
    for (let i = 0; i < 5; i++) { view.begin(ida); view.end(ida, { ok: false, abandoned: true }) }
    view.begin(idb); view.end(idb, { ok: false })
    for (let i = 0; i < 10; i++) assert.equal(view.pick(cid, new Set())?.peerId, ida, 'the worker without a real failure')
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

describe('gateway worker view: latency', () => {
  it('does not starve a worker whose first answer was slow (a cold sandbox): its estimate drifts back, and latency never outweighs a full load', async () => {
    let now = Date.now()
    const view = workerView({ now: () => now, expiryMs: 3_600_000 })
    const [a, b] = await Promise.all([1, 2].map(async () => await generateKeyPair('Ed25519')))
    await view.validate(await signed(a, { load: 0, ts: now, capacity: 4 }))
    await view.validate(await signed(b, { load: 0, ts: now, capacity: 4 }))
    const idA = peerIdFromPrivateKey(a).toString()
    const idB = peerIdFromPrivateKey(b).toString()
    view.begin(idA); view.end(idA, { ok: true, latencyMs: 900 })
    view.begin(idB); view.end(idB, { ok: true, latencyMs: 3 })
    assert.equal(view.pick('x', new Set())?.peerId, idB, 'right after, the fast one goes first')
    // B runs as many jobs as it has slots and A was slow once: capped, A's latency weighs less
    for (let i = 0; i < 4; i++) view.begin(idB)
    assert.equal(view.pick('x', new Set())?.peerId, idA)
    for (let i = 0; i < 4; i++) view.end(idB, { ok: true, latencyMs: 3 })
    // with one job on B, A's old slow answer still keeps it second
    view.begin(idB)
    assert.equal(view.pick('x', new Set())?.peerId, idB)
    // a minute with no sample for A: its estimate is back near the prior, and one job on B is
    // enough for A to take the next
    now += 60_000
    assert.equal(view.pick('x', new Set())?.peerId, idA)
    view.end(idB, { ok: true, latencyMs: 3 })
  })
})

describe('gateway worker view: a burst between adverts', () => {
  it('stops sending a worker jobs once this gateway alone has as many there as it can run', async () => {
    const view = workerView()
    const key = await generateKeyPair('Ed25519')
    await view.validate(await signed(key, { capacity: 2, load: 0 }))
    const id = peerIdFromPrivateKey(key).toString()
    // the advert still says load 0 and not full: only the gateway's own count knows better
    view.begin(id)
    assert.equal(view.pick('x', new Set())?.peerId, id)
    view.begin(id)
    assert.equal(view.isFull(view.get(id)!), true)
    assert.equal(view.pick('x', new Set()), undefined, 'a full worker is never picked')
    view.end(id, { ok: true, latencyMs: 5 })
    assert.equal(view.pick('x', new Set())?.peerId, id, 'room again once a job ends')
  })

  it('holds a "full" advert and an OVERLOADED answer until a newer advert has room or one of its own jobs there ends', async () => {
    let now = Date.now()
    const view = workerView({ now: () => now })
    const key = await generateKeyPair('Ed25519')
    const id = peerIdFromPrivateKey(key).toString()
    await view.validate(await signed(key, { capacity: 4, load: 0, seq: 1, ts: now }))
    view.begin(id)
    now += 10
    await view.validate(await signed(key, { capacity: 4, load: 4, full: true, seq: 2, ts: now }))
    assert.equal(view.pick('x', new Set()), undefined, 'advertised full')
    now += 10
    // this gateway's job there ended after the advert: that slot is free now
    view.end(id, { ok: true, latencyMs: 5 })
    assert.equal(view.pick('x', new Set())?.peerId, id)
    // another gateway took it: the worker refuses, and the back-off holds until a job of ours ends
    view.begin(id)
    view.begin(id)
    now += 10
    view.end(id, { ok: false, overloaded: true })
    assert.equal(view.pick('x', new Set()), undefined, 'refused: backed off')
    now += 10
    view.end(id, { ok: true, latencyMs: 5 })
    assert.equal(view.pick('x', new Set())?.peerId, id, 'a job of ours ended after the refusal')
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
