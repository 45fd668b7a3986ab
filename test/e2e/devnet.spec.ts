/**
 * `npm start` (`peerhost devnet`): the whole local network as a builder gets it — chain with the
 * contracts, staked workers, examples deployed with `peerhost deploy` — answers, and Ctrl-C
 * leaves nothing running.
 */
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { spawnPeerhost } from '../../bin/spawn.ts'
import { freePort } from '../helpers/network.ts'

function descendants (pid: number): number[] {
  const out = execFileSync('ps', ['-e', '-o', 'pid=,ppid='], { encoding: 'utf8' })
  const children = new Map<number, number[]>()
  for (const line of out.trim().split('\n')) {
    const [p, pp] = line.trim().split(/\s+/).map(Number)
    children.set(pp, [...(children.get(pp) ?? []), p])
  }
  const all: number[] = []
  const walk = (p: number): void => { for (const c of children.get(p) ?? []) { all.push(c); walk(c) } }
  walk(pid)
  return all
}

function alive (pid: number): boolean {
  try { process.kill(pid, 0); return true } catch { return false }
}

describe('e2e: peerhost devnet (npm start)', function () {
  this.timeout(180_000)
  const dir = mkdtempSync(join(tmpdir(), 'peerhost-devnet-'))
  after(() => { if (process.env.PEERHOST_KEEP_TEST_DIRS !== '1') rmSync(dir, { recursive: true, force: true }) })

  it('starts chain, bootstrap, gateway and staked workers, deploys the examples, serves them, and stops cleanly', async () => {
    const devnet = spawnPeerhost('devnet', ['devnet', '--port', '0', '--chain-port', String(await freePort()), '--workers', '2', '--unsafe-dev-executor', '--data-dir', join(dir, 'net')], join(dir, 'logs'))
    try {
      const ready = await devnet.ready
      const hello = (ready.functions as string[]).find(u => u.endsWith('/hello/hello'))
      assert.ok(hello !== undefined, `functions: ${ready.functions}`)
      assert.equal(typeof ready.contracts, 'string')
      const res = await fetch(`${hello}?name=devnet`)
      assert.equal(res.status, 200)
      assert.equal(await res.text(), 'Hello, devnet!\n')
      assert.equal(res.headers.get('x-peerhost-path'), 'mesh')
      const status = await (await fetch(`${ready.gateway}/_peerhost/status`)).json() as any
      assert.equal(status.workers.length, 2)
      const family = descendants(devnet.proc.pid!)
      assert.ok(family.length >= 5, `devnet runs its nodes as processes (${family.length})`)
      devnet.proc.kill('SIGINT')
      const code = await new Promise(resolve => devnet.proc.once('exit', resolve))
      assert.equal(code, 0)
      const left = family.filter(alive)
      assert.deepEqual(left, [], 'no process outlives devnet')
    } finally {
      await devnet.stop(5_000)
    }
  })
})
