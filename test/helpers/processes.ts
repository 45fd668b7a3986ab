/**
 * Process-tree helpers for tests and benches that check what a node started (runsc trees, the
 * chain) and whether anything outlives it.
 */
import { execFileSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { readdirSync, readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'

/** Every process below `pid` (children, grandchildren, …), from one `ps` snapshot. */
export function descendants (pid: number): number[] {
  const out = execFileSync('ps', ['-e', '-o', 'pid=,ppid='], { encoding: 'utf8' })
  const children = new Map<number, number[]>()
  for (const line of out.trim().split('\n')) {
    const [p, pp] = line.trim().split(/\s+/).map(Number)
    children.set(pp, [...(children.get(pp) ?? []), p])
  }
  const all: number[] = []
  const walk = (p: number): void => { for (const c of children.get(p) ?? []) { all.push(c); walk(c) } }
  walk(pid)
  return all
}

/** Resident memory of one process in bytes (VmRSS), 0 when it is gone. */
export function rssBytes (pid: number): number {
  try {
    const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
    return m === null ? 0 : Number(m[1]) * 1024
  } catch { return 0 }
}

/**
 * Memory the sandboxes of the worker whose data dir is `dataDir` use now (cgroup v1
 * memory.usage_in_bytes of each sandbox's meter cgroup, or v2 memory.current), and how many there
 * are. The cgroup parent is named as the gVisor executor names it (sha256 of its runsc root).
 */
export function sandboxMemory (dataDir: string): { sandboxes: number, bytes: number } {
  const tag = createHash('sha256').update(join(resolve(dataDir), 'sandbox', 'runsc')).digest('hex').slice(0, 10)
  let sandboxes = 0
  let bytes = 0
  for (const [root, file] of [['/sys/fs/cgroup/memory', 'memory.usage_in_bytes'], ['/sys/fs/cgroup', 'memory.current']]) {
    let ids: string[]
    try { ids = readdirSync(join(root, `peerhost-${tag}`)).filter(n => n.startsWith('ph-')) } catch { continue }
    for (const id of ids) {
      try { bytes += Number(readFileSync(join(root, `peerhost-${tag}`, id, file), 'utf8').trim()); sandboxes++ } catch {}
    }
    if (sandboxes > 0) break
  }
  return { sandboxes, bytes }
}
