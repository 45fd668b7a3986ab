#!/usr/bin/env node
/**
 * The `peerhost` command (bin/cli.ts), started with Node's compile cache on: the CLI and the
 * nodes it runs load a few hundred TypeScript files, and with the cache a start reuses their
 * stripped and compiled code instead of redoing it (the module graph of `peerhost devnet`: 1.70 s
 * of CPU without, 1.33 s with, on the 2-core test machine). The cache lives in Node's default
 * place (the OS temp folder, or NODE_COMPILE_CACHE) and NODE_DISABLE_COMPILE_CACHE=1 turns it
 * off. It must be on before the CLI's modules are loaded, hence this file.
 */
import { enableCompileCache } from 'node:module'

enableCompileCache()
await import('./cli.ts')
