/**
 * Issue 14 item 2: a busy port stops the command at once, naming the port and the flag. Before,
 * a devnet whose chain port was taken let its own chain die (EADDRINUSE, only in chain.log) and
 * deployed contracts, funds and the example onto whatever answered on that port.
 */
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer, type Server } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { cli } from '../helpers/cli.ts'

async function occupy (): Promise<{ server: Server, port: number, connections: () => number }> {
  const server = createServer()
  let connections = 0
  // someone else's service on the port: it accepts connections and answers nothing
  server.on('connection', s => { connections++; s.on('error', () => {}) })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  return { server, port: (server.address() as { port: number }).port, connections: () => connections }
}

describe('e2e: ports are checked before use', function () {
  this.timeout(120_000)
  const dir = mkdtempSync(join(tmpdir(), 'peerhost-ports-'))
  after(() => { rmSync(dir, { recursive: true, force: true }) })

  it('devnet exits non-zero naming --chain-port when the chain port is busy, and starts nothing', async () => {
    const busy = await occupy()
    try {
      const t = performance.now()
      const r = await cli(['devnet', '--chain-port', String(busy.port), '--port', '0', '--workers', '1', '--unsafe-dev-executor', '--data-dir', join(dir, 'net')])
      assert.equal(r.code, 2, r.stderr)
      assert.match(r.stderr, new RegExp(`port ${busy.port} on 127\\.0\\.0\\.1 \\(the local chain's JSON-RPC\\) is already in use.*--chain-port <port>`))
      assert.equal(r.stderr.trim().split('\n').length, 1, `one sentence: ${r.stderr}`)
      assert.equal(busy.connections(), 0, 'nothing talked to the other program on the port')
      // at once: no chain, no compile (generous bound for a loaded machine)
      assert.ok(performance.now() - t < 60_000)
    } finally {
      busy.server.close()
    }
  })

  it('devnet, gateway and chain up name --port when their HTTP/RPC port is busy', async () => {
    const busy = await occupy()
    try {
      // four separate commands against the same busy port, started together (each is a Node start
      // that stops at its port check; in sequence they were four start-ups one after another)
      const [devnet, gateway, chain, worker] = await Promise.all([
        cli(['devnet', '--port', String(busy.port), '--no-chain', '--workers', '1', '--unsafe-dev-executor', '--data-dir', join(dir, 'net2')]),
        cli(['gateway', '--bootstrap', '/ip4/127.0.0.1/tcp/1/p2p/12D3KooWLHuPQytqHdnSFACGfjkng3DAQmYXN9S9UaLs3MidUWiM', '--port', String(busy.port), '--data-dir', join(dir, 'gw')]),
        cli(['chain', 'up', '--port', String(busy.port), '--data-dir', join(dir, 'chain')]),
        cli(['worker', '--bootstrap', '/ip4/127.0.0.1/tcp/1/p2p/12D3KooWLHuPQytqHdnSFACGfjkng3DAQmYXN9S9UaLs3MidUWiM', '--listen', `/ip4/127.0.0.1/tcp/${busy.port}`, '--unsafe-dev-executor', '--data-dir', join(dir, 'w')])
      ])
      assert.equal(devnet.code, 2, devnet.stderr)
      assert.match(devnet.stderr, new RegExp(`port ${busy.port} .*the gateway's HTTP.*--port <port>`))
      assert.equal(gateway.code, 2, gateway.stderr)
      assert.match(gateway.stderr, /--port <port>/)
      assert.equal(chain.code, 2, chain.stderr)
      assert.match(chain.stderr, /--port <port>/)
      assert.equal(worker.code, 2, worker.stderr)
      assert.match(worker.stderr, /--listen <port>/)
    } finally {
      busy.server.close()
    }
  })
})
