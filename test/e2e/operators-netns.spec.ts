/**
 * docs/operators.md, tested as operators run it: a bootstrap node, a gateway and a worker, each in
 * its own Linux network namespace with its own IP (veth pairs on one bridge), listening on
 * 0.0.0.0 and announcing their own IP with --announce. The gateway must discover the worker through
 * the bootstrap node, and a client in the root namespace gets its request served by the worker
 * over real TCP between namespaces. Nothing is on loopback across nodes: a node that advertised
 * 127.0.0.1 (the old default) could not be dialled from another namespace. The namespaces, veths
 * and bridge are removed afterwards, also when the test fails. Needs root (CAP_NET_ADMIN).
 */
import assert from 'node:assert/strict'
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { createWriteStream, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { createInterface } from 'node:readline'
import { CLI } from '../../bin/spawn.ts'
import { waitFor } from '../helpers/network.ts'

const EXAMPLES = resolve(import.meta.dirname, '..', '..', 'examples', 'hello')
/** a builder address for the gateway's --project folder (no chain in this test) */
const OWNER = '0x70997970c51812dc3a010c54e0d8c2d23b4b1c7e'

function ip (...args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] })
}

interface NsNode { proc: ChildProcess, ready: Promise<Record<string, any>> }

/** `peerhost <args> --json` inside network namespace `ns`, its stderr to `<logDir>/<name>.log` */
function runIn (ns: string, name: string, args: string[], logDir: string): NsNode {
  const proc = spawn('ip', ['netns', 'exec', ns, process.execPath, CLI, ...args, '--json'], { stdio: ['ignore', 'pipe', 'pipe'] })
  proc.stderr!.pipe(createWriteStream(join(logDir, `${name}.log`)))
  const ready = new Promise<Record<string, any>>((resolve, reject) => {
    createInterface({ input: proc.stdout! }).on('line', line => {
      try { const m = JSON.parse(line); if (m.event === 'ready') resolve(m) } catch {}
    })
    proc.once('exit', code => reject(new Error(`${name} exited with ${code} before it was ready; see ${join(logDir, `${name}.log`)}`)))
  })
  ready.catch(() => {})
  return { proc, ready }
}

describe('e2e: nodes on separate machines (network namespaces)', function () {
  this.timeout(600_000)
  // short, unique names (interface names are at most 15 characters)
  const tag = `ph${(process.pid % 10_000).toString(36)}${Math.floor(Math.random() * 1296).toString(36)}`
  const subnet = `10.${200 + (process.pid % 50)}.${Math.floor(Math.random() * 250)}`
  const roles = ['boot', 'gw', 'work'] as const
  const nsOf = (i: number): string => `${tag}-${roles[i]}`
  const ipOf = (i: number): string => `${subnet}.${i + 1}`
  const bridge = `br${tag}`
  const dir = mkdtempSync(join(tmpdir(), 'peerhost-netns-'))
  const nodes: NsNode[] = []

  before(() => {
    ip('link', 'add', bridge, 'type', 'bridge')
    ip('link', 'set', bridge, 'up')
    // the root namespace is the client's "internet": it reaches the gateway's HTTP port over the bridge
    ip('addr', 'add', `${subnet}.254/24`, 'dev', bridge)
    roles.forEach((_, i) => {
      const ns = nsOf(i)
      ip('netns', 'add', ns)
      ip('link', 'add', `v${tag}${i}`, 'type', 'veth', 'peer', 'name', `e${tag}${i}`)
      ip('link', 'set', `e${tag}${i}`, 'netns', ns)
      ip('link', 'set', `v${tag}${i}`, 'master', bridge, 'up')
      ip('-n', ns, 'addr', 'add', `${ipOf(i)}/24`, 'dev', `e${tag}${i}`)
      ip('-n', ns, 'link', 'set', `e${tag}${i}`, 'up')
      ip('-n', ns, 'link', 'set', 'lo', 'up')
    })
  })

  after(async () => {
    for (const n of nodes) if (n.proc.exitCode === null && n.proc.signalCode === null) n.proc.kill('SIGKILL')
    await new Promise(resolve => setTimeout(resolve, 300))
    // always: namespaces (their veth ends go with them), then the bridge
    roles.forEach((_, i) => { try { ip('netns', 'del', nsOf(i)) } catch {} })
    try { ip('link', 'del', bridge) } catch {}
    if (process.env.PEERHOST_KEEP_TEST_DIRS !== '1') rmSync(dir, { recursive: true, force: true })
    const left = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
    assert.ok(!left.includes(tag), `namespaces left behind: ${left}`)
  })

  it('a bootstrap, a gateway and a worker in three namespaces discover each other, dispatch and serve', async () => {
    const logs = join(dir, 'logs')
    execFileSync('mkdir', ['-p', logs])
    const boot = runIn(nsOf(0), 'bootstrap', ['bootstrap', '--listen', '/ip4/0.0.0.0/tcp/4001', '--announce', `/ip4/${ipOf(0)}/tcp/4001`, '--data-dir', join(dir, 'boot')], logs)
    nodes.push(boot)
    const b = await boot.ready
    const bootAddr = (b.addrs as string[]).find(a => a.startsWith(`/ip4/${ipOf(0)}/tcp/4001/p2p/`))
    assert.ok(bootAddr !== undefined, `the bootstrap node advertises its announce address: ${b.addrs}`)
    assert.ok(!(b.addrs as string[]).some(a => a.includes('/ip4/127.0.0.1/') || a.includes('/ip4/0.0.0.0/')), `and only it: ${b.addrs}`)

    const worker = runIn(nsOf(2), 'worker', ['worker', '--bootstrap', bootAddr, '--listen', '/ip4/0.0.0.0/tcp/4002', '--announce', `/ip4/${ipOf(2)}/tcp/4002`, '--unsafe-dev-executor', '--data-dir', join(dir, 'worker')], logs)
    nodes.push(worker)
    const gateway = runIn(nsOf(1), 'gateway', ['gateway', '--bootstrap', bootAddr, '--host', '0.0.0.0', '--port', '8080', '--listen', '/ip4/0.0.0.0/tcp/4003', '--announce', `/ip4/${ipOf(1)}/tcp/4003`,
      '--project', EXAMPLES, '--owner', OWNER, '--data-dir', join(dir, 'gateway')], logs)
    nodes.push(gateway)
    const [w] = await Promise.all([worker.ready, gateway.ready])
    const url = `http://${ipOf(1)}:8080`
    const status = await waitFor('the gateway admits the worker', async () => {
      const s = await (await fetch(`${url}/_peerhost/status`, { signal: AbortSignal.timeout(5_000) })).json() as any
      return s.workers.length === 1 ? s : undefined
    }, 120_000, 250)
    assert.equal(status.workers[0].peerId, w.peerId)
    assert.equal((await fetch(`${url}/_peerhost/ready`)).status, 200)

    const res = await fetch(`${url}/${OWNER}/hello/hello?name=netns`, { signal: AbortSignal.timeout(120_000) })
    assert.equal(res.status, 200, await res.clone().text())
    assert.equal(await res.text(), 'Hello, netns!\n')
    assert.equal(res.headers.get('x-peerhost-worker'), w.peerId)
    // the job crossed namespaces: the gateway's connection to the worker is to the worker's own IP
    const peers = execFileSync('ip', ['netns', 'exec', nsOf(1), 'ss', '-tn', 'state', 'established'], { encoding: 'utf8' })
    assert.match(peers, new RegExp(`${ipOf(2).replaceAll('.', '\\.')}:\\d+`))
  })
})
