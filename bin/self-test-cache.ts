/**
 * The gVisor executor proves, before it takes jobs, that runsc boots a sandbox, that a sandbox has
 * no network and that the cgroup memory limit holds (sandbox/gvisor/executor.ts `selfTest`). What
 * it proves depends on the machine as booted (kernel, cgroup delegation), the runsc binary and its
 * platform, and the rootfs (Node and the shim) — not on which worker asks. So a proof is recorded
 * once per machine boot under a key of exactly those inputs, and later workers on the same boot
 * (the devnet's other workers, a restarted worker) skip the probes. Anything in the key changing —
 * a reboot, another runsc, another Node or shim — means a new proof.
 */
import { createHash } from 'node:crypto'
import { execFileSync } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { homedir } from 'node:os'
import { basename, join } from 'node:path'

/** Where proofs live: the user's cache directory (0700), never a world-writable one. */
export function selfTestCacheDir (): string {
  return join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'peerhost', 'sandbox-self-test')
}

/** The key of what a self-test proves on this machine now, or undefined when it cannot be known (no runsc, no boot id). */
export async function selfTestKey (dataDir: string, runsc = '/usr/bin/runsc', platform = 'ptrace', rootfsDir = join(dataDir, 'sandbox')): Promise<string | undefined> {
  try {
    const { ensureRootfs } = await import('#sandbox')
    const bootId = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim()
    const st = statSync(runsc)
    const version = execFileSync(runsc, ['--version'], { timeout: 10_000, stdio: 'pipe' }).toString()
    // the rootfs directory is named by the hash of Node, its libraries and the shim
    const rootfs = basename(ensureRootfs({ dataDir: rootfsDir }))
    return createHash('sha256').update([bootId, runsc, st.size, st.mtimeMs, version, platform, rootfs].join('\0')).digest('hex').slice(0, 32)
  } catch {
    return undefined
  }
}

/** Whether a self-test with this key passed on this machine boot. */
export function selfTestProven (key: string | undefined): boolean {
  return key !== undefined && existsSync(join(selfTestCacheDir(), key))
}

/** Records that a self-test with this key passed. */
export function recordSelfTestKey (key: string | undefined): void {
  if (key === undefined) return
  const dir = selfTestCacheDir()
  mkdirSync(dir, { recursive: true, mode: 0o700 })
  writeFileSync(join(dir, key), `${new Date().toISOString()}\n`)
}
