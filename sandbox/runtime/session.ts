/**
 * The shim's message loop, independent of transport: the gVisor shim feeds it frames from stdin,
 * the development executor's worker thread feeds it MessagePort messages. Several executions may
 * run at once (the gVisor pool sends up to its concurrency per sandbox), each in its own realm, with
 * its own fetch bridge (keyed by execution id); the between-executions cleanup (/tmp wipe, GC, the
 * next realm) runs whenever the session falls idle.
 */
import { fstatSync, openSync, readdirSync, rmSync, statSync } from 'node:fs'
import { getHeapStatistics } from 'node:v8'
import { join } from 'node:path'
import { hasBundle, prepareRealm, runExecution } from './realm.ts'
import { SESSION_QUEUE_MAX_BYTES, SESSION_WINDOW_BYTES, STREAM_WINDOW_BYTES, WS_SLOW_CLIENT_CODE, type HostMessage, type ShimMessage, type ShimResponse } from './messages.ts'

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
  const pendingFetches = new Map<number, { id: number, resolve: (r: ShimResponse) => void, reject: (e: Error) => void }>()
  let running = 0
  /** inbound handlers of the executions whose WebSocket session is open, by execution id */
  const inbound = new Map<number, { message: (data: string | Uint8Array) => void, close: (code: number, reason: string) => void }>()
  let nextFid = 1
  /**
   * WebSocket output per session, by execution id: bytes sent and not yet acknowledged by the
   * host, what waits behind the window (in order, the close last), and `drained` once nothing waits.
   */
  const wsOut = new Map<number, { unacked: number, queue: ShimMessage[], queued: number, drained?: () => void }>()
  const flushWs = (id: number): void => {
    const w = wsOut.get(id)
    if (w === undefined) return
    while (w.queue.length > 0 && w.unacked <= SESSION_WINDOW_BYTES) {
      const m = w.queue.shift()!
      const size = m.t === 'ws-out' ? m.data.byteLength : 0
      w.queued -= size
      w.unacked += size
      opts.send(m)
    }
    if (w.queue.length === 0) { const d = w.drained; w.drained = undefined; d?.() }
  }
  /** sends (or queues behind the session's window) one session message */
  const wsSend = (id: number, m: ShimMessage): void => {
    const w = wsOut.get(id)
    if (w === undefined) return
    const size = m.t === 'ws-out' ? m.data.byteLength : 0
    if (w.queue.length === 0 && w.unacked <= SESSION_WINDOW_BYTES) {
      w.unacked += size
      opts.send(m)
      return
    }
    if (w.queued + size > SESSION_QUEUE_MAX_BYTES) {
      // this session's client does not keep up: it alone ends, its held-back messages dropped
      w.queue.length = 0
      w.queued = 0
      const reason = 'the client reads too slowly'
      opts.send({ t: 'ws-close-out', id, code: WS_SLOW_CLIENT_CODE, reason })
      const i = inbound.get(id)
      inbound.delete(id)
      i?.close(WS_SLOW_CLIENT_CODE, reason)
      flushWs(id)
      return
    }
    w.queue.push(m)
    w.queued += size
  }
  /** streamed bodies in flight, by execution id: bytes sent and not yet acknowledged by the host */
  const credits = new Map<number, { unacked: number, cancelled?: boolean, wake?: () => void }>()

  // emptying /tmp costs ~7 syscalls; a stat (1) tells whether anything was created since the
  // last wipe (any new entry changes the directory's mtime). The stat is of a descriptor held
  // open: a stat by path costs a second syscall under the permission model, which resolves every
  // path against the working directory (getcwd) before checking it.
  let tmpMtime = -1
  let tmpFd: number | undefined
  const mtime = (dir: string): number => {
    if (tmpFd === undefined) { try { tmpFd = openSync(dir, 'r') } catch { tmpFd = -1 } }
    const m = tmpFd >= 0 ? fstatSync(tmpFd, { bigint: true }).mtimeNs : statSync(dir, { bigint: true }).mtimeNs
    return Number(m % 1_000_000_000_000n)
  }
  const wipe = (): void => {
    if (opts.tmpDir === undefined) return
    try {
      if (mtime(opts.tmpDir) === tmpMtime) return
      for (const name of readdirSync(opts.tmpDir)) rmSync(join(opts.tmpDir, name), { recursive: true, force: true })
      tmpMtime = mtime(opts.tmpDir)
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
    const gc = c.gc ? opts.gc : undefined
    if (gc !== undefined) {
      gc()
      heapBase = getHeapStatistics().used_heap_size
    }
    prepareRealm()
    // the host prefers sandboxes that are not collecting (the result said `gc`) until this comes;
    // a request that arrives earlier just waits
    if (gc !== undefined) opts.send({ t: 'idle', heap: heapBase })
  }
  // the first execution finds its realm ready too
  setImmediate(prepareRealm)

  return (msg: HostMessage): void => {
    switch (msg.t) {
      case 'ping':
        opts.send({ t: 'pong', id: msg.id })
        return
      case 'ws-in':
        inbound.get(msg.id)?.message(msg.binary ? msg.data : new TextDecoder().decode(msg.data))
        // the listeners returned: the host's per-event CPU watch for this message ends
        opts.send({ t: 'ws-done', id: msg.id })
        return
      case 'body-ack': {
        const c = credits.get(msg.id)
        if (c === undefined || typeof msg.bytes !== 'number') return
        c.unacked -= msg.bytes
        if (msg.cancel === true) c.cancelled = true
        const wake = c.wake
        c.wake = undefined
        wake?.()
        return
      }
      case 'ws-ack': {
        const w = wsOut.get(msg.id)
        if (w === undefined || typeof msg.bytes !== 'number') return
        w.unacked = Math.max(0, w.unacked - msg.bytes)
        flushWs(msg.id)
        return
      }
      case 'ws-close-in':
        { const i = inbound.get(msg.id); inbound.delete(msg.id); i?.close(msg.code, msg.reason) }
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
        // nothing runs: the last execution's cleanup (if still pending) comes first
        if (running === 0) runCleanup()
        const id = msg.id
        if (msg.bundle === undefined && !hasBundle(msg.cid)) {
          // the host thought we held the bundle; say so as a function-independent failure
          opts.send({ t: 'result', id, error: { code: 'FUNCTION_ERROR', message: 'bundle not loaded' }, logs: '', logsTruncated: false, execMs: 0, setupMs: 0 })
          return
        }
        running++
        runExecution({
          cid: msg.cid,
          bundle: msg.bundle,
          request: msg.request,
          env: msg.env,
          limits: msg.limits,
          session: typeof msg.session === 'number'
            ? {
                maxMs: msg.session,
                open: (headers) => { wsOut.set(id, { unacked: 0, queue: [], queued: 0 }); opts.send({ t: 'ws-open', id, headers }) },
                send: (data) => { wsSend(id, typeof data === 'string' ? { t: 'ws-out', id, data: new TextEncoder().encode(data), binary: false } : { t: 'ws-out', id, data, binary: true }) },
                close: (code, reason) => { inbound.delete(id); wsSend(id, { t: 'ws-close-out', id, code, reason }) },
                onInbound: (h) => { inbound.set(id, h) }
              }
            : undefined,
          stream: typeof msg.stream === 'number'
            ? {
                maxBytes: msg.stream,
                head: (status, headers) => { credits.set(id, { unacked: 0 }); opts.send({ t: 'body-head', id, status, headers }) },
                chunk: async (data) => {
                  const c = credits.get(id)
                  if (c === undefined) return
                  opts.send({ t: 'body-chunk', id, data })
                  c.unacked += data.byteLength
                  // the host acknowledges what it passed on: past the window, the function waits
                  while (c.unacked > STREAM_WINDOW_BYTES && c.cancelled !== true) await new Promise<void>(resolve => { c.wake = resolve })
                  // the reader is gone: the body stream is cancelled and the execution ends now
                  // instead of waiting for its wall-clock limit
                  if (c.cancelled === true) throw new Error('nobody reads the response body any more')
                }
              }
            : undefined,
          fetchBridge: async (request) => await new Promise<ShimResponse>((resolve, reject) => {
            const fid = nextFid++
            pendingFetches.set(fid, { id, resolve, reject })
            opts.send({ t: 'fetch', id, fid, request })
          })
        }).then(async outcome => {
          // a session's held-back messages and close go out before its result
          const w = wsOut.get(id)
          if (w !== undefined && w.queue.length > 0) await new Promise<void>(resolve => { w.drained = resolve })
          wsOut.delete(id)
          running--
          inbound.delete(id)
          credits.delete(id)
          for (const [fid, p] of pendingFetches) {
            if (p.id !== id) continue
            pendingFetches.delete(fid)
            p.reject(new TypeError('execution finished'))
          }
          const gc = running === 0 && opts.gc !== undefined && getHeapStatistics().used_heap_size - heapBase > gcStep
          opts.send({ t: 'result', id, ...outcome, ...(gc ? { gc: true } : {}) })
          // cleanup and the next realm happen after the answer, while the host reads it, once no
          // execution runs (a /tmp wipe under a running one would pull its files away); an exec
          // arriving first runs the cleanup itself before anything else
          cleanup = { wipeTmp: msg.wipeTmp || (cleanup?.wipeTmp ?? false), gc }
          if (running === 0) setImmediate(() => { if (running === 0) runCleanup() })
        }, () => {})
      }
    }
  }
}
