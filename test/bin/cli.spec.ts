import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, writeFileSync, mkdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { CLI } from '../../bin/spawn.ts'

function run (...args: string[]): { code: number | null, stdout: string, stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 30_000 })
  return { code: r.status, stdout: r.stdout, stderr: r.stderr }
}

describe('peerhost CLI', function () {
  // each case spawns the CLI several times; on a loaded 2-core machine one spawn can take seconds
  this.timeout(180_000)

  it('prints help for the program and every command', () => {
    const top = run('--help')
    assert.equal(top.code, 0)
    for (const cmd of ['devnet', 'dev', 'bootstrap', 'gateway', 'worker', 'chain']) {
      assert.match(top.stdout, new RegExp(`\\b${cmd}\\b`))
      const sub = run(cmd, '--help')
      assert.equal(sub.code, 0, `${cmd} --help`)
      assert.match(sub.stdout, new RegExp(`Usage: peerhost ${cmd}`))
    }
  })

  it('reports a usage error in one sentence without a stack and exits 2', () => {
    for (const args of [['gateway', '--port', 'abc'], ['nope'], ['worker'], ['gateway', '--bootstrap', '/ip4/127.0.0.1/tcp/1', '--owner', 'bob']]) {
      const r = run(...args)
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`)
      assert.match(r.stderr, /^peerhost: \S/)
      assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace')
    }
  })

  it('refuses a malformed --ip-rate-limit, --chain-rate-limit, --domain or cap, saying what is expected', () => {
    const boot = ['gateway', '--bootstrap', '/ip4/127.0.0.1/tcp/1/p2p/12D3KooWJ8CJmVwY9CptgYbs2CN6PaCEE1JkPDGAb2cNzsnsFQXn', '--port', '0']
    const cases: Array<[string[], RegExp]> = [
      [['--ip-rate-limit', '100'], /--ip-rate-limit must be <requests>\/<seconds>/],
      [['--ip-rate-limit', '0/1'], /--ip-rate-limit must be/],
      [['--chain-rate-limit', '10 per minute'], /--chain-rate-limit must be <requests>\/<seconds>/],
      [['--chain-rate-limit', '1/0'], /--chain-rate-limit must be/],
      [['--domain', 'https://peerhost.example/'], /--domain must be a DNS name/],
      [['--max-connections-per-ip', '0'], /--max-connections-per-ip must be a whole number from 1/]
    ]
    for (const [extra, message] of cases) {
      const r = run(...boot, ...extra)
      assert.equal(r.code, 2, `${extra.join(' ')}: ${r.stderr}`)
      assert.match(r.stderr, message)
      assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace')
    }
  })

  it('lists every problem of a bad peerhost.json at once', () => {
    const dir = mkdtempSync(join(tmpdir(), 'peerhost-cli-'))
    mkdirSync(join(dir, 'functions'))
    writeFileSync(join(dir, 'functions', 'a.ts'), 'export default { fetch () { return new Response("a") } }')
    writeFileSync(join(dir, 'peerhost.json'), JSON.stringify({ name: 'Bad Name', functions: { a: { timeoutMs: -1, memoryMb: 'lots', extra: true } } }))
    const r = run('gateway', '--bootstrap', '/ip4/127.0.0.1/tcp/1/p2p/12D3KooWJ8CJmVwY9CptgYbs2CN6PaCEE1JkPDGAb2cNzsnsFQXn', '--port', '0', '--data-dir', join(dir, 'gw'), '--project', dir)
    assert.equal(r.code, 2, r.stderr)
    assert.match(r.stderr, /4 problems/)
    for (const path of ['name', 'functions.a.timeoutMs', 'functions.a.memoryMb', 'functions.a."extra"']) assert.ok(r.stderr.includes(`- ${path}:`), `mentions ${path}: ${r.stderr}`)
  })
})
