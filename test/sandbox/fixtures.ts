/**
 * Hostile and ordinary function bundles shared by the sandbox suites (dev executor, gVisor
 * executor, `peerhost dev`). Each is a CommonJS bundle as node/build produces.
 */
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { rawCid } from '#protocol'
import type { AddressFilter, BundleRef, ExecutionJob, ExecutionResult } from '#sandbox'
import type { FunctionOptions } from '#protocol'

export const FIXTURES: Record<string, string> = {
  hello: `module.exports.default = { async fetch (req, env) { return new Response('Hello, ' + (new URL(req.url).searchParams.get('name') ?? 'world') + '!') } }`,
  echo: `module.exports.default = { async fetch (req, env, ctx) { const body = await req.text(); console.log('echo', req.method, body.length); return Response.json({ method: req.method, url: req.url, body, env, header: req.headers.get('x-test') }) } }`,
  throws: `module.exports.default = { async fetch () { throw new Error('boom from function') } }`,
  throwsAtLoad: `throw new Error('load-time boom'); module.exports.default = {}`,
  notResponse: `module.exports.default = { async fetch () { return { status: 200, body: 'not a response' } } }`,
  returnsUndefined: `module.exports.default = { fetch () { } }`,
  // blocks its event loop without using CPU (a futex wait): a wall clock alone would call it a CPU hog
  atomicsWait: `module.exports.default = { fetch () { Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 60000); return new Response('woke') } }`,
  neverSettles: `module.exports.default = { fetch () { return new Promise(() => {}) } }`,
  syncLoop: `module.exports.default = { fetch () { for (;;) {} } }`,
  asyncLoop: `module.exports.default = { async fetch () { await null; await new Promise(r => setTimeout(r, 1)); for (;;) {} } }`,
  hugeResponse: `module.exports.default = { async fetch () { return new Response(new Uint8Array(8 * 1024 * 1024).fill(97)) } }`,
  hugeStreamResponse: `module.exports.default = { async fetch () { let n = 0; return new Response(new ReadableStream({ pull (c) { if (n++ > 10000) c.close(); else c.enqueue(new Uint8Array(65536)) } })) } }`,
  gigantic_stdout: `module.exports.default = { async fetch () { const s = 'x'.repeat(1024 * 1024); for (let i = 0; i < 200; i++) { console.log(s); console.error(s) } return new Response('done') } }`,
  memoryBomb: `module.exports.default = { async fetch () { const a = []; for (;;) { a.push(new Array(1e6).fill(Math.random())) } } }`,
  bufferBomb: `module.exports.default = { async fetch () { const a = []; for (let i = 0; i < 100000; i++) { const b = new Uint8Array(16 * 1024 * 1024); b.fill(1); a.push(b) } return new Response(String(a.length)) } }`,
  // an allocation no address space can give (V8: RangeError "Array buffer allocation failed"),
  // what gVisor also answers near the cgroup limit instead of killing the sandbox
  impossibleBuffer: `module.exports.default = { async fetch () { const b = new ArrayBuffer(2 ** 50); return new Response(String(b.byteLength)) } }`,
  setGlobal: `module.exports.default = { async fetch () { globalThis.canary = 'CANARY-A'; Object.prototype.polluted = 'CANARY-P'; Array.prototype.evil = 1; return new Response('set') } }`,
  readGlobal: `module.exports.default = { async fetch () { return Response.json({ canary: globalThis.canary ?? null, polluted: ({}).polluted ?? null, evil: [].evil ?? null }) } }`,
  writeTmp: `module.exports.default = { async fetch () { let r = 'no-fs'; try { const fs = globalThis.process?.mainModule?.require?.('fs'); if (fs) { fs.writeFileSync('/tmp/canary', 'CANARY-T'); r = 'wrote' } } catch (e) { r = 'err ' + e.message } return new Response(r) } }`,
  // sets (mode=set) or looks for (mode=get) state in realm globals, the shim's own globals and /tmp
  stateProbe: `module.exports.default = { async fetch (req) {
    const mode = new URL(req.url).searchParams.get('mode')
    const shim = Response.constructor.constructor('return globalThis')()
    const fs = shim.process.getBuiltinModule('fs')
    const ls = () => { try { return fs.readdirSync('/tmp') } catch (e) { return e.code } }
    if (mode === 'set') { globalThis.canary = 'CANARY-G'; shim.__sandboxToken ??= Math.random().toString(36).slice(2); fs.writeFileSync('/tmp/canary', 'CANARY-T'); return Response.json({ token: shim.__sandboxToken, tmp: ls() }) }
    return Response.json({ canary: globalThis.canary ?? null, token: shim.__sandboxToken ?? null, tmp: ls() })
  } }`,
  // several of these run at once in one sandbox: each must see only its own globals, env and logs
  concurrentProbe: `module.exports.default = { async fetch (req, env) {
    const me = new URL(req.url).searchParams.get('me')
    const shim = Response.constructor.constructor('return globalThis')()
    shim.__sandboxToken ??= Math.random().toString(36).slice(2)
    const before = globalThis.canary ?? null
    globalThis.canary = me
    console.log('log of ' + me)
    await new Promise(resolve => setTimeout(resolve, 150))
    return Response.json({ me, before, after: globalThis.canary, env: env.WHO ?? null, token: shim.__sandboxToken })
  } }`,
  // throws outside its handler's promise chain (?kind=timer|listener|rejection|none), then answers
  // after 300 ms: by Node's defaults each stray error ends the process serving it
  strayErrors: `module.exports.default = { async fetch (req) {
    const kind = new URL(req.url).searchParams.get('kind')
    if (kind === 'timer') setTimeout(() => { throw new Error('stray-timer') }, 0)
    if (kind === 'listener') { const t = new EventTarget(); t.addEventListener('x', () => { throw new Error('stray-listener') }); t.dispatchEvent(new Event('x')) }
    if (kind === 'rejection') Promise.reject(new Error('stray-rejection'))
    await new Promise(resolve => setTimeout(resolve, 300))
    return new Response('survived ' + kind)
  } }`,
  // fills /tmp (16 MiB tmpfs) through an escaped realm
  tmpFill: `module.exports.default = { async fetch () {
    const fs = Response.constructor.constructor('return process')().getBuiltinModule('fs')
    const chunk = new Uint8Array(1024 * 1024)
    let n = 0
    try { for (; n < 64; n++) fs.appendFileSync('/tmp/fill', chunk) } catch (e) { return Response.json({ code: e.code, mb: n }) }
    return Response.json({ code: 'none', mb: n })
  } }`,
  globalsVisible: `module.exports.default = { async fetch () { return Response.json({ process: typeof process, require: typeof require, Buffer: typeof Buffer }) } }`,
  fetchUrl: `module.exports.default = { async fetch (req) { const target = new URL(req.url).searchParams.get('u'); try { const r = await fetch(target); return new Response('status=' + r.status + ' body=' + (await r.text())) } catch (e) { return new Response('refused: ' + e.message, { status: 502 }) } } }`,
  waitUntil: `module.exports.default = { async fetch (req, env, ctx) { ctx.waitUntil(new Promise(r => setTimeout(() => { console.log('after response'); r() }, 20))); return new Response('early') } }`,
  manySubrequests: `module.exports.default = { async fetch (req) { const target = new URL(req.url).searchParams.get('u'); for (let i = 0; i < 60; i++) await fetch(target); return new Response('all done') } }`,
  // escapes the realm (possible by design: the realm is not the boundary) and tries the host
  escape: `module.exports.default = { async fetch (req) {
    const out = {}
    const p = Response.constructor.constructor('return process')()
    const req2 = p.getBuiltinModule ? (n) => p.getBuiltinModule(n) : null
    const fs = req2('fs')
    const tryIt = (k, f) => { try { out[k] = f() } catch (e) { out[k] = 'ERR ' + (e.code ?? e.message) } }
    tryIt('passwd', () => fs.readFileSync('/etc/passwd', 'utf8'))
    tryIt('shadow', () => fs.readFileSync('/etc/shadow', 'utf8'))
    tryIt('canary', () => fs.readFileSync(new URL(req.url).searchParams.get('canary') ?? '/nonexistent', 'utf8'))
    tryIt('root', () => fs.readdirSync('/').sort().join(','))
    tryIt('proc1', () => fs.readFileSync('/proc/1/cmdline', 'utf8'))
    tryIt('home', () => fs.readdirSync('/root').join(','))
    tryIt('childProcess', () => { const cp = req2('child_process'); return typeof cp.spawnSync === 'function' ? String(cp.spawnSync('/bin/sh', ['-c', 'echo pwned']).stdout) : 'absent' })
    tryIt('worker', () => { const { Worker } = req2('worker_threads'); new Worker('1', { eval: true }); return 'started' })
    tryIt('dmesg', () => fs.readFileSync('/dev/kmsg', 'utf8'))
    return Response.json(out)
  } }`,
  network: `module.exports.default = { async fetch (req) {
    const p = Response.constructor.constructor('return process')()
    const net = p.getBuiltinModule('net'); const dns = p.getBuiltinModule('dns')
    const t0 = Date.now()
    const tcp = (host, port) => new Promise(res => { const s = net.connect({ host, port, timeout: 2000 }); s.on('connect', () => { s.destroy(); res('connected') }); s.on('error', e => res('ERR ' + e.code)); s.on('timeout', () => { s.destroy(); res('timeout') }) })
    const out = {}
    out.metadata = await tcp('169.254.169.254', 80)
    out.loopback = await tcp('127.0.0.1', Number(new URL(req.url).searchParams.get('port') ?? 22))
    out.public = await tcp('1.1.1.1', 53)
    out.dns = await new Promise(res => dns.lookup('example.com', (e, a) => res(e ? 'ERR ' + e.code : a)))
    out.ms = Date.now() - t0
    return Response.json(out)
  } }`,
  // escapes the realm, learns its execution id from its own first (legitimate) fetch frame, then
  // writes 200 fetch frames straight to the channel, bypassing the shim's subrequest count
  escapedFetchLoop: `module.exports.default = { async fetch (req) {
    const p = Response.constructor.constructor('return process')()
    const target = new URL(req.url).searchParams.get('u')
    const out = p.stdout
    const write = out.write.bind(out)
    let id
    out.write = (chunk, ...rest) => {
      try { const v = new DataView(chunk.buffer, chunk.byteOffset, chunk.byteLength); const j = JSON.parse(new TextDecoder().decode(chunk.subarray(8, 8 + v.getUint32(4)))); if (j.m.t === 'fetch') id ??= j.m.id } catch {}
      return write(chunk, ...rest)
    }
    await (await fetch(target)).text()
    out.write = write
    const enc = new TextEncoder()
    for (let i = 0; i < 200; i++) {
      const json = enc.encode(JSON.stringify({ m: { t: 'fetch', id, fid: 100000 + i, request: { method: 'GET', url: target, headers: [], body: { $b: 0 } } }, b: [0] }))
      const frame = new Uint8Array(8 + json.byteLength)
      const v = new DataView(frame.buffer)
      v.setUint32(0, 4 + json.byteLength)
      v.setUint32(4, json.byteLength)
      frame.set(json, 8)
      write(frame)
    }
    await new Promise(r => setTimeout(r, 3000))
    return Response.json({ id, sent: 200 })
  } }`,
  // escapes its realm and tells the host, as the shim would after a collection, that its live
  // heap fills the sandbox: the host retires the sandbox on that word (pool.ts)
  forgedIdle: `module.exports.default = { async fetch () {
    const p = Response.constructor.constructor('return process')()
    const json = new TextEncoder().encode(JSON.stringify({ m: { t: 'idle', heap: 1e12 }, b: [] }))
    const frame = new Uint8Array(8 + json.byteLength)
    const v = new DataView(frame.buffer)
    v.setUint32(0, 4 + json.byteLength)
    v.setUint32(4, json.byteLength)
    frame.set(json, 8)
    p.stdout.write(frame)
    return new Response('forged')
  } }`,
  forkBomb: `module.exports.default = { async fetch () {
    const p = Response.constructor.constructor('return process')()
    const out = {}
    try { const cp = p.getBuiltinModule('child_process'); for (let i = 0; i < 10000; i++) cp.spawn(p.execPath, ['-e', 'setInterval(()=>{},1000)']); out.cp = 'spawned' } catch (e) { out.cp = 'ERR ' + (e.code ?? e.message) }
    try { const { Worker } = p.getBuiltinModule('worker_threads'); for (let i = 0; i < 10000; i++) new Worker('for(;;){}', { eval: true }); out.wt = 'spawned' } catch (e) { out.wt = 'ERR ' + (e.code ?? e.message) }
    return Response.json(out)
  } }`
}

export function bundleOf (name: string): BundleRef {
  const src = FIXTURES[name]
  if (src === undefined) throw new Error(`no fixture ${name}`)
  const bytes = new TextEncoder().encode(src)
  return { cid: rawCid(bytes), bytes }
}

export const DEFAULT_OPTIONS: FunctionOptions = { memoryMb: 128, timeoutMs: 2000, network: [], isolation: 'function' }

let n = 0
export function jobFor (name: string, init: { url?: string, method?: string, body?: string, headers?: Array<[string, string]>, env?: Record<string, string>, options?: Partial<FunctionOptions> } = {}): ExecutionJob {
  const options = { ...DEFAULT_OPTIONS, ...init.options }
  return {
    jobId: `job-${++n}`,
    bundle: bundleOf(name),
    request: { method: init.method ?? 'GET', url: init.url ?? 'http://peerhost.test/fn', headers: init.headers ?? [], body: new TextEncoder().encode(init.body ?? '') },
    env: init.env ?? {},
    options,
    deadline: Date.now() + options.timeoutMs + 10_000
  }
}

export function text (r: ExecutionResult): string {
  if (r.response === undefined) throw new Error(`expected a response, got ${JSON.stringify(r.error)} logs=${r.logs.slice(0, 500)}`)
  return new TextDecoder().decode(r.response.body)
}

/** The functions of the hostile project (`hostileProject`). */
export const HOSTILE_FUNCTIONS = ['hello', 'escape', 'network', 'fetchUrl', 'forkBomb', 'memoryBomb', 'asyncLoop', 'neverSettles', 'gigantic_stdout', 'hugeResponse', 'notResponse', 'throws', 'stateProbe']

/**
 * A project folder (functions/, peerhost.json) holding every hostile fixture as an ES module, with
 * a canary file beside it that no function may read; `fetchurl` may reach 127.0.0.1:`port`.
 */
export function hostileProject (init: { prefix: string, name: string, canary: string, port: number, env?: Record<string, string> }): string {
  const dir = mkdtempSync(join(tmpdir(), init.prefix))
  mkdirSync(join(dir, 'functions'))
  for (const name of HOSTILE_FUNCTIONS) {
    writeFileSync(join(dir, 'functions', `${name.replace(/_/g, '-').toLowerCase()}.js`), FIXTURES[name].replace('module.exports.default =', 'export default'))
  }
  writeFileSync(join(dir, 'canary.txt'), init.canary)
  writeFileSync(join(dir, 'peerhost.json'), JSON.stringify({
    name: init.name,
    ...(init.env !== undefined ? { env: init.env } : {}),
    functions: {
      fetchurl: { network: [`127.0.0.1:${init.port}`] },
      asyncloop: { timeoutMs: 500 },
      neversettles: { timeoutMs: 500 },
      memorybomb: { timeoutMs: 10_000 },
      'gigantic-stdout': { timeoutMs: 10_000 }
    }
  }))
  return dir
}

/**
 * A permissive address filter for tests whose allow-listed host is a loopback server. Injected as
 * the executor's / dev server's `addressFilter` component; production uses `publicAddressesOnly`.
 */
export const anyAddress: AddressFilter = () => 'allow'
