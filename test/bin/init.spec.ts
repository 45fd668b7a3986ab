/** `peerhost init` as a function (issue 13): the files a new project gets, and what its .gitignore keeps out of git. */
import assert from 'node:assert/strict'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { initProject } from '../../bin/commands/init.ts'
import { loadProjectConfig } from '#node'

describe('peerhost init', () => {
  it('writes a project whose peerhost.json loads, and whose .gitignore keeps secrets and the wallet out of git', () => {
    const dir = mkdtempSync(join(tmpdir(), 'peerhost-init-'))
    try {
      const r = initProject(join(dir, 'My App'))
      assert.equal(r.name, 'my-app')
      assert.deepEqual([...r.files].sort(), ['.dev.vars.example', '.gitignore', 'README.md', 'functions/hello.ts', 'peerhost.json', 'tsconfig.json'])
      assert.equal(loadProjectConfig(r.dir).name, 'my-app')
      const ignored = readFileSync(join(r.dir, '.gitignore'), 'utf8').split('\n')
      // `peerhost wallet new` writes peerhost-wallet.json by default; `peerhost dev` reads .dev.vars
      for (const f of ['.dev.vars', 'peerhost-wallet.json', 'node_modules/', '.peerhost/']) assert.ok(ignored.includes(f), `.gitignore lists ${f}`)
      assert.ok(!ignored.includes('.dev.vars.example'), 'the example is meant to be committed')
      // the README's three commands
      assert.equal((readFileSync(join(r.dir, 'README.md'), 'utf8').match(/^npx peerhost /gm) ?? []).length, 3)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
