/**
 * The `nodejs_compat` subset a function may import (`node:x` or bare `x`): Buffer, a part of
 * crypto, events, util, path, url and assert. The build marks exactly these external and fails on
 * any other Node built-in (node/build/bundle.ts, listing these); at run time the bundle's
 * `require()` gets them from here.
 *
 * Each module is a frozen object holding a fixed list of the shim's own functions, not the
 * module itself: nothing here reaches the file system, processes, sockets, workers, `vm` or
 * `process`. (The realm is still not the boundary — gVisor and Node's permission model are — but
 * these modules add no way out of the realm.)
 */
import * as assertModule from 'node:assert'
import * as bufferModule from 'node:buffer'
import * as cryptoModule from 'node:crypto'
import * as eventsModule from 'node:events'
import * as pathModule from 'node:path'
import * as urlModule from 'node:url'
import * as utilModule from 'node:util'

/** Module names (without `node:`) a function may import. */
export const NODE_COMPAT_MODULES = ['assert', 'buffer', 'crypto', 'events', 'path', 'url', 'util'] as const

function pick (from: Record<string, unknown>, names: string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (const n of names) if (from[n] !== undefined) out[n] = from[n]
  return out
}

function freeze (o: Record<string, unknown>): Readonly<Record<string, unknown>> {
  // `default` lets esbuild's interop (`__toESM`) find the namespace for default imports
  o.default ??= o
  Object.defineProperty(o, '__esModule', { value: true })
  return Object.freeze(o)
}

let built: Map<string, unknown> | undefined

function modules (): Map<string, unknown> {
  if (built !== undefined) return built
  const crypto = freeze(pick(cryptoModule as any, ['randomUUID', 'createHash', 'createHmac', 'timingSafeEqual', 'getRandomValues', 'randomBytes', 'randomInt', 'webcrypto', 'subtle', 'getHashes']))
  const buffer = freeze(pick(bufferModule as any, ['Buffer', 'Blob', 'File', 'atob', 'btoa', 'constants', 'kMaxLength', 'isUtf8', 'isAscii']))
  const EventEmitter = eventsModule.EventEmitter
  // events' default export is the EventEmitter class itself
  const events = Object.freeze(Object.assign(Object.create(null), { default: EventEmitter, EventEmitter, once: (eventsModule as any).once, on: (eventsModule as any).on, __esModule: true }))
  const util = freeze(pick(utilModule as any, ['inspect', 'format', 'formatWithOptions', 'promisify', 'callbackify', 'inherits', 'deprecate', 'isDeepStrictEqual', 'types', 'TextEncoder', 'TextDecoder', 'stripVTControlCharacters', 'parseArgs', 'styleText']))
  const p = pathModule.posix
  const path = freeze(pick(p as any, ['basename', 'dirname', 'extname', 'format', 'isAbsolute', 'join', 'normalize', 'parse', 'relative', 'resolve', 'sep', 'delimiter', 'toNamespacedPath', 'matchesGlob']))
  const url = freeze(pick(urlModule as any, ['URL', 'URLSearchParams', 'fileURLToPath', 'pathToFileURL', 'format', 'parse', 'resolve', 'domainToASCII', 'domainToUnicode']))
  const a = assertModule.default as unknown as (value: unknown, message?: string | Error) => void
  const assert = Object.freeze(Object.assign((value: unknown, message?: string | Error) => { a(value, message) }, pick(a as any, ['ok', 'equal', 'notEqual', 'deepEqual', 'notDeepEqual', 'strictEqual', 'notStrictEqual', 'deepStrictEqual', 'notDeepStrictEqual', 'throws', 'doesNotThrow', 'rejects', 'doesNotReject', 'fail', 'match', 'doesNotMatch', 'ifError', 'AssertionError', 'strict'])))
  built = new Map<string, unknown>([['assert', assert], ['buffer', buffer], ['crypto', crypto], ['events', events], ['path', path], ['url', url], ['util', util]])
  return built
}

/** The `require()` a bundle gets: only the compat modules; anything else throws naming them. */
export function compatRequire (specifier: string): unknown {
  const name = typeof specifier === 'string' ? specifier.replace(/^node:/, '') : ''
  const m = modules().get(name)
  if (m === undefined) throw new Error(`module "${String(specifier)}" is not available in PeerHost functions; available: ${NODE_COMPAT_MODULES.map(n => `node:${n}`).join(', ')}`)
  return m
}

/** The global `Buffer` of a function's realm. */
export function compatBuffer (): unknown {
  return bufferModule.Buffer
}
