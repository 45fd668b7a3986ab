/** Small file helpers shared by the node roles. */
import { renameSync, writeFileSync } from 'node:fs'
import { rename, writeFile } from 'node:fs/promises'

/**
 * Writes `data` to `path` so a reader (or a crash) sees either the old file or the whole new one:
 * write `<path>.<pid>.tmp` with `mode`, then rename it over `path`.
 */
export function writeFileAtomic (path: string, data: string | Uint8Array, mode = 0o600): void {
  const tmp = `${path}.${process.pid}.tmp`
  writeFileSync(tmp, data, { mode })
  renameSync(tmp, path)
}

/** `writeFileAtomic` without blocking the event loop. */
export async function writeFileAtomicAsync (path: string, data: string | Uint8Array, mode = 0o600): Promise<void> {
  const tmp = `${path}.${process.pid}.tmp`
  await writeFile(tmp, data, { mode })
  await rename(tmp, path)
}
