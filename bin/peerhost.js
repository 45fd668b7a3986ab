#!/usr/bin/env node
/**
 * The `peerhost` command as installed from npm. Plain JavaScript on purpose: it must start on
 * whatever Node the builder's machine has (Node 20 is common), find a Node 24 (the one this
 * process runs on if it is new enough, else the `node` npm package's binary, a dependency of
 * peerhost) and re-run `bin/peerhost.ts` on it. Node refuses to strip TypeScript types from
 * files under node_modules, so the child also loads ts-hooks.js, which strips them for this
 * package's own files; NODE_OPTIONS carries that to every Node process the CLI starts (devnet
 * nodes, worker threads).
 */
import { spawn } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'

// node:sqlite, module.registerHooks and type stripping of .ts files all need Node 24
const MIN_NODE_MAJOR = 24
const HERE = dirname(fileURLToPath(import.meta.url))
const CLI = join(HERE, 'peerhost.ts')
const HOOKS = pathToFileURL(join(HERE, 'ts-hooks.js')).href

function major (version) {
  return Number.parseInt(String(version).replace(/^v/, '').split('.')[0], 10)
}

/** The Node 24 to run on, or a list of what was tried. */
function findNode () {
  const tried = []
  if (major(process.versions.node) >= MIN_NODE_MAJOR) return { bin: process.execPath, tried }
  tried.push(`${process.execPath} is Node ${process.versions.node}`)
  try {
    // resolved from this package, so it finds peerhost's own `node` dependency wherever npm put it
    const pkgJson = createRequire(import.meta.url).resolve('node/package.json')
    const version = JSON.parse(readFileSync(pkgJson, 'utf8')).version
    const bin = join(dirname(pkgJson), 'bin', 'node')
    if (major(version) >= MIN_NODE_MAJOR && existsSync(bin)) return { bin, tried }
    tried.push(`the node npm package at ${dirname(pkgJson)} is version ${version}${existsSync(bin) ? '' : ' and has no bin/node'}`)
  } catch {
    tried.push('the node npm package is not installed next to peerhost')
  }
  return { bin: undefined, tried }
}

const found = findNode()
if (found.bin === undefined) {
  process.stderr.write(`peerhost: needs Node ${MIN_NODE_MAJOR} or newer and found none (${found.tried.join('; ')}).\n` +
    `Install Node ${MIN_NODE_MAJOR}+ on your PATH, or reinstall peerhost so that its "node" dependency is installed (npm i -D peerhost).\n`)
  process.exit(1)
}

// NODE_OPTIONS quotes a value with double quotes; a path holding one cannot be passed this way
const hookOption = HOOKS.includes('"') ? undefined : `--import="${HOOKS}"`
if (hookOption === undefined) {
  process.stderr.write(`peerhost: cannot run from a path containing a double quote: ${HERE}\n`)
  process.exit(1)
}
const nodeOptions = [process.env.NODE_OPTIONS, hookOption, '--disable-warning=ExperimentalWarning'].filter(Boolean).join(' ')
const child = spawn(found.bin, [CLI, ...process.argv.slice(2)], { stdio: 'inherit', env: { ...process.env, NODE_OPTIONS: nodeOptions } })

// the child gets the terminal's Ctrl-C itself (same process group); a SIGTERM sent to this
// launcher alone (a supervisor, a test harness) must reach it too
for (const signal of ['SIGTERM', 'SIGHUP']) {
  process.on(signal, () => { child.kill(signal) })
}
process.on('SIGINT', () => {})
child.on('error', err => {
  process.stderr.write(`peerhost: could not start ${found.bin}: ${err.message}\n`)
  process.exit(1)
})
child.on('exit', (code, signal) => {
  if (signal !== null) {
    process.removeAllListeners(signal)
    process.kill(process.pid, signal)
  } else {
    process.exit(code ?? 1)
  }
})
