/**
 * A gateway's recent function logs per project, for its builder (`peerhost logs <project>`, like
 * `wrangler tail`). Every request the gateway answers from the mesh leaves one entry: function,
 * status, worker, time, and the function's console output as the worker returned it (secret values
 * already replaced by `[secret NAME]`, see node/secrets/redact.ts). Kept in memory only and bounded
 * (entries and bytes per project, number of projects): logs can hold anything a function prints.
 *
 * `GET /_peerhost/logs/<wallet>/<project>?after=<seq>` answers `{ entries, next }` to the project's
 * current owner only (FunctionRegistry.ownerOf, following transfers; the path's wallet is the
 * project's namespace): header `x-peerhost-auth: <issuedAt>.<signature>`, an EIP-191 signature by
 * the owner over {@link logsMessage} (naming this gateway, the project and the time; ±10 min of the
 * gateway's clock). Chain-path answers carry no logs (the output document holds none).
 */
import type { Hono } from 'hono'
import { isAddress, isHex, recoverMessageAddress, type Address } from 'viem'
import { NAME_PATTERN } from '#protocol'
import { NodeError } from '../errors.ts'
import { gatewayJson } from './client.ts'
import { jsonError } from './http.ts'
import { namespaceOwners, type ProjectOwners } from './owners.ts'

export const LOGS_AUTH_HEADER = 'x-peerhost-auth'
const AUTH_FORMAT = `${LOGS_AUTH_HEADER}: <issuedAt unix seconds>.<EIP-191 signature 0x… by the project's wallet>`
const SKEW_SEC = 600

export const LOG_BOOK_DEFAULTS = {
  /** entries kept per project */
  entries: 200,
  /** bytes of log text kept per project */
  bytes: 256 * 1024,
  /** projects kept; the least recently written goes first */
  projects: 1_000
}

export interface LogEntry {
  /** increasing per gateway: ask for entries `after` the last one seen */
  seq: number
  at: string
  function: string
  jobId: string
  status: number
  worker?: string
  ms: number
  logs: string
  logsTruncated: boolean
}

export interface LogBook {
  record: (wallet: string, project: string, entry: Omit<LogEntry, 'seq'>) => void
  after: (wallet: string, project: string, seq: number) => LogEntry[]
}

export function logBook (limits: Partial<typeof LOG_BOOK_DEFAULTS> = {}): LogBook {
  const max = { ...LOG_BOOK_DEFAULTS, ...limits }
  const projects = new Map<string, { entries: LogEntry[], bytes: number }>()
  let seq = 0
  const key = (wallet: string, project: string): string => `${wallet.toLowerCase()}/${project}`
  return {
    record (wallet, project, entry) {
      const k = key(wallet, project)
      const p = projects.get(k) ?? { entries: [], bytes: 0 }
      projects.delete(k)
      projects.set(k, p)
      if (projects.size > max.projects) projects.delete(projects.keys().next().value!)
      const logs = entry.logs.length > max.bytes ? entry.logs.slice(0, max.bytes) : entry.logs
      p.entries.push({ ...entry, logs, logsTruncated: entry.logsTruncated || logs !== entry.logs, seq: ++seq })
      p.bytes += logs.length
      while (p.entries.length > max.entries || p.bytes > max.bytes) p.bytes -= p.entries.shift()!.logs.length
    },
    after: (wallet, project, after) => (projects.get(key(wallet, project))?.entries ?? []).filter(e => e.seq > after)
  }
}

/** The text a builder signs to read its project's logs on one gateway. */
export function logsMessage (gateway: string, wallet: string, project: string, issuedAt: number): string {
  return `PeerHost logs\ngateway: ${gateway.toLowerCase()}\nproject: ${wallet.toLowerCase()}/${project}\nissued at: ${issuedAt}`
}

export function logRoutes (book: LogBook, gateway: Address, owners: ProjectOwners = namespaceOwners()): (app: Hono) => void {
  return (app) => {
    app.get('/_peerhost/logs/:wallet/:project', async c => {
      const { wallet, project } = c.req.param()
      if (!isAddress(wallet, { strict: false }) || !NAME_PATTERN.test(project)) return jsonError('BAD_REQUEST', 'expected /_peerhost/logs/<wallet 0x…>/<project>')
      const auth = c.req.header(LOGS_AUTH_HEADER) ?? ''
      const [issued, signature] = auth.split('.')
      const issuedAt = Number(issued)
      if (!Number.isSafeInteger(issuedAt) || signature === undefined || !isHex(signature) || signature.length !== 132) return jsonError('UNAUTHORIZED', `expected the header ${AUTH_FORMAT}`)
      const now = Math.floor(Date.now() / 1000)
      if (Math.abs(now - issuedAt) > SKEW_SEC) return jsonError('UNAUTHORIZED', `${LOGS_AUTH_HEADER} was signed at ${issuedAt}, more than ${SKEW_SEC} s from this gateway's clock (${now}); sign it again`)
      let signer: Address
      try {
        signer = await recoverMessageAddress({ message: logsMessage(gateway, wallet, project, issuedAt), signature })
      } catch {
        return jsonError('UNAUTHORIZED', 'the signature does not recover to an address')
      }
      let owner: Address
      try {
        owner = await owners.ownerOf(wallet, project)
      } catch {
        return jsonError('INTERNAL', 'cannot read the project\'s owner from FunctionRegistry; retry shortly')
      }
      if (signer.toLowerCase() !== owner.toLowerCase()) return jsonError('UNAUTHORIZED', `the logs of ${wallet}/${project} are for its current owner ${owner}; this request is signed by ${signer}`)
      const after = Number(c.req.query('after') ?? '0')
      const entries = book.after(wallet, project, Number.isSafeInteger(after) ? after : 0)
      return c.json({ entries, next: entries.at(-1)?.seq ?? (Number.isSafeInteger(after) ? after : 0) })
    })
  }
}

/**
 * The builder's side: reads `<namespace>/<project>`'s log entries after `after` from a gateway,
 * signed by `account` (the project's current owner; the namespace is the wallet that created the
 * project, `account` itself unless the project was transferred to it).
 */
export async function fetchLogs (gatewayUrl: string, account: { address: Address, signMessage: (args: { message: string }) => Promise<`0x${string}`> }, project: string, after = 0, namespace: Address = account.address): Promise<{ entries: LogEntry[], next: number }> {
  const base = gatewayUrl.replace(/\/+$/, '')
  const get = async (path: string, headers: Record<string, string> = {}): Promise<any> => await gatewayJson(`${base}${path}`, { headers })
  const status = await get('/_peerhost/status')
  if (typeof status?.address !== 'string' || !isAddress(status.address)) throw new NodeError('GATEWAY_ERROR', `${base}/_peerhost/status names no gateway address; is it a PeerHost gateway?`)
  const issuedAt = Math.floor(Date.now() / 1000)
  const signature = await account.signMessage({ message: logsMessage(status.address, namespace, project, issuedAt) })
  return await get(`/_peerhost/logs/${namespace}/${project}?after=${after}`, { [LOGS_AUTH_HEADER]: `${issuedAt}.${signature}` })
}
