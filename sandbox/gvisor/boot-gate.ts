/**
 * Sandbox boots on one machine, a few at a time and the most wanted first.
 *
 * A gVisor boot (ptrace platform) is a second or so of CPU for the Sentry and for Node's start
 * inside it. Started all at once, boots share the cores and all finish late together: at the
 * devnet's start three workers booted nine to fifteen sandboxes at once on two cores, each took
 * 9–29 s instead of about one, and the requests that waited for them ran out their deadline
 * (docs/benchmarks.md, "Start-up, 2026-12-03"). Through the gate at most `slots` boots run (by
 * default one per core) and the others wait in order of priority: a boot a request waits for
 * first, then a function version's sandboxes (targets, pre-warms), then generic ones.
 *
 * One gate serves every executor of a process (the devnet's workers share one machine); a boot
 * holds its slot until it is ready or failed, or at most `maxHoldMs`, so a boot that hangs slows
 * the others but never stops them.
 */
import { availableParallelism } from 'node:os'

/** a request waits for this boot; a function version's sandbox; a generic one */
export type BootPriority = 0 | 1 | 2

export interface BootGateInit {
  /** boots at once; default: the machine's cores */
  slots?: number
  /** a boot gives up its slot after this long even when it is not ready yet */
  maxHoldMs?: number
}

/** one boot's place at the gate */
export interface BootTicket {
  /** resolves once the boot may start (rejects when cancelled while waiting) */
  readonly admitted: Promise<void>
  /** a request now waits for this boot: it goes first */
  raise: () => void
  /** the boot finished, failed or was cancelled: its slot (or its place in line) is freed */
  done: () => void
}

interface Waiting {
  priority: BootPriority
  seq: number
  admit: () => void
  reject: (err: Error) => void
}

/**
 * Executions on the machine, as every pool of the process sees them: background boots wait for a
 * moment when none runs anywhere (pool.ts `bootQuietMs`), not only in their own pool.
 */
export interface MachineActivity {
  executionStarted: () => void
  executionEnded: () => void
  /** ms since an execution last started or ended on the machine; 0 while one runs */
  idleMs: (now: number) => number
}

export class BootGate implements MachineActivity {
  readonly slots: number
  private readonly maxHoldMs: number
  private running = 0
  private seq = 0
  private readonly waiting: Waiting[] = []
  private executing = 0
  private lastBusy = 0

  constructor (init: BootGateInit = {}) {
    this.slots = Math.max(1, Math.floor(init.slots ?? availableParallelism()))
    this.maxHoldMs = Math.max(1, init.maxHoldMs ?? 10_000)
  }

  /** boots running now (holding a slot) */
  get active (): number { return this.running }
  /** boots waiting for a slot */
  get queued (): number { return this.waiting.length }

  /*
   * The devnet's three workers share one machine: a worker whose own pool had no execution for a
   * moment booted its replacements while the other two served at full load, and each boot (about
   * two seconds of a core under ptrace) took a third of the throughput for its duration.
   */
  executionStarted (): void { this.executing++; this.lastBusy = Date.now() }
  executionEnded (): void { this.executing = Math.max(0, this.executing - 1); this.lastBusy = Date.now() }
  idleMs (now: number): number { return this.executing > 0 ? 0 : Math.max(0, now - this.lastBusy) }

  enter (priority: BootPriority): BootTicket {
    let state: 'waiting' | 'running' | 'done' = 'waiting'
    let holdTimer: NodeJS.Timeout | undefined
    const w: Waiting = { priority, seq: this.seq++, admit: () => {}, reject: () => {} }
    const admitted = new Promise<void>((resolve, reject) => {
      w.admit = () => {
        state = 'running'
        this.running++
        // a boot that hangs gives its slot up after maxHoldMs: it goes on, the others too
        holdTimer = setTimeout(release, this.maxHoldMs)
        holdTimer.unref()
        resolve()
      }
      w.reject = reject
    })
    admitted.catch(() => {})
    const release = (): void => {
      if (state !== 'running') return
      state = 'done'
      clearTimeout(holdTimer)
      this.running--
      this.next()
    }
    this.waiting.push(w)
    this.next()
    return {
      admitted,
      raise: () => {
        if (state !== 'waiting' || w.priority === 0) return
        w.priority = 0
      },
      done: () => {
        if (state === 'running') { release(); return }
        if (state === 'waiting') {
          state = 'done'
          const i = this.waiting.indexOf(w)
          if (i >= 0) this.waiting.splice(i, 1)
          w.reject(new Error('the boot was cancelled before it started'))
        }
      }
    }
  }

  private next (): void {
    while (this.running < this.slots && this.waiting.length > 0) {
      let best = 0
      for (let i = 1; i < this.waiting.length; i++) {
        const a = this.waiting[i]
        const b = this.waiting[best]
        if (a.priority < b.priority || (a.priority === b.priority && a.seq < b.seq)) best = i
      }
      const [w] = this.waiting.splice(best, 1)
      w.admit()
    }
  }
}

let shared: BootGate | undefined

/** The process's gate: every executor that is not given its own boots through it. */
export function sharedBootGate (): BootGate {
  shared ??= new BootGate()
  return shared
}
