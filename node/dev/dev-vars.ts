/**
 * `.dev.vars`: local values for a project's secrets under `peerhost dev` (like wrangler's). One
 * `NAME=value` per line; blank lines and `#` comments are skipped; a value may be wrapped in
 * single or double quotes. The file is never bundled or deployed; keep it out of git.
 */
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { LIMITS } from '#protocol'
import { ConfigError } from '../errors.ts'
import { SECRET_NAME } from '../secrets/store.ts'

export const DEV_VARS_FILE = '.dev.vars'

/** The project's `.dev.vars`, or `{}` when there is none; every bad line is reported at once. */
export function loadDevVars (dir: string): Record<string, string> {
  const path = join(dir, DEV_VARS_FILE)
  if (!existsSync(path)) return {}
  const out: Record<string, string> = {}
  const problems: string[] = []
  readFileSync(path, 'utf8').split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim()
    if (line === '' || line.startsWith('#')) return
    const eq = line.indexOf('=')
    const name = eq < 0 ? line : line.slice(0, eq).trim()
    if (eq < 0 || !SECRET_NAME.test(name)) { problems.push(`line ${i + 1}: expected NAME=value with NAME like API_TOKEN`); return }
    let value = line.slice(eq + 1).trim()
    if (value.length >= 2 && (value[0] === '"' || value[0] === '\'') && value.at(-1) === value[0]) value = value.slice(1, -1)
    if (Buffer.byteLength(value) > LIMITS.maxSecretBytes) { problems.push(`line ${i + 1}: ${name} is longer than ${LIMITS.maxSecretBytes} bytes`); return }
    out[name] = value
  })
  if (Object.keys(out).length > LIMITS.maxSecrets) problems.push(`at most ${LIMITS.maxSecrets} secrets`)
  if (problems.length > 0) throw new ConfigError('BAD_DEV_VARS', `${path} has ${problems.length} problem${problems.length === 1 ? '' : 's'}: ${problems.join('; ')}`)
  return out
}
