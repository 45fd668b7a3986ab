/**
 * A gateway's live view of workers, built from gossiped adverts. The topic validator decides
 * every advert through one exhaustive verdict table; `pick` chooses the next worker for a job.
 * Kept behind an interface so the view can later span region shards and DHT provider records.
 */
import { TopicValidatorResult, type Message } from '@libp2p/gossipsub'
import { advertSigningBytes, decodeMessageOf, LIMITS, ProtocolError, type WorkerAdvert } from '#protocol'
import { NODE_DEFAULTS } from '../constants.ts'
import { createPublicKey, verify as verifySignature, type KeyObject } from 'node:crypto'
import type { PublicKey } from '@libp2p/interface'

export type AdvertCheck = 'OK' | 'UNSIGNED' | 'OVERSIZE' | 'MALFORMED' | 'PEER_MISMATCH' | 'BAD_SIGNATURE' | 'STALE' | 'FUTURE' | 'OLD_SEQUENCE' | 'UNSTAKED'

/** Every outcome of advert validation, mapped once to a gossipsub verdict. */
export const ADVERT_VERDICTS: Record<AdvertCheck, TopicValidatorResult> = {
  OK: TopicValidatorResult.Accept,
  // forged or broken: penalise the sender (P4)
  UNSIGNED: TopicValidatorResult.Reject,
  OVERSIZE: TopicValidatorResult.Reject,
  MALFORMED: TopicValidatorResult.Reject,
  PEER_MISMATCH: TopicValidatorResult.Reject,
  BAD_SIGNATURE: TopicValidatorResult.Reject,
  FUTURE: TopicValidatorResult.Reject,
  // honest but late or reordered: drop without penalty
  STALE: TopicValidatorResult.Ignore,
  OLD_SEQUENCE: TopicValidatorResult.Ignore,
  // a genuine advert from a peer not bound to enough stake: not forwarded, but the relay that
  // passed it on is not at fault (it may not check stake itself)
  UNSTAKED: TopicValidatorResult.Ignore
}

export interface WorkerEntry {
  peerId: string
  advert: WorkerAdvert
  seenAt: number
  /** jobs this gateway has in flight on the worker */
  inflight: number
  /** moving average of this gateway's observed job latency, ms */
  latencyMs?: number
  /** when latencyMs last took a sample */
  latencyAt?: number
  /** consecutive failures seen by this gateway */
  failures: number
  lastFailureAt: number
  /** when the worker last answered this gateway OVERLOADED (0: not since its last advert with room) */
  overloadedAt: number
  /** when one of this gateway's jobs there last ended (not refused): a slot was free then */
  freedAt: number
  /** WebSocket sessions this gateway holds open on the worker now */
  sessions: number
}

/**
 * A latency estimate with no new samples drifts back to the prior (half-life
 * NODE_DEFAULTS.latencyHalfLifeMs): a worker whose one slow answer (a cold sandbox) put it behind
 * the others gets no jobs, so no samples, and without the drift it would stay behind for good.
 */
export function decayedLatency (latencyMs: number, sampledAt: number, t: number): number {
  const prior = NODE_DEFAULTS.latencyPriorMs
  const age = Math.max(0, t - sampledAt)
  return prior + (latencyMs - prior) * Math.pow(0.5, age / NODE_DEFAULTS.latencyHalfLifeMs)
}

/**
 * The latency part of a worker's score: 0.01 per ms, capped at NODE_DEFAULTS.latencyScoreCapMs so
 * that a slow worker is passed over while others have room, never beyond what load can outweigh.
 */
function latencyTerm (w: WorkerEntry, t: number): number {
  const ms = w.latencyMs === undefined ? NODE_DEFAULTS.latencyPriorMs : decayedLatency(w.latencyMs, w.latencyAt ?? t, t)
  return Math.min(ms, NODE_DEFAULTS.latencyScoreCapMs) / 100
}

export interface WorkerView {
  /** Validates an advert and, when accepted, records it. */
  validate: (message: Message) => Promise<AdvertCheck>
  /** Live workers (expired ones are dropped). */
  list: () => WorkerEntry[]
  get: (peerId: string) => WorkerEntry | undefined
  size: () => number
  /**
   * Best worker for a bundle, excluding those already tried for this job and those with no room
   * (advertised `full` or answered OVERLOADED within NODE_DEFAULTS.overloadBackoffMs, and none of
   * this gateway's jobs there ended since; or holding as many of this gateway's jobs as its
   * advertised capacity).
   */
  pick: (bundleCid: string, exclude: Set<string>) => WorkerEntry | undefined
  /**
   * Best worker for a new WebSocket session: as `pick`, but never one whose sessions (the larger
   * of its advertised count and this gateway's own open there) reach its advertised
   * `maxSessions`, and ranked by that share instead of job load (sessions take no job slot).
   */
  pickForSession: (bundleCid: string, exclude: Set<string>) => WorkerEntry | undefined
  /** A session opened on (`+1`) or left (`-1`) the worker. */
  sessionDelta: (peerId: string, delta: 1 | -1) => void
  /** The worker has no room for a job now (see `pick`). */
  isFull: (w: WorkerEntry) => boolean
  begin: (peerId: string) => void
  /** `overloaded`: the worker refused for lack of room, which is not a failure of the worker */
  /**
   * One of this gateway's jobs there ended: `ok` (answered; a latency sample), a failure (counted
   * against the worker), `overloaded` (a refusal for lack of room), or `abandoned` (the client left
   * first: says nothing about the worker)
   */
  end: (peerId: string, outcome: { ok: boolean, latencyMs?: number, overloaded?: boolean, abandoned?: boolean }) => void
}

export interface WorkerViewInit {
  /** @default NODE_DEFAULTS.workerExpiryMs */
  expiryMs?: number
  /** called for every accepted advert with the one it replaces (the gateway learns the worker's addresses from it) */
  onAccepted?: (advert: WorkerAdvert, previous?: WorkerAdvert) => void
  /**
   * Admission beyond signatures, e.g. "bound to a staked address with at least the minimum
   * stake" (checked after every other check passed). @default admits every worker
   */
  admit?: (advert: WorkerAdvert) => Promise<boolean>
  now?: () => number
}

export function workerView (init: WorkerViewInit = {}): WorkerView {
  const workers = new Map<string, WorkerEntry>()
  const expiryMs = init.expiryMs ?? NODE_DEFAULTS.workerExpiryMs
  const now = init.now ?? Date.now

  /** advertised `full`, or answered OVERLOADED lately, and none of this gateway's jobs there ended since */
  function heldBack (w: WorkerEntry): boolean {
    return (w.advert.full === true && w.freedAt <= w.seenAt) ||
      (w.overloadedAt > 0 && now() - w.overloadedAt < NODE_DEFAULTS.overloadBackoffMs && w.freedAt <= w.overloadedAt)
  }

  function isFull (w: WorkerEntry): boolean {
    // A "full" advert or an OVERLOADED answer holds until a newer advert says there is room, or
    // until one of this gateway's own jobs there ends (a slot is free then): waiting for the next
    // advert (≥ NODE_DEFAULTS.fullAdvertMinIntervalMs) would leave the worker idle meanwhile while
    // requests wait in the gateway's queue. Another gateway may take that slot first; the worker's
    // refusal then starts a new back-off.
    return heldBack(w) ||
      // this gateway alone already has as many jobs there as the worker can run: a job beyond that
      // would queue at the worker, which refuses what cannot start within 100 ms (a refusal costs a
      // retry from the budget); the gateway's own queue holds it instead, at no cost to the worker
      w.inflight >= Math.max(1, w.advert.capacity)
  }

  function live (): WorkerEntry[] {
    const t = now()
    for (const [id, w] of workers) if (t - w.seenAt > expiryMs) workers.delete(id)
    return [...workers.values()]
  }

  async function check (message: Message): Promise<{ check: AdvertCheck, advert?: WorkerAdvert }> {
    if (message.type !== 'signed') return { check: 'UNSIGNED' }
    if (message.data.byteLength > LIMITS.maxAdvertBytes) return { check: 'OVERSIZE' }
    let advert: WorkerAdvert
    try {
      advert = decodeMessageOf(message.data, 'advert', { maxBytes: LIMITS.maxAdvertBytes })
    } catch (err) {
      if (err instanceof ProtocolError) return { check: err.code === 'FRAME_TOO_LARGE' ? 'OVERSIZE' : 'MALFORMED' }
      throw err
    }
    if (advert.peerId !== message.from.toString()) return { check: 'PEER_MISMATCH' }
    let valid = false
    try {
      valid = await verifyAdvertSignature(message.key, advertSigningBytes(advert), advert.sig)
    } catch {
      valid = false
    }
    if (!valid) return { check: 'BAD_SIGNATURE' }
    const t = now()
    if (advert.ts > t + LIMITS.advertMaxFutureMs) return { check: 'FUTURE' }
    if (advert.ts < t - LIMITS.advertMaxAgeMs) return { check: 'STALE' }
    const known = workers.get(advert.peerId)
    if (known !== undefined && advert.seq <= known.advert.seq && advert.ts <= known.advert.ts) return { check: 'OLD_SEQUENCE' }
    if (init.admit !== undefined && !(await init.admit(advert))) return { check: 'UNSTAKED' }
    return { check: 'OK', advert }
  }

  function best (bundleCid: string, exclude: Set<string>, session: boolean): WorkerEntry | undefined {
    const t = now()
    let chosen: WorkerEntry | undefined
    let bestScore = Infinity
    for (const w of live()) {
      if (exclude.has(w.peerId)) continue
      // a session takes no job slot: this gateway's opening sessions there do not fill the
      // worker's job queue, its advertised session room does (below); an advertised full queue or
      // a recent OVERLOADED still rules it out
      if (session ? heldBack(w) : isFull(w)) continue
      let load = Math.max(w.advert.load, w.inflight) / Math.max(1, w.advert.capacity)
      if (session) {
        const held = Math.max(w.advert.sessions ?? 0, w.sessions)
        const max = w.advert.maxSessions
        if (max !== undefined && held >= max) continue
        // a worker that does not advertise sessions (an older one) is ranked by its job load; the
        // share weighs 4×, so sessions spread (a smaller blast radius when a sandbox or worker
        // dies) once a worker holds 1/16 of its room, as much as a cold sandbox weighs
        if (max !== undefined) load = NODE_DEFAULTS.sessionShareWeight * (held + w.inflight) / Math.max(1, max)
      }
      // recent failures weigh for 30 s, so one bad worker does not keep taking first attempts (a
      // session's less: see NODE_DEFAULTS.sessionFailureWeight)
      const failing = t - w.lastFailureAt < 30_000 ? w.failures * (session ? NODE_DEFAULTS.sessionFailureWeight : 1) : 0
      // a session is long-lived: its place is decided by session share, not by the job latency
      // estimate (up to 1.0, worth 64 sessions at the default room, which piled whole bursts of
      // sessions onto the one worker that had answered fastest)
      const score = load +
        (w.advert.warm.includes(bundleCid) ? 0 : 0.25) +
        (session ? 0 : latencyTerm(w, t)) +
        failing +
        Math.random() * 0.01
      if (score < bestScore) { chosen = w; bestScore = score }
    }
    return chosen
  }

  return {
    async validate (message) {
      const { check: result, advert } = await check(message)
      if (result === 'OK' && advert !== undefined) {
        const known = workers.get(advert.peerId)
        workers.set(advert.peerId, {
          peerId: advert.peerId,
          advert,
          seenAt: now(),
          inflight: known?.inflight ?? 0,
          latencyMs: known?.latencyMs,
          failures: known?.failures ?? 0,
          lastFailureAt: known?.lastFailureAt ?? 0,
          // an advert made after the refusal that says there is room lifts the back-off
          overloadedAt: known === undefined || (advert.full !== true && advert.ts > known.overloadedAt) ? 0 : known.overloadedAt,
          freedAt: known?.freedAt ?? 0,
          sessions: known?.sessions ?? 0
        })
        init.onAccepted?.(advert, known?.advert)
      }
      return result
    },
    list: live,
    get: id => workers.get(id),
    size: () => live().length,
    isFull,
    pick (bundleCid, exclude) { return best(bundleCid, exclude, false) },
    pickForSession (bundleCid, exclude) { return best(bundleCid, exclude, true) },
    sessionDelta (peerId, delta) {
      const w = workers.get(peerId)
      if (w !== undefined) w.sessions = Math.max(0, w.sessions + delta)
    },
    begin (peerId) {
      const w = workers.get(peerId)
      if (w !== undefined) w.inflight++
    },
    end (peerId, outcome) {
      const w = workers.get(peerId)
      if (w === undefined) return
      w.inflight = Math.max(0, w.inflight - 1)
      if (outcome.overloaded === true) {
        w.overloadedAt = now()
        return
      }
      w.freedAt = now()
      if (outcome.abandoned === true) return
      if (outcome.ok) {
        w.failures = 0
        if (outcome.latencyMs !== undefined) {
          // the sample joins what the estimate has decayed to by now, not its stale peak
          const t = now()
          const was = w.latencyMs === undefined ? undefined : decayedLatency(w.latencyMs, w.latencyAt ?? t, t)
          w.latencyMs = was === undefined ? outcome.latencyMs : was + NODE_DEFAULTS.latencyAlpha * (outcome.latencyMs - was)
          w.latencyAt = t
        }
      } else {
        w.failures++
        w.lastFailureAt = now()
      }
    }
  }
}

/**
 * Ed25519 public keys as node:crypto key objects, by raw key: libp2p's `key.verify` builds one from
 * the key on every call (a JWK import), which at a few adverts a second per worker was a visible
 * share of a busy gateway's CPU. Bounded: past KEY_CACHE_MAX the oldest are dropped (every entry
 * came through gossipsub's own signature check, and costs 32 bytes of key and a handle).
 */
const KEY_CACHE_MAX = 4096
const keyObjects = new Map<string, KeyObject>()
const ED25519_SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex')

async function verifyAdvertSignature (key: PublicKey, data: Uint8Array, sig: Uint8Array): Promise<boolean> {
  if (key.type !== 'Ed25519' || key.raw.byteLength !== 32) return await key.verify(data, sig)
  const id = Buffer.from(key.raw).toString('base64')
  let object = keyObjects.get(id)
  if (object === undefined) {
    object = createPublicKey({ key: Buffer.concat([ED25519_SPKI_PREFIX, key.raw]), format: 'der', type: 'spki' })
    if (keyObjects.size >= KEY_CACHE_MAX) keyObjects.delete(keyObjects.keys().next().value!)
    keyObjects.set(id, object)
  }
  return verifySignature(null, data, object, sig)
}
