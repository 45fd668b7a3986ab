/**
 * The test command (`npm test`): type-checks the tree with `tsc --noEmit`, then runs every mocha
 * suite (`test/**\/*.spec.ts`) in one process, and closes with the line CI reads:
 * `N passed, N failed` (the type check counts as one test).
 *
 *   node test/run.ts [--grep <pattern>] [--suite unit|all] [files…]
 */
import { spawnSync } from 'node:child_process'
import { readdirSync, statSync } from 'node:fs'
import { join, relative, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import Mocha from 'mocha'

const root = resolve(import.meta.dirname, '..')
const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    grep: { type: 'string' },
    suite: { type: 'string', default: 'all' },
    'no-typecheck': { type: 'boolean', default: false }
  }
})

function specs (dir: string): string[] {
  const out: string[] = []
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name)
    if (statSync(p).isDirectory()) out.push(...specs(p))
    else if (name.endsWith('.spec.ts')) out.push(p)
  }
  return out
}

let passed = 0
let failed = 0

if (values['no-typecheck'] !== true && positionals.length === 0) {
  const started = Date.now()
  const tsc = spawnSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '--noEmit', '-p', join(root, 'tsconfig.json')], { stdio: 'inherit' })
  if (tsc.status === 0) {
    passed++
    console.log(`  ✔ tsc --noEmit (${Date.now() - started} ms)`)
  } else {
    failed++
    console.log('  ✖ tsc --noEmit reported type errors (above)')
  }
}

let files = positionals.length > 0 ? positionals.map(p => resolve(p)) : specs(join(root, 'test'))
if (values.suite === 'unit') files = files.filter(f => !/[/\\](integration|e2e)[/\\]/.test(f))

const mocha = new Mocha({ timeout: 60_000, reporter: 'spec', grep: values.grep })
for (const f of files) mocha.addFile(f)
await mocha.loadFilesAsync()
const runner = mocha.run()
await new Promise<void>(resolve => runner.on('end', () => resolve()))
passed += runner.stats?.passes ?? 0
failed += runner.stats?.failures ?? 0
console.log(`\nfiles: ${files.map(f => relative(root, f)).length} spec files`)
console.log(`${passed} passed, ${failed} failed`)
// Suites must not leave handles open; exit explicitly so a leak cannot hang CI.
process.exit(failed === 0 ? 0 : 1)
