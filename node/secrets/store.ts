/**
 * A gateway's secret store. On disk it holds only sealed envelopes (sealed.ts) — never a value:
 * `<dataDir>/secrets/<wallet>/<project>.json` (mode 0600, written atomically):
 *
 * ```json
 * { "secrets": { "API_TOKEN": { "sealed": "<base64 envelope>", "issued": 1764000000 },
 *                "OLD": { "deleted": true, "issued": 1764000100 } } }
 * ```
 *
 * `issued` is the unix second the builder signed the change at; a change older than or as old as
 * the stored one is refused (a captured request cannot be replayed to roll a secret back or
 * resurrect a deleted one). Values are opened only in memory, when a job of the project is
 * dispatched (`forJob`), and cached there per project until the project's secrets change.
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { LIMITS, NAME_PATTERN } from '#protocol'
import { NodeError } from '../errors.ts'
import { writeFileAtomic } from '../files.ts'
import type { Logger } from '../logger.ts'
import type { SecretKeyPair } from './sealed.ts'

/** Secret names: environment variable names, at most LIMITS.maxEnvNameBytes characters. */
export const SECRET_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/

export interface StoredSecret {
  name: string
  /** unix seconds of the builder's signed change */
  issued: number
}

interface ProjectFile {
  secrets: Record<string, { sealed?: string, deleted?: true, issued: number }>
}

export interface SecretStore {
  /** names (not values) of the project's live secrets */
  list: (wallet: string, project: string) => StoredSecret[]
  /** `issued` of the last change to that name (put or delete), 0 when none */
  lastIssued: (wallet: string, project: string, name: string) => number
  /** Stores an envelope the caller has already checked opens for (wallet, project, name). */
  put: (wallet: string, project: string, name: string, sealed: Uint8Array, issued: number) => void
  delete: (wallet: string, project: string, name: string, issued: number) => void
  /** The project's opened secrets for one job, or undefined when it has none. */
  forJob: (wallet: string, project: string) => Record<string, string> | undefined
}

export interface SecretStoreInit {
  dataDir: string
  key: SecretKeyPair
  chainId: number
  /** the gateway's address (part of every envelope's context) */
  gateway: string
  logger: Logger
}

export function secretStore (init: SecretStoreInit): SecretStore {
  const log = init.logger.child({ component: 'peerhost:secrets' })
  const root = join(init.dataDir, 'secrets')
  const files = new Map<string, ProjectFile>()
  const opened = new Map<string, Record<string, string> | undefined>()
  const id = (wallet: string, project: string): string => `${wallet.toLowerCase()}/${project}`

  function pathOf (wallet: string, project: string): string {
    if (!/^0x[0-9a-fA-F]{40}$/.test(wallet) || !NAME_PATTERN.test(project)) throw new NodeError('BAD_PROJECT', `expected <0x wallet>/<project name>, got "${wallet.slice(0, 60)}/${project.slice(0, 80)}"`)
    return join(root, wallet.toLowerCase(), `${project}.json`)
  }

  function read (wallet: string, project: string): ProjectFile {
    const key = id(wallet, project)
    let file = files.get(key)
    if (file !== undefined) return file
    const path = pathOf(wallet, project)
    file = { secrets: {} }
    if (existsSync(path)) {
      try {
        const raw = JSON.parse(readFileSync(path, 'utf8'))
        if (typeof raw?.secrets === 'object' && raw.secrets !== null) file = raw as ProjectFile
      } catch (err) {
        // never serve half a store: the project then has no secrets until they are put again
        log.error({ path, err: (err as Error).message }, 'secret store file unreadable; the project\'s secrets are ignored')
      }
    }
    if (files.size > 10_000) files.clear()
    files.set(key, file)
    return file
  }

  function write (wallet: string, project: string, file: ProjectFile): void {
    const path = pathOf(wallet, project)
    mkdirSync(join(root, wallet.toLowerCase()), { recursive: true, mode: 0o700 })
    writeFileAtomic(path, JSON.stringify(file))
    files.set(id(wallet, project), file)
    opened.delete(id(wallet, project))
  }

  function live (file: ProjectFile): Array<[string, string, number]> {
    return Object.entries(file.secrets).flatMap(([name, s]) => s.sealed === undefined ? [] : [[name, s.sealed, s.issued] as [string, string, number]])
  }

  return {
    list: (wallet, project) => live(read(wallet, project)).map(([name, , issued]) => ({ name, issued })).sort((a, b) => a.name < b.name ? -1 : 1),
    lastIssued: (wallet, project, name) => read(wallet, project).secrets[name]?.issued ?? 0,
    put (wallet, project, name, sealed, issued) {
      const file = read(wallet, project)
      if (file.secrets[name]?.sealed === undefined && live(file).length >= LIMITS.maxSecrets) {
        throw new NodeError('TOO_MANY_SECRETS', `a project holds at most ${LIMITS.maxSecrets} secrets; delete one first`)
      }
      write(wallet, project, { secrets: { ...file.secrets, [name]: { sealed: Buffer.from(sealed).toString('base64'), issued } } })
    },
    delete (wallet, project, name, issued) {
      const file = read(wallet, project)
      write(wallet, project, { secrets: { ...file.secrets, [name]: { deleted: true, issued } } })
    },
    forJob (wallet, project) {
      const key = id(wallet, project)
      if (opened.has(key)) return opened.get(key)
      const file = read(wallet, project)
      const entries = live(file)
      let out: Record<string, string> | undefined
      if (entries.length > 0) {
        out = {}
        for (const [name, sealed] of entries) {
          try {
            out[name] = new TextDecoder('utf-8', { fatal: true }).decode(init.key.open(Buffer.from(sealed, 'base64'), { chainId: init.chainId, gateway: init.gateway, wallet, project, name }))
          } catch (err) {
            log.error({ project: key, name, err: (err as Error).message }, 'stored secret cannot be opened; left out of jobs')
          }
        }
      }
      if (opened.size > 10_000) opened.clear()
      opened.set(key, out)
      return out
    }
  }
}
