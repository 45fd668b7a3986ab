/**
 * The OCI runtime spec (config.json) of one gVisor sandbox, built by a pure function so it can be
 * unit-tested field by field. Every field says why it is there.
 */

export interface SpecInput {
  /** absolute path of the shared, read-only root filesystem (rootfs.ts) */
  rootfs: string
  /** V8 heap limit the function gets (`--max-old-space-size`) */
  memoryMb: number
  /** cgroup memory limit above the heap: Node's own RSS, buffers, gVisor's Sentry */
  memoryHeadroomMb: number
  /** CPUs the sandbox may use (cgroup CPU quota) */
  cpus: number
  /** size of the /tmp tmpfs */
  tmpfsMb: number
  /** cgroup path (under every v1 controller / the v2 tree) owned by this worker */
  cgroupsPath: string
  /** largest host↔shim frame the shim accepts */
  maxFrameBytes: number
  /** Node's permission model inside the sandbox (defence in depth behind gVisor). @default true */
  permissionModel?: boolean
  /** heap growth between the shim's collections. @default 16 */
  gcStepMb?: number
  /** extra Node/V8 flags (benchmarks and tuning) */
  nodeFlags?: string[]
}

/** Linux uid/gid "nobody": the shim needs no privilege inside the sandbox. */
export const SANDBOX_UID = 65534

/** The sandbox cgroup's memory limit: the V8 heap (at least 16 MiB) plus the headroom. */
export function sandboxMemoryLimitBytes (input: Pick<SpecInput, 'memoryMb' | 'memoryHeadroomMb'>): number {
  return (Math.max(16, Math.floor(input.memoryMb)) + input.memoryHeadroomMb) * 1024 * 1024
}

export function buildOciSpec (input: SpecInput): Record<string, unknown> {
  const heapMb = Math.max(16, Math.floor(input.memoryMb))
  const limitBytes = sandboxMemoryLimitBytes(input)
  const period = 100_000
  return {
    ociVersion: '1.0.0',
    process: {
      // stdio are pipes: the framed channel (stdin/stdout) and the shim's fatal diagnostics (stderr)
      terminal: false,
      // unprivileged inside the sandbox too: defence in depth under gVisor's own user namespace
      user: { uid: SANDBOX_UID, gid: SANDBOX_UID },
      args: [
        '/node',
        // V8 sizes its heap from the (virtualized) MemTotal otherwise; this makes an allocation
        // beyond the function's memory fail inside the sandbox (SBX-13)
        `--max-old-space-size=${heapMb}`,
        // Node's permission model: no child_process, no worker_threads, no native addons, no
        // inspector; file reads only of the shim, writes only to /tmp (defence behind the realm;
        // tests turn it off to show that gVisor alone hides the host)
        ...(input.permissionModel === false ? [] : ['--permission', '--allow-fs-read=/peerhost/', '--allow-fs-read=/tmp/', '--allow-fs-write=/tmp/']),
        // lets the shim collect garbage between executions instead of inside them (session.ts)
        '--expose-gc',
        // no process warnings on stderr (stderr is kept for fatal diagnostics only)
        '--no-warnings',
        ...(input.nodeFlags ?? []),
        '/peerhost/shim.js'
      ],
      // a fixed, minimal environment: nothing of the worker's environment enters the sandbox
      env: [
        `PEERHOST_MAX_FRAME_BYTES=${input.maxFrameBytes}`,
        'TZ=UTC',
        'LANG=C.UTF-8',
        // one libuv thread pool worker is plenty: the shim does almost no async I/O
        'UV_THREADPOOL_SIZE=1',
        // heap growth between the shim's own between-executions collections (session.ts)
        `PEERHOST_GC_STEP_MB=${input.gcStepMb ?? 16}`
      ],
      cwd: '/tmp',
      // no capabilities at all
      capabilities: { bounding: [], effective: [], inheritable: [], permitted: [], ambient: [] },
      rlimits: [
        // bounds file descriptors a function could hoard after escaping its realm
        { type: 'RLIMIT_NOFILE', hard: 256, soft: 256 },
        // no core dumps (they would hold request data)
        { type: 'RLIMIT_CORE', hard: 0, soft: 0 }
      ],
      // setuid binaries (there are none) could not raise privileges anyway
      noNewPrivileges: true
    },
    root: {
      // shared by every sandbox of this worker: node, its libraries and the shim, nothing else
      path: input.rootfs,
      // the function cannot change the runtime or leave files for a later execution
      readonly: true
    },
    hostname: 'sandbox',
    mounts: [
      // gVisor's own procfs: shows only the sandbox's processes, never the host's
      { destination: '/proc', type: 'proc', source: 'proc' },
      // runsc populates /dev with null, zero, random, urandom, full, tty on this tmpfs
      { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'noexec', 'mode=755', 'size=64k'] },
      // the only writable place: small, in memory, wiped between executions by the shim and
      // discarded with the sandbox
      { destination: '/tmp', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev', 'noexec', 'mode=1777', `size=${input.tmpfsMb}m`] }
    ],
    linux: {
      // fresh namespaces of every kind gVisor supports; with --network=none the network
      // namespace holds only loopback
      namespaces: [{ type: 'pid' }, { type: 'network' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }],
      // the worker's cgroup for this sandbox: cleaned up on stop and at the next start
      cgroupsPath: input.cgroupsPath,
      resources: {
        // enforced on the whole sandbox (Sentry + application); a breach is an OOM kill (exit
        // 137). swap = limit: no swapping beyond it.
        memory: { limit: limitBytes, swap: limitBytes },
        // CPU quota: a spinning function cannot take more than `cpus` of the worker's cores.
        // No pids limit: it would apply to gVisor's own host threads (a limit of 32 panics the
        // sandbox at boot); fork bombs are bounded by memory, CPU and wall clock instead, and
        // the permission model offers no child_process or worker_threads.
        cpu: { quota: Math.round(input.cpus * period), period },
        devices: [{ allow: false, access: 'rwm' }]
      },
      // hide host-revealing kernel interfaces (gVisor virtualizes them anyway)
      maskedPaths: ['/proc/kcore', '/proc/keys', '/proc/latency_stats', '/proc/timer_list', '/proc/timer_stats', '/proc/sched_debug', '/sys/firmware', '/proc/scsi'],
      readonlyPaths: ['/proc/asound', '/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger']
    }
  }
}
