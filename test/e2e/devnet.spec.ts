/**
 * `npm start` (`peerhost devnet`): the whole local network as a builder gets it — chain with the
 * contracts, staked workers, examples deployed with `peerhost deploy` — answers, and Ctrl-C
 * leaves nothing running.
 */
import assert from 'node:assert/strict'
import { request as httpRequest } from 'node:http'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts'
import { spawnPeerhost } from '../../bin/spawn.ts'
import { cli } from '../helpers/cli.ts'
import { freePort } from '../helpers/network.ts'
import { descendants } from '../helpers/processes.ts'


/** A GET to 127.0.0.1 with the Host header of `url` (as curl --resolve <host>:<port>:127.0.0.1 sends it). */
async function viaLoopback (url: string): Promise<{ status: number, text: string }> {
  const u = new URL(url)
  return await new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port: u.port, path: `${u.pathname}${u.search}`, agent: false, headers: { host: u.host, connection: 'close' } }, res => {
      let text = ''
      res.on('data', d => { text += String(d) })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }))
    })
    req.on('error', reject)
    req.end()
  })
}

function alive (pid: number): boolean {
  try { process.kill(pid, 0); return true } catch { return false }
}

describe('e2e: peerhost devnet (npm start)', function () {
  // a full devnet start and three deploys on a machine shared with other work
  this.timeout(900_000)
  const dir = mkdtempSync(join(tmpdir(), 'peerhost-devnet-'))
  after(() => { if (process.env.PEERHOST_KEEP_TEST_DIRS !== '1') rmSync(dir, { recursive: true, force: true }) })

  it('starts chain, bootstrap, gateway and staked workers, deploys the examples, serves the first request after ready through the mesh, and stops cleanly', async () => {
    const devnet = spawnPeerhost('devnet', ['devnet', '--port', '0', '--chain-port', String(await freePort()), '--workers', '2', '--unsafe-dev-executor', '--data-dir', join(dir, 'net')], join(dir, 'logs'))
    try {
      const ready = await devnet.ready
      const hello = (ready.functions as string[]).find(u => u.endsWith('/hello/hello'))
      assert.ok(hello !== undefined, `functions: ${ready.functions}`)
      assert.equal(typeof ready.contracts, 'string')
      // the start-up timeline: every step and the nodes' own phases, each with a duration that ends by the ready line
      const timeline = ready.timeline as Array<{ phase: string, ms: number, at: number }>
      for (const phase of ['chain.node', 'chain.contracts', 'worker-1.stake', 'worker-2.mesh', 'gateway.stake', 'deploy', 'warm']) {
        const e = timeline.find(t => t.phase === phase)
        assert.ok(e !== undefined, `timeline has ${phase}: ${JSON.stringify(timeline)}`)
        assert.ok(e.ms >= 0 && e.at >= e.ms && e.at <= (ready.readyMs as number), `${phase}: ${JSON.stringify(e)}`)
      }
      const res = await fetch(`${hello}?name=devnet`)
      assert.equal(res.status, 200)
      assert.equal(await res.text(), 'Hello, devnet!\n')
      assert.equal(res.headers.get('x-peerhost-path'), 'mesh')
      // a WebSocket session with the example's echo, paid like a request, its receipt checked by the client (as the ready message says)
      const echoUrl = (ready.functions as string[]).find(u => u.endsWith('/hello/echo'))!
      const session = await cli(['ws', echoUrl.replace(/^http/, 'ws'), '--send', 'hi', '--json'])
      assert.equal(session.code, 0, `${session.stdout}${session.stderr}`)
      assert.deepEqual(session.lines.filter(l => l.event === 'message').map(l => l.data), ['echo: hi'])
      const sessionReceipt = session.lines.find(l => l.event === 'receipt')
      assert.equal(sessionReceipt?.verified, true, sessionReceipt?.problem)
      assert.notEqual(sessionReceipt.receipt.fee, '0', 'the devnet\'s workers are paid for sessions too')
      // the ready line came after every function was warm: the first request above went through the mesh
      const status = await (await fetch(`${ready.gateway}/_peerhost/status`)).json() as any
      assert.equal(status.workers.length, 2)
      assert.equal((await fetch(`${ready.gateway}/_peerhost/ready`)).status, 200)

      // issue 13: one origin per wallet — the devnet's gateway serves <wallet>.localhost (--domain localhost)
      const port = new URL(ready.gateway).port
      const origin = `http://${(ready.builder as string).toLowerCase()}.localhost:${port}/hello/hello`
      assert.ok((ready.origins as string[]).includes(origin), `the ready message names the origin form: ${ready.origins}`)
      const byOrigin = await viaLoopback(`${origin}?name=origin`)
      assert.equal(byOrigin.status, 200, byOrigin.text)
      assert.equal(byOrigin.text, 'Hello, origin!\n')
      const stranger = await viaLoopback(`http://0x${'ab'.repeat(20)}.localhost:${port}/hello/hello`)
      assert.equal(stranger.status, 404, 'another wallet\'s origin does not serve the builder\'s project')
      assert.equal(JSON.parse(stranger.text).error.code, 'NOT_FOUND')

      // issue 14 item 5: a new wallet deploys to the running devnet with no flags but its key.
      // Unfunded, it stops at the pre-flight, before any upload, saying how to fund it.
      const net = join(dir, 'net')
      const devnetInfo = JSON.parse(readFileSync(join(net, 'devnet.json'), 'utf8'))
      assert.equal(devnetInfo.gateway, ready.gateway)
      assert.equal(devnetInfo.pid, devnet.proc.pid)
      const fresh = generatePrivateKey()
      const address = privateKeyToAccount(fresh).address
      const project = join(import.meta.dirname, '..', '..', 'examples', 'hello')
      const env = { PEERHOST_DEVNET_DIR: net, PEERHOST_PRIVATE_KEY: fresh, PEERHOST_CONTRACTS: '', PEERHOST_GATEWAY: '' }
      delete (env as any).PEERHOST_CONTRACTS
      delete (env as any).PEERHOST_GATEWAY
      const poor = await cli(['deploy', project, '--project', 'newcomer', '--json'], env)
      assert.equal(poor.code, 2, poor.stderr)
      assert.match(poor.stderr, new RegExp(`peerhost wallet fund ${address}`))
      assert.match(poor.stderr, /nothing was uploaded/)
      assert.ok(!poor.lines.some(l => l.step === 'upload'), `no upload step started: ${poor.stdout}`)
      const funded = await cli(['wallet', 'fund', address, '--json'], { PEERHOST_DEVNET_DIR: net })
      assert.equal(funded.code, 0, funded.stderr)
      assert.equal(funded.lines[0]?.event, 'funded')
      const rich = await cli(['deploy', project, '--project', 'newcomer', '--json'], env)
      assert.equal(rich.code, 0, rich.stderr)
      const url = (rich.lines.find(l => l.event === 'deployed')?.functions as Array<{ url: string }>).find(f => f.url.endsWith('/hello'))!.url
      assert.ok(url.startsWith(`${ready.gateway}/${address}/newcomer/`), url)
      assert.equal(await (await fetch(`${url}?name=newcomer`)).text(), 'Hello, newcomer!\n')
      // without any key, a deploy to the devnet uses the devnet's builder wallet
      const builderDeploy = await cli(['deploy', project, '--project', 'by-builder', '--no-wait', '--json'], { PEERHOST_DEVNET_DIR: net })
      assert.equal(builderDeploy.code, 0, builderDeploy.stderr)
      assert.equal(builderDeploy.lines.find(l => l.event === 'deployed')?.owner, ready.builder)

      // issue 14 item 9: `escrow show --gateway` takes the gateway's URL like every other command
      const escrow = await cli(['escrow', 'show', 'hello', '--wallet', ready.builder, '--gateway', ready.gateway, '--json'], { PEERHOST_DEVNET_DIR: net })
      assert.equal(escrow.code, 0, escrow.stderr)
      assert.notEqual(escrow.lines[0]?.allowance, null, escrow.stdout)

      // issue 14 item 2: a node refuses a chain other than the one its contracts file describes
      const contracts = JSON.parse(readFileSync(ready.contracts, 'utf8'))
      const otherId = join(dir, 'other-chain.json')
      writeFileSync(otherId, JSON.stringify({ ...contracts, chainId: 80002 }))
      const wrongId = await cli(['worker', '--bootstrap', (ready.bootstrap as string[])[0], '--contracts', otherId, '--data-dir', join(dir, 'stray'), '--unsafe-dev-executor'])
      assert.equal(wrongId.code, 2, wrongId.stderr)
      assert.match(wrongId.stderr, /is chain 31337, but .* is for chain 80002/)
      const noCode = join(dir, 'restarted-chain.json')
      writeFileSync(noCode, JSON.stringify({ ...contracts, addresses: { ...contracts.addresses, FunctionRegistry: '0x000000000000000000000000000000000000dEaD' } }))
      const gone = await cli(['gateway', '--bootstrap', (ready.bootstrap as string[])[0], '--port', '0', '--contracts', noCode, '--data-dir', join(dir, 'stray-gw')])
      assert.equal(gone.code, 2, gone.stderr)
      assert.match(gone.stderr, /no contract at FunctionRegistry 0x000000000000000000000000000000000000dEaD/)
      const family = descendants(devnet.proc.pid!)
      // the nodes run in the devnet's process; the chain (hardhat node) is a child process that must not outlive it
      assert.ok(family.length >= 1, `devnet runs its chain as a process (${family.length})`)
      devnet.proc.kill('SIGINT')
      const code = await new Promise(resolve => devnet.proc.once('exit', resolve))
      assert.equal(code, 0)
      const left = family.filter(alive)
      const args = (pid: number): string => { try { return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ').slice(0, 200) } catch { return '?' } }
      assert.deepEqual(left, [], `no process outlives devnet: ${left.map(p => `${p} ${args(p)}`).join('; ')}`)
      assert.throws(() => readFileSync(join(dir, 'net', 'devnet.json')), /ENOENT/, 'a stopped devnet removes its devnet.json')
    } finally {
      await devnet.stop(5_000)
    }
  })
})
