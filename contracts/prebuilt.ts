/**
 * The deployable contracts' bytecode, committed beside their typed ABIs (contracts/abi/bytecode.json)
 * with the hash of the sources it was built from: a fresh checkout's first `npm start` deploys from
 * it instead of compiling (solc as WebAssembly takes minutes on a small machine). When the sources,
 * the Hardhat config or the compiler changed, the hashes differ and the chain compiles as before.
 * GENERATED with the ABIs by `node contracts/scripts/export-abi.ts`; test/contracts/deployment.spec.ts
 * fails when it is stale.
 */
import { createHash } from 'node:crypto'
import { readdir, readFile } from 'node:fs/promises'
import { join, relative } from 'node:path'
import type { Abi, Hex } from 'viem'
import * as abis from './abi/index.ts'
import { CONTRACT_NAMES, type Artifact } from './deploy.ts'

const ROOT = join(import.meta.dirname, '..')
export const BYTECODE_FILE = join(import.meta.dirname, 'abi', 'bytecode.json')

export interface PrebuiltFile {
  /** contractSourcesHash() of the sources this bytecode was built from */
  sourcesHash: string
  bytecode: Record<string, Hex>
}

/**
 * What the artifacts depend on: every file under contracts/src, the Hardhat config (and its base)
 * and the versions of Hardhat and solc (the config names the compiler by the `solc` package).
 */
export async function contractSourcesHash (): Promise<string> {
  const hash = createHash('sha256')
  const sources = join(ROOT, 'contracts', 'src')
  const files = (await readdir(sources, { recursive: true, withFileTypes: true }))
    .filter(e => e.isFile()).map(e => join(e.parentPath, e.name)).sort()
  for (const f of [join(ROOT, 'contracts', 'hardhat.config.ts'), join(ROOT, 'contracts', 'hardhat.base.ts'), ...files, join(ROOT, 'node_modules', 'hardhat', 'package.json'), join(ROOT, 'node_modules', 'solc', 'package.json')]) {
    // paths relative to the checkout: another checkout of the same sources has the same hash
    hash.update(`${relative(ROOT, f)}\0`).update(await readFile(f)).update('\0')
  }
  return hash.digest('hex')
}

/** Reads the committed bytecode file, or undefined when it is absent or unreadable. */
export async function readPrebuilt (): Promise<PrebuiltFile | undefined> {
  try {
    const file = JSON.parse(await readFile(BYTECODE_FILE, 'utf8')) as PrebuiltFile
    if (typeof file.sourcesHash !== 'string' || typeof file.bytecode !== 'object' || file.bytecode === null) return undefined
    for (const name of CONTRACT_NAMES) if (!/^0x[0-9a-f]+$/.test(file.bytecode[name] ?? '')) return undefined
    return file
  } catch {
    return undefined
  }
}

/** The artifact reader `deployPeerHost` takes, from the committed ABIs and bytecode. */
export function prebuiltReader (file: PrebuiltFile): (name: string) => Promise<Artifact> {
  return async (name) => {
    const abi = (abis as Record<string, unknown>)[name[0].toLowerCase() + name.slice(1) + 'Abi'] as Abi | undefined
    const bytecode = file.bytecode[name]
    if (abi === undefined || bytecode === undefined) throw new Error(`no committed ABI or bytecode for ${name} (contracts/abi)`)
    return { abi, bytecode }
  }
}

/** The file export-abi writes: each deployable contract's bytecode from a fresh build. */
export async function renderPrebuilt (read: (name: string) => Promise<Artifact>): Promise<string> {
  const bytecode: Record<string, Hex> = {}
  for (const name of CONTRACT_NAMES) bytecode[name] = (await read(name)).bytecode
  return JSON.stringify({ sourcesHash: await contractSourcesHash(), bytecode } satisfies PrebuiltFile, null, 2) + '\n'
}
