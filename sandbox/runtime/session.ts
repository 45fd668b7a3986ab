/**
 * The shim's message loop, independent of transport: the gVisor shim feeds it frames from stdin,
 * the development executor's worker thread feeds it MessagePort messages. One execution at a time
 * per session (the host never sends a second `exec` before the first `result`).
 */
import { readdirSync, rmSync, statSync } from 'node:fs'
import { getHeapStatistics } from 'node:v8'
import { join } from 'node:path'
import { hasBundle, prepareRealm, runExecution } from './realm.ts'
import type { HostMessage, ShimMessage, ShimResponse } from './messages.ts'

export interface SessionOptions {
  send: (msg: ShimMessage) => void
  /** scratch directory wiped between executions when asked (`/tmp` in the sandbox) */
  tmpDir?: string
  /**
   * A full garbage collection (`--expose-gc`). Every realm is a V8 context that only a full
   * mark-compact frees; left to V8, that pause (10–20 ms under gVisor ptrace) lands inside a
   * request every ~50 executions. With `gc`, the shim collects between executions (after the
   * result, before `idle`), while the host sends the next request to another sandbox.
   */
  gc?: () => void
  /**
   * Heap growth since the last collection that triggers a between-executions GC. A full GC costs
   * about the same whatever the garbage (it marks the ~12 MB live), so rarer is cheaper; V8's own
   * trigger is pushed above it with --heap-growing-percent. @default 16 MiB
   */
  gcStepBytes?: number
}

export function createSession (opts: SessionOptions): (msg: HostMessage) => void {
  const pendingFetches = new Map<number, { resolve: (r: ShimResponse) => void, reject: (e: Error) => void }>()
  let nextFid = 1

  // emptying /tmp costs ~7 syscalls; a stat (1) tells whether anything was created since the
  // last wipe (any new entry changes the directory's mtime)
  let tmpMtime = -1
  const wipe = (): void => {
    if (opts.tmpDir === undefined) return
    try {
      const m = statSync(opts.tmpDir, { bigint: true }).mtimeNs
      if (Number(m % 1_000_000_000_000n) === tmpMtime) return
      for (const name of readdirSync(opts.tmpDir)) rmSync(join(opts.tmpDir, name), { recursive: true, force: true })
      tmpMtime = Number(statSync(opts.tmpDir, { bigint: true }).mtimeNs % 1_000_000_000_000n)
    } catch {}
  }

  const gcStep = opts.gcStepBytes ?? 16 * 1024 * 1024
  let heapBase = getHeapStatistics().used_heap_size
  let cleanup: { wipeTmp: boolean, gc: boolean } | undefined
  const runCleanup = (): void => {
    if (cleanup === undefined) return
    const c = cleanup
    cleanup = undefined
    if (c.wipeTmp) wipe()
    if (c.gc && opts.gc !== undefined) {
      opts.gc()
      heapBase = getHeapStatistics().used_heap_size
    }
    prepareRealm()
    // the host prefers sandboxes that finished this; a request that arrives earlier just waits
    opts.send({ t: 'idle', heap: heapBase })
  }
  // the first execution finds its realm ready too
  setImmediate(prepareRealm)

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
        runCleanup()
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
          const gc = opts.gc !== undefined && getHeapStatistics().used_heap_size - heapBase > gcStep
          opts.send({ t: 'result', id, ...outcome, ...(gc ? { gc: true } : {}) })
          // cleanup and the next realm happen after the answer, while the host reads it; an
          // exec arriving first runs the cleanup itself before anything else
          cleanup = { wipeTmp: msg.wipeTmp, gc }
          setImmediate(runCleanup)
        }, () => {})
      }
    }
  }
}
