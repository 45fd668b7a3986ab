/**
 * keccak-256 on the hot path: viem's (noble, JavaScript) against protocol/keccak.ts (hash-wasm,
 * WebAssembly), on a digest-sized message and on request/response bodies.
 *   node bench/keccak.ts [--iterations N]
 */
import { keccak256 as viemKeccak } from 'viem'
import { cpus, loadavg } from 'node:os'
import { keccak256 } from '#protocol'

const arg = process.argv.indexOf('--iterations')
const iterations = arg > 0 ? Number(process.argv[arg + 1]) : 20_000

function time (f: () => unknown, n: number): number {
  for (let i = 0; i < Math.min(n, 1_000); i++) f()
  const t0 = performance.now()
  for (let i = 0; i < n; i++) f()
  return (performance.now() - t0) / n
}

console.log(`machine: ${cpus().length} × ${cpus()[0]?.model ?? '?'}, Node ${process.versions.node}, load ${loadavg().map(l => l.toFixed(1)).join(' ')}`)
console.log('| input | viem (noble) µs | protocol/keccak.ts (wasm) µs | ratio |')
console.log('|---|---:|---:|---:|')
for (const size of [66, 224, 4_096, 65_536, 1024 * 1024]) {
  const data = new Uint8Array(size).map((_, i) => i * 7)
  const n = Math.max(20, Math.floor(iterations * 224 / Math.max(224, size)))
  const js = time(() => viemKeccak(data), n) * 1000
  const wasm = time(() => keccak256(data), n) * 1000
  console.log(`| ${size.toLocaleString('en')} B | ${js.toFixed(2)} | ${wasm.toFixed(2)} | ${(js / wasm).toFixed(1)}× |`)
}
