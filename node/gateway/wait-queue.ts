/**
 * The gateway's wait queue (issue 10): when every worker is full, a request waits here for a
 * slot, first come first served, for a bounded time, instead of being refused at once.
 *
 * Why: clients retry. A closed-loop client (a browser, a load balancer, `wrk`) that gets a fast
 * 503 sends the next request at once, so past saturation the gateway spends its CPU answering
 * refusals on the same two cores the workers run on, and goodput falls (measured: 78 % of the
 * peak at 4× saturation). A request that would get a slot within a short, known time is better
 * served late than refused; one that would not is refused at once, as before.
 *
 * The rule: a request joins only when the queue is moving and its expected wait fits in half its
 * bound (the other half absorbs an estimate made before the load turned slower). The
 * expected wait is its place in the queue over the mesh's measured completion rate (jobs that
 * ended in the last `rateWindowMs`); with too few completions to measure (long jobs, a mesh that
 * just filled) nothing is queued, and the answer stays an immediate 503. A waiter is woken when
 * a job ends (a slot freed) or, while any wait, every `pollMs` (an advert may have lifted a
 * worker's `full`); it then tries to pick a worker and, finding none, keeps its place. A waiter
 * not served by its own bound (the estimate was wrong) leaves with 503 OVERLOADED.
 */
import { NODE_DEFAULTS } from '../constants.ts'

export interface WaitQueueInit {
  /** longest any request waits @default NODE_DEFAULTS.gatewayQueueMaxMs */
  maxWaitMs?: number
  /** most requests waiting at once @default NODE_DEFAULTS.gatewayQueueMaxLength */
  maxLength?: number
  /** share of a request's remaining deadline it may spend waiting @default NODE_DEFAULTS.gatewayQueueShare */
  share?: number
  /** completions counted for the rate @default NODE_DEFAULTS.gatewayQueueRateWindowMs */
  rateWindowMs?: number
  /** fewer completions than this in the window: the rate is unknown, nothing queues @default NODE_DEFAULTS.gatewayQueueMinSamples */
  minSamples?: number
  /** @default NODE_DEFAULTS.gatewayQueuePollMs */
  pollMs?: number
  now?: () => number
}

export type WaitVerdict =
  /** woken: a slot may be free, pick again (the place in the queue is kept until `leave`) */
  | 'retry'
  /** refused at once (queue not moving, too long, or the expected wait does not fit) */
  | 'refused'
  /** waited its whole bound without a slot */
  | 'timeout'
  /** the client left */
  | 'aborted'

export interface WaitTicket {
  /** waits for a wake-up (`retry`) or the end of this request's bound */
  wait: (signal?: AbortSignal) => Promise<WaitVerdict>
  /** leaves the queue (served or given up); wakes the next waiter when `served` */
  leave: (served: boolean) => void
  /** ms this request has waited so far */
  waitedMs: () => number
}

export interface WaitQueue {
  /**
   * Asks to wait for a slot until at most `deadline` (unix ms). `undefined` means refused at
   * once: the queue is not moving, is full, or the expected wait does not fit.
   */
  join: (deadline: number) => WaitTicket | undefined
  /** whether anyone waits: a new request then queues behind them rather than taking a freed slot first */
  readonly waiting: number
  /** a job ended (a slot is free): counts a completion and wakes the first waiter */
  completed: () => void
  /** wakes the first waiter without counting a completion (a slot may have opened) */
  poke: () => void
  /** requests refused at once and waits that timed out, since start (for metrics) */
  readonly stats: { queued: number, refused: number, timedOut: number, served: number }
  /** completions per second measured over the window (undefined while too few) */
  rate: () => number | undefined
  stop: () => void
}

interface Waiter {
  wake?: (v: WaitVerdict) => void
  until: number
  joinedAt: number
  gone: boolean
}

export function waitQueue (init: WaitQueueInit = {}): WaitQueue {
  const now = init.now ?? Date.now
  const maxWaitMs = init.maxWaitMs ?? NODE_DEFAULTS.gatewayQueueMaxMs
  const maxLength = init.maxLength ?? NODE_DEFAULTS.gatewayQueueMaxLength
  const share = init.share ?? NODE_DEFAULTS.gatewayQueueShare
  const windowMs = init.rateWindowMs ?? NODE_DEFAULTS.gatewayQueueRateWindowMs
  const minSamples = init.minSamples ?? NODE_DEFAULTS.gatewayQueueMinSamples
  const pollMs = init.pollMs ?? NODE_DEFAULTS.gatewayQueuePollMs
  // completion times, oldest first; trimmed to the window on every read
  const done: number[] = []
  // index of the oldest completion still in the window
  let head = 0
  const queue: Waiter[] = []
  const stats = { queued: 0, refused: 0, timedOut: 0, served: 0 }
  let timer: NodeJS.Timeout | undefined

  function trim (t: number): void {
    // amortized: each completion is dropped once; splice only in batches to keep it O(1) per call
    while (head < done.length && t - done[head] > windowMs) head++
    if (head > 1_024 && head * 2 > done.length) { done.splice(0, head); head = 0 }
  }

  function rate (): number | undefined {
    const t = now()
    trim(t)
    const n = done.length - head
    if (n < minSamples) return undefined
    return n / (windowMs / 1000)
  }

  function wakeFirst (): void {
    for (const w of queue) {
      if (w.gone) continue
      const wake = w.wake
      if (wake !== undefined) { w.wake = undefined; wake('retry') }
      // only the first live waiter: it wakes the next once it has its slot (leave(true))
      return
    }
  }

  function arm (): void {
    if (timer !== undefined || queue.length === 0) return
    timer = setInterval(() => {
      if (queue.length === 0) { clearInterval(timer); timer = undefined; return }
      wakeFirst()
    }, pollMs)
    timer.unref()
  }

  function remove (w: Waiter): void {
    w.gone = true
    const i = queue.indexOf(w)
    if (i >= 0) queue.splice(i, 1)
  }

  return {
    get waiting () { return queue.length },
    stats,
    rate,
    join (deadline) {
      const t = now()
      const perSecond = rate()
      const until = Math.min(t + maxWaitMs, t + Math.max(0, deadline - t) * share)
      // the expected wait: everyone ahead, then this request, at the measured completion rate
      const expectedMs = perSecond === undefined ? Infinity : ((queue.length + 1) / perSecond) * 1000
      // the estimate may use half the bound: it comes from recent completions, and the load may
      // just have turned slower (a waiter that then waits out its bound is the costly mistake)
      if (queue.length >= maxLength || t + 2 * expectedMs > until) {
        stats.refused++
        return undefined
      }
      stats.queued++
      const w: Waiter = { until, joinedAt: t, gone: false }
      queue.push(w)
      arm()
      return {
        wait: async (signal) => {
          if (w.gone) return 'aborted'
          const left = w.until - now()
          if (left <= 0) { stats.timedOut++; remove(w); return 'timeout' }
          if (signal?.aborted === true) { remove(w); return 'aborted' }
          return await new Promise<WaitVerdict>(resolve => {
            const finish = (v: WaitVerdict): void => {
              clearTimeout(expire)
              signal?.removeEventListener('abort', onAbort)
              w.wake = undefined
              if (v !== 'retry') remove(w)
              if (v === 'timeout') stats.timedOut++
              resolve(v)
            }
            const onAbort = (): void => { finish('aborted') }
            const expire = setTimeout(() => { finish('timeout') }, left)
            signal?.addEventListener('abort', onAbort, { once: true })
            w.wake = finish
          })
        },
        leave: (served) => {
          const wasIn = !w.gone
          remove(w)
          if (served && wasIn) {
            stats.served++
            // a slot was free for this one: maybe for the next too
            wakeFirst()
          }
        },
        waitedMs: () => now() - w.joinedAt
      }
    },
    completed () {
      const t = now()
      done.push(t)
      // the window's array holds the completion rate × window, no more
      trim(t)
      wakeFirst()
    },
    poke: wakeFirst,
    stop () {
      if (timer !== undefined) clearInterval(timer)
      timer = undefined
      for (const w of [...queue]) { const wake = w.wake; remove(w); wake?.('aborted') }
    }
  }
}
