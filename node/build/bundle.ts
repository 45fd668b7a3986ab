/**
 * Finds a project's functions and bundles each one with esbuild, deterministically: fixed options,
 * paths relative to the project root, no timestamps, source maps with relative paths only. The same
 * sources give the same bytes (and so the same CID) from any directory or machine.
 */
import { existsSync, readdirSync, statSync } from 'node:fs'
import { join, relative, resolve, sep } from 'node:path'
import { builtinModules } from 'node:module'
import { build, type BuildOptions, type Message, type Plugin } from 'esbuild'
import { NODE_COMPAT_MODULES } from '#sandbox'
import { rawCid } from '#protocol'
import { ConfigError } from '../errors.ts'

export interface FunctionSource {
  /** function name: `functions/hello.ts` → `hello`, `functions/api/index.ts` → `api` */
  name: string
  /** path of the entry relative to the project root, with `/` separators */
  entry: string
}

export interface BuiltFunction extends FunctionSource {
  bytes: Uint8Array
  cid: string
}

const ENTRY_EXTENSIONS = ['.ts', '.js', '.mts', '.mjs']
const NAME_PATTERN = /^[a-z0-9][a-z0-9-]{0,62}$/

/** Lists the functions in `<root>/functions`, sorted by name. */
export function findFunctions (root: string): FunctionSource[] {
  const dir = join(root, 'functions')
  if (!existsSync(dir) || !statSync(dir).isDirectory()) {
    throw new ConfigError('NO_FUNCTIONS_DIR', `${root} has no functions/ folder; put each function in functions/<name>.ts`)
  }
  const out: FunctionSource[] = []
  for (const entry of readdirSync(dir).sort()) {
    const full = join(dir, entry)
    let name: string | undefined
    let file: string | undefined
    if (statSync(full).isDirectory()) {
      const index = ENTRY_EXTENSIONS.map(ext => join(full, `index${ext}`)).find(p => existsSync(p))
      if (index !== undefined) { name = entry; file = index }
    } else {
      const ext = ENTRY_EXTENSIONS.find(e => entry.endsWith(e) && !entry.endsWith(`.d${e}`))
      if (ext !== undefined) { name = entry.slice(0, -ext.length); file = full }
    }
    if (name === undefined || file === undefined) continue
    if (!NAME_PATTERN.test(name)) {
      throw new ConfigError('BAD_FUNCTION_NAME', `function name "${name}" (from ${relative(root, file)}) must be lower-case letters, digits and dashes, starting with a letter or digit`)
    }
    out.push({ name, entry: relative(root, file).split(sep).join('/') })
  }
  if (out.length === 0) {
    throw new ConfigError('NO_FUNCTIONS', `${dir} holds no functions; expected files like functions/hello.ts`)
  }
  return out
}

/** Node built-ins by name (without `node:`), to tell a built-in import from a package import. */
const NODE_BUILTINS = new Set(builtinModules.map(m => m.replace(/^node:/, '')))
const COMPAT = new Set<string>(NODE_COMPAT_MODULES)
const COMPAT_LIST = NODE_COMPAT_MODULES.map(m => `node:${m}`).join(', ')
const METHOD_EXPORTS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']

/**
 * Node built-ins: the nodejs_compat subset stays external (the sandbox's `require` provides it,
 * sandbox/runtime/compat.ts); any other built-in fails the build, naming what is available.
 */
const nodeCompat: Plugin = {
  name: 'peerhost-node-compat',
  setup (b) {
    b.onResolve({ filter: /^(node:)?[a-z_/]+$/ }, (args) => {
      const name = args.path.replace(/^node:/, '')
      const root = name.split('/')[0]
      if (!args.path.startsWith('node:') && !NODE_BUILTINS.has(name)) return undefined
      if (COMPAT.has(name)) return { path: args.path, external: true }
      if (NODE_BUILTINS.has(name) || NODE_BUILTINS.has(root) || args.path.startsWith('node:')) {
        return { errors: [{ text: `"${args.path}" is not available in PeerHost functions (the sandbox has no file system, processes or sockets to offer); available Node modules: ${COMPAT_LIST}` }] }
      }
      return undefined
    })
  }
}

const OPTIONS = (root: string, entry: string): BuildOptions => ({
  absWorkingDir: resolve(root),
  entryPoints: [entry],
  bundle: true,
  write: false,
  // neutral: functions get Web APIs and the nodejs_compat subset, not Node built-ins
  platform: 'neutral',
  mainFields: ['module', 'main'],
  conditions: ['worker', 'browser', 'import', 'default'],
  target: 'es2023',
  charset: 'utf8',
  legalComments: 'none',
  logLevel: 'silent',
  plugins: [nodeCompat]
})

function bundleError (fn: FunctionSource, err: any): ConfigError {
  const first: Message | undefined = err?.errors?.[0]
  const where = first?.location != null ? `${first.location.file}:${first.location.line}:${first.location.column}` : fn.entry
  return new ConfigError('BUNDLE_FAILED', `cannot bundle function "${fn.name}": ${where}: ${first?.text ?? String(err)}`, { cause: err })
}

/**
 * Bundles one function into a CommonJS script (see sandbox `BundleRef`) with an inline source map
 * (paths relative to the project root, no sources content: same bytes on any machine) and a first
 * line naming its entry (`// peerhost-entry: functions/x.ts`), so errors point at the builder's file.
 * Refuses an entry that exports no handler (`export default { fetch }` or named GET/POST/…).
 */
export async function bundleFunction (root: string, fn: FunctionSource): Promise<BuiltFunction> {
  // the entry's exports, from an ESM pass (a CommonJS output does not list them)
  let exportsOf: string[]
  try {
    const probe = await build({ ...OPTIONS(root, fn.entry), format: 'esm', metafile: true, outfile: 'probe.js' })
    const out = Object.values(probe.metafile.outputs).find(o => o.entryPoint !== undefined)
    exportsOf = out?.exports ?? []
  } catch (err) {
    throw bundleError(fn, err)
  }
  if (!exportsOf.includes('default') && !exportsOf.some(e => METHOD_EXPORTS.includes(e))) {
    throw new ConfigError('NO_HANDLER', `${fn.entry} exports no request handler (it exports ${exportsOf.length === 0 ? 'nothing' : exportsOf.join(', ')}); expected \`export default { async fetch (request, env, ctx) { return new Response('…') } }\` or named functions GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS`)
  }
  let result
  try {
    result = await build({
      ...OPTIONS(root, fn.entry),
      format: 'cjs',
      // the map's `sources` are relative to the output file, placed at the project root
      outfile: 'bundle.js',
      sourcemap: 'inline',
      sourcesContent: false,
      banner: { js: `// peerhost-entry: ${fn.entry}` },
      metafile: false
    })
  } catch (err: any) {
    throw bundleError(fn, err)
  }
  const out = result.outputFiles?.[0]
  if (out === undefined) throw new ConfigError('BUNDLE_FAILED', `cannot bundle function "${fn.name}": esbuild produced no output for ${fn.entry}`)
  const bytes = out.contents
  return { ...fn, bytes, cid: rawCid(bytes) }
}

export async function bundleProject (root: string): Promise<BuiltFunction[]> {
  const out: BuiltFunction[] = []
  for (const fn of findFunctions(root)) out.push(await bundleFunction(root, fn))
  return out
}
