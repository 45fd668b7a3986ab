/**
 * A worker's admission of jobs: `capacity` run at once, then a FIFO queue bounded both by length
 * and by time. A job waits at most the smaller of `maxQueueMs` and `share` of its remaining
 * deadline; when the expected wait (moving average of service time × waves of `capacity` ahead of
 * it) is already longer, it is refused at once instead of queued. Refusals are OVERLOADED: cheap for
 * the gateway to act on (another worker, or a fast 503), unlike a job that times out in a queue.
 */
import { NODE_DEFAULTS } from '../constants.ts'

export interface AdmissionInit {
  capacity: number
  /** queued jobs per unit of capacity; @default NODE_DEFAULTS.workerQueueFactor */
  queueFactor?: number
  /** @default NODE_DEFAULTS.workerMaxQueueMs */
  maxQueueMs?: number
  /** @default NODE_DEFAULTS.workerQueueShare */
  share?: number
  /** called when `full` changes (the worker re-adverts) */
  onFullChange?: (full: boolean) => void
  now?: () => number
}

export type Admitted = { ok: true } | { ok: false, reason: string, details: Record<string, number> }

export interface Admission {
  /** Waits for a slot; a refusal comes at once, or when the job's time in the queue runs out. */
  acquire: (deadline: number) => Promise<Admitted>
  /** Takes a slot whatever the load (chain fallback jobs: the chain already chose this worker). */
  enter: () => void
  /** Frees a slot (handing it to the next queued job); `serviceMs` feeds the expected-wait estimate. */
  release: (serviceMs?: number) => void
  readonly running: number
  readonly queued: number
  /** a new job would be refused: gateways should not send one */
  readonly full: boolean
  /** a hint for the caller: when a slot may be free, ms */
  retryAfterMs: () => number
}

interface Waiter {
  resolve: (a: Admitted) => void
  timer: NodeJS.Timeout
}

export function admission (init: AdmissionInit): Admission {
  const capacity = Math.max(1, init.capacity)
  const maxQueued = capacity * (init.queueFactor ?? NODE_DEFAULTS.workerQueueFactor)
  const maxQueueMs = init.maxQueueMs ?? NODE_DEFAULTS.workerMaxQueueMs
  const share = init.share ?? NODE_DEFAULTS.workerQueueShare
  const now = init.now ?? Date.now
  const queue: Waiter[] = []
  let running = 0
  /** moving average of service time; unknown until the first job ends (queue by length only until then) */
  let serviceMs: number | undefined
  let wasFull = false

  /** expected wait for the job at queue position `position` (1 = next) */
  function expectedWait (position: number): number {
    return serviceMs === undefined ? 0 : Math.ceil(position / capacity) * serviceMs
  }

  function isFull (): boolean {
    if (running < capacity) return false
    return queue.length >= maxQueued || expectedWait(queue.length + 1) > maxQueueMs
  }

  function changed (): void {
    const full = isFull()
    if (full !== wasFull) {
      wasFull = full
      init.onFullChange?.(full)
    }
  }

  function details (): Record<string, number> {
    return { capacity, running, queued: queue.length, retryAfterMs: retryAfterMs() }
  }

  function retryAfterMs (): number {
    return Math.ceil(Math.max(serviceMs ?? maxQueueMs, expectedWait(queue.length + 1)))
  }

  return {
    async acquire (deadline) {
      if (running < capacity && queue.length === 0) {
        running++
        changed()
        return { ok: true }
      }
      const waitLimit = Math.min(maxQueueMs, share * (deadline - now()))
      if (queue.length >= maxQueued) return { ok: false, reason: 'the worker\'s queue is full', details: details() }
      const expected = expectedWait(queue.length + 1)
      if (expected > waitLimit || waitLimit <= 0) {
        return { ok: false, reason: `the job could not start within ${Math.max(0, Math.round(waitLimit))} ms (expected wait ${Math.round(expected)} ms)`, details: details() }
      }
      const admitted = await new Promise<Admitted>(resolve => {
        const entry: Waiter = {
          resolve,
          timer: setTimeout(() => {
            const i = queue.indexOf(entry)
            if (i >= 0) queue.splice(i, 1)
            changed()
            resolve({ ok: false, reason: `the job waited ${Math.round(waitLimit)} ms for a free slot`, details: details() })
          }, Math.ceil(waitLimit))
        }
        queue.push(entry)
        changed()
      })
      return admitted
    },
    enter () {
      running++
      changed()
    },
    release (ms) {
      if (ms !== undefined) serviceMs = serviceMs === undefined ? ms : serviceMs + NODE_DEFAULTS.serviceAlpha * (ms - serviceMs)
      const next = queue.shift()
      if (next !== undefined) {
        // the slot passes straight to the next job: `running` already counts it
        clearTimeout(next.timer)
        next.resolve({ ok: true })
      } else {
        running = Math.max(0, running - 1)
      }
      changed()
    },
    get running () { return running },
    get queued () { return queue.length },
    get full () { return isFull() },
    retryAfterMs
  }
}
