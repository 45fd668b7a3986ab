/** Shared load-generation helpers for benchmarks: bounded loops on loopback with keep-alive. */
import { Agent, request } from 'node:http'

export interface LoadResult {
  requests: number
  errors: number
  seconds: number
  rps: number
  p50: number
  p99: number
  mean: number
}

function percentile (sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]
}

function once (agent: Agent, url: URL): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now()
    const req = request(url, { agent, method: 'GET' }, res => {
      res.on('data', () => {})
      res.on('end', () => res.statusCode === 200 ? resolve(performance.now() - t0) : reject(new Error(`status ${res.statusCode}`)))
    })
    req.on('error', reject)
    req.end()
  })
}

/**
 * `concurrency` loops issue GETs until `requests` have been sent or `maxSeconds` passed.
 * Latencies are client-side, in ms.
 */
export async function load (target: string, concurrency: number, requests: number, maxSeconds = 30): Promise<LoadResult> {
  const url = new URL(target)
  const agent = new Agent({ keepAlive: true, maxSockets: concurrency })
  const latencies: number[] = []
  let sent = 0
  let errors = 0
  const until = performance.now() + maxSeconds * 1000
  const started = performance.now()
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (sent < requests && performance.now() < until) {
      sent++
      try { latencies.push(await once(agent, url)) } catch { errors++ }
    }
  }))
  const seconds = (performance.now() - started) / 1000
  agent.destroy()
  latencies.sort((a, b) => a - b)
  return {
    requests: latencies.length,
    errors,
    seconds,
    rps: latencies.length / seconds,
    p50: percentile(latencies, 0.5),
    p99: percentile(latencies, 0.99),
    mean: latencies.reduce((a, b) => a + b, 0) / Math.max(1, latencies.length)
  }
}

export function fmt (n: number, digits = 2): string {
  return Number.isFinite(n) ? n.toFixed(digits) : 'n/a'
}
