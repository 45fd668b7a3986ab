/**
 * Stack traces that point at the builder's code: bundles carry an inline source map (node/build),
 * so a frame in `bundle-<cid>.js:<line>:<col>` becomes `functions/<file>.ts:<line>:<col>`, and the
 * runtime's own frames (the shim, Node internals) are dropped.
 */
import { SourceMap } from 'node:module'

const MAP_PREFIX = '//# sourceMappingURL=data:application/json;base64,'

/** Raw (still encoded) maps by bundle CID; parsed on the first error that needs one. */
const raw = new Map<string, string>()
const parsed = new Map<string, SourceMap | null>()
const MAX_MAPS = 16

/** Remembers the inline source map of a bundle's source text, if it has one. */
export function registerSourceMap (cid: string, source: string): void {
  const at = source.lastIndexOf(MAP_PREFIX)
  if (at < 0) return
  if (raw.size >= MAX_MAPS) {
    const oldest = raw.keys().next().value as string
    raw.delete(oldest)
    parsed.delete(oldest)
  }
  raw.set(cid, source.slice(at + MAP_PREFIX.length).trim())
}

function mapOf (cid: string): SourceMap | null {
  let m = parsed.get(cid)
  if (m !== undefined) return m
  const b64 = raw.get(cid)
  // only maps still held raw are cached parsed (evicted with them): caching a miss for every
  // bundle without a map would grow this table with every function version that ever threw
  if (b64 === undefined) return null
  try { m = new SourceMap(JSON.parse(Buffer.from(b64, 'base64').toString('utf8'))) } catch { m = null }
  parsed.set(cid, m)
  return m
}

/** The file name a bundle runs under in the realm (the stack frames' file). */
export function bundleFileName (cid: string): string {
  return `bundle-${cid}.js`
}

const FRAME = /^\s+at\s/

/**
 * Rewrites a stack (or any text holding one): bundle positions become source positions, frames
 * outside the bundle go. Text without stack frames comes back unchanged.
 */
export function cleanStack (text: string, cid: string): string {
  if (!text.includes('    at ')) return text
  const file = bundleFileName(cid)
  const pattern = new RegExp(`${file.replace(/[.]/g, '\\.')}:(\\d+):(\\d+)`, 'g')
  const map = mapOf(cid)
  const out: string[] = []
  for (const line of text.split('\n')) {
    if (!FRAME.test(line)) { out.push(line); continue }
    if (!line.includes(file)) continue
    out.push(line.replace(pattern, (whole, l: string, c: string) => {
      if (map === null) return whole
      const o = map.findOrigin(Number(l), Number(c)) as { fileName?: string, lineNumber?: number, columnNumber?: number }
      if (o?.fileName === undefined || o.lineNumber === undefined) return whole
      return `${o.fileName.replace(/^file:\/\/\/?/, '')}:${o.lineNumber}:${o.columnNumber ?? 0}`
    }))
  }
  return out.join('\n')
}
