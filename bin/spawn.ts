/**
 * Starting `peerhost <command>` as its own process and waiting for its `ready` line — how devnet
 * runs each node, and how end-to-end tests run real networks.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { createWriteStream, mkdirSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { createInterface } from 'node:readline'
import { NodeError } from './light.ts'

export const CLI = resolve(import.meta.dirname, 'peerhost.ts')

export interface NodeProcess {
  name: string
  proc: ChildProcess
  /** the node's `{"event":"ready", …}` line */
  ready: Promise<Record<string, any>>
  /** SIGTERM, then SIGKILL after `graceMs`; resolves when the process has exited */
  stop: (graceMs?: number) => Promise<void>
}

/** Spawns `peerhost <args> --json`, logging its stderr to `<logDir>/<name>.log`. */
export function spawnPeerhost (name: string, args: string[], logDir: string, env: NodeJS.ProcessEnv = process.env): NodeProcess {
  mkdirSync(logDir, { recursive: true })
  const logPath = join(logDir, `${name}.log`)
  const log = createWriteStream(logPath, { flags: 'a' })
  const proc = spawn(process.execPath, [CLI, ...args, '--json'], { stdio: ['ignore', 'pipe', 'pipe'], env })
  proc.stderr!.pipe(log)
  const exited = new Promise<void>(resolve => proc.once('exit', () => resolve()))
  const ready = new Promise<Record<string, any>>((resolve, reject) => {
    const lines = createInterface({ input: proc.stdout! })
    lines.on('line', line => {
      try {
        const msg = JSON.parse(line)
        if (msg.event === 'ready') resolve(msg)
      } catch {}
    })
    proc.once('exit', code => reject(new NodeError('NODE_EXITED', `${name} exited with code ${code} before it was ready; see ${logPath}`)))
  })
  ready.catch(() => {})
  return {
    name,
    proc,
    ready,
    async stop (graceMs = 12_000) {
      if (proc.exitCode !== null || proc.signalCode !== null) return
      proc.kill('SIGTERM')
      const timer = setTimeout(() => proc.kill('SIGKILL'), graceMs)
      await exited
      clearTimeout(timer)
    }
  }
}
