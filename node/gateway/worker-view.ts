/**
 * A gateway's live view of workers, built from gossiped adverts. The topic validator decides
 * every advert through one exhaustive verdict table; `pick` chooses the next worker for a job.
 * Kept behind an interface so the view can later span region shards and DHT provider records.
 */
import { TopicValidatorResult, type Message } from '@libp2p/gossipsub'
import { advertSigningBytes, decodeMessageOf, LIMITS, ProtocolError, type WorkerAdvert } from '#protocol'
import { NODE_DEFAULTS } from '../constants.ts'

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
  /** consecutive failures seen by this gateway */
  failures: number
  lastFailureAt: number
  /** when the worker last answered this gateway OVERLOADED (0: not since its last advert with room) */
  overloadedAt: number
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
   * (advertised `full`, or answered OVERLOADED within NODE_DEFAULTS.overloadBackoffMs).
   */
  pick: (bundleCid: string, exclude: Set<string>) => WorkerEntry | undefined
  /** The worker has no room for a job now (see `pick`). */
  isFull: (w: WorkerEntry) => boolean
  begin: (peerId: string) => void
  /** `overloaded`: the worker refused for lack of room, which is not a failure of the worker */
  end: (peerId: string, outcome: { ok: boolean, latencyMs?: number, overloaded?: boolean }) => void
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

  function isFull (w: WorkerEntry): boolean {
    return w.advert.full === true || (w.overloadedAt > 0 && now() - w.overloadedAt < NODE_DEFAULTS.overloadBackoffMs)
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
      valid = await message.key.verify(advertSigningBytes(advert), advert.sig)
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
          overloadedAt: known === undefined || (advert.full !== true && advert.ts > known.overloadedAt) ? 0 : known.overloadedAt
        })
        init.onAccepted?.(advert, known?.advert)
      }
      return result
    },
    list: live,
    get: id => workers.get(id),
    size: () => live().length,
    isFull,
    pick (bundleCid, exclude) {
      const t = now()
      let best: WorkerEntry | undefined
      let bestScore = Infinity
      for (const w of live()) {
        if (exclude.has(w.peerId) || isFull(w)) continue
        const load = Math.max(w.advert.load, w.inflight) / Math.max(1, w.advert.capacity)
        // recent failures weigh for 30 s, so one bad worker does not keep taking first attempts
        const failing = t - w.lastFailureAt < 30_000 ? w.failures : 0
        const score = load +
          (w.advert.warm.includes(bundleCid) ? 0 : 0.25) +
          (w.latencyMs ?? 5) / 100 +
          failing +
          Math.random() * 0.01
        if (score < bestScore) { best = w; bestScore = score }
      }
      return best
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
      } else if (outcome.ok) {
        w.failures = 0
        if (outcome.latencyMs !== undefined) {
          w.latencyMs = w.latencyMs === undefined
            ? outcome.latencyMs
            : w.latencyMs + NODE_DEFAULTS.latencyAlpha * (outcome.latencyMs - w.latencyMs)
        }
      } else {
        w.failures++
        w.lastFailureAt = now()
      }
    }
  }
}
