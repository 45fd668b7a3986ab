/**
 * Issue 14 item 1: `npm start` twice on one data dir. The devnet's chain is new on every run (a
 * fresh in-memory Hardhat node) while the gateway keeps a registry cursor in its data dir: a
 * cursor from the previous chain must be discarded, so the second run's deploy goes live. The
 * first run ends with kill -9 (no clean shutdown), the worst case for leftover state.
 */
import assert from 'node:assert/strict'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { execFileSync } from 'node:child_process'
import { spawnPeerhost } from '../../bin/spawn.ts'
import { freePort } from '../helpers/network.ts'

/** kill -9 of a process and everything it started, as a crash (or the OOM killer) would */
function killFamily (pid: number): void {
  const rows = execFileSync('ps', ['-e', '-o', 'pid=,ppid='], { encoding: 'utf8' }).trim().split('\n').map(l => l.trim().split(/\s+/).map(Number))
  const family: number[] = [pid]
  for (let grew = true; grew;) {
    grew = false
    for (const [p, pp] of rows) if (family.includes(pp) && !family.includes(p)) { family.push(p); grew = true }
  }
  for (const p of family) { try { process.kill(p, 'SIGKILL') } catch {} }
}

describe('e2e: peerhost devnet twice on one data dir', function () {
  // two full devnet starts on a machine shared with other work: minutes each under load
  this.timeout(1_800_000)
  const dir = mkdtempSync(join(tmpdir(), 'peerhost-devnet-restart-'))
  const started: number[] = []
  after(() => {
    for (const pid of started) killFamily(pid)
    if (process.env.PEERHOST_KEEP_TEST_DIRS !== '1') rmSync(dir, { recursive: true, force: true })
  })

  it('a second run (after kill -9 of the first) discards the previous chain\'s cursor and its deploy goes live', async () => {
    const net = join(dir, 'net')
    const run = async (name: string): Promise<{ ready: Record<string, any>, kill: () => Promise<void> }> => {
      const devnet = spawnPeerhost(name, ['devnet', '--port', '0', '--chain-port', String(await freePort()), '--workers', '1', '--unsafe-dev-executor', '--data-dir', net], join(dir, 'logs'))
      started.push(devnet.proc.pid!)
      try {
        const ready = await devnet.ready
        return {
          ready,
          kill: async () => {
            killFamily(devnet.proc.pid!)
            await new Promise(resolve => setTimeout(resolve, 500))
          }
        }
      } catch (err) {
        await devnet.stop(5_000)
        throw err
      }
    }
    const first = await run('devnet-1')
    const hello1 = (first.ready.functions as string[]).find(u => u.endsWith('/hello/hello'))!
    assert.equal((await fetch(`${hello1}?name=one`)).status, 200)
    await first.kill()

    const second = await run('devnet-2')
    try {
      const hello2 = (second.ready.functions as string[]).find(u => u.endsWith('/hello/hello'))
      assert.ok(hello2 !== undefined, `functions: ${second.ready.functions}`)
      const res = await fetch(`${hello2}?name=two`)
      assert.equal(res.status, 200, await res.clone().text())
      assert.equal(await res.text(), 'Hello, two!\n')
      // the gateway said why it did not resume
      const log = readFileSync(join(dir, 'logs', 'devnet-2.log'), 'utf8') + readFileSync(join(net, 'logs', 'gateway.log'), 'utf8')
      assert.match(log, /another chain|discard/i)
    } finally {
      await second.kill()
    }
  })
})
