/**
 * The gVisor executor: every execution runs in a `runsc` sandbox from the warm pool (pool.ts),
 * talking to the runtime shim over the stdio channel. The sandbox is the security boundary.
 * See docs/sandbox.md for the design and the limits table.
 */
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { createHash, randomBytes } from 'node:crypto'
import { accessSync, constants as fsConstants, mkdirSync, rmSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { rawCid, type FunctionOptions, type WireError } from '#protocol'
import { SandboxError } from '../errors.ts'
import { GVISOR_POOL_DEFAULTS, SANDBOX_LIMITS } from '../constants.ts'
import { abortedError, deadlineCut, effectiveTimeoutMs, errorResult, hostStream, hostTimeoutVerdict, limitError, shapeResult, wireError, type HostStream } from '../result.ts'
import { eventWatch, sessionCredit, type EventWatch, type SessionCredit } from '../session-flow.ts'
import { fetchBroker, type FetchBroker, type FetchBrokerInit } from '../fetch-broker.ts'
import type { AbortOptions, BundleRef, ExecuteOptions, ExecutionJob, ExecutionResult, Executor, ExecutorStats } from '../executor.ts'
import type { ExecutorComponents } from '../dev-executor.ts'
import type { ExecMessage } from '../runtime/messages.ts'
import { ensureRootfs } from './rootfs.ts'
import { destroyContainer, leftoverCgroups, listContainers, removeCgroups, runsc, type RunscConfig } from './runsc.ts'
import { Pool, PoolWaitAborted } from './pool.ts'
import { sharedBootGate, type BootGate } from './boot-gate.ts'
import { Sandbox, weighCgroup, type ExecOutcome } from './sandbox.ts'

export interface GvisorExecutorInit {
  /** worker data dir; the rootfs, runsc state (`--root`) and sandbox bundles live under `<dataDir>/sandbox` */
  dataDir: string
  /**
   * where the rootfs is built and read (it is mounted read-only into every sandbox): several
   * workers on one machine may share one folder, as the devnet's do (one ~120 MB copy of Node
   * instead of one per worker). @default `<dataDir>/sandbox`
   */
  rootfsDir?: string
  /** @default '/usr/bin/runsc' */
  runsc?: string
  /** @default 'ptrace' (works on these machines; `systrap` on newer runsc, `kvm` with /dev/kvm) */
  platform?: string
  /** extra runsc global flags, for diagnostics (`['--strace', '--debug-log=/tmp/runsc/']`) */
  runscFlags?: string[]
  /** @default the real binary of the running Node */
  nodeBinary?: string
  /** idle generic sandboxes kept booted. @default 2 */
  genericPoolSize?: number
  /**
   * idle sandboxes kept per prewarmed function version. Two let one collect garbage between
   * executions while the other serves (p99 under 10 ms). @default 2
   */
  perFunctionPoolSize?: number
  /**
   * sandboxes one function version may hold at once, busy, idle or booting: load beyond
   * `maxSandboxesPerFunction × concurrencyPerSandbox` executions waits for a slot instead of
   * booting more (a boot costs ~0.5 s of a core: booting under load is how overload collapses).
   * @default GVISOR_POOL_DEFAULTS.maxSandboxesPerFunction
   */
  maxSandboxesPerFunction?: number
  /**
   * executions at once in one isolation-`function` sandbox, each in its own realm. Several per
   * sandbox halve the context switches per request on a small machine; they share the sandbox's
   * limits (memory, CPU, /tmp): an execution that breaks one ends the others running there (they
   * get SANDBOX_INFRA, or the same LIMIT_MEMORY). @default GVISOR_POOL_DEFAULTS.concurrencyPerSandbox
   */
  concurrencyPerSandbox?: number
  /**
   * V8 heap budgeted per WebSocket session in a shared sandbox, MB: sessions of one function
   * version share its isolation-`function` sandboxes, memoryMb / sessionMemoryMb to a sandbox.
   * @default GVISOR_POOL_DEFAULTS.sessionMemoryMb
   */
  sessionMemoryMb?: number
  /**
   * executions after which a function-isolation sandbox retires: replaced at the pool's next quiet
   * moment, it serves on until then, at most `retireGraceFactor` times this.
   * @default GVISOR_POOL_DEFAULTS.maxExecutionsPerSandbox (1000)
   */
  maxExecutionsPerSandbox?: number
  /** age after which a sandbox retires (as above). @default GVISOR_POOL_DEFAULTS.maxSandboxAgeMs (5 min) */
  maxSandboxAgeMs?: number
  /** @default GVISOR_POOL_DEFAULTS.retireGraceFactor (4) */
  retireGraceFactor?: number
  /**
   * ms without an execution before background boots (pool targets, retirements) start.
   * @default GVISOR_POOL_DEFAULTS.bootQuietMs
   */
  bootQuietMs?: number
  /** sandboxes alive at once, idle and busy. @default 16 */
  maxSandboxes?: number
  /** sandbox boots in flight at once (each costs a core for ~0.4 s). @default 2 */
  maxConcurrentBoots?: number
  /**
   * The machine's boots, a few at a time and most wanted first (boot-gate.ts), shared with the
   * process's other executors. @default sharedBootGate(): one per process, a slot per core
   */
  bootGate?: BootGate
  /**
   * CPU weight of all this executor's sandboxes together, on the cgroup v1 `cpu.shares` scale
   * (1024 = as much as one busy thread of the host at nice 0; v2 `cpu.weight` is derived). The
   * scheduler shares a busy CPU between the worker's own thread and each executor's sandbox
   * cgroup by weight: with several workers on one machine (the devnet's three, in one process)
   * the default gave the node's thread a quarter of the contended CPU, and it, not the sandboxes,
   * capped throughput. @default unset: the cgroup default (1024)
   */
  sandboxCpuShares?: number
  /** memory size of generic sandboxes (the FunctionOptions default). @default 128 */
  defaultMemoryMb?: number
  /** cgroup memory above the V8 heap: Node's RSS, buffers, the Sentry. @default 128 */
  memoryHeadroomMb?: number
  /** CPU quota per sandbox, in cores. @default 1 */
  cpus?: number
  /** /tmp tmpfs size. @default 16 */
  tmpfsMb?: number
  /**
   * Node's permission model inside the sandbox (no child_process/worker_threads, fs limited to
   * the shim and /tmp): defence in depth behind gVisor. Only tests turn it off, to show what
   * gVisor alone exposes. @default true
   */
  permissionModel?: boolean
  /** Node/V8 flags of the shim (tuning; see DEFAULT_NODE_FLAGS). */
  nodeFlags?: string[]
  /** checks at start that runsc works and limits are enforced; refuses to start otherwise. @default true */
  selfTest?: boolean
  /** options of the host-brokered fetch (limits; the address filter is a component) */
  fetch?: FetchBrokerInit
  /** @default SANDBOX_LIMITS.maxResponseBytes */
  maxResponseBytes?: number
  /** @default SANDBOX_LIMITS.maxLogBytes */
  maxLogBytes?: number
}

/** What a test or operator can inspect about the executor's sandboxes. */
export interface GvisorExecutor extends Executor {
  readonly runscRoot: string
  readonly cgroupParent: string
  /** sandboxes alive now, idle and busy */
  readonly size: number
  /** sandboxes booted since start */
  readonly booted: number
  /** executions that waited for a sandbox slot since start (load that was queued, not booted for) */
  readonly waitedForSlot: number
  idleGeneric: () => number
  idleFor: (cid: string) => number
  /** waits until the pool holds its targets (generic + prewarmed), or `timeoutMs` passes */
  settled: (timeoutMs?: number) => Promise<boolean>
}

/**
 * Node/V8 flags for the shim under gVisor (measured by `npm run bench:sandbox-cpu`; see docs/sandbox.md).
 *
 * `--single-threaded`: V8 compiles and collects on the shim's one thread instead of handing the
 * work to its platform threads. Every execution's fresh realm had V8 wake one or more of those
 * threads (about 5 futex calls per execution, each a round trip through gVisor's ptrace tracer):
 * with the flag an execution of hello costs 4–6 system calls instead of 13–14, and a sandbox
 * running 4 at once answers ≈ 45 % more executions per second for ≈ 35 % less CPU
 * (docs/benchmarks.md, "System calls per execution, and boots under load").
 *
 * `--no-incremental-marking`: every fresh realm is garbage only a full collection frees, so V8 kept
 * an incremental marking cycle running nearly all the time, one step per execution, each step a
 * task posted through the platform's event-loop wake-up (an eventfd write, its read and an extra
 * epoll: ≈ 2.5 of the remaining 7.4 system calls of an execution). The shim already collects
 * between executions (session.ts); a collection V8 still needs under sustained load is done in one
 * go. Hello: c=1 367 → 473 executions/s, c=4 602 → 772, p99 lower too (same docs section).
 */
export const DEFAULT_NODE_FLAGS: string[] = ['--single-threaded', '--no-incremental-marking']

/**
 * A sandbox that dies within this many ms of receiving a job did not die of the job: no function
 * allocates past its memory limit that fast (256 MiB at 5 GB/s takes 50 ms).
 */
const INSTANT_DEATH_MS = 25

/** Sandboxes tried for one execution when each is found dead on arrival (several killed at once). */
const MAX_ATTEMPTS = 4

const PROBE = `module.exports.default = { async fetch (req) {
  const mode = new URL(req.url).pathname
  if (mode === '/hello') return new Response('probe-ok')
  if (mode === '/network') {
    // the realm is not the boundary: reach past it for the net module and try the metadata address
    const net = Response.constructor.constructor('return process')().getBuiltinModule('net')
    const outcome = await new Promise(resolve => { const s = net.connect({ host: '169.254.169.254', port: 80, timeout: 2000 }); s.on('connect', () => { s.destroy(); resolve('CONNECTED') }); s.on('error', () => resolve('isolated')); s.on('timeout', () => { s.destroy(); resolve('isolated') }) })
    return new Response(outcome)
  }
  if (mode === '/memory') { const a = []; for (let i = 0; i < 4096; i++) { const b = new Uint8Array(8 * 1024 * 1024); b.fill(1); a.push(b) } return new Response('not-killed ' + a.length) }
  return new Response('?', { status: 404 })
} }`

class GvisorExecutorImpl implements GvisorExecutor {
  readonly kind = 'gvisor'
  readonly sessions = true
  readonly runscRoot: string
  readonly cgroupParent: string
  private readonly init: GvisorExecutorInit
  private readonly log?: ExecutorComponents['logger']
  private readonly base: string
  private readonly rc: RunscConfig
  private readonly broker: FetchBroker
  private pool?: Pool
  private rootfs?: string
  private sweepTimer?: ReturnType<typeof setInterval>
  private starting?: Promise<void>
  private running = false
  private seq = 0
  private readonly idPrefix: string
  private nextExecId = 1

  constructor (init: GvisorExecutorInit, components: ExecutorComponents) {
    if (typeof init.dataDir !== 'string' || init.dataDir === '') throw new SandboxError('CONFIG', 'gvisorExecutor needs a dataDir for its rootfs and runsc state')
    this.init = init
    this.log = components.logger
    this.base = join(resolve(init.dataDir), 'sandbox')
    this.runscRoot = join(this.base, 'runsc')
    const tag = createHash('sha256').update(this.runscRoot).digest('hex').slice(0, 10)
    this.cgroupParent = `peerhost-${tag}`
    this.idPrefix = `ph-${tag}`
    this.rc = { binary: init.runsc ?? '/usr/bin/runsc', root: this.runscRoot, platform: init.platform ?? 'ptrace', extraFlags: init.runscFlags }
    this.broker = fetchBroker(init.fetch, { addressFilter: components.addressFilter })
  }

  get size (): number { return this.pool?.size ?? 0 }
  get booted (): number { return this.pool?.booted ?? 0 }
  get waitedForSlot (): number { return this.pool?.waited ?? 0 }
  stats (): ExecutorStats {
    return { sandboxes: this.pool?.size ?? 0, booted: this.pool?.booted ?? 0, booting: this.pool?.bootsInFlight ?? 0, waitedForSlot: this.pool?.waited ?? 0, bootsDeferred: this.pool?.deferred ?? 0, bootsWanted: this.pool?.wanted ?? 0 }
  }
  idleGeneric (): number { return this.pool?.idleGeneric ?? 0 }
  idleFor (cid: string): number { return this.pool?.idleFor(cid) ?? 0 }
  warm (): string[] { return this.pool?.warm() ?? [] }

  private bootSandbox (memoryMb: number, urgent: boolean, generic = false): Sandbox {
    const id = `${this.idPrefix}-${++this.seq}-${randomBytes(3).toString('hex')}`
    const sb: Sandbox = new Sandbox({
      id,
      runsc: this.rc,
      bundleDir: join(this.base, 'bundles', id),
      spec: {
        rootfs: this.rootfs!,
        memoryMb,
        memoryHeadroomMb: this.init.memoryHeadroomMb ?? 128,
        cpus: this.init.cpus ?? 1,
        tmpfsMb: this.init.tmpfsMb ?? 16,
        cgroupsPath: `/${this.cgroupParent}/${id}/box`,
        maxFrameBytes: SANDBOX_LIMITS.maxChannelFrameBytes,
        permissionModel: this.init.permissionModel,
        nodeFlags: this.init.nodeFlags ?? DEFAULT_NODE_FLAGS
      },
      maxStderrBytes: SANDBOX_LIMITS.maxStderrBytes,
      meterCgroup: `/${this.cgroupParent}/${id}`,
      // a request waits for a cold boot: it must not queue behind everything else on the machine
      lowPriorityBoot: !urgent,
      gate: this.init.bootGate ?? sharedBootGate(),
      bootPriority: urgent ? 0 : generic ? 2 : 1,
      onExit: (s) => { this.pool?.exited(s) }
    })
    // what a boot costs here, and how long it queued behind others (docs/benchmarks.md, start-up)
    sb.ready.then(() => { this.log?.info({ sandbox: id, kind: urgent ? 'request' : generic ? 'generic' : 'version', ...sb.bootTimes }, 'sandbox booted') }, () => {})
    return sb
  }

  /** Removes containers and cgroups a previous run of this worker left behind. */
  private async cleanupStale (): Promise<void> {
    const stale = await listContainers(this.rc)
    for (const id of stale) await destroyContainer(this.rc, id)
    if (stale.length > 0) this.log?.warn({ count: stale.length }, 'removed stale runsc containers')
    removeCgroups(this.cgroupParent)
    rmSync(join(this.base, 'bundles'), { recursive: true, force: true })
  }

  async start (options: AbortOptions = {}): Promise<void> {
    if (this.running) return
    this.starting ??= this.doStart(options).finally(() => { this.starting = undefined })
    await this.starting
  }

  private async doStart (options: AbortOptions): Promise<void> {
    try {
      accessSync(this.rc.binary, fsConstants.X_OK)
      // asynchronous: several executors of one process (the devnet's) start at once
      await promisify(execFile)(this.rc.binary, ['--version'], { timeout: 10_000 })
    } catch (err) {
      throw new SandboxError('RUNSC_MISSING', `gVisor's runsc was not found or does not run at ${this.rc.binary}; install it (Debian: apt-get install runsc) or point the worker's sandbox.runsc option at it`, { cause: err })
    }
    mkdirSync(this.runscRoot, { recursive: true, mode: 0o700 })
    await this.cleanupStale()
    if (this.init.sandboxCpuShares !== undefined) {
      const shares = Math.max(2, Math.min(262_144, Math.round(this.init.sandboxCpuShares)))
      if (!weighCgroup(`/${this.cgroupParent}`, { v1: shares, v2: Math.max(1, Math.min(10_000, Math.round(shares * 100 / 1024))) })) this.log?.warn({ shares }, 'the sandboxes\' CPU weight could not be set (no writable cpu cgroup)')
    }
    options.signal?.throwIfAborted()
    this.rootfs = ensureRootfs({ dataDir: this.init.rootfsDir ?? this.base, nodeBinary: this.init.nodeBinary })
    this.pool = new Pool({
      genericSize: this.init.genericPoolSize ?? 2,
      perFunction: this.init.perFunctionPoolSize ?? 2,
      maxPerFunction: this.init.maxSandboxesPerFunction ?? GVISOR_POOL_DEFAULTS.maxSandboxesPerFunction,
      concurrency: this.init.concurrencyPerSandbox ?? GVISOR_POOL_DEFAULTS.concurrencyPerSandbox,
      sessionMemoryMb: this.init.sessionMemoryMb ?? GVISOR_POOL_DEFAULTS.sessionMemoryMb,
      maxExecutions: this.init.maxExecutionsPerSandbox ?? GVISOR_POOL_DEFAULTS.maxExecutionsPerSandbox,
      maxAgeMs: this.init.maxSandboxAgeMs ?? GVISOR_POOL_DEFAULTS.maxSandboxAgeMs,
      retireGraceFactor: this.init.retireGraceFactor ?? GVISOR_POOL_DEFAULTS.retireGraceFactor,
      bootQuietMs: this.init.bootQuietMs ?? GVISOR_POOL_DEFAULTS.bootQuietMs,
      maxSandboxes: this.init.maxSandboxes ?? 16,
      maxConcurrentBoots: this.init.maxConcurrentBoots ?? 2,
      defaultMemoryMb: this.init.defaultMemoryMb ?? 128,
      maxWarmFunctions: 32
    }, (memoryMb, urgent, generic) => this.bootSandbox(memoryMb, urgent, generic), (err) => { this.log?.warn({ err: String(err) }, 'sandbox failed to boot') }, Date.now, this.init.bootGate ?? sharedBootGate())
    this.running = true
    if (this.init.selfTest !== false) {
      try {
        await this.selfTest()
      } catch (err) {
        await this.stop()
        throw err
      }
    }
    this.pool.refill()
    this.sweepTimer = setInterval(() => { this.pool?.sweep() }, 5_000)
    this.sweepTimer.unref()
    this.log?.info({ runscRoot: this.runscRoot, platform: this.rc.platform }, 'gVisor executor started')
  }

  /**
   * Proves the deployment before accepting jobs (SBX-16): a sandbox boots and answers, cannot
   * open a TCP connection, and a function allocating past its memory limit is stopped with
   * LIMIT_MEMORY by the cgroup.
   */
  private async selfTest (): Promise<void> {
    const bytes = new TextEncoder().encode(PROBE)
    // a real CID: warm() lists pool keys, and adverts accept only CIDs
    const bundle = { cid: rawCid(bytes), bytes }
    const options: FunctionOptions = { memoryMb: 64, timeoutMs: 15_000, network: [], isolation: 'function' }
    const job = (path: string): ExecutionJob => ({
      jobId: 'self-test',
      bundle,
      request: { method: 'GET', url: `http://self-test${path}`, headers: [], body: new Uint8Array(0) },
      env: {},
      // the memory probe gets a sandbox of its own, untouched by the earlier probes
      options: path === '/memory' ? { ...options, isolation: 'execution' } : options,
      deadline: Date.now() + 30_000
    })
    const hello = await this.execute(job('/hello'))
    if (hello.response === undefined || new TextDecoder().decode(hello.response.body) !== 'probe-ok') {
      throw new SandboxError('SELF_TEST_FAILED', `a gVisor sandbox did not run the probe function (${hello.error?.code ?? 'bad answer'}); check that runsc works here: runsc --root /tmp/x --platform=${this.rc.platform} --network=none do true. ${this.lastStderr}`.trim())
    }
    const net = await this.execute(job('/network'))
    if (net.response === undefined || new TextDecoder().decode(net.response.body) !== 'isolated') {
      throw new SandboxError('SELF_TEST_FAILED', 'a sandbox reached the network although it must have no network device; check that runsc gets --network=none and is the gVisor build from the runsc package')
    }
    // one retry: a loaded machine can disturb a single probe; a missing limit fails both
    let mem = await this.execute(job('/memory'))
    if (mem.error?.code !== 'LIMIT_MEMORY') {
      this.log?.warn({ error: mem.error, stderr: this.lastStderr }, 'memory-limit probe: unexpected outcome, retrying once')
      mem = await this.execute(job('/memory'))
    }
    // the probe function is no function of anyone's: it must not stay warm or be advertised
    this.pool?.forget(bundle.cid)
    if (mem.error?.code !== 'LIMIT_MEMORY') {
      throw new SandboxError('SELF_TEST_FAILED', `the sandbox memory limit is not enforced (probe got ${mem.error?.code ?? 'a response'}${mem.error?.details !== undefined ? ` ${JSON.stringify(mem.error.details)}` : ''}); enable the cgroup memory controller (cgroup v1 memory or cgroup v2 with memory delegated) and run the worker as root`, { details: { probe: mem.error?.code ?? 'response', stderr: this.lastStderr } })
    }
  }

  private lastStderr = ''

  /** LIMIT_MEMORY with the sandbox cgroup's peak (the whole sandbox: heap, Node, the Sentry), or none measured */
  private memoryError (sb: Sandbox, memoryMb: number, extra: Record<string, string>): WireError {
    const peak = sb.memoryPeak()
    return limitError('LIMIT_MEMORY', 'memoryMb', peak === undefined ? undefined : Math.round(peak / (1024 * 1024)), memoryMb, { source: peak === undefined ? 'unavailable' : 'cgroup-peak', sandboxLimitMb: memoryMb + (this.init.memoryHeadroomMb ?? 128), ...extra })
  }

  async stop (): Promise<void> {
    this.running = false
    clearInterval(this.sweepTimer)
    await this.pool?.stop()
    this.pool = undefined
    // belt and braces: anything still in our runsc root goes too
    await Promise.all((await listContainers(this.rc)).map(async id => { await destroyContainer(this.rc, id) }))
    // a memory cgroup whose last task just exited can refuse rmdir (EBUSY) for a moment: retry briefly
    for (let i = 0; i < 20 && removeCgroups(this.cgroupParent).length > 0; i++) await new Promise(resolve => setTimeout(resolve, 100))
    rmSync(join(this.base, 'bundles'), { recursive: true, force: true })
  }

  async prewarm (bundle: BundleRef, options: FunctionOptions): Promise<void> {
    this.pool?.want(bundle.cid, options.memoryMb, options.isolation)
  }

  async settled (timeoutMs = 30_000): Promise<boolean> {
    const until = Date.now() + timeoutMs
    while (Date.now() < until) {
      const p = this.pool
      if (p === undefined) return false
      if (p.idleGeneric >= p.targets.genericSize && p.bootsInFlight === 0) return true
      await new Promise(resolve => setTimeout(resolve, 50))
    }
    return false
  }

  async execute (job: ExecutionJob, options: ExecuteOptions = {}): Promise<ExecutionResult> {
    if (!this.running || this.pool === undefined) throw new SandboxError('NOT_STARTED', 'the executor is not started; call start() first')
    options.signal?.throwIfAborted()
    const t0 = performance.now()
    const maxResponseBytes = this.init.maxResponseBytes ?? SANDBOX_LIMITS.maxResponseBytes
    const maxLogBytes = this.init.maxLogBytes ?? SANDBOX_LIMITS.maxLogBytes
    const { cid } = job.bundle
    const { isolation, memoryMb } = job.options
    let sb!: Sandbox
    let outcome!: ExecOutcome
    let queueMs = 0
    let tSent = 0
    let timeoutMs = 0
    let elapsed = 0
    let cpuAtStart: number | undefined
    let execId = 0
    let body: HostStream | undefined
    /** a session's message listener held the CPU past the limit (eventWatch) */
    let eventBreach = false
    // a sandbox that died the instant it got the job (killed while idle, before its exit was
    // seen) says nothing about the function: try again on another sandbox (a few times: several may have been killed at once)
    for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
      try {
        sb = await this.pool.acquire(cid, memoryMb, isolation, options.signal, options.session !== undefined)
      } catch (err) {
        if (options.signal?.aborted === true || err instanceof PoolWaitAborted) {
          // the caller left (or the executor stopped, or the job's deadline passed) while the job
          // waited for a slot: nothing ran
          return errorResult(abortedError(job), { queueMs: performance.now() - t0, execMs: 0, sandboxMs: 0 })
        }
        this.log?.error({ err: String(err) }, 'no sandbox for execution')
        this.lastStderr = String(err).slice(0, 500)
        return errorResult(wireError('SANDBOX_INFRA'), { queueMs: performance.now() - t0, execMs: 0, sandboxMs: 0 })
      }
      queueMs = performance.now() - t0
      if (options.signal?.aborted === true) {
        // the caller left before anything ran: the sandbox is untouched and goes straight back
        this.pool.release(sb, cid, isolation, !sb.dead, options.session !== undefined)
        return errorResult(abortedError(job), { queueMs, execMs: 0, sandboxMs: 0 })
      }
      timeoutMs = effectiveTimeoutMs(job.options.timeoutMs, job.deadline)
      const deadline = Date.now() + timeoutMs
      let fetches = 0
      /** this execution has said something to its caller: a session opened, a body head went out */
      let spoke = false
      const fetch = this.broker.forExecution(job.options.network, deadline)
      execId = this.nextExecId++
      const msg: ExecMessage = {
        t: 'exec',
        id: execId,
        cid,
        bundle: sb.bundles.has(cid) ? undefined : job.bundle.bytes,
        request: job.request,
        env: job.env,
        limits: { timeoutMs, maxResponseBytes, maxLogBytes, network: job.options.network.length > 0, maxSubrequests: SANDBOX_LIMITS.maxSubrequests },
        wipeTmp: isolation === 'function'
      }
      const session = options.session
      let credit: SessionCredit | undefined
      let watch: EventWatch | undefined
      const box = sb
      const bodyId = msg.id
      body = options.stream === undefined || session !== undefined ? undefined : hostStream(options.stream, (bytes, cancel) => { box.post(cancel === true ? { t: 'body-ack', id: bodyId, bytes, cancel } : { t: 'body-ack', id: bodyId, bytes }) })
      if (body !== undefined) msg.stream = options.stream!.maxBytes
      if (session !== undefined) {
        msg.session = session.maxSessionMs
        const box = sb
        const id = msg.id
        // per-session flow control: the sandbox's output is never paused (its other sessions and
        // executions share it); a slow client stops this session's acknowledgements instead
        credit = sessionCredit((bytes) => { box.post({ t: 'ws-ack', id, bytes }) })
        // CPU per event: a listener holding the shim's event loop past timeoutMs stalls every
        // session sharing the sandbox; the sandbox goes (this execution's fault: LIMIT_CPU)
        const limitMs = job.options.timeoutMs + SANDBOX_LIMITS.killGraceMs
        watch = eventWatch(limitMs, () => {
          this.log?.warn({ sandbox: box.id, execId: id, limitMs }, 'a session\'s message listener held the CPU past its limit; ending the sandbox')
          box.faultOf ??= id
          eventBreach = true
          void box.destroy()
        })
        const w = watch
        session.bind({
          send: (data, binary) => { w.sent(); box.post({ t: 'ws-in', id, data, binary }) },
          close: (code, reason) => { box.post({ t: 'ws-close-in', id, code, reason }) },
          pause: credit.pause,
          resume: credit.resume
        })
      }
      tSent = performance.now()
      // cgroup CPU accounting at the start: a LIMIT_CPU reports CPU time, not wall-clock time (a
      // reading up to SANDBOX_LIMITS.cpuSampleMs old: it may count a little of the sandbox's CPU
      // before the start, which only makes the starvation verdict stricter)
      cpuAtStart = sb.cpuNs(SANDBOX_LIMITS.cpuSampleMs)
      // An abort (the job stream closed) does not stop a running execution: destroying a healthy
      // sandbox would cost a boot (~0.5 s of a core) per stream an attacker opens and closes. The
      // execution runs to its end or its limit, bounded like any other, and the sandbox is then
      // released (or recycled) as usual, off the request path. The caller's slot stays taken
      // meanwhile, so aborted jobs cannot pile up more busy sandboxes than the worker's capacity.
      // a reading up to SANDBOX_LIMITS.runDelaySampleMs old: waiting just before the start counts
      // as waiting (a verdict at most that much more lenient), and a busy sandbox is read a few
      // times a second instead of once per request (5 % of a loaded devnet's CPU went to it)
      const delayAtStart = sb.runDelayNs(SANDBOX_LIMITS.runDelaySampleMs)
      const sandbox = sb
      const sent = tSent
      const cpuStart = cpuAtStart
      let extendedMs = 0
      outcome = await sb.exec(msg, timeoutMs + (session?.maxSessionMs ?? 0) + SANDBOX_LIMITS.killGraceMs, async (m) => { fetches++; return await fetch(m.request) }, () => {
        const delayNow = sandbox.runDelayNs()
        const cpuNow = sandbox.cpuNs()
        const more = hostTimeoutVerdict({
          extendedMs,
          wallMs: performance.now() - sent,
          waitedMs: delayAtStart === undefined || delayNow === undefined ? undefined : (delayNow - delayAtStart) / 1e6,
          cpuMs: cpuStart === undefined || cpuNow === undefined ? undefined : (cpuNow - cpuStart) / 1e6,
          timeoutMs,
          leftMs: job.deadline - Date.now() - SANDBOX_LIMITS.killGraceMs
        })
        extendedMs += more
        return more
      }, session === undefined
        ? undefined
        : (m) => {
            if (m.t === 'ws-done') watch?.done()
            else if (m.t === 'ws-open') {
              // once per execution: a second open (a shim gone wrong) is not a second session
              if (spoke) return
              spoke = true
              session.onOpen(Array.isArray(m.headers) ? m.headers.filter(h => Array.isArray(h) && typeof h[0] === 'string' && typeof h[1] === 'string').slice(0, 64) : [])
            } else if (m.t === 'ws-out') {
              // the shim's output is untrusted (SBX-12): only text or bytes go on
              if (m.data instanceof Uint8Array) { session.onMessage(m.data, m.binary === true); credit?.passed(m.data.byteLength) }
            } else session.onClose(Number.isInteger(m.code) ? m.code : 1011, typeof m.reason === 'string' ? m.reason.slice(0, 123) : '')
          }, body === undefined ? undefined : (m) => { spoke = true; body?.onMessage(m) })
      watch?.stop()
      elapsed = performance.now() - tSent
      const diedAfter = (sb.endedAt ?? performance.now()) - tSent
      // retried only when nothing of this execution reached anyone: no subrequest, and no session
      // opened or body head sent (a second attempt would open a second session, or send a second
      // head, on the same job stream)
      if (outcome.kind === 'died' && diedAfter < INSTANT_DEATH_MS && fetches === 0 && !spoke && attempt < MAX_ATTEMPTS) {
        this.log?.warn({ sandbox: sb.id, exitCode: outcome.exitCode, stderr: sb.stderr.slice(-500) }, 'sandbox was dead when it got a job; retrying on another')
        this.pool.discard(sb)
        continue
      }
      break
    }
    const timings = (execMs: number): { queueMs: number, execMs: number, sandboxMs: number } =>
      ({ queueMs, execMs, sandboxMs: Math.max(0, performance.now() - t0 - queueMs - execMs) })

    let result: ExecutionResult
    let healthy = true
    if (outcome.kind === 'result') {
      result = shapeResult(outcome.msg, { maxResponseBytes, maxLogBytes, session: options.session !== undefined }, timings(typeof outcome.msg.execMs === 'number' ? outcome.msg.execMs : elapsed))
      if (result.error?.code === 'LIMIT_MEMORY') {
        // an allocation the sandbox refused near its cgroup limit: the shim says so, the cgroup
        // says how much the sandbox held (the shim's own figures are not believed)
        result = { ...result, error: this.memoryError(sb, memoryMb, { reason: 'allocation-failed' }) }
      }
    } else if (outcome.kind === 'died' && eventBreach && sb.faultOf === execId) {
      healthy = false
      const cpuNow = sb.cpuNs()
      const cpuMs = cpuAtStart !== undefined && cpuNow !== undefined ? Math.round((cpuNow - cpuAtStart) / 1e6) : undefined
      result = errorResult(limitError('LIMIT_CPU', 'cpuMs', cpuMs, job.options.timeoutMs, { source: 'event', wallMs: Math.round(elapsed) }), timings(elapsed))
    } else if (outcome.kind === 'died' && sb.faultOf !== undefined && sb.faultOf !== execId && outcome.reason !== 'oom') {
      // another execution in this sandbox hung or broke the channel and took the sandbox down with
      // it: nothing this function did in this request
      healthy = false
      result = errorResult(wireError('SANDBOX_INFRA', { reason: 'shared-sandbox-recycled' }), timings(elapsed))
    } else if (outcome.kind === 'hung') {
      // the shim answers LIMIT_TIMEOUT itself when its event loop is free; silence until the
      // host deadline means its event loop was blocked (by computing, or by a blocking wait).
      // `measured` is the CPU time the sandbox's cgroup accounted meanwhile, read before the
      // sandbox is destroyed; the wall-clock time goes separately as `wallMs`.
      healthy = false
      const cpuNow = sb.cpuNs()
      const cpuMs = cpuAtStart !== undefined && cpuNow !== undefined ? Math.round((cpuNow - cpuAtStart) / 1e6) : undefined
      result = errorResult(limitError('LIMIT_CPU', 'cpuMs', cpuMs, timeoutMs, { source: cpuMs === undefined ? 'unavailable' : 'cgroup', wallMs: Math.round(elapsed) }), timings(elapsed))
    } else {
      healthy = false
      this.lastStderr = sb.stderr.slice(0, 500)
      if ((sb.endedAt ?? performance.now()) - tSent < INSTANT_DEATH_MS && outcome.reason !== 'channel') {
        // dead on arrival twice: the sandbox, not the function
        result = errorResult(wireError('SANDBOX_INFRA'), timings(elapsed))
      } else if (outcome.reason === 'oom' && sb.eventAtDeath !== undefined && sb.eventAtDeath !== execId) {
        // a session sharing this sandbox ran it out of memory in its message listener: not this one
        result = errorResult(wireError('SANDBOX_INFRA', { reason: 'shared-sandbox-memory' }), timings(elapsed))
      } else if (outcome.reason === 'oom') {
        // the cgroup's peak (the whole sandbox: heap, Node, the Sentry), read as the sandbox died;
        // in a shared sandbox where the culprit cannot be told, every execution there gets this
        result = errorResult(this.memoryError(sb, memoryMb, sb.eventAtDeath === execId ? { during: 'message-listener' } : {}), timings(elapsed))
      } else if (outcome.reason === 'channel') {
        result = errorResult(wireError('RESULT_INVALID'), timings(elapsed))
      } else if (/panic|runsc|gofer|sentry/i.test(sb.stderr)) {
        this.log?.error({ sandbox: sb.id, exitCode: outcome.exitCode, stderr: sb.stderr.slice(0, 2000) }, 'sandbox crashed (infrastructure)')
        result = errorResult(wireError('SANDBOX_INFRA'), timings(elapsed))
      } else {
        result = errorResult(wireError('FUNCTION_ERROR', { reason: 'sandbox-exited', exitCode: outcome.exitCode ?? -1 }), timings(elapsed))
      }
    }
    if (options.session === undefined) result = deadlineCut(result, job.options.timeoutMs, timeoutMs)
    if (!healthy) {
      // once per sandbox, by the first execution that saw it end: what ended it and what it held
      // (an operator's answer to "why did these sessions close 1011")
      if (!sb.endLogged) {
        sb.endLogged = true
        // a limit enforced on the one execution there is routine (info); a sandbox whose end took
        // others with it, or that failed by itself, is what an operator looks for (warn)
        const routine = sb.inflight <= 1 && result.error?.code !== 'SANDBOX_INFRA' && result.error?.code !== 'FUNCTION_ERROR'
        this.log?.[routine ? 'info' : 'warn']({
          sandbox: sb.id,
          outcome: outcome.kind === 'died' ? `died (${outcome.reason}, exit ${String(outcome.exitCode)})` : outcome.kind,
          error: result.error?.code,
          reason: result.error?.details?.reason,
          faultOf: sb.faultOf === undefined ? 'none' : sb.faultOf === execId ? 'this execution' : 'another execution',
          inflight: sb.inflight,
          sessions: sb.sessions,
          stderr: sb.stderr.slice(-1500)
        }, 'sandbox ended')
      }
      sb.faultOf ??= execId
      void sb.destroy()
    }
    this.pool?.release(sb, cid, isolation, healthy && !sb.dead, options.session !== undefined)
    // nobody waits for the answer any more; the sandbox was handled on its merits above. A
    // session's signal includes its opening deadline, long past when it ends: its own outcome
    // (LIMIT_CPU, a neighbour's fault) is what its client and receipt must say
    if (options.signal?.aborted === true && options.session === undefined) return errorResult(abortedError(job), result.timings)
    return body === undefined ? result : body.finish(result)
  }
}

/**
 * Creates the gVisor executor.
 *
 * @example
 * const executor = gvisorExecutor({ dataDir: '/var/lib/peerhost/worker' })({ logger })
 * await executor.start()            // self-test; throws SandboxError with a fix if runsc is unusable
 * await executor.prewarm(bundle, options)
 * const result = await executor.execute(job)
 * await executor.stop()             // no container or cgroup left behind
 */
export function gvisorExecutor (init: GvisorExecutorInit): (components?: ExecutorComponents) => GvisorExecutor {
  return (components = {}) => new GvisorExecutorImpl(init, components)
}

/** For tests: containers and cgroups a stopped executor left behind (both must be empty). */
export async function leftovers (executor: GvisorExecutor): Promise<{ containers: string[], cgroups: string[] }> {
  const rc: RunscConfig = { binary: '/usr/bin/runsc', root: executor.runscRoot, platform: 'ptrace' }
  const r = await runsc(rc, ['list', '--quiet'])
  return { containers: r.stdout.split('\n').filter(s => s.trim() !== ''), cgroups: leftoverCgroups(executor.cgroupParent) }
}
