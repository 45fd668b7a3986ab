/**
 * Finds a project's functions and bundles each one with esbuild, deterministically: fixed options,
 * paths relative to the project root, no timestamps, no source maps with absolute paths. The same
 * sources give the same bytes (and so the same CID) from any directory or machine.
 */
import { existsSync, readdirSync, statSync } from 'node:fs'
import { join, relative, resolve, sep } from 'node:path'
import { build, type Message } from 'esbuild'
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

/** Bundles one function into a CommonJS script (see sandbox `BundleRef`). */
export async function bundleFunction (root: string, fn: FunctionSource): Promise<BuiltFunction> {
  let result
  try {
    result = await build({
      absWorkingDir: resolve(root),
      entryPoints: [fn.entry],
      bundle: true,
      write: false,
      format: 'cjs',
      // neutral: functions get Web APIs, not Node built-ins
      platform: 'neutral',
      mainFields: ['module', 'main'],
      conditions: ['worker', 'browser', 'import', 'default'],
      target: 'es2023',
      charset: 'utf8',
      legalComments: 'none',
      sourcemap: false,
      logLevel: 'silent',
      metafile: false
    })
  } catch (err: any) {
    const first: Message | undefined = err?.errors?.[0]
    const where = first?.location != null ? `${first.location.file}:${first.location.line}:${first.location.column}` : fn.entry
    throw new ConfigError('BUNDLE_FAILED', `cannot bundle function "${fn.name}": ${where}: ${first?.text ?? String(err)}`, { cause: err })
  }
  const bytes = result.outputFiles[0].contents
  return { ...fn, bytes, cid: rawCid(bytes) }
}

export async function bundleProject (root: string): Promise<BuiltFunction[]> {
  const out: BuiltFunction[] = []
  for (const fn of findFunctions(root)) out.push(await bundleFunction(root, fn))
  return out
}
