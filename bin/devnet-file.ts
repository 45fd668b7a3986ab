/**
 * `<devnet data dir>/devnet.json`: where a running devnet says what it runs — its chain RPC, its
 * contracts.json, its gateway URL and the file holding its builder key — so `peerhost deploy`,
 * `peerhost secret …` and `peerhost wallet fund` find it without flags. Written when the devnet is
 * ready, removed when it stops; a file left by a killed devnet is recognised as stale by its pid.
 */
import { existsSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'

export const DEVNET_FILE = 'devnet.json'
/** where `npm start` keeps its state (relative to the working directory), `peerhost devnet --data-dir` default */
export const DEFAULT_DEVNET_DIR = '.peerhost/devnet'

export interface DevnetInfo {
  pid: number
  dataDir: string
  chainId: number
  rpcUrl: string
  /** absolute path of contracts.json */
  contracts: string
  gateway: string
  builder: string
  /** absolute path of the builder's raw private key (hex, mode 0600) */
  builderKeyFile: string
  startedAt: string
}

export function writeDevnetInfo (info: DevnetInfo): string {
  const file = join(info.dataDir, DEVNET_FILE)
  // temp file + rename: a reader never sees half a file
  writeFileSync(`${file}.tmp`, JSON.stringify(info, null, 2) + '\n')
  renameSync(`${file}.tmp`, file)
  return file
}

export function removeDevnetInfo (dataDir: string, pid = process.pid): void {
  const file = join(dataDir, DEVNET_FILE)
  try {
    const info = JSON.parse(readFileSync(file, 'utf8')) as Partial<DevnetInfo>
    if (info.pid === pid) rmSync(file, { force: true })
  } catch {}
}

function alive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err: any) {
    return err?.code === 'EPERM'
  }
}

/**
 * The running devnet whose data dir is `dir` (default: env PEERHOST_DEVNET_DIR, else
 * .peerhost/devnet under the working directory); undefined when none runs there.
 */
export function findDevnet (dir?: string): DevnetInfo | undefined {
  const dataDir = resolve(dir ?? process.env.PEERHOST_DEVNET_DIR ?? DEFAULT_DEVNET_DIR)
  const file = join(dataDir, DEVNET_FILE)
  if (!existsSync(file)) return undefined
  try {
    const info = JSON.parse(readFileSync(file, 'utf8')) as DevnetInfo
    if (!Number.isSafeInteger(info.pid) || !alive(info.pid)) return undefined
    if (typeof info.contracts !== 'string' || typeof info.gateway !== 'string' || typeof info.rpcUrl !== 'string') return undefined
    return info
  } catch {
    return undefined
  }
}
