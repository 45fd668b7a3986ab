/**
 * The warm pool: sandboxes are booted ahead of demand so no request waits for `runsc`.
 *
 * - generic: idle sandboxes that have run nothing yet (default memory size); any function's first
 *   request takes one and sends its bundle with the request (a newly deployed function answers
 *   without a cold start);
 * - per function version (bundle CID): after `prewarm()` the pool keeps `perFunction` idle
 *   sandboxes for it; with isolation `function` a sandbox returns there after each execution
 *   (fresh realm each time, /tmp wiped) until it has served `maxExecutions` or lived `maxAgeMs`;
 *   with isolation `execution` it is destroyed after one execution;
 * - every removal (recycle, crash, hang, kill) is replaced in the background, at most
 *   `maxConcurrentBoots` boots at a time so refills never starve running functions of CPU.
 */
import type { Sandbox } from './sandbox.ts'

export interface PoolConfig {
  genericSize: number
  perFunction: number
  maxExecutions: number
  maxAgeMs: number
  maxSandboxes: number
  maxConcurrentBoots: number
  defaultMemoryMb: number
  maxWarmFunctions: number
}

interface FunctionEntry {
  memoryMb: number
  isolation: 'function' | 'execution'
  idle: Sandbox[]
  booting: number
  lastUsed: number
}

export class Pool {
  private readonly config: PoolConfig
  private readonly boot: (memoryMb: number) => Sandbox
  private readonly onError: (err: unknown) => void
  private readonly generic: Sandbox[] = []
  private genericBooting = 0
  private readonly fns = new Map<string, FunctionEntry>()
  private readonly all = new Set<Sandbox>()
  private boots = 0
  private stopped = false
  /** sandboxes booted since start (for the refill-rate benchmark and tests) */
  booted = 0

  constructor (config: PoolConfig, boot: (memoryMb: number) => Sandbox, onError: (err: unknown) => void) {
    this.config = config
    this.boot = boot
    this.onError = onError
  }

  get size (): number { return this.all.size }
  get bootsInFlight (): number { return this.boots }
  get idleGeneric (): number { return this.generic.filter(s => !s.dead).length }
  idleFor (cid: string): number { return this.fns.get(cid)?.idle.filter(s => !s.dead).length ?? 0 }
  warm (): string[] {
    return [...this.fns.entries()].filter(([, e]) => e.idle.some(s => !s.dead)).map(([cid]) => cid)
  }

  private expired (sb: Sandbox): boolean {
    return sb.dead || sb.executions >= this.config.maxExecutions || Date.now() - sb.createdAt >= this.config.maxAgeMs
  }

  private create (memoryMb: number): Sandbox {
    const sb = this.boot(memoryMb)
    this.booted++
    this.all.add(sb)
    sb.ready.catch((err) => {
      // a boot cut short by stop() is no failure worth reporting
      if (!this.stopped && !sb.destroying) this.onError(err)
      this.discard(sb)
    })
    return sb
  }

  /** Registers a function version to keep warm. */
  want (cid: string, memoryMb: number, isolation: 'function' | 'execution'): void {
    let e = this.fns.get(cid)
    if (e === undefined) {
      e = { memoryMb, isolation, idle: [], booting: 0, lastUsed: Date.now() }
      this.fns.set(cid, e)
      // bounded: the least recently used function versions stop being kept warm
      if (this.fns.size > this.config.maxWarmFunctions) {
        const oldest = [...this.fns.entries()].sort((a, b) => a[1].lastUsed - b[1].lastUsed)[0]
        this.fns.delete(oldest[0])
        for (const sb of oldest[1].idle) this.discard(sb)
      }
    }
    e.memoryMb = memoryMb
    e.isolation = isolation
    this.refill()
  }

  /**
   * A sandbox for one execution, ready: a warm one bound to `cid`, else a generic one of the
   * right memory size, else a freshly booted one (the cold path).
   */
  async acquire (cid: string, memoryMb: number, isolation: 'function' | 'execution'): Promise<Sandbox> {
    const e = this.fns.get(cid)
    if (e !== undefined) {
      e.lastUsed = Date.now()
      for (const sb of [...e.idle]) {
        if (this.expired(sb) || sb.memoryMb !== memoryMb || (isolation === 'execution' && sb.executions > 0)) this.discard(sb)
      }
      // most recently used first (hot caches), preferring one that finished its cleanup; a
      // sandbox still cleaning up beats a generic one (compile + a background boot to replace it)
      const i = e.idle.findLastIndex(s => !s.maintaining)
      const pick = i >= 0 ? i : e.idle.length - 1
      if (pick >= 0) {
        const sb = e.idle.splice(pick, 1)[0]
        sb.busy = true
        this.refill()
        return sb
      }
    }
    let sb: Sandbox | undefined
    if (memoryMb === this.config.defaultMemoryMb) {
      while (this.generic.length > 0) {
        const s = this.generic.shift()!
        if (this.expired(s)) { this.discard(s); continue }
        sb = s
        break
      }
    }
    if (sb === undefined && this.all.size >= this.config.maxSandboxes) this.evictOne()
    sb ??= this.create(memoryMb)
    sb.busy = true
    if (isolation === 'function') sb.boundTo = cid
    this.refill()
    await sb.ready
    return sb
  }

  /**
   * Returns a sandbox after an execution: back to its function's idle list (demand shapes how
   * many a function keeps; least recently used ones are evicted when the pool is full), or
   * destroyed (isolation `execution`, recycled, unhealthy).
   */
  release (sb: Sandbox, cid: string, isolation: 'function' | 'execution', healthy: boolean): void {
    sb.busy = false
    if (!healthy || isolation === 'execution' || this.expired(sb) || this.stopped) {
      this.discard(sb)
      this.refill()
      return
    }
    let e = this.fns.get(cid)
    if (e === undefined) {
      e = { memoryMb: sb.memoryMb, isolation, idle: [], booting: 0, lastUsed: Date.now() }
      this.fns.set(cid, e)
    }
    e.idle.push(sb)
    this.refill()
  }

  /** Destroys the least recently used idle function sandbox beyond its function's minimum. */
  private evictOne (): boolean {
    let victim: Sandbox | undefined
    let fallback: Sandbox | undefined
    for (const e of this.fns.values()) {
      for (const sb of e.idle) {
        if (fallback === undefined || sb.lastUsed < fallback.lastUsed) fallback = sb
        if (e.idle.length > this.config.perFunction && (victim === undefined || sb.lastUsed < victim.lastUsed)) victim = sb
      }
    }
    const out = victim ?? fallback
    if (out === undefined) return false
    this.discard(out)
    return true
  }

  /** Stops keeping a function version warm and destroys its idle sandboxes. */
  forget (cid: string): void {
    const e = this.fns.get(cid)
    if (e === undefined) return
    this.fns.delete(cid)
    for (const sb of [...e.idle]) this.discard(sb)
  }

  /** Removes a sandbox from the pool and destroys it. */
  discard (sb: Sandbox): void {
    this.all.delete(sb)
    const gi = this.generic.indexOf(sb)
    if (gi >= 0) this.generic.splice(gi, 1)
    for (const e of this.fns.values()) {
      const i = e.idle.indexOf(sb)
      if (i >= 0) e.idle.splice(i, 1)
    }
    void sb.destroy()
  }

  /** Called when a sandbox process exits on its own. */
  exited (sb: Sandbox): void {
    if (!this.all.has(sb)) return
    this.discard(sb)
    this.refill()
  }

  /** Retires idle sandboxes past their age and tops the pool up. */
  sweep (): void {
    for (const sb of [...this.generic]) if (this.expired(sb)) this.discard(sb)
    for (const e of this.fns.values()) for (const sb of [...e.idle]) if (this.expired(sb)) this.discard(sb)
    this.refill()
  }

  /** Starts background boots up to the targets (bounded concurrency, bounded total). */
  refill (): void {
    // spawning runsc costs a few ms of this thread: never on the path of the request at hand
    if (this.refillQueued || this.stopped) return
    this.refillQueued = true
    setImmediate(() => { this.refillQueued = false; this.refillNow() })
  }

  private refillQueued = false

  private refillNow (): void {
    if (this.stopped) return
    // a full pool makes room for the targets by evicting idle sandboxes of little-used functions
    const room = (): boolean => this.boots < this.config.maxConcurrentBoots && (this.all.size < this.config.maxSandboxes || this.evictOne())
    while (room() && this.generic.length + this.genericBooting < this.config.genericSize) {
      this.genericBooting++
      this.startBoot(this.config.defaultMemoryMb, (sb) => { this.genericBooting--; if (sb !== undefined) this.generic.push(sb) })
    }
    for (const [cid, e] of this.fns) {
      while (room() && e.idle.length + e.booting < this.config.perFunction) {
        e.booting++
        this.startBoot(e.memoryMb, (sb) => {
          e.booting--
          if (sb === undefined) return
          if (this.fns.get(cid) === e) { sb.boundTo = cid; e.idle.push(sb) } else this.discard(sb)
        })
      }
    }
  }

  private startBoot (memoryMb: number, done: (sb?: Sandbox) => void): void {
    this.boots++
    const sb = this.create(memoryMb)
    sb.ready.then(() => {
      this.boots--
      if (this.stopped || sb.dead) { done(); this.discard(sb); return }
      done(sb)
      this.refill()
    }, () => {
      this.boots--
      done()
      // no immediate retry loop on boot failure: the next acquire/sweep tries again
    })
  }

  async stop (): Promise<void> {
    this.stopped = true
    const all = [...this.all]
    this.all.clear()
    this.generic.length = 0
    this.fns.clear()
    await Promise.all(all.map(async sb => { await sb.destroy() }))
  }
}
