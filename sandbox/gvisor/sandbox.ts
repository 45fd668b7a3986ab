/**
 * One gVisor sandbox: a `runsc run` child whose stdin/stdout carry the framed channel to the shim.
 * A sandbox may run several executions at once (each in its own realm in the shim; messages carry
 * the execution id). It knows which bundles its shim holds, how many executions it served and when
 * it started, so the pool can recycle it.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, rmSync, writeFileSync } from 'node:fs'
import { setPriority } from 'node:os'
import { join } from 'node:path'
import { FrameDecoder, encodeFrame } from '../runtime/channel.ts'
import type { BootGate, BootPriority, BootTicket } from './boot-gate.ts'
import type { BodyChunkMessage, BodyHeadMessage, ExecMessage, FetchMessage, HostMessage, ResultMessage, ShimMessage, ShimResponse, WsCloseOutMessage, WsDoneMessage, WsOpenMessage, WsOutMessage } from '../runtime/messages.ts'
import { buildOciSpec, sandboxMemoryLimitBytes, type SpecInput } from './oci-spec.ts'
import { cgroupRoots, destroyContainer, runscGlobalArgs, type RunscConfig } from './runsc.ts'

/**
 * Niceness of a booting sandbox, where its cgroup's CPU weight cannot be set (BOOT_CPU_WEIGHT,
 * below, is what works: nice does not count across cgroups). A boot costs ~0.4 s of a core (runsc,
 * the Sentry, Node start, the shim's warm-up). Once ready, the sandbox's processes and threads go
 * back to normal priority.
 */
const BOOT_NICE = 15

/** Sets the priority of every thread of `root` and its descendants (Linux: per thread). */
function reniceTree (root: number, priority: number): void {
  const children = new Map<number, number[]>()
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8')
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
      const list = children.get(ppid) ?? []
      list.push(Number(name))
      children.set(ppid, list)
    } catch {}
  }
  const todo = [root]
  while (todo.length > 0) {
    const pid = todo.pop()!
    try {
      for (const tid of readdirSync(`/proc/${pid}/task`)) {
        try { setPriority(Number(tid), priority) } catch {}
      }
    } catch {}
    todo.push(...(children.get(pid) ?? []))
  }
}

/** Whether the memory cgroup at `path` (v1 or v2) has recorded an OOM kill. */
function cgroupOomKilled (path: string): boolean {
  for (const [file, key] of [[`/sys/fs/cgroup/memory${path}/memory.oom_control`, 'oom_kill'], [`/sys/fs/cgroup${path}/memory.events`, 'oom_kill']]) {
    try {
      const m = new RegExp(`^${key} (\\d+)$`, 'm').exec(readFileSync(file, 'utf8'))
      if (m !== null && Number(m[1]) > 0) return true
    } catch {}
  }
  return false
}

/** Reads the first readable of `files` through `parse`; undefined when none is there. */
function readFirst (files: string[], parse: (text: string) => number | undefined): number | undefined {
  for (const file of files) {
    try {
      const v = parse(readFileSync(file, 'utf8'))
      if (v !== undefined && Number.isFinite(v)) return v
    } catch {}
  }
  return undefined
}

/** A cgroup counter: the file that exists on this host's hierarchy (v1 or v2) and how to read it. */
interface CgroupCounter { file: string, parse: (text: string) => number | undefined }

/**
 * Where the CPU time of every task of the sandbox's cgroup (the Sentry, the gofer and the
 * function's Node) is kept: cgroup v1 `cpuacct.usage`, v2 `cpu.stat` usage_usec (ns either way).
 * Undefined when none exists (yet: the cgroup appears when the sandbox starts).
 */
export function cgroupCpuCounter (path: string): CgroupCounter | undefined {
  for (const file of [`/sys/fs/cgroup/cpuacct${path}/cpuacct.usage`, `/sys/fs/cgroup/cpu,cpuacct${path}/cpuacct.usage`]) {
    if (existsSync(file)) return { file, parse: t => Number(t.trim()) }
  }
  const v2 = `/sys/fs/cgroup${path}/cpu.stat`
  if (existsSync(v2)) return { file: v2, parse: t => { const m = /^usage_usec (\d+)$/m.exec(t); return m === null ? undefined : Number(m[1]) * 1000 } }
  return undefined
}

/** Reads a counter; undefined when unreadable (the cgroup is gone). */
export function readCounter (c: CgroupCounter): number | undefined {
  try {
    const v = c.parse(readFileSync(c.file, 'utf8'))
    return v !== undefined && Number.isFinite(v) ? v : undefined
  } catch {
    return undefined
  }
}

/** CPU time used by every task of the sandbox's cgroup, in ns; undefined when unreadable. */
export function cgroupCpuNs (path: string): number | undefined {
  const c = cgroupCpuCounter(path)
  return c === undefined ? undefined : readCounter(c)
}

/**
 * Time the sandbox's threads spent runnable but waiting for a CPU (the run-queue delay of
 * /proc/<tid>/schedstat, summed over the cgroup's threads), in ns; undefined when unreadable.
 * Threads that exited take their share with them: a lower bound, enough to tell starved from idle.
 */
export function cgroupRunDelayNs (path: string): number | undefined {
  for (const file of [`/sys/fs/cgroup/cpuacct${path}/tasks`, `/sys/fs/cgroup/cpu,cpuacct${path}/tasks`, `/sys/fs/cgroup${path}/cgroup.threads`]) {
    let tids: string
    try { tids = readFileSync(file, 'utf8') } catch { continue }
    let sum = 0
    for (const tid of tids.split('\n')) {
      if (tid === '') continue
      try {
        const wait = Number(readFileSync(`/proc/${tid}/schedstat`, 'utf8').split(' ')[1])
        if (Number.isFinite(wait)) sum += wait
      } catch {}
    }
    return sum
  }
  return undefined
}

/**
 * Peak memory of the sandbox's cgroup in bytes: v1 `memory.max_usage_in_bytes`, v2 `memory.peak`.
 * Undefined when unreadable (no guess is made in its place).
 */
export function cgroupMemoryPeak (path: string): number | undefined {
  return readFirst([`/sys/fs/cgroup/memory${path}/memory.max_usage_in_bytes`, `/sys/fs/cgroup${path}/memory.peak`], t => Number(t.trim()))
}

/**
 * CPU weight of a booting sandbox's cgroup against its running siblings (v1 `cpu.shares`, v2
 * `cpu.weight`). Each sandbox is a cgroup, and the scheduler shares the CPU between sibling cgroups
 * by their weight first, whatever the nice value of the threads inside: a booting sandbox at nice
 * 15 still took as much CPU as a running one, and boots stalled the executions beside them for
 * seconds (docs/benchmarks.md, "Boots beside executions"). At the lowest weight a boot uses what
 * running sandboxes leave; once ready the sandbox gets the default weight back.
 */
const BOOT_CPU_WEIGHT = { v1: 2, v2: 1 }
const READY_CPU_WEIGHT = { v1: 1024, v2: 100 }

/**
 * Creates the meter cgroup in the memory controller (v1) or the unified hierarchy (v2); when
 * `lowPriority`, also at the boot CPU weight. Returns whether that weight was set.
 */
function createMeter (path: string, lowPriority: boolean): boolean {
  try { mkdirSync(`/sys/fs/cgroup/memory${path}`, { recursive: true }) } catch {}
  if (existsSync('/sys/fs/cgroup/cgroup.controllers')) {
    try {
      mkdirSync(`/sys/fs/cgroup${path}`, { recursive: true })
      // v2: the leaf below needs its controllers delegated through this level
      writeFileSync(`/sys/fs/cgroup${path}/cgroup.subtree_control`, '+memory +cpu +pids')
    } catch {}
  }
  return lowPriority && weighCgroup(path, BOOT_CPU_WEIGHT)
}

/**
 * Creates the cgroup at `path` in the v1 cpu controller when missing (v2: it must exist) and sets
 * its CPU weight, whichever hierarchy this host has; true when written.
 */
export function weighCgroup (path: string, weight: { v1: number, v2: number }): boolean {
  if (!existsSync('/sys/fs/cgroup/cgroup.controllers')) { try { mkdirSync(`/sys/fs/cgroup/cpu${path}`, { recursive: true }) } catch {} }
  for (const [file, value] of [[`/sys/fs/cgroup/cpu${path}/cpu.shares`, weight.v1], [`/sys/fs/cgroup/cpu,cpuacct${path}/cpu.shares`, weight.v1], [`/sys/fs/cgroup${path}/cpu.weight`, weight.v2]] as const) {
    if (!existsSync(file)) continue
    try { writeFileSync(file, String(value)); return true } catch {}
  }
  return false
}

/**
 * Removes the meter cgroup and whatever runsc left of the sandbox's cgroups below and beside it,
 * in every controller (runsc removes its leaf once the container is deleted).
 */
function removeMeter (path: string): void {
  for (const root of cgroupRoots()) {
    for (const dir of [`${root}${path}/box`, `${root}${path}`]) {
      try { rmdirSync(dir) } catch {}
    }
  }
}

export type ExecOutcome =
  | { kind: 'result', msg: ResultMessage }
  /** the shim did not answer by the host deadline (its event loop was blocked) */
  | { kind: 'hung' }
  /** the sandbox died mid-execution */
  | { kind: 'died', reason: 'oom' | 'crash' | 'channel', exitCode: number | null }

export interface SandboxOptions {
  id: string
  runsc: RunscConfig
  /** directory for this sandbox's OCI bundle (config.json) */
  bundleDir: string
  spec: SpecInput
  maxStderrBytes: number
  onExit?: (sb: Sandbox) => void
  /**
   * A memory cgroup of ours directly above `spec.cgroupsPath` (which runsc creates and removes):
   * created before boot, removed by destroy(). It outlives runsc's leaf, so the sandbox's peak
   * memory can still be read after a cgroup OOM kill, when runsc has already removed the leaf.
   */
  meterCgroup?: string
  /** boot at the lowest CPU weight, or BOOT_NICE where none can be set (background boots); false for a boot a request waits for. @default true */
  lowPriorityBoot?: boolean
  /** boots a few at a time, most wanted first (boot-gate.ts); none: the boot starts at once */
  gate?: BootGate
  /** place at the gate: 0 a request waits for it, 1 a function version's, 2 a generic one. @default 0 when not lowPriorityBoot, else 1 */
  bootPriority?: BootPriority
}

/** A counter read from the cgroup, remembered with when it was read. */
class Reading {
  private last: { at: number, ns: number | undefined } | undefined

  /** a reading at most `maxAgeMs` old (0: read now) */
  read (maxAgeMs: number, readNow: () => number | undefined): number | undefined {
    const t = performance.now()
    if (maxAgeMs > 0 && this.last !== undefined && t - this.last.at <= maxAgeMs) return this.last.ns
    const ns = readNow()
    this.last = { at: t, ns }
    return ns
  }
}

export class Sandbox {
  readonly id: string
  readonly memoryMb: number
  readonly createdAt = Date.now()
  lastUsed = Date.now()
  readonly bundles = new Set<string>()
  executions = 0
  /** bundle CID this sandbox is bound to (function isolation) */
  boundTo?: string
  /** executions the pool handed out and not yet released (the pool's count), sessions included */
  inflight = 0
  /** WebSocket sessions among `inflight` (they share the sandbox, see the pool) */
  sessions = 0
  /** booted and warmed up (`ready` resolved) */
  isReady = false
  /** the execution whose fault (hang, channel garbage) had the host destroy this sandbox */
  faultOf?: number
  /** the executor has logged why this sandbox ended (once per sandbox) */
  endLogged = false
  /** collecting garbage after an execution (until `idle`); the pool prefers another sandbox meanwhile */
  maintaining = false
  lastIdle?: { heap?: number }
  dead = false
  exitCode: number | null = null
  /** the sandbox's memory cgroup recorded an OOM kill */
  oomKilled = false
  /**
   * The execution whose session message the shim was handling when the sandbox died, when only
   * sessions ran in it: the shim handles its channel in order and answers every `ws-in` with
   * `ws-done` once the listeners return, so the oldest unanswered one is the listener that was
   * running. Undefined when nothing was unanswered or a request ran beside the sessions (then
   * nobody can be told apart).
   */
  eventAtDeath?: number
  /** execution ids of the `ws-in` messages sent and not yet answered by `ws-done`, oldest first */
  private readonly unansweredEvents: number[] = []
  /** the cgroup's peak memory in bytes, read when the sandbox died (before runsc removes the cgroup) */
  memoryPeakAtEnd?: number
  /** performance.now() when the sandbox's stdout ended (it died) */
  endedAt?: number
  stderr = ''
  readonly ready: Promise<void>
  private readonly opts: SandboxOptions
  private child?: ChildProcess
  private decoder?: FrameDecoder
  /** executions in flight here, by id: their message and death handlers */
  private readonly running = new Map<number, { onMessage: (msg: ShimMessage) => void, onDeath: (reason: 'oom' | 'crash' | 'channel') => void }>()
  private onPong?: () => void
  private channelBroken = false
  private destroyed?: Promise<void>

  constructor (opts: SandboxOptions) {
    this.opts = opts
    this.id = opts.id
    this.memoryMb = opts.spec.memoryMb
    this.ready = this.boot()
    this.ready.catch(() => {})
  }

  /** how a low-priority boot was slowed ('weight': its meter cgroup's CPU weight; 'nice': its processes' nice value) */
  private lowBoot: 'weight' | 'nice' | undefined

  /**
   * An execution waits for this sandbox's boot: a background boot (lowest CPU weight, or niced)
   * goes on at normal priority. At the devnet's start, requests waited seconds for pre-warm boots
   * that every other boot outweighed.
   */
  hurry (): void {
    this.hurried = true
    // still waiting at the boot gate: first in line
    this.gateTicket?.raise()
    if (this.isReady || this.dead || this.lowBoot === undefined) return
    const how = this.lowBoot
    this.lowBoot = undefined
    if (how === 'weight') weighCgroup(this.opts.meterCgroup!, READY_CPU_WEIGHT)
    else if (this.child?.pid !== undefined) reniceTree(this.child.pid, 0)
  }

  /** an execution waits for this boot (hurry()): it starts at normal priority */
  private hurried = false
  private gateTicket?: BootTicket

  /** ms this sandbox waited at the boot gate, and then took to boot (set once ready) */
  bootTimes?: { gateMs: number, bootMs: number }

  private async boot (): Promise<void> {
    const gate = this.opts.gate
    const t0 = performance.now()
    let t1 = t0
    if (gate === undefined) {
      await this.bootNow()
    } else {
      // (a hurry() from now on moves the boot to the front: raise())
      this.gateTicket = gate.enter(this.opts.bootPriority ?? (this.opts.lowPriorityBoot === false ? 0 : 1))
      try {
        // (rejects when destroyed while waiting)
        await this.gateTicket.admitted
        if (this.dead) throw new Error('sandbox destroyed before its boot started')
        t1 = performance.now()
        await this.bootNow()
      } finally {
        this.gateTicket.done()
      }
    }
    this.bootTimes = { gateMs: Math.round(t1 - t0), bootMs: Math.round(performance.now() - t1) }
  }

  private async bootNow (): Promise<void> {
    mkdirSync(this.opts.bundleDir, { recursive: true })
    const low = this.opts.lowPriorityBoot !== false && !this.hurried
    const weighted = this.opts.meterCgroup !== undefined && createMeter(this.opts.meterCgroup, low)
    if (low) this.lowBoot = weighted ? 'weight' : 'nice'
    writeFileSync(join(this.opts.bundleDir, 'config.json'), JSON.stringify(buildOciSpec(this.opts.spec)))
    const child = spawn(this.opts.runsc.binary, [...runscGlobalArgs(this.opts.runsc), 'run', `--bundle=${this.opts.bundleDir}`, this.id], {
      stdio: ['pipe', 'pipe', 'pipe'],
      // runsc itself needs no environment of ours
      env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' }
    })
    this.child = child
    // without a CPU weight, nice: runsc forks the Sentry and the gofer after this, they inherit it
    const niced = low && !weighted && child.pid !== undefined
    if (niced) { try { setPriority(child.pid!, BOOT_NICE) } catch {} }
    child.stdin.on('error', () => {})
    child.stderr.on('data', (d: Buffer) => {
      if (this.stderr.length < this.opts.maxStderrBytes) this.stderr += d.toString('utf8').slice(0, this.opts.maxStderrBytes - this.stderr.length)
    })
    let readyResolve!: () => void
    let readyReject!: (err: Error) => void
    const ready = new Promise<void>((resolve, reject) => { readyResolve = resolve; readyReject = reject })
    this.decoder = new FrameDecoder(this.opts.spec.maxFrameBytes, (msg: ShimMessage) => {
      if (msg.t === 'ready') readyResolve()
      else if (msg.t === 'idle') { this.maintaining = false; this.lastIdle = msg }
      else if (msg.t === 'pong') this.onPong?.()
      else if ('id' in msg) {
        if (msg.t === 'ws-done') {
          const i = this.unansweredEvents.indexOf(msg.id)
          if (i >= 0) this.unansweredEvents.splice(i, 1)
        }
        this.running.get(msg.id)?.onMessage(msg)
      }
    }, () => {
      // garbage on the channel: whatever produced it (an escaped function), the sandbox is done
      this.channelBroken = true
      this.dieAll('channel')
      void this.destroy()
    })
    child.stdout.on('data', (d: Buffer) => { this.decoder?.push(d) })
    // the shim never closes stdout: its end is the earliest sign the sandbox is gone (the
    // runsc process exits only after its own cleanup, tens of ms later)
    child.stdout.on('end', () => {
      this.endedAt ??= performance.now()
      this.dead = true
      // read the cgroup's OOM record now: runsc removes the cgroup during its own cleanup
      this.oomKilled = this.cgroupOom()
      // the leaf may already be gone (runsc tears it down right after a cgroup OOM kill); the
      // meter cgroup above it is ours and still holds the hierarchical peak
      this.memoryPeakAtEnd = cgroupMemoryPeak(this.opts.spec.cgroupsPath) ?? (this.opts.meterCgroup !== undefined ? cgroupMemoryPeak(this.opts.meterCgroup) : undefined)
    })
    child.on('error', (err) => { readyReject(err) })
    child.on('exit', (code, signal) => {
      this.dead = true
      this.exitCode = code ?? (signal === 'SIGKILL' ? 137 : null)
      readyReject(new Error(`sandbox exited (${String(code ?? signal)}) before it was ready: ${this.stderr.slice(0, 500)}`))
      if (this.inflight === this.sessions) this.eventAtDeath = this.unansweredEvents[0]
      // ('exit' may come before stdout's 'end': the cgroup's OOM record is read here too)
      this.oomKilled ||= this.cgroupOom()
      const oom = this.oomKilled || this.exitCode === 137 || this.exitCode === 134 || /heap limit|heap out of memory|allocation failed/i.test(this.stderr)
      this.dieAll(this.channelBroken ? 'channel' : (oom ? 'oom' : 'crash'))
      this.opts.onExit?.(this)
      void this.destroy()
    })
    await ready
    // (unless hurried already)
    const still = this.lowBoot
    this.lowBoot = undefined
    if (weighted && still === 'weight') weighCgroup(this.opts.meterCgroup!, READY_CPU_WEIGHT)
    // (walks /proc on this thread: only where the weight could not be set)
    if (niced && still === 'nice') reniceTree(child.pid!, 0)
    this.isReady = true
  }

  private dieAll (reason: 'oom' | 'crash' | 'channel'): void {
    for (const r of [...this.running.values()]) r.onDeath(reason)
  }

  /** Runs one execution (others may run meanwhile); resolves with the shim's result or how the sandbox failed. */
  /**
   * `onHostTimeout`, called when `hostTimeoutMs` passes without an answer, may return more ms to
   * wait (a starved sandbox, see the executor); 0 declares the execution hung.
   */
  async exec (msg: ExecMessage, hostTimeoutMs: number, onFetch: (m: FetchMessage) => Promise<ShimResponse>, onHostTimeout?: () => number, onSession?: (m: WsOpenMessage | WsOutMessage | WsCloseOutMessage | WsDoneMessage) => void, onBody?: (m: BodyHeadMessage | BodyChunkMessage) => void): Promise<ExecOutcome> {
    if (this.dead || this.child === undefined) return { kind: 'died', reason: 'crash', exitCode: this.exitCode }
    this.executions++
    this.lastUsed = Date.now()
    const child = this.child
    return await new Promise<ExecOutcome>((resolve) => {
      let settled = false
      const done = (o: ExecOutcome): void => {
        if (settled) return
        settled = true
        clearTimeout(timer)
        this.running.delete(msg.id)
        resolve(o)
      }
      const expire = (): void => {
        const more = settled ? 0 : (onHostTimeout?.() ?? 0)
        if (more > 0) timer = setTimeout(expire, more)
        else done({ kind: 'hung' })
      }
      let timer = setTimeout(expire, hostTimeoutMs)
      this.running.set(msg.id, {
        onDeath: (reason) => { done({ kind: 'died', reason, exitCode: this.exitCode }) },
        onMessage: (m) => {
          if (m.t === 'result') {
            if (msg.bundle !== undefined) this.bundles.add(msg.cid)
            // collecting garbage until the shim says `idle` (once nothing runs in it); other
            // cleanups are too short to avoid and go unannounced
            if (m.gc === true) this.maintaining = true
            done({ kind: 'result', msg: m })
          } else if (m.t === 'ws-open' || m.t === 'ws-out' || m.t === 'ws-close-out' || m.t === 'ws-done') {
            onSession?.(m)
          } else if (m.t === 'body-head' || m.t === 'body-chunk') {
            onBody?.(m)
          } else if (m.t === 'fetch') {
            onFetch(m).then(
              response => { this.send({ t: 'fetch-result', id: msg.id, fid: m.fid, response }) },
              (err: unknown) => { this.send({ t: 'fetch-result', id: msg.id, fid: m.fid, error: err instanceof Error ? err.message : 'fetch failed' }) }
            )
          }
        }
      })
      // backpressure is fine: the pool bounds the executions in flight
      child.stdin!.write(encodeFrame(msg))
    })
  }

  /**
   * CPU time of the whole sandbox so far (cgroup accounting), in ns; undefined when unreadable.
   * With `maxAgeMs`, a reading at most that old is reused (an execution's starting point, taken on
   * every request); without, it is read now (a verdict, a limit report).
   */
  cpuNs (maxAgeMs = 0): number | undefined {
    return this.cpuReading.read(maxAgeMs, () => {
      // which file holds it is found once (trying the v1 paths first threw two ENOENT errors per
      // execution on a v2 host, ~1 % of a loaded devnet's CPU)
      this.cpuCounter ??= cgroupCpuCounter(this.opts.spec.cgroupsPath)
      return this.cpuCounter === undefined ? undefined : readCounter(this.cpuCounter)
    })
  }

  private cpuCounter: CgroupCounter | undefined
  private readonly cpuReading = new Reading()

  /**
   * Run-queue delay of the sandbox's threads so far, in ns; undefined when unreadable. Reading it
   * costs a file read per sandbox thread (dozens): with `maxAgeMs`, a reading at most that old is
   * reused (an execution's starting point, taken on every request, at most a few times a second
   * per sandbox); without, it is read now (the rare verdict on an execution past its timeout).
   */
  runDelayNs (maxAgeMs = 0): number | undefined {
    return this.delayReading.read(maxAgeMs, () => cgroupRunDelayNs(this.opts.spec.cgroupsPath))
  }

  private readonly delayReading = new Reading()

  /** Peak memory of the sandbox (cgroup accounting), in bytes; undefined when unreadable. */
  /**
   * Whether the sandbox's cgroup recorded an OOM kill: its leaf, or (once runsc removed the leaf)
   * the meter cgroup above it, whose cgroup v2 memory.events counts its descendants' kills too.
   */
  private cgroupOom (): boolean {
    if (cgroupOomKilled(this.opts.spec.cgroupsPath) || (this.opts.meterCgroup !== undefined && cgroupOomKilled(this.opts.meterCgroup))) return true
    // no kill record readable (cgroup v1 counts kills per cgroup, and runsc removes its leaf):
    // a sandbox that died with its peak within 2 MiB of its cgroup limit died of memory
    const peak = this.memoryPeakAtEnd ?? (this.opts.meterCgroup !== undefined ? cgroupMemoryPeak(this.opts.meterCgroup) : undefined)
    return peak !== undefined && peak >= sandboxMemoryLimitBytes(this.opts.spec) - 2 * 1024 * 1024
  }

  memoryPeak (): number | undefined {
    return this.memoryPeakAtEnd ?? cgroupMemoryPeak(this.opts.spec.cgroupsPath)
  }

  /** Asks the shim for a pong within `timeoutMs` (health check). */
  async ping (timeoutMs: number): Promise<boolean> {
    if (this.dead || this.running.size > 0) return !this.dead
    return await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => { this.onPong = undefined; resolve(false) }, timeoutMs)
      this.onPong = () => { clearTimeout(timer); this.onPong = undefined; resolve(true) }
      this.send({ t: 'ping', id: 0 })
    })
  }

  /** Sends a session message (client traffic) to the shim of the running execution. */
  post (msg: HostMessage): void {
    this.send(msg)
  }

  private send (msg: object): void {
    if (this.dead || this.child?.stdin == null || this.child.stdin.destroyed) return
    if ((msg as HostMessage).t === 'ws-in') this.unansweredEvents.push((msg as HostMessage).id)
    this.child.stdin.write(encodeFrame(msg))
  }

  /** Kills the sandbox and removes its container and bundle dir; idempotent. */
  /** destroy() was called (a death that follows is expected) */
  get destroying (): boolean { return this.destroyed !== undefined }

  async destroy (): Promise<void> {
    this.destroyed ??= (async () => {
      this.dead = true
      // waiting at the boot gate: leaves the line (the boot then fails); booting: frees the slot
      this.gateTicket?.done()
      try { this.child?.stdin?.destroy() } catch {}
      // (no child: the boot never left the gate, there is no container)
      if (this.child !== undefined) await destroyContainer(this.opts.runsc, this.id)
      if (this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null) {
        this.child.kill('SIGKILL')
        await new Promise<void>(resolve => {
          const t = setTimeout(resolve, 2000)
          this.child?.once('exit', () => { clearTimeout(t); resolve() })
        })
      }
      rmSync(this.opts.bundleDir, { recursive: true, force: true })
      if (this.opts.meterCgroup !== undefined) removeMeter(this.opts.meterCgroup)
    })()
    await this.destroyed
  }
}
