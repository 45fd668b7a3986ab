/**
 * A restarted worker pre-warms sandboxes for the bundles its previous run used (its on-disk bundle
 * cache: a bundle's file time is when a worker process last loaded or fetched it), so the first
 * jobs after a restart do not pay for a cold sandbox. Bundles only earlier runs used (the old
 * versions of an edited function) are not booted: each cost a sandbox boot at every start.
 */
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { verifyRawCid } from '#protocol'
import type { Executor } from '#sandbox'
import { NODE_DEFAULTS } from '../constants.ts'
import type { Logger } from '../logger.ts'

/** How many cached bundles get a warm sandbox at start: a few, so a start stays cheap. */
export const PREWARM_BUNDLES = 4
/** In the bundle cache: its file time is when the worker last started (the previous run's start, when read at the next). */
const STARTED_MARK = '.started'

export async function prewarmCached (dataDir: string, executor: Pick<Executor, 'prewarm'>, logger: Logger, max = PREWARM_BUNDLES): Promise<string[]> {
  const dir = join(dataDir, 'bundles')
  let names: string[]
  try {
    names = readdirSync(dir).filter(n => /^b[a-z2-7]{20,120}$/.test(n))
  } catch {
    return []
  }
  // the previous run's start: bundles loaded since were used by it (none recorded: every bundle)
  let previousStart = 0
  try { previousStart = statSync(join(dir, STARTED_MARK)).mtimeMs } catch {}
  try { writeFileSync(join(dir, STARTED_MARK), '') } catch {}
  const recent = names.map(n => ({ n, t: statSync(join(dir, n)).mtimeMs })).filter(x => x.t >= previousStart).sort((a, b) => b.t - a.t).slice(0, max).map(x => x.n)
  const warmed: string[] = []
  for (const cid of recent) {
    // read here, not through the bundle store: loading marks a bundle used, and a pre-warm is no use
    let bytes: Uint8Array
    try { bytes = new Uint8Array(readFileSync(join(dir, cid))) } catch { continue }
    if (!verifyRawCid(cid, bytes)) continue
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
