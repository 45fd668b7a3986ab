/**
 * Module hooks for the installed package (loaded with --import by bin/peerhost.js): Node strips
 * TypeScript types itself except under node_modules, which is exactly where an installed peerhost
 * lives. Strips only this package's own `.ts` files, so nothing else's loading changes.
 */
import { readFileSync } from 'node:fs'
import { registerHooks, stripTypeScriptTypes } from 'node:module'
import { fileURLToPath } from 'node:url'

const PACKAGE_ROOT = new URL('../', import.meta.url).href
const OWN_DEPS = new URL('../node_modules/', import.meta.url).href

registerHooks({
  load (url, context, nextLoad) {
    if (url.startsWith(PACKAGE_ROOT) && !url.startsWith(OWN_DEPS) && url.endsWith('.ts')) {
      const source = stripTypeScriptTypes(readFileSync(fileURLToPath(url), 'utf8'), { mode: 'strip' })
      return { format: 'module', source, shortCircuit: true }
    }
    return nextLoad(url, context)
  }
})
