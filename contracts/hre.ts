/**
 * Programmatic Hardhat 3 for tests, benchmarks and scripts: one Hardhat runtime per process,
 * created from `hardhat.config.ts`, and a `build()` that compiles `src/` offline (a no-op when the
 * cache is fresh). The in-process EDR chain comes from `hre.network.connect()`.
 */
import { join } from 'node:path'
import { createHardhatRuntimeEnvironment } from 'hardhat/hre'
import type { HardhatRuntimeEnvironment } from 'hardhat/types/hre'
import config from './hardhat.config.ts'

export const CONTRACTS_DIR = import.meta.dirname
export const CONFIG_PATH = join(CONTRACTS_DIR, 'hardhat.config.ts')
const PROJECT_ROOT = join(CONTRACTS_DIR, '..')

let hrePromise: Promise<HardhatRuntimeEnvironment> | undefined
let built: Promise<void> | undefined

/** The process-wide Hardhat runtime for `contracts/`. */
export async function contractsHre (): Promise<HardhatRuntimeEnvironment> {
  hrePromise ??= createHardhatRuntimeEnvironment(config, { config: CONFIG_PATH }, PROJECT_ROOT)
  return await hrePromise
}

/** Compiles the contracts once per process (incremental, offline) and returns the runtime. */
export async function buildContracts (): Promise<HardhatRuntimeEnvironment> {
  const hre = await contractsHre()
  built ??= (async () => {
    // solc prints a note about transient storage (OpenZeppelin's ReentrancyGuardTransient, which
    // clears its slot) on every build; keep the output only when the build fails.
    const warn = console.warn
    const error = console.error
    const log = console.log
    const held: unknown[][] = []
    console.warn = console.error = console.log = (...args: unknown[]) => { held.push(args) }
    try {
      await hre.tasks.getTask('build').run({ quiet: true, noTests: true })
    } catch (err) {
      for (const line of held) error(...line)
      throw err
    } finally {
      console.warn = warn
      console.error = error
      console.log = log
    }
  })()
  await built
  return hre
}
