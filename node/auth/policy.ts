/**
 * Who may call a function (`"auth"` in peerhost.json), as a gateway enforces it. Carried in the
 * deploy manifest per function (absent for `"public"`, so public projects keep their manifest
 * bytes and CID) and in each gateway's FunctionEntry.
 */
import { z } from 'zod'

export interface FunctionAuth {
  /** `api-key`: `authorization: Bearer <key>` of a key the project's owner created; `wallet`: a request signed by an address in `allow` */
  mode: 'api-key' | 'wallet'
  /** wallet mode: the addresses allowed to call, lower-case 0x hex */
  allow?: string[]
  /**
   * Hand the credential header (`authorization` or `x-peerhost-signature`) to the function; by
   * default the gateway strips it before dispatch so it never reaches a worker, the function or
   * its logs. @default false
   */
  forwardCredential?: boolean
}

/** Most addresses a wallet-auth function may allow (the list travels in the manifest). */
export const MAX_ALLOW = 256

const ADDRESS = /^0x[0-9a-fA-F]{40}$/

/** The manifest's `auth` of one function (closed: a gateway that does not know a field refuses the manifest). */
export const functionAuthSchema = z.object({
  mode: z.enum(['api-key', 'wallet']),
  allow: z.array(z.string().regex(ADDRESS, 'expected a 0x-prefixed 20-byte address')).min(1).max(MAX_ALLOW).optional(),
  forwardCredential: z.boolean().optional()
}).strict().refine(a => a.mode !== 'wallet' || (a.allow !== undefined && a.allow.length > 0), 'wallet auth needs a non-empty "allow" list of addresses')
  .refine(a => a.mode === 'wallet' || a.allow === undefined, '"allow" applies only to "auth": "wallet"')

/**
 * The FunctionAuth of resolved peerhost.json options, or undefined for a public function.
 * Throws a message naming what is wrong (the caller wraps it in a ConfigError).
 */
export function resolveAuth (o: { auth?: 'public' | 'api-key' | 'wallet', allow?: string[], forwardCredential?: boolean }): FunctionAuth | undefined {
  const mode = o.auth ?? 'public'
  if (mode === 'public') {
    if (o.allow !== undefined) throw new Error('"allow" is set but "auth" is "public"; set "auth": "wallet" to use it')
    return undefined
  }
  if (mode === 'wallet') {
    if (o.allow === undefined || o.allow.length === 0) throw new Error('"auth": "wallet" needs "allow": a non-empty list of 0x addresses that may call the function')
    const allow = [...new Set(o.allow.map(a => a.toLowerCase()))].sort()
    return { mode, allow, ...(o.forwardCredential === true ? { forwardCredential: true } : {}) }
  }
  if (o.allow !== undefined) throw new Error('"allow" applies only to "auth": "wallet"; an "api-key" function is called with keys from `peerhost keys create`')
  return { mode, ...(o.forwardCredential === true ? { forwardCredential: true } : {}) }
}
