/**
 * The system `git` (https, ssh, file://): clone a URL into a temporary folder, read HEAD.
 */
import { execFile } from 'node:child_process'
import { mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { ConfigError } from '../errors.ts'

const run = promisify(execFile)
const ZERO = `0x${'0'.repeat(64)}` as const

/** `https://…`, `ssh://…`, `git://…`, `file://…` or scp-like `user@host:path`. */
export function isGitUrl (source: string): boolean {
  return /^(https?|ssh|git|file|git\+ssh):\/\//.test(source) || /^[\w.-]+@[\w.-]+:[^/]/.test(source)
}

/** The repository name of a URL: `https://host/me/hello.git` → `hello`. */
export function repoName (url: string): string {
  const last = url.replace(/[#?].*$/, '').replace(/\/+$/, '').split(/[/:]/).pop() ?? ''
  return last.replace(/\.git$/, '')
}

export async function cloneRepo (url: string, options: { signal?: AbortSignal } = {}): Promise<{ dir: string, tmp: string }> {
  const tmp = await mkdtemp(join(tmpdir(), 'peerhost-deploy-'))
  // the folder is named after the repository: it is the default project name
  const dir = join(tmp, repoName(url).toLowerCase().replace(/[^a-z0-9-]/g, '-') || 'project')
  try {
    await run('git', ['clone', '--quiet', '--depth', '1', '--', url, dir], {
      signal: options.signal,
      env: { ...process.env, GIT_TERMINAL_PROMPT: '0' },
      maxBuffer: 1024 * 1024
    })
  } catch (err: any) {
    if (err?.code === 'ENOENT') throw new ConfigError('NO_GIT', 'deploying from a git URL needs the `git` command; install git or deploy a folder')
    const why = String(err?.stderr ?? err?.message ?? err).trim().split('\n').pop()
    throw new ConfigError('GIT_CLONE_FAILED', `cannot clone ${url}: ${why}`, { cause: err })
  }
  return { dir, tmp }
}

/** HEAD of the work tree containing `dir` as bytes32 (SHA-1 left-aligned), or zero when not in git. */
export async function sourceCommit (dir: string): Promise<`0x${string}`> {
  try {
    const { stdout } = await run('git', ['-C', dir, 'rev-parse', 'HEAD'], { env: { ...process.env, GIT_TERMINAL_PROMPT: '0' } })
    const sha = stdout.trim().toLowerCase()
    if (/^[0-9a-f]{40}$/.test(sha)) return `0x${sha.padEnd(64, '0')}`
    if (/^[0-9a-f]{64}$/.test(sha)) return `0x${sha}`
  } catch {}
  return ZERO
}
