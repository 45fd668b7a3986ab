/**
 * The sandbox's minimal root filesystem, built once per worker data dir and shared read-only by
 * every sandbox:
 *
 *   /node                       the worker's own Node binary (the real ELF, not a wrapper)
 *   /lib…, /lib64/ld-linux…     exactly the shared libraries `ldd` lists for it
 *   /peerhost/shim.js           the runtime shim (sandbox/runtime/), bundled into one plain
 *                               JavaScript file when the rootfs is built (see bundleShim)
 *   /proc /dev /tmp             empty mount points (gVisor procfs, runsc devices, tmpfs)
 *
 * Nothing else: no shell, no /etc, no home directories, no project checkout, no worker keys.
 * The directory name is a hash of the inputs, so a changed shim or Node gives a new rootfs and a
 * rebuild is atomic (build in a temp dir, rename).
 */
import { execFileSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { chmodSync, closeSync, copyFileSync, openSync, readSync, existsSync, mkdirSync, readdirSync, readFileSync, realpathSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { buildSync, version as ESBUILD_VERSION } from 'esbuild'
import { SandboxError } from '../errors.ts'

const RUNTIME_DIR = new URL('../runtime/', import.meta.url)
const SHIM_FILES = ['channel.ts', 'compat.ts', 'messages.ts', 'realm.ts', 'session.ts', 'shim.ts', 'stack.ts', 'websocket.ts']

/**
 * The shim as one plain-JavaScript ES module. Run from its TypeScript sources, every sandbox's
 * Node compiled its type-stripping WebAssembly (amaro) and opened eight files through gVisor at
 * boot; a boot is on the path of every cold start and of the devnet's start
 * (docs/benchmarks.md, "Start-up, 2026-12-03").
 */
const SHIM_BUILD = { bundle: true, format: 'esm', platform: 'node', target: 'node22', legalComments: 'none', charset: 'utf8' } as const

function bundleShim (): Uint8Array {
  const out = buildSync({ ...SHIM_BUILD, entryPoints: [fileURLToPath(new URL('shim.ts', RUNTIME_DIR))], write: false, logLevel: 'silent' })
  const file = out.outputFiles[0]
  if (file === undefined) throw new SandboxError('ROOTFS_FAILED', 'bundling the runtime shim produced no output')
  return file.contents
}

/** Shared libraries a dynamically linked binary loads, from `ldd`. */
/**
 * `ldd` per binary, as long as the binary is unchanged (size, mtime): a devnet starts several
 * executors in one process and each asks at start, synchronously, for ~0.2 s each.
 */
const librariesOf = new Map<string, { stamp: string, libs: string[] }>()

export function sharedLibraries (binary: string): string[] {
  const st = statSync(binary)
  const stamp = `${st.size}\0${st.mtimeMs}`
  const known = librariesOf.get(binary)
  if (known?.stamp === stamp) return [...known.libs]
  const libs = listSharedLibraries(binary)
  librariesOf.set(binary, { stamp, libs })
  return [...libs]
}

function listSharedLibraries (binary: string): string[] {
  let out: string
  try {
    out = execFileSync('ldd', [binary], { encoding: 'utf8' })
  } catch (err) {
    throw new SandboxError('ROOTFS_FAILED', `could not list the shared libraries of ${binary} with ldd; install libc-bin`, { cause: err })
  }
  const libs: string[] = []
  for (const line of out.split('\n')) {
    const m = /=>\s+(\/\S+)/.exec(line) ?? /^\s*(\/\S+)\s+\(/.exec(line)
    if (m !== null) libs.push(m[1])
  }
  return libs
}

/** The real Node binary this process runs (resolves node_modules/.bin symlinks). */
export function realNodeBinary (candidate = process.execPath): string {
  const real = realpathSync(candidate)
  // only the ELF magic: reading the whole binary (~120 MB) blocked the event loop for ~0.9 s
  const head = new Uint8Array(4)
  const fd = openSync(real, 'r')
  try {
    readSync(fd, head, 0, 4, 0)
  } finally {
    closeSync(fd)
  }
  if (head[0] !== 0x7f || head[1] !== 0x45 || head[2] !== 0x4c || head[3] !== 0x46) {
    throw new SandboxError('ROOTFS_FAILED', `${real} is not an ELF binary; pass the real node executable as nodeBinary`)
  }
  return real
}

export interface RootfsInit {
  dataDir: string
  nodeBinary?: string
}

/** Builds (or reuses) the rootfs under `<dataDir>/rootfs/<hash>`; returns its path. */
export function ensureRootfs (init: RootfsInit): string {
  const node = realNodeBinary(init.nodeBinary)
  const libs = sharedLibraries(node)
  const hash = createHash('sha256')
  const st = statSync(node)
  hash.update(`${node}\0${st.size}\0${st.mtimeMs}\0`)
  for (const lib of libs) hash.update(`${lib}\0${statSync(lib).size}\0`)
  const shim = SHIM_FILES.map(f => ({ name: f, bytes: readFileSync(new URL(f, RUNTIME_DIR)) }))
  for (const f of shim) hash.update(f.name).update(f.bytes)
  hash.update(`bundled by esbuild ${ESBUILD_VERSION} ${JSON.stringify(SHIM_BUILD)}`)
  const id = hash.digest('hex').slice(0, 16)
  const base = join(init.dataDir, 'rootfs')
  const dir = join(base, id)
  if (existsSync(join(dir, 'node'))) return dir

  mkdirSync(base, { recursive: true })
  const tmp = join(base, `.build-${id}-${process.pid}`)
  rmSync(tmp, { recursive: true, force: true })
  for (const d of ['peerhost', 'proc', 'dev', 'tmp']) mkdirSync(join(tmp, d), { recursive: true, mode: 0o755 })
  copyFileSync(node, join(tmp, 'node'))
  chmodSync(join(tmp, 'node'), 0o755)
  for (const lib of libs) {
    const dest = join(tmp, lib)
    mkdirSync(dirname(dest), { recursive: true, mode: 0o755 })
    copyFileSync(realpathSync(lib), dest)
    chmodSync(dest, 0o755)
  }
  writeFileSync(join(tmp, 'peerhost', 'shim.js'), bundleShim(), { mode: 0o644 })
  writeFileSync(join(tmp, 'peerhost', 'package.json'), '{"type":"module"}\n', { mode: 0o644 })
  chmodSync(join(tmp, 'tmp'), 0o1777)
  renameSync(tmp, dir)
  // older rootfs builds of this data dir are garbage now
  for (const old of readdirSync(base)) if (old !== id) rmSync(join(base, old), { recursive: true, force: true })
  return dir
}
