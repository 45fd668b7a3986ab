/** Small file helpers shared by the node roles. */
import { renameSync, writeFileSync } from 'node:fs'

/**
 * Writes `data` to `path` so a reader (or a crash) sees either the old file or the whole new one:
 * write `<path>.tmp` with `mode`, then rename it over `path`.
 */
export function writeFileAtomic (path: string, data: string | Uint8Array, mode = 0o600): void {
  writeFileSync(`${path}.tmp`, data, { mode })
  renameSync(`${path}.tmp`, path)
}
