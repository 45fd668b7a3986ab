/**
 * The CLI as a builder gets it: `npm pack` of this repository installs into an empty folder
 * (`npm i -D <tarball>`, dependencies from the npm registry or its cache), and there `npx peerhost
 * init` writes a project whose types check, `npx peerhost dev` serves its hello function from a real
 * gVisor sandbox, and `npx peerhost deploy` puts it on a running devnet (chain, gateway, worker)
 * started from this repository. Also: the launcher's clear error when no Node 24 is to be found.
 */
import assert from 'node:assert/strict'
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { accessSync, constants as fsConstants, copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { promisify } from 'node:util'
import { spawnPeerhost } from '../../bin/spawn.ts'
import { freePort, startupTimeline } from '../helpers/network.ts'

const run = promisify(execFile)
const ROOT = join(import.meta.dirname, '..', '..')
const TSC = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc')
// the builder's machine: the system Node (20 here), not the repository's Node 24
const SYSTEM_PATH = (process.env.PATH ?? '').split(':').filter(p => !p.includes('node_modules')).join(':')
const builderEnv = (extra: Record<string, string> = {}): NodeJS.ProcessEnv => ({ ...process.env, PATH: SYSTEM_PATH, NODE_OPTIONS: '', ...extra })

/**
 * Where the builder's folder goes: a RAM-backed tmpfs when the machine has one (/dev/shm), else the
 * temporary directory. `npm i` writes about 20,000 files there and the after hook deletes them
 * again (with the devnet's and `peerhost dev`'s rootfs copies of Node); on the CI machine's disk the
 * deletion alone took 16 s and a copy of a similar tree 40 s under load, on tmpfs about 1 s and 4 s.
 * What the test proves does not depend on the folder's file system.
 */
function scratchDir (): string {
  try {
    accessSync('/dev/shm', fsConstants.W_OK)
    return '/dev/shm'
  } catch {
    return tmpdir()
  }
}

async function runIn (cwd: string, cmd: string, args: string[], env = builderEnv(), timeoutMs = 120_000): Promise<{ code: number, stdout: string, stderr: string }> {
  try {
    const { stdout, stderr } = await run(cmd, args, { cwd, env, timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 })
    return { code: 0, stdout, stderr }
  } catch (err: any) {
    return { code: typeof err.code === 'number' ? err.code : -1, stdout: err.stdout ?? '', stderr: err.stderr ?? String(err) }
  }
}

/** Starts a long-running `npx peerhost …` and resolves with its `ready` line. */
function startNpx (cwd: string, args: string[]): { proc: ChildProcess, ready: Promise<Record<string, any>>, stderr: () => string } {
  const proc = spawn('npx', ['peerhost', ...args, '--json'], { cwd, env: builderEnv(), stdio: ['ignore', 'pipe', 'pipe'], detached: true })
  let stderr = ''
  proc.stderr!.on('data', d => { stderr += d })
  const ready = new Promise<Record<string, any>>((resolve, reject) => {
    createInterface({ input: proc.stdout! }).on('line', line => {
      try { const m = JSON.parse(line); if (m.event === 'ready') resolve(m) } catch {}
    })
    proc.once('exit', code => reject(new Error(`npx peerhost ${args.join(' ')} exited (${code}) before ready: ${stderr.slice(-2000)}`)))
  })
  ready.catch(() => {})
  return { proc, ready, stderr: () => stderr }
}

async function stopGroup (proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return
  const exited = new Promise(resolve => proc.once('exit', resolve))
  try { process.kill(-proc.pid!, 'SIGTERM') } catch {}
  const timer = setTimeout(() => { try { process.kill(-proc.pid!, 'SIGKILL') } catch {} }, 10_000)
  await exited
  clearTimeout(timer)
}

describe('e2e: the packed CLI in a builder\'s own folder', function () {
  this.timeout(1_800_000)
  const dir = mkdtempSync(join(scratchDir(), 'peerhost-pack-'))
  after(() => { if (process.env.PEERHOST_KEEP_TEST_DIRS !== '1') rmSync(dir, { recursive: true, force: true }) })

  it('the launcher says clearly when it finds no Node 24', async () => {
    // the launcher alone, with no node package next to it, on the system's Node 20
    const lone = join(dir, 'lone', 'bin')
    mkdirSync(lone, { recursive: true })
    copyFileSync(join(ROOT, 'bin', 'peerhost.js'), join(lone, 'peerhost.js'))
    writeFileSync(join(dir, 'lone', 'package.json'), '{"type":"module"}')
    const systemNode = SYSTEM_PATH.split(':').map(p => join(p, 'node')).find(p => existsSync(p))
    assert.ok(systemNode !== undefined, 'a system node on PATH')
    const { stdout: version } = await run(systemNode, ['-p', 'process.versions.node'])
    assert.ok(Number(version.split('.')[0]) < 24, `this check needs an old system Node, found ${version.trim()}`)
    const r = await runIn(dir, systemNode, [join(lone, 'peerhost.js'), '--version'])
    assert.equal(r.code, 1)
    assert.match(r.stderr, /needs Node 24 or newer and found none/)
    assert.match(r.stderr, /the node npm package is not installed/)
  })

  it('npm pack → npm i -D → npx peerhost init / dev (gVisor) / deploy to a devnet', async () => {
    // the devnet the package deploys to at the end needs nothing from the package: it starts now
    // (seconds of CPU: Hardhat, gateway, worker) while npm packs and installs (mostly I/O)
    const devnet = spawnPeerhost('devnet', ['devnet', '--port', '0', '--chain-port', String(await freePort()), '--workers', '1', '--unsafe-dev-executor', '--data-dir', join(dir, 'net')], join(dir, 'logs'))
    // one stderr line of when each phase ended, so a CI log shows where this test's minutes go
    const phases = startupTimeline('cli-pack phases')
    try {
      await packInstallDevDeploy(devnet, phases.mark)
    } finally {
      await devnet.stop(10_000)
      phases.print()
    }
  })

  async function packInstallDevDeploy (devnet: ReturnType<typeof spawnPeerhost>, mark: (phase: string) => void): Promise<void> {
    // pack
    const packed = await runIn(ROOT, 'npm', ['pack', '--json', '--pack-destination', dir], builderEnv(), 300_000)
    assert.equal(packed.code, 0, packed.stderr)
    const info = JSON.parse(packed.stdout)[0]
    const paths: string[] = info.files.map((f: { path: string }) => f.path)
    for (const need of ['bin/peerhost.js', 'bin/ts-hooks.js', 'bin/peerhost.ts', 'bin/commands/init.ts', 'protocol/index.ts', 'sandbox/runtime/shim.ts', 'node/index.ts', 'node/status/ui/app.js', 'bootstrap/index.ts', 'contracts/abi/index.ts', 'contracts/deploy.ts', 'types/index.d.ts', 'package.json']) {
      assert.ok(paths.includes(need), `the package holds ${need}`)
    }
    mark('pack')
    assert.deepEqual(paths.filter(p => p.startsWith('test/') || p.startsWith('bench/') || p.includes('.spec.') || p.startsWith('contracts/src/') || p === 'contracts/abi/test-abis.ts'), [], 'no tests, benchmarks or contract sources')

    // install into an empty folder, as a builder would
    const project = join(dir, 'my-app')
    mkdirSync(project)
    const installed = await runIn(project, 'npm', ['i', '-D', join(dir, info.filename), '--prefer-offline', '--no-audit', '--no-fund'], builderEnv(), 900_000)
    assert.equal(installed.code, 0, installed.stderr.slice(-3000))
    assert.ok(existsSync(join(project, 'node_modules', 'node', 'bin', 'node')), 'the node package brought Node 24')
    mark('install')

    // init, and init again refuses
    const init = await runIn(project, 'npx', ['peerhost', 'init'])
    assert.equal(init.code, 0, init.stderr)
    for (const f of ['functions/hello.ts', 'peerhost.json', '.dev.vars.example', '.gitignore', 'tsconfig.json', 'README.md']) assert.ok(existsSync(join(project, f)), `init wrote ${f}`)
    assert.equal((readFileSync(join(project, 'README.md'), 'utf8').match(/^npx peerhost /gm) ?? []).length, 3, 'a README of three commands')
    const again = await runIn(project, 'npx', ['peerhost', 'init'])
    assert.equal(again.code, 2)
    assert.match(again.stderr, /is not empty \(.*functions.*\); `peerhost init` only writes into a new or empty folder/)
    mark('init')

    // the types the package exports give the editor Request, env, ctx and WebSocketPair: one type
    // check (a tsc start is seconds of CPU; one file more is nothing) of the project as init wrote
    // it plus a file that uses them with one deliberate error: that error is the only one tsc
    // reports, so everything init wrote checks, and so does every other line of the added file
    writeFileSync(join(project, 'functions', 'typed.ts'), [
      "import type { ExportedHandler } from 'peerhost/types'",
      'export default {',
      '  async fetch (request, env, ctx) {',
      '    const pair = new WebSocketPair(); pair[1].accept(); ctx.waitUntil(request.text())',
      '    const n: number = env.ANY',
      '    return new Response(null, { status: 101, webSocket: pair[0] })',
      '  }',
      '} satisfies ExportedHandler'
    ].join('\n'))
    const wrong = await runIn(project, process.execPath, [TSC, '--noEmit', '-p', 'tsconfig.json'])
    assert.equal(wrong.code, 2, `env values are typed (string | undefined), not any: ${wrong.stdout}${wrong.stderr}`)
    const errors = wrong.stdout.split('\n').filter(l => /error TS\d+/.test(l))
    assert.equal(errors.length, 1, `only the deliberate error; tsc said:\n${wrong.stdout}${wrong.stderr}`)
    assert.match(errors[0], /^functions\/typed\.ts\(5,11\): error TS2322: Type 'string \| undefined' is not assignable to type 'number'/)
    rmSync(join(project, 'functions', 'typed.ts'))
    mark('types')

    // peerhost dev serves the hello function from a gVisor sandbox
    const dev = startNpx(project, ['dev', '--port', '0'])
    try {
      const ready = await dev.ready
      const res = await fetch(`${ready.url}/hello?name=pack`)
      assert.equal(res.status, 200, await res.clone().text())
      assert.equal(await res.text(), 'Hello, pack!\n')
    } finally {
      await stopGroup(dev.proc)
    }
    assert.deepEqual(readdirSync(join(project, '.peerhost', 'dev', 'sandbox')).sort(), ['bundles', 'rootfs', 'runsc'], 'peerhost dev ran gVisor (its runsc state is in .peerhost/dev/sandbox)')
    mark('dev')

    // deploy to the devnet started from this repository (above)
    const net = await devnet.ready
    mark('devnet ready')
    const key = readFileSync(join(dir, 'net', 'builder', 'evm.key'), 'utf8').trim()
    const deployed = await runIn(project, 'npx', ['peerhost', 'deploy', '--gateway', net.gateway, '--contracts', net.contracts, '--json'], builderEnv({ PEERHOST_PRIVATE_KEY: key }), 300_000)
    assert.equal(deployed.code, 0, deployed.stderr.slice(-3000))
    const done = deployed.stdout.trim().split('\n').map(l => JSON.parse(l)).find(m => m.event === 'deployed')
    const url: string | undefined = done?.functions?.find((f: { url?: string }) => f.url?.endsWith('/my-app/hello'))?.url
    assert.ok(url !== undefined, `deployed: ${deployed.stdout.slice(-2000)}`)
    const res = await fetch(`${url}?name=devnet`)
    assert.equal(res.status, 200, await res.clone().text())
    assert.equal(await res.text(), 'Hello, devnet!\n')
    mark('deploy')
  }
})
