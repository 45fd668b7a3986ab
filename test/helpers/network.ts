/**
 * Real networks for end-to-end tests: one bootstrap node, one gateway and N workers, each a
 * separate `peerhost` process on 127.0.0.1, in a fresh temporary data dir.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { spawnPeerhost, type NodeProcess } from '../../bin/spawn.ts'

export interface TestNetworkInit {
  workers?: number
  projects?: string[]
  /** worker executor flag; @default ['--unsafe-dev-executor'] */
  workerArgs?: string[]
  /** gateway owner wallet for the projects */
  owner?: string
  /** extra gateway flags (e.g. ['--contracts', file]) */
  gatewayArgs?: string[]
  /** more gateway flags; the callback may prepare the gateway's data dir first (e.g. fund its key, then ['--stake', '1']) */
  gatewayArgsFor?: (dataDir: string) => string[] | Promise<string[]>
  /** extra flags per worker; the callback may prepare the worker's data dir first (e.g. fund its key, then ['--contracts', file, '--stake', '1']) */
  workerArgsFor?: (index: number, dataDir: string) => string[] | Promise<string[]>
}

export interface TestNetwork {
  dir: string
  bootstrap: NodeProcess
  bootstrapAddrs: string[]
  gateway: NodeProcess
  gatewayUrl: string
  workers: NodeProcess[]
  /** ready lines of the workers, by index */
  workerInfo: Array<Record<string, any>>
  functions: string[]
  startWorker: (index: number) => Promise<Record<string, any>>
  stop: () => Promise<void>
  /** when each part was ready, ms after the start (also printed to stderr as one line) */
  timeline: Record<string, number>
}

/**
 * A network's start-up timeline: when each part was ready, in ms from the start. Printed as one
 * stderr line per network, so every CI log shows where a spec's before hook spends its time.
 */
export function startupTimeline (label: string): { mark: (part: string) => void, print: () => Record<string, number> } {
  const t0 = Date.now()
  const marks: Record<string, number> = {}
  return {
    mark: part => { marks[part] = Date.now() - t0 },
    print: () => {
      const parts = Object.entries(marks).sort((a, b) => a[1] - b[1]).map(([part, ms]) => `${part} ${(ms / 1000).toFixed(1)} s`)
      process.stderr.write(`      [start-up] ${label}: ${parts.join(', ')}\n`)
      return marks
    }
  }
}

export async function waitFor<T> (what: string, fn: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 15_000, everyMs = 100): Promise<T> {
  const until = Date.now() + timeoutMs
  let last: unknown
  while (Date.now() < until) {
    try {
      const v = await fn()
      if (v !== undefined && v !== false) return v
    } catch (err) { last = err }
    await new Promise(resolve => setTimeout(resolve, everyMs))
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last !== undefined ? ` (last error: ${(last as Error).message})` : ''}`)
}

export async function startTestNetwork (init: TestNetworkInit = {}): Promise<TestNetwork> {
  const dir = mkdtempSync(join(tmpdir(), 'peerhost-e2e-'))
  const logDir = join(dir, 'logs')
  const all: NodeProcess[] = []
  const timeline = startupTimeline(`network of ${init.workers ?? 3} worker(s)`)
  const stop = async (): Promise<void> => {
    // a worker's shutdown destroys its sandboxes (runsc kill + delete: seconds each on a loaded
    // host); a SIGKILL before it ends would orphan them. The node forces its own exit at 15 s.
    await Promise.all(all.map(async p => await p.stop(16_000)))
    if (process.env.PEERHOST_KEEP_TEST_DIRS !== '1') rmSync(dir, { recursive: true, force: true })
  }
  try {
    const bootstrap = spawnPeerhost('bootstrap', ['bootstrap', '--data-dir', join(dir, 'bootstrap'), '--listen', '/ip4/127.0.0.1/tcp/0', '--admin-port', '0', '--log-level', 'warn'], logDir)
    all.push(bootstrap)
    const bootstrapAddrs: string[] = (await bootstrap.ready).addrs
    timeline.mark('bootstrap')
    const workerArgs = init.workerArgs ?? ['--unsafe-dev-executor']
    const workers: NodeProcess[] = []
    const workerInfo: Array<Record<string, any>> = []
    const startWorker = async (i: number): Promise<Record<string, any>> => {
      const extra = await init.workerArgsFor?.(i, join(dir, `worker-${i + 1}`)) ?? []
      const w = spawnPeerhost(`worker-${i + 1}`, ['worker', '--bootstrap', bootstrapAddrs.join(','), '--data-dir', join(dir, `worker-${i + 1}`), '--admin-port', '0', '--log-level', 'info', ...workerArgs, ...extra], logDir)
      all.push(w)
      workers[i] = w
      workerInfo[i] = await w.ready
      timeline.mark(`worker-${i + 1}`)
      return workerInfo[i]
    }
    const gwArgs = ['gateway', '--bootstrap', bootstrapAddrs.join(','), '--port', '0', '--data-dir', join(dir, 'gateway'), '--log-level', 'info']
    for (const p of init.projects ?? []) gwArgs.push('--project', p)
    if (init.owner !== undefined) gwArgs.push('--owner', init.owner)
    gwArgs.push(...init.gatewayArgs ?? [])
    gwArgs.push(...await init.gatewayArgsFor?.(join(dir, 'gateway')) ?? [])
    const gateway = spawnPeerhost('gateway', gwArgs, logDir)
    all.push(gateway)
    await Promise.all(Array.from({ length: init.workers ?? 3 }, async (_, i) => await startWorker(i)))
    const gw = await gateway.ready
    timeline.mark('gateway')
    return { dir, bootstrap, bootstrapAddrs, gateway, gatewayUrl: gw.url, workers, workerInfo, functions: gw.functions, startWorker, stop, timeline: timeline.print() }
  } catch (err) {
    await stop()
    throw err
  }
}

export async function status (net: TestNetwork): Promise<any> {
  return await (await fetch(`${net.gatewayUrl}/_peerhost/status`)).json()
}

/** A TCP port on 127.0.0.1 that was free a moment ago (for servers that cannot take port 0). */
export async function freePort (): Promise<number> {
  return await new Promise((resolve, reject) => {
    const s = createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number }
      s.close(() => resolve(port))
    })
  })
}
