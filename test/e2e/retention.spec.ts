/**
 * Block retention on a gateway that follows a real chain (a `peerhost gateway` process with
 * `--keep-versions 2 --upload-lease 2`): after N + 2 deploys the oldest version's own blocks are
 * deleted and the recent ones stay; registered uploads outlive their lease, unreferenced ones do
 * not; a rollback to a collected version fails with a clear error in the project's status and the
 * gateway keeps serving the version it had, while a rollback to a retained version is instant.
 * A restarted gateway resumes from its registry cursor (`<data-dir>/registry.json`), or reads
 * from `--registry-from-block` when told to.
 */
import assert from 'node:assert/strict'
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { privateKeyToAccount } from 'viem/accounts'
import { rawCid } from '#protocol'
import { deployProject, rollbackProject, signUpload, UPLOAD_HEADER, type DeployResult } from '#node'
import { waitFor } from '../helpers/network.ts'
import { BUILDER_KEY, startChainNetwork, type ChainNetwork } from '../deploy/chain-network.ts'
import { spawnPeerhost } from '../../bin/spawn.ts'

const fixtures = resolve(import.meta.dirname, '..', 'fixtures')
const builder = privateKeyToAccount(BUILDER_KEY)
const KEEP = 2

describe('e2e: a gateway keeps the active version and the previous N, and deletes older blocks', function () {
  this.timeout(180_000)
  const dir = mkdtempSync(join(tmpdir(), 'peerhost-retention-'))
  let net: ChainNetwork
  const versions: DeployResult[] = []
  const block = async (cid: string): Promise<number> => (await fetch(`${net.gatewayUrl}/_peerhost/blocks/${cid}`)).status
  const greet = (r: DeployResult): string => r.functions.find(f => f.name === 'greet')!.bundleCid
  const time = (r: DeployResult): string => r.functions.find(f => f.name === 'time')!.bundleCid
  const status = async (): Promise<any> => await (await fetch(`${net.gatewayUrl}/_peerhost/projects/${builder.address}/app`)).json()

  before(async () => {
    net = await startChainNetwork({ workers: 0, gatewayArgs: ['--keep-versions', String(KEEP), '--upload-lease', '2'] })
  })
  after(async () => {
    await net?.stop()
    rmSync(dir, { recursive: true, force: true })
  })

  it(`deletes the blocks only version 1 references once ${KEEP + 2} versions are deployed, and keeps the rest`, async () => {
    for (let v = 1; v <= KEEP + 2; v++) {
      const src = join(dir, `v${v}`)
      cpSync(join(fixtures, 'deploy-app'), src, { recursive: true })
      writeFileSync(join(src, 'functions', 'greet.ts'), readFileSync(join(src, 'functions', 'greet.ts'), 'utf8').replace('(v1)', `(v${v})`))
      const r = await deployProject({ source: src, project: 'app', gateway: net.gatewayUrl, contracts: net.contracts, account: BUILDER_KEY })
      assert.equal(r.version, v)
      versions.push(r)
    }
    const [v1, ...recent] = versions
    // each version has its own greet bundle; `time` never changed
    assert.equal(new Set(versions.map(greet)).size, versions.length)
    assert.equal(new Set(versions.map(time)).size, 1)
    await waitFor('version 1\'s blocks to be deleted', async () => await block(greet(v1)) === 404 && await block(v1.manifestCid) === 404, 10_000, 100)
    for (const r of recent) {
      assert.equal(await block(greet(r)), 200, `version ${r.version}'s greet bundle`)
      assert.equal(await block(r.manifestCid), 200, `version ${r.version}'s manifest`)
    }
    // shared with retained versions, so kept
    assert.equal(await block(time(v1)), 200)
  })

  it('keeps registered uploads past their lease and deletes an unreferenced one', async () => {
    const { gateway } = await (await fetch(`${net.gatewayUrl}/_peerhost/uploads`)).json() as { gateway: `0x${string}` }
    const stray = new TextEncoder().encode(`never registered ${Math.random()}`)
    const cid = rawCid(stray)
    const res = await fetch(`${net.gatewayUrl}/_peerhost/blocks/${cid}`, { method: 'POST', body: stray, headers: { [UPLOAD_HEADER]: await signUpload(builder, gateway, cid) } })
    assert.equal(res.status, 201)
    assert.equal(await block(cid), 200)
    await waitFor('the stray upload to be deleted', async () => await block(cid) === 404, 10_000, 200)
    // the deploys were uploaded on the same 2 s lease, longer ago: still here
    const last = versions.at(-1)!
    assert.equal(await block(greet(last)), 200)
    assert.equal(await block(last.manifestCid), 200)
  })

  it('reports a clear error when rolled back to a collected version, and keeps serving the one it had', async () => {
    await rollbackProject(net.contracts, builder, 'app', 1)
    const st = await waitFor('the rollback to fail', async () => {
      const s = await status()
      return s.version === 1 && s.error !== null ? s : undefined
    }, 20_000, 200)
    assert.equal(st.live, false)
    assert.equal(st.served, KEEP + 2)
    assert.match(st.error, /^version 1 cannot be served: block \S+ was not found within \d+ ms/)
  })

  it('rolls back to a retained version at once', async () => {
    await rollbackProject(net.contracts, builder, 'app', 3)
    const started = Date.now()
    await waitFor('version 3 served', async () => {
      const s = await status()
      return s.version === 3 && s.live === true && s.error === null
    }, 5_000, 50)
    assert.ok(Date.now() - started < 2_000, `${Date.now() - started} ms`)
    // version 1 is out of retention again, version 4 (the newest other) is kept
    assert.equal(await block(greet(versions[3])), 200)
  })

  it('resumes from its registry cursor after a restart, and reads from --registry-from-block when told to', async () => {
    const old = net.procs.find(p => p.name === 'gateway')!
    await old.stop(5_000)
    const cursor = JSON.parse(readFileSync(join(net.dir, 'gateway', 'registry.json'), 'utf8'))
    assert.equal(cursor.registry, net.contracts.addresses.FunctionRegistry)
    assert.deepEqual(cursor.projects.map((p: any) => [p.name, p.active, p.versions.length]), [['app', 3, KEEP + 2]])
    const logs = join(net.dir, 'logs')
    const start = async (name: string, extra: string[]): Promise<string> => {
      const gw = spawnPeerhost(name, ['gateway', '--bootstrap', net.bootstrapAddrs.join(','), '--port', '0', '--data-dir', join(net.dir, 'gateway'), '--contracts', net.contractsFile,
        '--keep-versions', String(KEEP), '--log-level', 'info', ...extra], logs)
      net.procs.push(gw)
      net.gatewayUrl = (await gw.ready).url
      // served at once: start() returns after the restored active version is loaded
      const s = await status()
      assert.equal(s.version, 3)
      assert.equal(s.live, true)
      await gw.stop(5_000)
      return readFileSync(join(logs, `${name}.log`), 'utf8')
    }
    const resumed = await start('gateway-resumed', [])
    assert.match(resumed, new RegExp(`"block":"${cursor.block}".*"resuming FunctionRegistry from the cursor"`))
    const rescanned = await start('gateway-rescanned', ['--registry-from-block', String(net.contracts.deployBlock)])
    assert.doesNotMatch(rescanned, /resuming FunctionRegistry/)
    assert.match(rescanned, /"following FunctionRegistry"/)
  })
})
