/**
 * What every command shares: loggers, ready lines, signal handling, and the one place that turns
 * errors into one sentence for the user.
 */
import { homedir } from 'node:os'
import { join, resolve } from 'node:path'
import { Registry } from 'prom-client'
import { CommanderError, InvalidArgumentError } from '@commander-js/extra-typings'
import { createLogger, PeerHostError } from './light.ts'
import type { Logger } from './deps.ts'

export interface CommonOptions {
  json?: boolean
  logLevel?: string
}

export function logger (opts: CommonOptions, name: string): Logger {
  return createLogger({ level: opts.logLevel ?? process.env.PEERHOST_LOG_LEVEL ?? 'info', base: { node: name } })
}

export function registry (): Registry {
  // process metrics (CPU, memory, event loop) are collected by libp2p's prometheus-metrics
  return new Registry()
}

/** Prints a line for people, or one JSON object per line with `--json` (for scripts and devnet). */
export function say (opts: CommonOptions, human: string, data: Record<string, unknown>): void {
  process.stdout.write(opts.json === true ? `${JSON.stringify(data)}\n` : `${human}\n`)
}

export function absolute (p: string): string {
  return resolve(p)
}

/** Runs `stop` on SIGINT/SIGTERM once, then exits. */
export function onShutdown (stop: () => Promise<void>, log?: Logger): void {
  let stopping = false
  const handler = (signal: string): void => {
    if (stopping) return
    stopping = true
    log?.info({ signal }, 'shutting down')
    const force = setTimeout(() => process.exit(1), 15_000)
    force.unref()
    stop().then(() => process.exit(0), (err) => {
      process.stderr.write(`peerhost: shutdown failed: ${(err as Error).message}\n`)
      process.exit(1)
    })
  }
  process.on('SIGINT', () => handler('SIGINT'))
  process.on('SIGTERM', () => handler('SIGTERM'))
}

/** Exit codes: 2 for usage and configuration mistakes, 1 for everything else. */
export function reportError (err: unknown): number {
  if (err instanceof CommanderError) {
    // commander already printed its message (help, version, or a usage error)
    return err.exitCode === 0 ? 0 : 2
  }
  if (err instanceof PeerHostError) {
    process.stderr.write(`peerhost: ${err.message}\n`)
    return err.name === 'ConfigError' ? 2 : 1
  }
  const e = err as NodeJS.ErrnoException
  if (e?.code === 'EADDRINUSE') {
    process.stderr.write(`peerhost: ${e.message.replace(/^listen /, 'cannot listen on ')}; pick another port\n`)
    return 2
  }
  process.stderr.write(`peerhost: ${e?.message ?? String(err)}\n`)
  if (process.env.PEERHOST_DEBUG === '1' && e?.stack !== undefined) process.stderr.write(`${e.stack}\n`)
  return 1
}

/**
 * `--listen` / `--announce` values: multiaddrs such as /ip4/203.0.113.7/tcp/4001 or
 * /dns4/node.example.com/tcp/4001; anything else is a usage error naming the flag.
 */
export function multiaddrList (flag: string): (value: string, previous?: string[]) => string[] {
  return (value, previous = []) => {
    const out = collect(value, previous)
    for (const a of out.slice(previous.length)) {
      if (!/^\/(ip4|ip6|dns|dns4|dns6)\/[^/]+\/tcp\/\d{1,5}(\/(ws|wss|p2p\/[1-9A-HJ-NP-Za-km-z]+))*\/?$/.test(a)) {
        throw new InvalidArgumentError(`${flag} expects multiaddrs such as /ip4/203.0.113.7/tcp/4001 or /dns4/node.example.com/tcp/4001, got "${a}".`)
      }
    }
    return out
  }
}

export function collect (value: string, previous: string[] = []): string[] {
  return [...previous, ...value.split(',').map(s => s.trim()).filter(s => s !== '')]
}

/** A block number option (`--registry-from-block 21500000`). */
export function bigintOption (name: string): (value: string) => bigint {
  return (value: string) => {
    if (!/^\d{1,30}$/.test(value.trim())) throw new InvalidArgumentError(`${name} must be a block number (a whole number ≥ 0).`)
    return BigInt(value.trim())
  }
}

export function intOption (name: string, min: number, max: number): (value: string) => number {
  return (value: string) => {
    const n = Number(value)
    if (!Number.isInteger(n) || n < min || n > max) {
      throw new InvalidArgumentError(`${name} must be a whole number from ${min} to ${max}.`)
    }
    return n
  }
}

/** A folder of PeerHost's per-user cache (`$XDG_CACHE_HOME/peerhost/<name>`, else `~/.cache/peerhost/<name>`). */
export function userCacheDir (name: string): string {
  return join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'peerhost', name)
}
