/**
 * `runsc` invocation: the global flags every command gets (runsc reads some of them again at
 * `start`/`kill`/`delete`, so they must match), plus list/kill/delete helpers used for cleanup.
 */
import { execFile } from 'node:child_process'
import { existsSync, readdirSync, rmdirSync } from 'node:fs'
import { join } from 'node:path'

export interface RunscConfig {
  /** path of the runsc binary */
  binary: string
  /** private state directory (`--root`): lists only this worker's containers */
  root: string
  /** gVisor platform; `ptrace` works on these machines (kvm hangs, systrap needs newer runsc) */
  platform: string
  /** extra global flags (diagnostics, e.g. `--strace --debug-log=/dir/`) */
  extraFlags?: string[]
}

export function runscGlobalArgs (c: RunscConfig): string[] {
  return [
    // this worker's own container state: `runsc list` shows only its sandboxes, so stale ones
    // can be found and removed after a crash
    `--root=${c.root}`,
    // how the Sentry intercepts application syscalls
    `--platform=${c.platform}`,
    // no network device at all: fetch() goes through the host broker over stdio
    '--network=none',
    // sizes the sandbox's visible CPU count from the cgroup quota, so Node sizes its pools to it
    '--cpu-num-from-quota',
    ...(c.extraFlags ?? [])
  ]
}

export interface ExecResult { code: number, stdout: string, stderr: string }

export async function runsc (c: RunscConfig, args: string[], timeoutMs = 10_000): Promise<ExecResult> {
  return await new Promise(resolve => {
    execFile(c.binary, [...runscGlobalArgs(c), ...args], { timeout: timeoutMs, maxBuffer: 4 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err == null ? 0 : (typeof (err as any).code === 'number' ? (err as any).code : -1)
      resolve({ code, stdout: String(stdout), stderr: String(stderr) })
    })
  })
}

/** Container ids in this runsc root. */
export async function listContainers (c: RunscConfig): Promise<string[]> {
  const r = await runsc(c, ['list', '--quiet'])
  if (r.code !== 0) return []
  return r.stdout.split('\n').map(s => s.trim()).filter(s => s !== '')
}

/** Kills and deletes a container; never throws. */
export async function destroyContainer (c: RunscConfig, id: string): Promise<void> {
  await runsc(c, ['kill', id, 'KILL'], 5_000)
  await runsc(c, ['delete', '--force', id], 10_000)
}

/** Cgroup controller roots on this host (v1 controllers and/or the v2 mount). */
export function cgroupRoots (): string[] {
  const base = '/sys/fs/cgroup'
  if (!existsSync(base)) return []
  if (existsSync(join(base, 'cgroup.controllers'))) return [base]
  return readdirSync(base).map(d => join(base, d)).filter(p => existsSync(join(p, 'cgroup.procs')))
}

/** Removes a cgroup directory and the cgroup directories below it (deepest first); returns what stayed. */
function removeTree (dir: string, left: string[]): void {
  try {
    for (const child of readdirSync(dir, { withFileTypes: true })) if (child.isDirectory()) removeTree(join(dir, child.name), left)
  } catch {}
  try { rmdirSync(dir) } catch (err: any) { if (err?.code !== 'ENOENT') left.push(dir) }
}

/**
 * Removes `<controller>/<parent>` and every cgroup directory below it (per-sandbox meter
 * cgroups and runsc's own leaves) in each controller; returns the directories that stayed.
 */
export function removeCgroups (parent: string): string[] {
  const left: string[] = []
  for (const root of cgroupRoots()) {
    const dir = join(root, parent)
    if (existsSync(dir)) removeTree(dir, left)
  }
  return left
}

/** Lists leftover cgroup directories under `parent`, at any depth (tests assert none). */
export function leftoverCgroups (parent: string): string[] {
  const out: string[] = []
  const walk = (dir: string): void => {
    out.push(dir)
    try { for (const child of readdirSync(dir, { withFileTypes: true })) if (child.isDirectory()) walk(join(dir, child.name)) } catch {}
  }
  for (const root of cgroupRoots()) {
    const dir = join(root, parent)
    if (existsSync(dir)) walk(dir)
  }
  return out
}
