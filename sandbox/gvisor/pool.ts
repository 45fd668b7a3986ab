/**
 * The warm pool: sandboxes are booted ahead of demand so no request waits for `runsc`.
 *
 * - generic: idle sandboxes that have run nothing yet (default memory size); any function's first
 *   request takes one and sends its bundle with the request (a newly deployed function answers
 *   without a cold start);
 * - per function version (bundle CID): after `prewarm()` (or its first execution) the pool keeps
 *   `perFunction` sandboxes for it. With isolation `function` a sandbox serves up to `concurrency`
 *   executions at once, each in its own fresh realm (/tmp wiped and garbage collected whenever it
 *   falls idle), until it has served `maxExecutions` or lived `maxAgeMs`: then it retires,
 *   serving on until its replacement is ready (at most `retireGraceFactor` times those limits);
 *   with isolation `execution` it serves one execution and is destroyed;
 * - no execution waits for a boot while a sandbox of its version runs: a version holds at most
 *   `maxPerFunction` sandboxes (busy, idle or booting), and an execution that finds every one of
 *   them at its concurrency waits for a slot (the worker's admission queue, in front of this,
 *   bounds how many wait and how long); below that bound one more boots in the background for it,
 *   at the lowest CPU weight. Other boots reach the targets, in the background, at most
 *   `maxConcurrentBoots` at a time, and only once no execution ran for `bootQuietMs`: on the
 *   devnet a boot beside running executions stalled them for seconds (nice 15 did not help: see
 *   sandbox.ts), so under steady traffic a retiring sandbox serves on rather than being replaced
 *   mid-traffic. Only a version with no sandbox at all boots for the execution at hand.
 */
import type { Sandbox } from './sandbox.ts'
import type { MachineActivity } from './boot-gate.ts'

export interface PoolConfig {
  genericSize: number
  perFunction: number
  /** sandboxes of one function version, busy, idle and booting; at least perFunction (and 1) */
  maxPerFunction: number
  /** executions at once in one isolation-`function` sandbox */
  concurrency: number
  /**
   * V8 heap a WebSocket session is budgeted in a shared sandbox, MB: an isolation-`function`
   * sandbox of `memoryMb` holds up to memoryMb / sessionMemoryMb sessions of its version (at least 1)
   */
  sessionMemoryMb: number
  /** executions after which a sandbox retires: it serves on, and is replaced once the pool is quiet */
  maxExecutions: number
  /** age after which a sandbox retires (as maxExecutions) */
  maxAgeMs: number
  /**
   * a retiring sandbox serves until this multiple of maxExecutions / maxAgeMs even while no quiet
   * moment came to boot its replacement; past it, it serves nothing more
   */
  retireGraceFactor: number
  /**
   * background boots (targets, replacements) start only after the pool ran no execution for this
   * long: a gVisor boot beside running executions stalled them for seconds, nice 15 or not
   * (docs/benchmarks.md, "Boots beside executions"). Isolation-`execution` versions and a request
   * that finds no sandbox at all boot at once.
   */
  bootQuietMs: number
  maxSandboxes: number
  maxConcurrentBoots: number
  defaultMemoryMb: number
  maxWarmFunctions: number
}

type Isolation = 'function' | 'execution'

/**
 * Share of a sandbox's memory that its live heap after a collection may hold before it retires.
 * A realm per execution leaves nothing behind: hello's live heap stayed at 7.0 MB over 48,000
 * executions in one sandbox (docs/sandbox.md, recycling); a heap that grows anyway is replaced.
 */
const HEAP_RETIRE_SHARE = 0.5

interface FunctionEntry {
  memoryMb: number
  isolation: Isolation
  /** every sandbox bound to this version: idle, busy or still booting */
  members: Set<Sandbox>
  booting: number
  /** the boots under way for this version (`booting` of them) */
  boots: Set<Sandbox>
  lastUsed: number
  /** executions waiting for a slot: woken on every release, boot and removal of this version */
  waiters: Set<() => void>
}

/** Thrown by `acquire` when its signal aborts while it waits for a slot. */
export class PoolWaitAborted extends Error {}

export class Pool {
  private readonly config: PoolConfig
  /**
   * `urgent`: a request waits for this boot (the cold path), so it runs at normal priority;
   * `generic`: a sandbox for no version yet (boots after the versions' own)
   */
  private readonly boot: (memoryMb: number, urgent: boolean, generic: boolean) => Sandbox
  private readonly onError: (err: unknown) => void
  private readonly generic: Sandbox[] = []
  private genericBooting = 0
  private readonly fns = new Map<string, FunctionEntry>()
  private readonly all = new Set<Sandbox>()
  private boots = 0
  private stopped = false
  /** created and not yet fully destroyed (discard() starts a destroy that stop() must wait for) */
  private readonly live = new Set<Sandbox>()
  /** sandboxes booted since start (for the refill-rate benchmark and tests) */
  booted = 0
  /** executions that waited for a slot since start (tests: load queued, it did not boot) */
  waited = 0
  /** background boots put off because executions were running (refills that waited for quiet) */
  deferred = 0
  /** executions (not sessions) in the pool's sandboxes now */
  private executing = 0
  /** when the last execution ended or started */
  private lastBusy = 0
  private quietTimer?: NodeJS.Timeout
  private readonly now: () => number

  /** the machine's executions, all pools of the process (the boot gate); none: this pool's only */
  private readonly machine?: MachineActivity

  constructor (config: PoolConfig, boot: (memoryMb: number, urgent: boolean, generic: boolean) => Sandbox, onError: (err: unknown) => void, now: () => number = Date.now, machine?: MachineActivity) {
    this.config = { ...config, maxPerFunction: Math.max(1, config.perFunction, config.maxPerFunction), concurrency: Math.max(1, config.concurrency), retireGraceFactor: Math.max(1, config.retireGraceFactor) }
    this.boot = boot
    this.onError = onError
    this.now = now
    this.machine = machine
  }

  /** ms without an execution, in this pool and (when known) on the whole machine */
  private idleMs (): number {
    const now = this.now()
    const own = this.executing > 0 ? 0 : now - this.lastBusy
    return this.machine === undefined ? own : Math.min(own, this.machine.idleMs(Date.now()))
  }

  /** no execution runs and none ran for bootQuietMs, here or in the process's other pools: background boots may start */
  private quiet (): boolean {
    return this.idleMs() >= this.config.bootQuietMs
  }

  private started (): void {
    this.executing++
    this.machine?.executionStarted()
  }

  private ended (): void {
    if (this.executing === 0) return
    this.executing--
    this.machine?.executionEnded()
  }

  get targets (): { genericSize: number, perFunction: number } { return { genericSize: this.config.genericSize, perFunction: this.config.perFunction } }

  get size (): number { return this.all.size }
  get bootsInFlight (): number { return this.boots }
  get idleGeneric (): number { return this.generic.filter(s => !s.dead).length }
  /** sandboxes of `cid` that are ready and run nothing now */
  idleFor (cid: string): number {
    const e = this.fns.get(cid)
    if (e === undefined) return 0
    let n = 0
    for (const sb of e.members) if (sb.isReady && !sb.dead && sb.inflight === 0) n++
    return n
  }

  warm (): string[] {
    return [...this.fns.entries()].filter(([, e]) => [...e.members].some(s => s.isReady && !s.dead)).map(([cid]) => cid)
  }

  /** past its hard limits (retireGraceFactor × the retirement limits) or dead: serves nothing more */
  private expired (sb: Sandbox): boolean {
    const f = this.config.retireGraceFactor
    return sb.dead || sb.executions >= f * this.config.maxExecutions || this.now() - sb.createdAt >= f * this.config.maxAgeMs
  }

  /**
   * Past maxExecutions or maxAgeMs, or holding over half its memory in live heap after a
   * between-executions collection (something accumulates in the shim): serves on while it must,
   * replaced when the pool is quiet.
   */
  private retiring (sb: Sandbox): boolean {
    return this.expired(sb) || sb.executions >= this.config.maxExecutions || this.now() - sb.createdAt >= this.config.maxAgeMs ||
      (sb.lastIdle?.heap ?? 0) > sb.memoryMb * 1024 * 1024 * HEAP_RETIRE_SHARE
  }

  /** another ready, non-retiring member of `e` can take `sb`'s work: `sb` may go once idle */
  private replaced (e: FunctionEntry | undefined, sb: Sandbox): boolean {
    if (e === undefined) return false
    for (const x of e.members) if (x !== sb && x.isReady && !x.dead && !this.retiring(x) && x.memoryMb === sb.memoryMb) return true
    return false
  }

  private create (memoryMb: number, urgent = false, generic = false): Sandbox {
    const sb = this.boot(memoryMb, urgent, generic)
    this.booted++
    this.all.add(sb)
    this.live.add(sb)
    sb.ready.catch((err) => {
      // a boot cut short by stop() is no failure worth reporting
      if (!this.stopped && !sb.destroying) this.onError(err)
      this.discard(sb)
    })
    return sb
  }

  private entry (cid: string, memoryMb: number, isolation: Isolation): FunctionEntry {
    let e = this.fns.get(cid)
    if (e === undefined) {
      e = { memoryMb, isolation, members: new Set(), booting: 0, boots: new Set(), lastUsed: Date.now(), waiters: new Set() }
      this.fns.set(cid, e)
      // bounded: the least recently used function versions stop being kept warm
      if (this.fns.size > this.config.maxWarmFunctions) {
        const [oldest] = [...this.fns.entries()].filter(([, x]) => x.waiters.size === 0).sort((a, b) => a[1].lastUsed - b[1].lastUsed)
        if (oldest !== undefined && oldest[0] !== cid) this.forget(oldest[0])
      }
    }
    return e
  }

  /** Registers a function version to keep warm. */
  want (cid: string, memoryMb: number, isolation: Isolation): void {
    const e = this.entry(cid, memoryMb, isolation)
    e.memoryMb = memoryMb
    e.isolation = isolation
    this.refill()
  }

  /** A member of `e` that can take one more execution now, or undefined. */
  /** sessions one isolation-`function` sandbox of `memoryMb` holds */
  sessionRoom (memoryMb: number): number {
    return Math.max(1, Math.floor(memoryMb / Math.max(0.001, this.config.sessionMemoryMb)))
  }

  /** Whether `sb` takes one more execution (or session) now, by its isolation and its load. */
  private fits (sb: Sandbox, isolation: Isolation, session: boolean): boolean {
    if (isolation === 'execution') return sb.inflight === 0
    // sessions idle between events cost memory, not CPU: they have their own room, and the
    // executions beside them their own concurrency
    if (session) return sb.sessions < this.sessionRoom(sb.memoryMb)
    return sb.inflight - sb.sessions < this.config.concurrency
  }

  private pick (e: FunctionEntry, memoryMb: number, isolation: Isolation, session: boolean): Sandbox | undefined {
    let best: Sandbox | undefined
    for (const sb of [...e.members]) {
      if (!sb.isReady) continue
      if (sb.dead || sb.memoryMb !== memoryMb || (isolation === 'execution' && sb.executions + sb.inflight > 0)) {
        // unusable for this version now: gone once nothing runs in it
        if (sb.inflight === 0 && (sb.dead || this.expired(sb) || sb.memoryMb !== memoryMb || isolation === 'execution')) this.discard(sb)
        continue
      }
      if (this.expired(sb) || (this.retiring(sb) && sb.inflight === 0 && this.replaced(e, sb))) {
        if (sb.inflight === 0) this.discard(sb)
        continue
      }
      if (!this.fits(sb, isolation, session)) continue
      // one that is not retiring first (a retiring one serves until its replacement is there);
      // then fewest executions (or, for a session, sessions) in flight; then one that finished
      // its cleanup; then the most recently used (hot caches)
      const load = (x: Sandbox): number => session ? x.sessions : x.inflight - x.sessions
      const old = this.retiring(sb)
      const bestOld = best !== undefined && this.retiring(best)
      if (best === undefined || (bestOld && !old)) { best = sb; continue }
      if (old && !bestOld) continue
      if (load(sb) < load(best) ||
        (load(sb) === load(best) && best.maintaining && !sb.maintaining) ||
        (load(sb) === load(best) && best.maintaining === sb.maintaining && sb.lastUsed >= best.lastUsed)) best = sb
    }
    return best
  }

  /**
   * A sandbox for one execution, ready: one bound to `cid` with a free slot, else a generic one of
   * the right memory size, else — when the version holds fewer than `maxPerFunction` sandboxes — a
   * freshly booted one (the cold path: only a version with no room and no sandbox to wait for).
   * Otherwise it waits for a slot; `signal` ends the wait (PoolWaitAborted). Pair with `release`.
   * A `session` (a WebSocket session's execution) shares an isolation-`function` sandbox with the
   * version's other sessions, up to `sessionRoom(memoryMb)` of them, beside its executions; when
   * every sandbox of the version holds its room in sessions, one more is booted (a session lives
   * for minutes: one boot per room of sessions, bounded by `maxSandboxes` and the worker's cap).
   */
  async acquire (cid: string, memoryMb: number, isolation: Isolation, signal?: AbortSignal, session = false): Promise<Sandbox> {
    const e = this.entry(cid, memoryMb, isolation)
    e.lastUsed = Date.now()
    for (let waits = 0; ; waits++) {
      if (this.stopped) throw new PoolWaitAborted('the pool is stopped')
      signal?.throwIfAborted()
      let sb = this.pick(e, memoryMb, isolation, session)
      if (sb === undefined && memoryMb === this.config.defaultMemoryMb && this.mayTakeGeneric(e, isolation, session)) {
        while (this.generic.length > 0) {
          const s = this.generic.shift()!
          if (this.expired(s)) { this.discard(s); continue }
          sb = s
          sb.boundTo = cid
          e.members.add(sb)
          break
        }
      }
      if (sb === undefined && (this.memberCount(e) + e.booting < this.config.maxPerFunction || (session && e.booting === 0 && this.sessionFull(e)))) {
        // below the version's bound and nothing to take: one more sandbox for it
        if (this.all.size >= this.config.maxSandboxes) this.evictOne()
        if (!session && isolation === 'function' && this.memberCount(e) + e.booting > 0) {
          // the version's sandboxes are all at their concurrency: the new one boots in the
          // background (lowest CPU weight) and this execution waits for the first free slot, most
          // often a running sandbox's within one execution's time; booting it at normal priority
          // for this execution stalled the executions running beside it. While none of them is
          // ready yet (a pre-warm still booting) the execution waits for that boot instead: a
          // second boot beside it only delays both (at the devnet's start, one per version per worker)
          if (this.readyCount(e) > 0) this.bootFor(cid, e)
        } else {
          // nothing to wait for (the cold path), or a session that needs room: boot for it
          sb = this.create(memoryMb, true)
          sb.boundTo = cid
          e.members.add(sb)
        }
      }
      if (sb !== undefined) {
        sb.inflight++
        if (session) sb.sessions++
        else this.started()
        sb.lastUsed = Date.now()
        this.lastBusy = this.now()
        this.refill()
        if (!sb.isReady) {
          try {
            await sb.ready
          } catch (err) {
            sb.inflight--
            if (session) sb.sessions--
            else this.ended()
            this.wake(e)
            throw err
          }
          // others waiting for this version may share it now
          this.wake(e)
        }
        return sb
      }
      // every sandbox of this version is at its concurrency: wait for a slot, never boot for load
      if (waits === 0) this.waited++
      // with none of its sandboxes ready, the slot can only come from a boot: those under way for
      // the version (a pre-warm, the one just started) go on at normal priority. (A version with
      // a sandbox running waits for its slot instead: a boot at normal priority beside running
      // executions stalls them.)
      if (this.readyCount(e) === 0) for (const b of e.boots) b.hurry()
      await new Promise<void>((resolve, reject) => {
        const onAbort = (): void => { e.waiters.delete(wake); reject(new PoolWaitAborted('the execution stopped waiting for a sandbox slot')) }
        const wake = (): void => { signal?.removeEventListener('abort', onAbort); e.waiters.delete(wake); resolve() }
        e.waiters.add(wake)
        signal?.addEventListener('abort', onAbort, { once: true })
      })
    }
  }

  /**
   * A generic sandbox joins a version's executions below its bound only: at its bound they wait
   * for a slot (on two cores, three workers' versions taking a second sandbox each served 30-40 %
   * less); single-use versions and sessions needing room take one as before.
   */
  private mayTakeGeneric (e: FunctionEntry, isolation: Isolation, session: boolean): boolean {
    return isolation === 'execution' || (session && this.sessionFull(e)) || this.memberCount(e) + e.booting < this.config.maxPerFunction
  }

  /** every usable sandbox of the version holds its room in sessions */
  private sessionFull (e: FunctionEntry): boolean {
    for (const sb of e.members) if (!sb.dead && !this.expired(sb) && sb.sessions < this.sessionRoom(sb.memoryMb)) return false
    return true
  }

  /** members of `e` that are ready and alive */
  private readyCount (e: FunctionEntry): number {
    let n = 0
    for (const sb of e.members) if (sb.isReady && !sb.dead) n++
    return n
  }

  private memberCount (e: FunctionEntry): number {
    let n = 0
    for (const sb of e.members) if (!sb.dead && !(sb.inflight === 0 && this.expired(sb))) n++
    return n
  }

  private wake (e: FunctionEntry | undefined): void {
    if (e === undefined) return
    for (const w of [...e.waiters]) w()
  }

  /**
   * Returns a sandbox after an execution. It stays bound to its version (isolation `function`)
   * unless it is unhealthy, single-use (isolation `execution`) or due for recycling, in which case
   * it is destroyed once no execution runs in it. Waiting executions are woken.
   */
  release (sb: Sandbox, cid: string, isolation: Isolation, healthy: boolean, session = false): void {
    sb.inflight = Math.max(0, sb.inflight - 1)
    if (session) sb.sessions = Math.max(0, sb.sessions - 1)
    else this.ended()
    this.lastBusy = this.now()
    const e = this.fns.get(cid)
    if (!healthy || sb.dead) {
      this.discard(sb)
    } else if ((isolation === 'execution' || this.expired(sb) || this.stopped) && sb.inflight === 0) {
      this.discard(sb)
    } else if (sb.inflight === 0 && this.retiring(sb) && this.replaced(e, sb)) {
      // its replacement is ready
      this.discard(sb)
    } else if (e === undefined && sb.inflight === 0) {
      // the version was forgotten meanwhile
      this.discard(sb)
    }
    this.wake(e)
    this.refill()
  }

  /** Destroys the least recently used idle function sandbox beyond its function's minimum. */
  private evictOne (): boolean {
    let victim: Sandbox | undefined
    let fallback: Sandbox | undefined
    for (const e of this.fns.values()) {
      const idle = [...e.members].filter(sb => sb.isReady && sb.inflight === 0)
      for (const sb of idle) {
        if (fallback === undefined || sb.lastUsed < fallback.lastUsed) fallback = sb
        if (e.members.size > this.config.perFunction && (victim === undefined || sb.lastUsed < victim.lastUsed)) victim = sb
      }
    }
    const out = victim ?? fallback
    if (out === undefined) return false
    this.discard(out)
    return true
  }

  /** Stops keeping a function version warm and destroys its idle sandboxes (busy ones when they finish). */
  forget (cid: string): void {
    const e = this.fns.get(cid)
    if (e === undefined) return
    this.fns.delete(cid)
    for (const sb of [...e.members]) if (sb.inflight === 0) this.discard(sb)
    this.wake(e)
  }

  /** Removes a sandbox from the pool and destroys it. */
  discard (sb: Sandbox): void {
    this.all.delete(sb)
    const gi = this.generic.indexOf(sb)
    if (gi >= 0) this.generic.splice(gi, 1)
    if (sb.boundTo !== undefined) {
      const e = this.fns.get(sb.boundTo)
      if (e?.members.delete(sb) === true) this.wake(e)
    }
    void sb.destroy().finally(() => { this.live.delete(sb) })
  }

  /** Called when a sandbox process exits on its own. */
  exited (sb: Sandbox): void {
    if (!this.all.has(sb)) return
    this.discard(sb)
    this.refill()
  }

  /** Retires idle sandboxes past their age and tops the pool up. */
  sweep (): void {
    const quiet = this.quiet()
    // an old generic sandbox goes only when its replacement may boot at once
    for (const sb of [...this.generic]) if (this.expired(sb) || (quiet && this.retiring(sb))) this.discard(sb)
    for (const e of this.fns.values()) for (const sb of [...e.members]) if (sb.isReady && sb.inflight === 0 && (this.expired(sb) || (this.retiring(sb) && this.replaced(e, sb)))) this.discard(sb)
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

  /** sandboxes the targets want that are neither there nor booting (put off until quiet, or no room) */
  get wanted (): number {
    let n = Math.max(0, this.config.genericSize - this.generic.length - this.genericBooting)
    for (const e of this.fns.values()) n += Math.max(0, this.config.perFunction - this.usable(e) - e.booting)
    return n
  }

  /** members of `e` that count towards its target: alive, not retiring, of its size (single-use ones unused) */
  private usable (e: FunctionEntry): number {
    let n = 0
    for (const sb of e.members) if (!sb.dead && !this.retiring(sb) && sb.memoryMb === e.memoryMb && !(e.isolation === 'execution' && sb.executions + sb.inflight > 0)) n++
    return n
  }

  private refillNow (): void {
    if (this.stopped) return
    // a full pool makes room for the targets by evicting idle sandboxes of little-used functions
    const room = (): boolean => this.boots < this.config.maxConcurrentBoots && (this.all.size < this.config.maxSandboxes || this.evictOne())
    // boots wait for a quiet moment (bootQuietMs without executions), except the replacements an
    // isolation-`execution` version needs for every request
    const quiet = this.quiet()
    let deferred = false
    for (const [cid, e] of this.fns) {
      // targets count usable sandboxes: one due for recycling is replaced before it goes
      while (room() && this.usable(e) + e.booting < this.config.perFunction && e.members.size + e.booting < this.config.maxPerFunction + this.config.perFunction) {
        if (!quiet && e.isolation !== 'execution') { deferred = true; break }
        this.bootFor(cid, e)
      }
    }
    // generic sandboxes after the versions' own: a version's pre-warm is what its first request
    // needs, a generic one only serves a version that has none yet
    while (room() && this.generic.length + this.genericBooting < this.config.genericSize) {
      if (!quiet) { deferred = true; break }
      this.genericBooting++
      this.startBoot(this.config.defaultMemoryMb, true, (sb) => { this.genericBooting--; if (sb !== undefined) this.generic.push(sb) })
    }
    if (deferred && this.quietTimer === undefined) {
      this.deferred++
      const wait = Math.max(50, this.config.bootQuietMs - this.idleMs())
      this.quietTimer = setTimeout(() => { this.quietTimer = undefined; this.refill() }, wait)
      this.quietTimer.unref()
    }
  }

  /** Boots a sandbox for version `cid` in the background; it joins the version once ready. */
  private bootFor (cid: string, e: FunctionEntry): void {
    e.booting++
    const booting = this.startBoot(e.memoryMb, false, (sb) => {
      e.booting--
      e.boots.delete(booting)
      if (sb === undefined) { this.wake(e); return }
      if (this.fns.get(cid) === e) { sb.boundTo = cid; e.members.add(sb); this.wake(e) } else this.discard(sb)
    })
    if (!booting.isReady && !booting.dead) e.boots.add(booting)
  }

  private startBoot (memoryMb: number, generic: boolean, done: (sb?: Sandbox) => void): Sandbox {
    this.boots++
    const sb = this.create(memoryMb, false, generic)
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
    return sb
  }

  async stop (): Promise<void> {
    // what still runs here no longer keeps the machine's other pools from booting
    while (this.executing > 0) this.ended()
    this.stopped = true
    clearTimeout(this.quietTimer)
    const all = [...this.all]
    const entries = [...this.fns.values()]
    this.all.clear()
    this.generic.length = 0
    this.fns.clear()
    for (const e of entries) this.wake(e)
    // every sandbox this pool created and has not seen destroyed, including discarded ones whose
    // destruction (runsc kill + delete, seconds on a loaded host) is still under way
    const live = [...new Set([...all, ...this.live])]
    this.live.clear()
    await Promise.all(live.map(async sb => { await sb.destroy() }))
  }
}
