/**
 * A restarted worker pre-warms sandboxes for the bundles it fetched most recently (its on-disk
 * bundle cache), so the first jobs after a restart do not pay for a cold sandbox.
 */
import { readdirSync, statSync } from 'node:fs'
import { join } from 'node:path'
import type { Executor } from '#sandbox'
import { bundleStore } from '../bundle-store.ts'
import { NODE_DEFAULTS } from '../constants.ts'
import type { Logger } from '../logger.ts'

/** How many cached bundles get a warm sandbox at start: a few, so a start stays cheap. */
export const PREWARM_BUNDLES = 4

export async function prewarmCached (dataDir: string, executor: Pick<Executor, 'prewarm'>, logger: Logger, max = PREWARM_BUNDLES): Promise<string[]> {
  const dir = join(dataDir, 'bundles')
  let names: string[]
  try {
    names = readdirSync(dir).filter(n => /^b[a-z2-7]{20,120}$/.test(n))
  } catch {
    return []
  }
  const recent = names.map(n => ({ n, t: statSync(join(dir, n)).mtimeMs })).sort((a, b) => b.t - a.t).slice(0, max).map(x => x.n)
  const store = bundleStore(dir)
  const warmed: string[] = []
  for (const cid of recent) {
    const bytes = store.get(cid)
    if (bytes === undefined) continue
    try {
      await executor.prewarm({ cid, bytes }, { memoryMb: NODE_DEFAULTS.functionMemoryMb, timeoutMs: NODE_DEFAULTS.functionTimeoutMs, network: [], isolation: 'function' })
      warmed.push(cid)
    } catch (err) {
      logger.debug({ err, cid }, 'pre-warm failed')
    }
  }
  if (warmed.length > 0) logger.info({ bundles: warmed }, 'pre-warmed sandboxes for cached bundles')
  return warmed
}
