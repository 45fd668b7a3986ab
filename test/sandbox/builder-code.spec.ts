/**
 * What a builder's code meets (issue 14 items 6 and 7): errors that point at `functions/<file>.ts`,
 * a build that refuses a file without a handler, named GET/POST exports, and the nodejs_compat
 * subset — built by node/build exactly as `peerhost deploy` does and run in real gVisor sandboxes,
 * plus the attacks: importing fs/child_process/net/worker_threads/vm fails the build, and neither
 * `require` nor the provided modules hand out a host handle.
 */
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { gvisorExecutor, NODE_COMPAT_MODULES, type ExecutionResult, type GvisorExecutor } from '#sandbox'
import { bundleFunction, findFunctions } from '../../node/build/bundle.ts'
import { buildDeployment } from '../../node/deploy/build.ts'
import { startDevServer, type DevServer } from '../../node/dev/dev-server.ts'

const SOURCES: Record<string, string> = {
  'lib/fail.ts': `export function fail (why: string): never {
  throw new Error('failed: ' + why)
}
`,
  'functions/boom.ts': `import { fail } from '../lib/fail.ts'

export default {
  async fetch (request: Request): Promise<Response> {
    const why: string = new URL(request.url).searchParams.get('why') ?? 'no reason'
    console.log('about to fail')
    if (why === 'log') { console.error(new Error('logged, not thrown')); return new Response('logged') }
    fail(why)
  }
}
`,
  'functions/methods.ts': `export function GET (request: Request): Response {
  return new Response('get ' + new URL(request.url).pathname)
}
export async function POST (request: Request): Promise<Response> {
  return new Response('post ' + await request.text())
}
`,
  'functions/compat.ts': `import { createHash, createHmac, randomUUID, timingSafeEqual, getRandomValues } from 'node:crypto'
import * as crypto2 from 'crypto'
import { Buffer as NodeBuffer } from 'node:buffer'
import { EventEmitter } from 'node:events'
import EE2 from 'events'
import { format, inspect } from 'node:util'
import path from 'node:path'
import { join } from 'path'
import { URL as NodeURL, fileURLToPath } from 'node:url'
import assert from 'node:assert'

export default {
  async fetch (): Promise<Response> {
    const out: Record<string, unknown> = {}
    out.sha = createHash('sha256').update('abc').digest('hex')
    out.hmac = createHmac('sha256', 'k').update('m').digest('base64')
    out.uuid = /^[0-9a-f-]{36}$/.test(randomUUID())
    out.safeEq = timingSafeEqual(Buffer.from('ab'), NodeBuffer.from('ab'))
    out.random = getRandomValues(new Uint8Array(8)).length
    out.bare = crypto2.createHash('md5').update('').digest('hex')
    out.buffer = Buffer.from('hello').toString('base64') + NodeBuffer.from('aGk=', 'base64').toString()
    const e = new EventEmitter(); let got = ''; e.on('x', (v: string) => { got = v }); e.emit('x', 'evt'); out.events = got + (EE2 === EventEmitter)
    out.util = format('%s-%d', 'a', 1) + inspect({ a: 1 })
    out.path = path.join('/a', '../b', 'c') + join('x', 'y')
    out.url = new NodeURL('https://h/p?q=1').searchParams.get('q') + fileURLToPath('file:///tmp/f')
    try { assert.equal(1, 2) } catch (err) { out.assert = (err as Error).name }
    return Response.json(out)
  }
}
`,
  // tries every way to a host handle through what the compat layer hands out
  'functions/handles.ts': `import * as crypto from 'node:crypto'
import * as buffer from 'node:buffer'
import * as events from 'node:events'
import * as util from 'node:util'
import * as path from 'node:path'
import * as url from 'node:url'
import assert from 'node:assert'

declare const require: (name: string) => unknown
const DANGEROUS = ['readFileSync', 'writeFileSync', 'spawn', 'spawnSync', 'execSync', 'fork', 'connect', 'createServer', 'Worker', 'runInContext', 'runInNewContext', 'compileFunction', 'createRequire', 'binding', 'dlopen', 'mainModule', 'getBuiltinModule', 'chdir', 'kill']

export default {
  async fetch (): Promise<Response> {
    const found: string[] = []
    const seen = new Set<unknown>()
    const walk = (v: unknown, where: string, depth: number): void => {
      if (v === null || (typeof v !== 'object' && typeof v !== 'function') || seen.has(v) || depth > 3) return
      seen.add(v)
      for (const k of Object.getOwnPropertyNames(v)) {
        let x: unknown
        try { x = (v as any)[k] } catch { continue }
        if (DANGEROUS.includes(k) && x !== undefined) found.push(where + '.' + k)
        if (k === 'env' && x !== null && typeof x === 'object' && 'PATH' in (x as object)) found.push(where + '.env')
        walk(x, where + '.' + k, depth + 1)
      }
    }
    const mods: Record<string, unknown> = { crypto, buffer, events, util, path, url, assert }
    for (const [name, m] of Object.entries(mods)) walk(m, name, 0)
    const refused: Record<string, string> = {}
    for (const name of ['fs', 'node:fs', 'child_process', 'node:child_process', 'net', 'node:net', 'worker_threads', 'vm', 'node:vm', 'module', 'process', 'node:http', 'os']) {
      try { require(name); refused[name] = 'LOADED' } catch (err) { refused[name] = (err as Error).message.includes('not available') ? 'refused' : 'other: ' + (err as Error).message }
    }
    return Response.json({ found, refused, walked: seen.size })
  }
}
`
}

function project (extra: Record<string, string> = {}): string {
  const dir = mkdtempSync(join(tmpdir(), 'peerhost-builder-code-'))
  for (const [file, text] of Object.entries({ ...SOURCES, ...extra })) {
    mkdirSync(join(dir, file, '..'), { recursive: true })
    writeFileSync(join(dir, file), text)
  }
  writeFileSync(join(dir, 'peerhost.json'), JSON.stringify({ name: 'buildercode' }))
  return dir
}

describe('builder code: source maps, handler check, named exports, nodejs_compat', function () {
  this.timeout(180_000)
  const dirs: string[] = []
  after(() => { for (const d of dirs) rmSync(d, { recursive: true, force: true }) })
  const fresh = (extra: Record<string, string> = {}): string => { const d = project(extra); dirs.push(d); return d }

  describe('build', () => {
    it('gives the same bytes from any directory, with an inline source map of relative paths only', async () => {
      const a = fresh()
      const b = mkdtempSync(join(tmpdir(), 'peerhost-builder-elsewhere-'))
      dirs.push(b)
      cpSync(a, join(b, 'deeper', 'copy'), { recursive: true })
      const one = await bundleFunction(a, { name: 'boom', entry: 'functions/boom.ts' })
      const two = await bundleFunction(join(b, 'deeper', 'copy'), { name: 'boom', entry: 'functions/boom.ts' })
      assert.equal(one.cid, two.cid)
      const text = new TextDecoder().decode(one.bytes)
      assert.ok(text.startsWith('// peerhost-entry: functions/boom.ts\n'))
      const map = JSON.parse(Buffer.from(/sourceMappingURL=data:application\/json;base64,(\S+)/.exec(text)![1], 'base64').toString())
      assert.deepEqual([...map.sources].sort(), ['functions/boom.ts', 'lib/fail.ts'])
      assert.ok(!text.includes(tmpdir()) && !JSON.stringify(map).includes(tmpdir()), 'no absolute path in the bundle')
      assert.equal(map.sourcesContent, undefined)
    })

    it('refuses a file without a handler at build and deploy, naming the file and the expected shape', async () => {
      const dir = fresh({ 'functions/nohandler.ts': 'export const answer = 42\n' })
      await assert.rejects(bundleFunction(dir, { name: 'nohandler', entry: 'functions/nohandler.ts' }), (err: any) => {
        assert.equal(err.code, 'NO_HANDLER')
        assert.match(err.message, /functions\/nohandler\.ts exports no request handler \(it exports answer\)/)
        assert.match(err.message, /export default \{ async fetch \(request, env, ctx\)/)
        return true
      })
      await assert.rejects(buildDeployment({ dir, sourceCommit: `0x${'00'.repeat(32)}` }), { code: 'NO_HANDLER' })
      assert.ok(findFunctions(dir).some(f => f.name === 'nohandler'))
    })

    it('fails the build on every Node built-in outside the subset, listing what is available', async () => {
      for (const spec of ['node:fs', 'fs', 'child_process', 'node:child_process', 'node:net', 'net', 'worker_threads', 'node:vm', 'vm', 'node:http', 'node:os', 'node:module', 'fs/promises']) {
        const dir = fresh({ 'functions/bad.ts': `import * as m from '${spec}'\nexport default { fetch () { return new Response(String(Object.keys(m))) } }\n` })
        await assert.rejects(bundleFunction(dir, { name: 'bad', entry: 'functions/bad.ts' }), (err: any) => {
          assert.equal(err.code, 'BUNDLE_FAILED', spec)
          assert.ok(err.message.includes(`"${spec}" is not available`), err.message)
          for (const m of NODE_COMPAT_MODULES) assert.ok(err.message.includes(`node:${m}`), `${spec}: lists node:${m}`)
          return true
        })
      }
    })
  })

  describe('in gVisor', () => {
    let ex: GvisorExecutor
    let dir: string
    const run = async (name: string, init: { method?: string, url?: string, body?: string } = {}): Promise<ExecutionResult> => {
      const built = await bundleFunction(dir, { name, entry: `functions/${name}.ts` })
      return await ex.execute({
        jobId: `j-${name}`,
        bundle: { cid: built.cid, bytes: built.bytes },
        request: { method: init.method ?? 'GET', url: init.url ?? `http://peerhost.test/${name}`, headers: [], body: new TextEncoder().encode(init.body ?? '') },
        env: {},
        options: { memoryMb: 128, timeoutMs: 10_000, network: [], isolation: 'function' },
        deadline: Date.now() + 30_000
      })
    }
    const body = (r: ExecutionResult): string => {
      if (r.response === undefined) throw new Error(`no response: ${JSON.stringify(r.error)} ${r.logs}`)
      return new TextDecoder().decode(r.response.body)
    }

    before(async () => {
      execFileSync('/usr/bin/runsc', ['--version'])
      dir = fresh()
      ex = gvisorExecutor({ dataDir: join(dir, '.peerhost', 'sbx'), selfTest: false, genericPoolSize: 1 })()
      await ex.start()
    })
    after(async () => { await ex?.stop() })

    it('shows functions/<file>.ts:<line>:<col> in uncaught errors and logged errors, without runtime frames', async () => {
      const r = await run('boom', { url: 'http://peerhost.test/boom?why=because' })
      assert.equal(r.error?.code, 'FUNCTION_ERROR')
      assert.match(r.logs, /Uncaught Error: failed: because/)
      // thrown in lib/fail.ts line 2 (at `new`), called from functions/boom.ts line 8 (the column
      // is esbuild's nearest mapping of the call)
      assert.match(r.logs, /at fail \(lib\/fail\.ts:2:9\)/)
      assert.match(r.logs, /at Object\.fetch \(functions\/boom\.ts:8:\d+\)/)
      assert.ok(!/bundle-|\/peerhost\/|node:internal|realm\.ts|session\.ts/.test(r.logs), r.logs)
      const logged = await run('boom', { url: 'http://peerhost.test/boom?why=log' })
      assert.equal(body(logged), 'logged')
      assert.match(logged.logs, /Error: logged, not thrown\n\s+at Object\.fetch \(functions\/boom\.ts:7:\d+\)/)
      assert.ok(!/bundle-|\/peerhost\//.test(logged.logs), logged.logs)
    })

    it('serves named GET and POST exports and answers 405 with Allow for other methods', async () => {
      assert.equal(body(await run('methods', { url: 'http://peerhost.test/m' })), 'get /m')
      assert.equal(body(await run('methods', { method: 'POST', body: 'data' })), 'post data')
      const put = await run('methods', { method: 'PUT' })
      assert.equal(put.response?.status, 405)
      assert.deepEqual(put.response?.headers.find(([k]) => k === 'allow'), ['allow', 'GET, POST, HEAD'])
      assert.equal((await run('methods', { method: 'HEAD' })).response?.status, 200)
    })

    it('runs the nodejs_compat subset with node: and bare specifiers', async () => {
      const out = JSON.parse(body(await run('compat')))
      assert.deepEqual(out, {
        sha: 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad',
        hmac: 'tgCQ4wUil661oICInOL8S8qVfnVvrrTffTGADKHncew=',
        uuid: true,
        safeEq: true,
        random: 8,
        bare: 'd41d8cd98f00b204e9800998ecf8427e',
        buffer: 'aGVsbG8=hi',
        events: 'evttrue',
        util: 'a-1{ a: 1 }',
        path: '/b/cx/y',
        url: '1/tmp/f',
        assert: 'AssertionError'
      })
    })

    it('hands out no host handle: the provided modules hold no fs/process/net/vm functions and require refuses the rest', async () => {
      const out = JSON.parse(body(await run('handles')))
      assert.ok(out.walked > 50, `walked ${out.walked} objects`)
      assert.deepEqual(out.found, [])
      for (const [name, verdict] of Object.entries(out.refused)) assert.equal(verdict, 'refused', name)
    })
  })

  describe('peerhost dev', () => {
    let dev: DevServer | undefined
    after(async () => { await dev?.stop() })

    it('serves a function importing node:crypto and Buffer instead of exiting', async () => {
      const dir = fresh()
      dev = await startDevServer({ dir, port: 0, dataDir: join(dir, '.peerhost', 'dev') })
      const r = await fetch(`${dev.url}/compat`)
      assert.equal(r.status, 200, await r.clone().text())
      assert.equal(((await r.json()) as { sha: string }).sha, 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad')
    })
  })
})
