/**
 * The test command (`npm test`): type-checks the tree with `tsc --noEmit` while it builds the
 * contracts (solc, when their sources changed), then runs every mocha suite (`test/**\/*.spec.ts`)
 * in one process, and closes with the line CI reads: `N passed, N failed` (the type check counts
 * as one test).
 *
 *   node test/run.ts [--grep <pattern>] [--suite unit|all] [--jobs N] [files…]
 *
 * With `--jobs N` (default 1) the spec files are split into N shards, each run by its own mocha
 * process, while the type check runs beside them. Measured on the 2-core CI machine (2026-12-02):
 * two shards took 1,108 s against about 1,300 s for one, and the doubled load made the gVisor
 * limit tests and a few chain tests fail, so CI runs one shard. Files stay whole within a shard
 * (a file's before/after hooks and its tests run in order, as always); shards are balanced by the
 * durations in SPEC_SECONDS. Each shard's lines are prefixed with its number.
 */
import { spawn } from 'node:child_process'
import { mkdirSync, readdirSync, statfsSync, statSync } from 'node:fs'
import { enableCompileCache } from 'node:module'
import { tmpdir } from 'node:os'
import { join, relative, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { PassThrough } from 'node:stream'
import Mocha from 'mocha'
import { buildContracts } from '../node/chain/local-chain.ts'

const root = resolve(import.meta.dirname, '..')
/** statfs(2) f_type of tmpfs */
const TMPFS_MAGIC = 0x01021994

// Test data dirs (SQLite logs, keys, blockstores, sandbox bundles, installed packages) go to a
// RAM-backed tmpfs when the machine has one and the user chose no TMPDIR: every fsync of the
// nodes' WAL databases and every create/delete of thousands of small files is then memory work
// (a 21,600-file tree: copy 42 → 3.9 s, delete 48 → 0.8 s on this CI host under load). A kill -9
// test kills processes, not the machine, so what it checks holds on tmpfs too.
if (process.env.TMPDIR === undefined) {
  try {
    if (statfsSync('/dev/shm').type === TMPFS_MAGIC) {
      const dir = '/dev/shm/peerhost-tests'
      mkdirSync(dir, { recursive: true })
      process.env.TMPDIR = dir
    }
  } catch {}
}

// Every test starts dozens of Node processes (gateways, workers, bootstraps, CLI commands, Hardhat),
// and each compiles thousands of modules (libp2p, helia, viem) before it does anything: V8's compile
// cache, shared by this process and (through the environment) all of them, takes about a quarter of
// that CPU off every start after the first (measured 2026-12-02: `peerhost versions` 3.8 → 2.8 s of
// user CPU). Keyed by file contents, so an edited file is compiled afresh; a cache the user chose wins.
if (process.env.NODE_COMPILE_CACHE === undefined && process.env.NODE_DISABLE_COMPILE_CACHE === undefined) {
  process.env.NODE_COMPILE_CACHE = join(tmpdir(), 'peerhost-test-compile-cache')
}
if (process.env.NODE_DISABLE_COMPILE_CACHE === undefined) enableCompileCache(process.env.NODE_COMPILE_CACHE)
const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    grep: { type: 'string' },
    suite: { type: 'string', default: 'all' },
    'no-typecheck': { type: 'boolean', default: false },
    jobs: { type: 'string' },
    // internal: this process is one shard of a parallel run (prints its file timings for the parent)
    shard: { type: 'boolean', default: false }
  }
})

/**
 * Seconds per spec file (the slow ones; others count as DEFAULT_SECONDS): only used to balance the
 * shards. From the "slowest spec files" list of the last full CI run (2026-12-02, one shard, 22 min
 * of mocha; files below its top 15 keep their earlier figures), less what later changes moved out
 * of a file: test/chain/checker.spec.ts no longer compiles the contracts in its before hook (the
 * runner builds them beside the type check: 46.5 s → its tests and chain start, about 5 s), and
 * test/e2e/cli-pack.spec.ts starts its devnet beside npm pack/install; quorum and settlement no
 * longer wait 10 s per in-process worker stop (node/worker/worker.ts), and settlement makes 200
 * requests instead of 500. These three are estimates scaled from runs on a loaded machine.
 */
const SPEC_SECONDS: Record<string, number> = {
  'test/sandbox/gvisor-executor.spec.ts': 164,
  'test/e2e/cli-pack.spec.ts': 65,
  'test/e2e/websocket-many.spec.ts': 64,
  'test/e2e/deploy.spec.ts': 64,
  'test/sandbox/dev-server.spec.ts': 56,
  'test/sandbox/through-worker.spec.ts': 54,
  'test/e2e/overload.spec.ts': 50,
  'test/e2e/auth.spec.ts': 44,
  // 500 requests over 2 epochs (measured 2026-12-02: 84 s at load 8, 156 s at load 12–15)
  'test/chain/settlement.spec.ts': 90,
  'test/e2e/secrets.spec.ts': 41,
  'test/e2e/stream.spec.ts': 38,
  'test/e2e/devnet.spec.ts': 38,
  'test/e2e/mesh.spec.ts': 38,
  // first measured on a loaded machine (53–72 s at load 6–21; three gVisor workers start in its before hook)
  'test/e2e/quorum.spec.ts': 40,
  'test/e2e/fallback.spec.ts': 36,
  'test/chain/quorum.spec.ts': 8,
  // measured 2026-12-02: 37 s at load 8
  'test/chain/session-settlement.spec.ts': 37,
  'test/integration/websocket.spec.ts': 34,
  'test/chain/fallback.spec.ts': 33,
  'test/e2e/staking.spec.ts': 32,
  'test/bin/cli.spec.ts': 32,
  'test/chain/checker.spec.ts': 5
}
const DEFAULT_SECONDS = 12

function specs (dir: string): string[] {
  const out: string[] = []
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name)
    if (statSync(p).isDirectory()) out.push(...specs(p))
    else if (name.endsWith('.spec.ts')) out.push(p)
  }
  return out
}

let passed = 0
let failed = 0

let files = positionals.length > 0 ? positionals.map(p => resolve(p)) : specs(join(root, 'test'))
if (values.suite === 'unit') files = files.filter(f => !/[/\\](integration|e2e)[/\\]/.test(f))
const jobs = Math.max(1, Math.min(Number(values.jobs ?? 1) || 1, files.length))

if (jobs > 1 && values.shard !== true) {
  await runShards()
} else {
  await runHere()
}

/** Splits the files into `jobs` shards (longest first onto the least loaded), runs them and the type check at once, and sums their counts. */
async function runShards (): Promise<never> {
  const weight = (f: string): number => SPEC_SECONDS[relative(root, f)] ?? DEFAULT_SECONDS
  const shards: Array<{ files: string[], seconds: number }> = Array.from({ length: jobs }, () => ({ files: [], seconds: 0 }))
  for (const f of [...files].sort((a, b) => weight(b) - weight(a))) {
    const s = shards.reduce((min, x) => x.seconds < min.seconds ? x : min)
    s.files.push(f)
    s.seconds += weight(f)
  }
  const started = Date.now()
  const fileMs = new Map<string, FileTime>()
  const run = async (label: string, args: string[], parse: boolean): Promise<{ passed: number, failed: number, code: number | null }> => await new Promise(resolve => {
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] })
    let p = 0
    let f = 0
    let sawCount = false
    const onLine = (line: string): void => {
      const count = /^(\d+) passed, (\d+) failed$/.exec(line)
      if (parse && count !== null) { p = Number(count[1]); f = Number(count[2]); sawCount = true; return }
      const timing = /^##file-ms (\d+) (\d+) (.+)$/.exec(line)
      if (timing !== null) { fileMs.set(timing[3], { ms: Number(timing[1]), hookMs: Number(timing[2]) }); return }
      process.stdout.write(`${label} ${line}\n`)
    }
    for (const stream of [child.stdout, child.stderr]) {
      let buf = ''
      stream.setEncoding('utf8')
      stream.on('data', (d: string) => {
        buf += d
        let i: number
        while ((i = buf.indexOf('\n')) >= 0) { onLine(buf.slice(0, i)); buf = buf.slice(i + 1) }
      })
      stream.on('end', () => { if (buf !== '') onLine(buf) })
    }
    child.on('close', (code) => {
      // a shard that died without its count line (a crash, a kill) fails the run
      resolve({ passed: p, failed: f + (parse && (!sawCount || (code !== 0 && f === 0)) ? 1 : 0), code })
    })
  })
  const script = join(root, 'test', 'run.ts')
  const pending: Array<Promise<{ passed: number, failed: number, code: number | null }>> = []
  if (values['no-typecheck'] !== true && positionals.length === 0) {
    const t0 = Date.now()
    pending.push(run('[tsc]', [join(root, 'node_modules/typescript/bin/tsc'), '--noEmit', '-p', join(root, 'tsconfig.json')], false).then(r => {
      console.log(r.code === 0 ? `  ✔ tsc --noEmit (${Date.now() - t0} ms)` : '  ✖ tsc --noEmit reported type errors (above)')
      return { passed: r.code === 0 ? 1 : 0, failed: r.code === 0 ? 0 : 1, code: r.code }
    }))
  }
  // the shards' chain tests would each compile the contracts into the same folder at once
  await prebuildContracts()
  shards.forEach((s, i) => {
    const grep = values.grep !== undefined ? ['--grep', values.grep] : []
    pending.push(run(`[${i + 1}]`, [script, '--no-typecheck', '--shard', ...grep, ...s.files], true))
  })
  for (const r of await Promise.all(pending)) { passed += r.passed; failed += r.failed }
  printSlowest(fileMs)
  console.log(`\nfiles: ${files.length} spec files in ${jobs} shards, ${((Date.now() - started) / 1000).toFixed(0)} s`)
  console.log(`${passed} passed, ${failed} failed`)
  process.exit(failed === 0 ? 0 : 1)
}

/**
 * Builds the contracts now (see buildContracts). A failure is printed and left to the chain tests,
 * whose chain start builds again and fails with CHAIN_BUILD_FAILED.
 */
async function prebuildContracts (): Promise<void> {
  const started = Date.now()
  const log = new PassThrough()
  let output = ''
  log.on('data', (d: Buffer) => { output = (output + d.toString()).slice(-20_000) })
  try {
    await buildContracts({ log })
    console.log(`  contracts built or up to date (${Date.now() - started} ms)`)
  } catch (err) {
    console.log(`  contract build failed (${(err as Error).message}); the chain tests will report it:\n${output}`)
  }
}

/** A spec file's time: all of it, and the part spent in its hooks (starting chains, networks, sandboxes). */
interface FileTime { ms: number, hookMs: number }

function printSlowest (fileMs: Map<string, FileTime>): void {
  const slowest = [...fileMs].sort((a, b) => b[1].ms - a[1].ms).slice(0, 15)
  if (slowest.length > 0) {
    console.log('\nslowest spec files (hooks: before/after hooks within):')
    for (const [file, t] of slowest) console.log(`  ${(t.ms / 1000).toFixed(1).padStart(7)} s  hooks ${(t.hookMs / 1000).toFixed(1).padStart(6)} s  ${file}`)
  }
}

async function runHere (): Promise<never> {
  if (positionals.length === 0) {
    // the type check (one core) and the contract build (solc, the other; over a minute on a clean
    // clone, else a hash check) run side by side before mocha, so the first chain test finds the
    // artifacts built instead of compiling in its before hook
    const started = Date.now()
    const typecheck = values['no-typecheck'] === true
      ? undefined
      : new Promise<number | null>(resolve => {
        const tsc = spawn(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '--noEmit', '-p', join(root, 'tsconfig.json')], { stdio: 'inherit' })
        tsc.once('error', () => resolve(null))
        tsc.once('exit', code => resolve(code))
      })
    await prebuildContracts()
    if (typecheck !== undefined) {
      if (await typecheck === 0) {
        passed++
        console.log(`  ✔ tsc --noEmit (${Date.now() - started} ms)`)
      } else {
        failed++
        console.log('  ✖ tsc --noEmit reported type errors (above)')
      }
    }
  }

  const mocha = new Mocha({ timeout: 60_000, reporter: 'spec', grep: values.grep })
  for (const f of files) mocha.addFile(f)
  await mocha.loadFilesAsync()
  const runner = mocha.run()
  // Time per spec file (its top-level suites, hooks included), so the slowest files are visible in
  // every CI log: the whole run has a budget (well under 20 minutes).
  // Hook time is shown apart: a file whose time goes into its before hooks wants a shared or
  // faster fixture, one whose time goes into its tests wants faster tests.
  const fileMs = new Map<string, FileTime>()
  const entry = (file: string): FileTime => {
    const key = relative(root, file)
    let t = fileMs.get(key)
    if (t === undefined) { t = { ms: 0, hookMs: 0 }; fileMs.set(key, t) }
    return t
  }
  const suiteStart = new WeakMap<object, number>()
  const hookStart = new WeakMap<object, number>()
  runner.on('suite', suite => { if (suite.parent?.root === true) suiteStart.set(suite, Date.now()) })
  runner.on('suite end', suite => {
    const started = suiteStart.get(suite)
    if (started === undefined || suite.file === undefined) return
    entry(suite.file).ms += Date.now() - started
  })
  runner.on('hook', hook => { hookStart.set(hook, Date.now()) })
  runner.on('hook end', hook => {
    const started = hookStart.get(hook)
    const file = hook.file ?? hook.parent?.file
    if (started === undefined || file === undefined) return
    entry(file).hookMs += Date.now() - started
  })
  await new Promise<void>(resolve => runner.on('end', () => resolve()))
  if (values.shard === true) for (const [file, t] of fileMs) console.log(`##file-ms ${t.ms} ${t.hookMs} ${file}`)
  else printSlowest(fileMs)
  passed += runner.stats?.passes ?? 0
  failed += runner.stats?.failures ?? 0
  console.log(`\nfiles: ${files.length} spec files`)
  console.log(`${passed} passed, ${failed} failed`)
  // Suites must not leave handles open; exit explicitly so a leak cannot hang CI.
  process.exit(failed === 0 ? 0 : 1)
}
