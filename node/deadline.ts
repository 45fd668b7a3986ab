/**
 * Clearable time limits for the request hot path.
 *
 * `AbortSignal.timeout(ms)` cannot be cancelled: its timer fires `ms` later even when the work it
 * bounded ended long before, and a signal still referenced then (by `AbortSignal.any`, by a
 * listener) builds a DOMException with a stack trace. With a timer per job stream read and per
 * attempt that was ~1.5 % of a loaded devnet's CPU, spent seconds after each request. `deadline`
 * gives the same signal with a `clear()` to call when the work is done: the timer is dropped and
 * nothing fires.
 *
 * A due timer aborts one event-loop turn late, after the loop has polled for I/O. After a stall
 * (a busy or CPU-starved process: seconds at a time on a loaded machine) Node runs due timers
 * before it reads the sockets, so an answer that arrived during the stall lost to the timer that
 * bounded it: a burst of 500 WebSocket upgrades on a loaded 2-core machine saw dozens of job-stream
 * opens time out together right after one 3 s stall of the gateway's event loop (docs/benchmarks.md).
 * Deferred to `setImmediate` (the check phase, after the poll phase), the abort comes only when the
 * answer has not arrived by then; on a loop that is not stalled it costs one turn.
 */
export interface Deadline {
  signal: AbortSignal
  /** stops the timer and unhooks the linked signals; idempotent */
  clear: () => void
}

/** A signal that aborts after `ms` (a TimeoutError, as `AbortSignal.timeout`) or when any of `linked` aborts. */
export function deadline (ms: number, ...linked: Array<AbortSignal | undefined>): Deadline {
  const controller = new AbortController()
  const sources = linked.filter((s): s is AbortSignal => s !== undefined)
  const already = sources.find(s => s.aborted)
  if (already !== undefined) {
    controller.abort(already.reason)
    return { signal: controller.signal, clear: () => {} }
  }
  const onLinked = function (this: AbortSignal): void { stop(); controller.abort(this.reason) }
  let late: NodeJS.Immediate | undefined
  const timer = setTimeout(() => {
    // I/O that arrived while the loop was stalled is read (poll phase) before this runs (check phase)
    late = setImmediate(() => {
      stop()
      controller.abort(new DOMException('The operation was aborted due to timeout', 'TimeoutError'))
    })
  }, Math.max(0, ms))
  let stopped = false
  const stop = (): void => {
    if (stopped) return
    stopped = true
    clearTimeout(timer)
    if (late !== undefined) clearImmediate(late)
    for (const s of sources) s.removeEventListener('abort', onLinked)
  }
  for (const s of sources) s.addEventListener('abort', onLinked, { once: true })
  return { signal: controller.signal, clear: stop }
}
