/** Test helpers over the files a network of processes wrote. */
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'

/**
 * Every regular file under `dir` whose bytes contain `needle`: the leak checks of the secrets,
 * auth and chain-path suites grep every log, data dir and blockstore with it.
 */
export function filesContaining (dir: string, needle: string): string[] {
  const found: string[] = []
  const walk = (d: string): void => {
    for (const name of readdirSync(d)) {
      const p = join(d, name)
      const st = statSync(p, { throwIfNoEntry: false })
      if (st === undefined) continue
      if (st.isDirectory()) walk(p)
      else if (st.isFile() && readFileSync(p).includes(needle)) found.push(p)
    }
  }
  walk(dir)
  return found
}
