/**
 * `node bench/per-second.ts <url> [connections=16] [seconds=30]`: keep-alive HTTP clients in a
 * loop against `url`, printing each second's completions (2xx), p50 and max latency and the status
 * codes seen. For what happens over time (boots, settlement epochs, warm-up) that wrk's one
 * summary hides; put the devnet's log lines (`sandbox booted`) beside it by time.
 */
import http from 'node:http'

const [url, cs = '16', ss = '30'] = process.argv.slice(2)
if (url === undefined || !/^https?:\/\//.test(url)) throw new Error('usage: node bench/per-second.ts <http url> [connections] [seconds]')
const connections = Number(cs)
const seconds = Number(ss)
if (!Number.isInteger(connections) || connections < 1 || connections > 4096) throw new Error(`connections must be an integer from 1 to 4096; got ${cs}`)
if (!Number.isFinite(seconds) || seconds <= 0 || seconds > 3600) throw new Error(`seconds must be in (0, 3600]; got ${ss}`)
const agent = new http.Agent({ keepAlive: true, maxSockets: connections })
const t0 = Date.now()
const end = t0 + seconds * 1000
let bucket: { ok: number, lat: number[], codes: Record<string, number> } = { ok: 0, lat: [], codes: {} }
const tick = setInterval(() => {
  const l = bucket.lat.sort((a, b) => a - b)
  console.log(`+${Math.round((Date.now() - t0) / 1000)}s ${bucket.ok} ok/s p50 ${(l[Math.floor(l.length / 2)] ?? 0).toFixed(0)} ms max ${(l[l.length - 1] ?? 0).toFixed(0)} ms ${JSON.stringify(bucket.codes)}`)
  bucket = { ok: 0, lat: [], codes: {} }
}, 1000)
async function client (): Promise<void> {
  while (Date.now() < end) {
    const s = performance.now()
    const code = await new Promise<string>(resolve => {
      const r = http.get(url, { agent, timeout: 10_000 }, (res) => { res.resume(); res.on('end', () => { resolve(String(res.statusCode)) }) })
      r.on('error', () => { resolve('error') })
      r.on('timeout', () => { r.destroy(); resolve('timeout') })
    })
    bucket.codes[code] = (bucket.codes[code] ?? 0) + 1
    if (code.startsWith('2')) { bucket.ok++; bucket.lat.push(performance.now() - s) }
  }
}
await Promise.all(Array.from({ length: connections }, client))
clearInterval(tick)
agent.destroy()
