/**
 * `npm run bench:deploy`: on a local network that follows a local Hardhat chain (automining;
 * bootstrap, gateway with --contracts, one worker with the dev executor, each its own process):
 *
 * - deploy → live: from the start of `deployProject` (folder → bundles → pre-flight → upload →
 *   FunctionRegistry.deploy) until the gateway answers 200 with the new version's output,
 *   for `--deploys` successive versions;
 * - bitswap: time for one node to fetch a 1 MB raw block from another over bitswap on 127.0.0.1
 *   (two libp2p nodes in this process, helia with FsBlockstore), `--fetches` distinct blocks.
 *
 *   node bench/deploy.ts [--deploys 5] [--fetches 10]
 */
import { randomBytes } from 'node:crypto'
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { cpus, tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { privateKeyToAccount } from 'viem/accounts'
import { rawCid } from '#protocol'
import { blockStorage, createMeshNode, deployProject, silentLogger } from '#node'
import { BUILDER_KEY, startChainNetwork } from '../test/deploy/chain-network.ts'

const { values } = parseArgs({ options: { deploys: { type: 'string', default: '5' }, fetches: { type: 'string', default: '10' } } })
const root = resolve(import.meta.dirname, '..')
const stats = (xs: number[]): string => {
  const s = [...xs].sort((a, b) => a - b)
  return `median ${s[Math.floor(s.length / 2)].toFixed(0)} ms, min ${s[0].toFixed(0)} ms, max ${s[s.length - 1].toFixed(0)} ms (n=${s.length})`
}

// deploy → live
const net = await startChainNetwork({ workers: 1 })
const work = mkdtempSync(join(tmpdir(), 'peerhost-bench-deploy-'))
const live: number[] = []
const registered: number[] = []
try {
  const src = join(work, 'app')
  cpSync(join(root, 'test', 'fixtures', 'deploy-app'), src, { recursive: true })
  const owner = privateKeyToAccount(BUILDER_KEY).address
  const greet = join(src, 'functions', 'greet.ts')
  const original = readFileSync(greet, 'utf8')
  for (let i = 1; i <= Number(values.deploys); i++) {
    writeFileSync(greet, original.replace('(v1)', `(bench ${i})`))
    const t0 = performance.now()
    const r = await deployProject({ source: src, project: 'bench', gateway: net.gatewayUrl, contracts: net.contracts, account: BUILDER_KEY })
    registered.push(r.liveMs ?? NaN)
    for (;;) {
      const res = await fetch(`${net.gatewayUrl}/${owner}/bench/greet?name=x`)
      if (res.status === 200 && (await res.text()).includes(`(bench ${i})`)) break
      await new Promise(resolve => setTimeout(resolve, 20))
    }
    live.push(performance.now() - t0)
  }
} finally {
  await net.stop()
  rmSync(work, { recursive: true, force: true })
}

// bitswap fetch of a 1 MB bundle
const dir = mkdtempSync(join(tmpdir(), 'peerhost-bench-bitswap-'))
const a = await createMeshNode({ privateKey: await generateKeyPair('Ed25519') })
const b = await createMeshNode({ privateKey: await generateKeyPair('Ed25519') })
await a.start(); await b.start()
const sa = blockStorage({ dataDir: join(dir, 'a') })({ libp2p: a, logger: silentLogger() })
const sb = blockStorage({ dataDir: join(dir, 'b') })({ libp2p: b, logger: silentLogger() })
await sa.start(); await sb.start()
await b.dial(a.getMultiaddrs()[0])
const fetches: number[] = []
try {
  for (let i = 0; i < Number(values.fetches); i++) {
    const bytes = new Uint8Array(randomBytes(1024 * 1024))
    const cid = rawCid(bytes)
    await sa.put(cid, bytes)
    const t0 = performance.now()
    await sb.fetch(cid, { from: a.peerId })
    fetches.push(performance.now() - t0)
  }
} finally {
  await sa.stop(); await sb.stop(); await a.stop(); await b.stop()
  rmSync(dir, { recursive: true, force: true })
}

console.log(`machine: ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, Node ${process.version}`)
console.log(`deploy → live (200 with the new version's output): ${stats(live)}`)
console.log(`deploy → gateway reports live (deployProject waitLive): ${stats(registered)}`)
console.log(`bitswap fetch of a 1 MB bundle (127.0.0.1): ${stats(fetches)}`)
process.exit(0)
