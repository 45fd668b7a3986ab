import assert from 'node:assert/strict'
import { mkdtempSync, writeFileSync, mkdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { cli, type CliResult } from '../helpers/cli.ts'

async function run (...args: string[]): Promise<CliResult> {
  return await cli(args)
}

/**
 * The cases of one test as CLI processes started together: each is a Node start that loads the
 * CLI (seconds on a loaded machine) and answers at once, so a test's cases overlap instead of
 * queueing; results come back in the order of `cases`, each checked as before.
 */
async function runAll (cases: string[][]): Promise<CliResult[]> {
  return await Promise.all(cases.map(async args => await run(...args)))
}

describe('peerhost CLI', function () {
  // each case spawns the CLI several times; on a loaded 2-core machine one spawn can take seconds
  this.timeout(180_000)

  it('prints help for the program and every command', async () => {
    const commands = ['devnet', 'dev', 'bootstrap', 'gateway', 'worker', 'chain', 'ws']
    const [top, ...subs] = await runAll([['--help'], ...commands.map(cmd => [cmd, '--help'])])
    assert.equal(top.code, 0)
    for (const [i, cmd] of commands.entries()) {
      assert.match(top.stdout, new RegExp(`\\b${cmd}\\b`))
      const sub = subs[i]
      assert.equal(sub.code, 0, `${cmd} --help`)
      assert.match(sub.stdout, new RegExp(`Usage: peerhost ${cmd}`))
    }
  })

  it('reports a usage error in one sentence without a stack and exits 2', async () => {
    const cases = [['gateway', '--port', 'abc'], ['nope'], ['worker'], ['gateway', '--bootstrap', '/ip4/127.0.0.1/tcp/1', '--owner', 'bob'], ['ws', 'ftp://x/y'], ['ws', 'not a url'], ['ws', 'ws://127.0.0.1:1/f', '--header', 'no-colon']]
    const results = await runAll(cases)
    for (const [i, args] of cases.entries()) {
      const r = results[i]
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`)
      assert.match(r.stderr, /^peerhost: \S/)
      assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace')
    }
  })

  it('refuses a malformed --ip-rate-limit, --chain-rate-limit, --domain or cap, saying what is expected', async () => {
    const boot = ['gateway', '--bootstrap', '/ip4/127.0.0.1/tcp/1/p2p/12D3KooWJ8CJmVwY9CptgYbs2CN6PaCEE1JkPDGAb2cNzsnsFQXn', '--port', '0']
    const cases: Array<[string[], RegExp]> = [
      [['--ip-rate-limit', '100'], /--ip-rate-limit must be <requests>\/<seconds>/],
      [['--ip-rate-limit', '0/1'], /--ip-rate-limit must be/],
      [['--chain-rate-limit', '10 per minute'], /--chain-rate-limit must be <requests>\/<seconds>/],
      [['--chain-rate-limit', '1/0'], /--chain-rate-limit must be/],
      [['--domain', 'https://peerhost.example/'], /--domain must be a DNS name/],
      [['--max-connections-per-ip', '0'], /--max-connections-per-ip must be a whole number from 1/]
    ]
    const results = await runAll(cases.map(([extra]) => [...boot, ...extra]))
    for (const [i, [extra, message]] of cases.entries()) {
      const r = results[i]
      assert.equal(r.code, 2, `${extra.join(' ')}: ${r.stderr}`)
      assert.match(r.stderr, message)
      assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace')
    }
  })

  it('lists every problem of a bad peerhost.json at once', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'peerhost-cli-'))
    mkdirSync(join(dir, 'functions'))
    writeFileSync(join(dir, 'functions', 'a.ts'), 'export default { fetch () { return new Response("a") } }')
    writeFileSync(join(dir, 'peerhost.json'), JSON.stringify({ name: 'Bad Name', functions: { a: { timeoutMs: -1, memoryMb: 'lots', extra: true } } }))
    const r = await run('gateway', '--bootstrap', '/ip4/127.0.0.1/tcp/1/p2p/12D3KooWJ8CJmVwY9CptgYbs2CN6PaCEE1JkPDGAb2cNzsnsFQXn', '--port', '0', '--data-dir', join(dir, 'gw'), '--project', dir)
    assert.equal(r.code, 2, r.stderr)
    assert.match(r.stderr, /4 problems/)
    for (const path of ['name', 'functions.a.timeoutMs', 'functions.a.memoryMb', 'functions.a."extra"']) assert.ok(r.stderr.includes(`- ${path}:`), `mentions ${path}: ${r.stderr}`)
  })
})
