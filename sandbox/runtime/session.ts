/**
 * The shim's message loop, independent of transport: the gVisor shim feeds it frames from stdin,
 * the development executor's worker thread feeds it MessagePort messages. One execution at a time
 * per session (the host never sends a second `exec` before the first `result`).
 */
import { readdirSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { hasBundle, runExecution } from './realm.ts'
import type { HostMessage, ShimMessage, ShimResponse } from './messages.ts'

export interface SessionOptions {
  send: (msg: ShimMessage) => void
  /** scratch directory wiped between executions when asked (`/tmp` in the sandbox) */
  tmpDir?: string
}

export function createSession (opts: SessionOptions): (msg: HostMessage) => void {
  const pendingFetches = new Map<number, { resolve: (r: ShimResponse) => void, reject: (e: Error) => void }>()
  let nextFid = 1

  const wipe = (): void => {
    if (opts.tmpDir === undefined) return
    try {
      for (const name of readdirSync(opts.tmpDir)) rmSync(join(opts.tmpDir, name), { recursive: true, force: true })
    } catch {}
  }

  return (msg: HostMessage): void => {
    switch (msg.t) {
      case 'ping':
        opts.send({ t: 'pong', id: msg.id })
        return
      case 'fetch-result': {
        const p = pendingFetches.get(msg.fid)
        if (p === undefined) return
        pendingFetches.delete(msg.fid)
        if (msg.response !== undefined) p.resolve(msg.response)
        else p.reject(new TypeError(msg.error ?? 'fetch failed'))
        return
      }
      case 'exec': {
        const id = msg.id
        if (msg.bundle === undefined && !hasBundle(msg.cid)) {
          // the host thought we held the bundle; say so as a function-independent failure
          opts.send({ t: 'result', id, error: { code: 'FUNCTION_ERROR', message: 'bundle not loaded' }, logs: '', logsTruncated: false, execMs: 0, setupMs: 0 })
          return
        }
        runExecution({
          cid: msg.cid,
          bundle: msg.bundle,
          request: msg.request,
          env: msg.env,
          limits: msg.limits,
          fetchBridge: async (request) => await new Promise<ShimResponse>((resolve, reject) => {
            const fid = nextFid++
            pendingFetches.set(fid, { resolve, reject })
            opts.send({ t: 'fetch', id, fid, request })
          })
        }).then(outcome => {
          for (const p of pendingFetches.values()) p.reject(new TypeError('execution finished'))
          pendingFetches.clear()
          if (msg.wipeTmp) wipe()
          opts.send({ t: 'result', id, ...outcome })
        }, () => {})
      }
    }
  }
}
