/**
 * `peerhost/client` as an installed package (issue 13: "a helper exported for clients"): a client
 * program in its own folder imports `signRequest` from `peerhost/client` with plain Node 24, the
 * package sitting under node_modules where Node refuses to strip TypeScript itself. The package is
 * laid out from the files package.json publishes, so a missing file or export fails here.
 */
import assert from 'node:assert/strict'
import { execFileSync, spawnSync } from 'node:child_process'
import { cpSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { privateKeyToAccount } from 'viem/accounts'
import { signRequest } from '#node'

const root = resolve(import.meta.dirname, '..', '..', '..')
const KEY = '0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d'

describe('peerhost/client (installed)', function () {
  this.timeout(60_000)
  let dir: string

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'peerhost-client-'))
    const pkg = join(dir, 'node_modules', 'peerhost')
    const manifest = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'))
    // what `peerhost/client` needs at run time, each of it listed in package.json "files"
    for (const file of ['package.json', 'client.js', 'bin/ts-hooks.js', 'node/auth/request-signature.ts']) {
      const top = file.split('/')[0]
      assert.ok(file === 'package.json' || (manifest.files as string[]).some(f => f === file || f === `${top}/`), `${file} is published`)
      mkdirSync(dirname(join(pkg, file)), { recursive: true })
      cpSync(join(root, file), join(pkg, file))
    }
    symlinkSync(realpathSync(join(root, 'node_modules', 'viem')), join(dir, 'node_modules', 'viem'))
    writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'a-client', type: 'module', private: true }))
    writeFileSync(join(dir, 'sign.js'), [
      "import { signRequest, SIGNATURE_HEADER } from 'peerhost/client'",
      "import { privateKeyToAccount } from 'viem/accounts'",
      `const headers = await signRequest(privateKeyToAccount('${KEY}'), { method: 'POST', url: 'http://gw.example/0x70997970C51812dc3A010C7d01b50e0d17dc79C8/demo/hello?x=1', body: 'pay 1', timestamp: 1764000000123 })`,
      'console.log(JSON.stringify({ name: SIGNATURE_HEADER, headers }))'
    ].join('\n'))
  })
  after(() => { if (dir !== undefined) rmSync(dir, { recursive: true, force: true }) })

  it('signs a request from a client folder with plain Node, the same header as the repository\'s signRequest', async () => {
    const out = JSON.parse(execFileSync(process.execPath, ['sign.js'], { cwd: dir, encoding: 'utf8' }))
    const expected = await signRequest(privateKeyToAccount(KEY), { method: 'POST', url: 'http://gw.example/0x70997970C51812dc3A010C7d01b50e0d17dc79C8/demo/hello?x=1', body: 'pay 1', timestamp: 1764000000123 })
    assert.equal(out.name, 'x-peerhost-signature')
    assert.deepEqual(out.headers, expected)
  })

  it('needs the entry: importing the TypeScript source under node_modules directly fails (the check above can fail)', () => {
    writeFileSync(join(dir, 'direct.js'), "import { signRequest } from 'peerhost/node/auth/request-signature.ts'\nconsole.log(typeof signRequest)\n")
    const r = spawnSync(process.execPath, ['direct.js'], { cwd: dir, encoding: 'utf8' })
    assert.notEqual(r.status, 0)
    assert.match(r.stderr, /ERR_PACKAGE_PATH_NOT_EXPORTED|ERR_UNSUPPORTED_NODE_MODULES_TYPE_STRIPPING/)
    writeFileSync(join(dir, 'direct.js'), "import { signRequest } from './node_modules/peerhost/node/auth/request-signature.ts'\nconsole.log(typeof signRequest)\n")
    const byPath = spawnSync(process.execPath, ['direct.js'], { cwd: dir, encoding: 'utf8' })
    assert.notEqual(byPath.status, 0)
    assert.match(byPath.stderr, /ERR_UNSUPPORTED_NODE_MODULES_TYPE_STRIPPING/)
  })
})
