/**
 * The worker's own enforcement of a session's limits (issue 12). The gateway enforces them for
 * its client, but a gateway may be buggy or an adversary: it could hold a session (and its share
 * of a sandbox) forever, or flood the function with messages. So the worker applies the function's
 * `websocket` limits itself, under its own ceilings, and ends the session with the same close
 * codes the gateway would use (node/constants.ts WS_CLOSE).
 *
 * An honest gateway closes first: the worker's idle and length timers run `graceMs` later (the
 * two sides see each message at slightly different moments), and the message rate is a token
 * bucket that admits the bursts an honest gateway's fixed one-second windows let through (up to
 * twice the rate across a window boundary, plus whatever the network bunched up), but not a
 * sustained rate above the limit.
 */
import { NODE_DEFAULTS, WS_CLOSE } from '../constants.ts'

export interface SessionGuardLimits {
  /** no message either way for this long → 4408 */
  idleMs: number
  /** longest the session lasts once open → 4410 */
  maxMs: number
  /** sustained client messages per second → 4429 */
  messagesPerSec: number
  /** largest client message, bytes → 1009 */
  maxMessageBytes: number
  /** @default NODE_DEFAULTS.workerSessionGraceMs */
  graceMs?: number
  /** seconds of `messagesPerSec` the bucket holds; @default NODE_DEFAULTS.workerSessionBurstSec */
  burstSec?: number
}

export interface SessionGuard {
  /**
   * A client message of `bytes` arrived: undefined when it may go to the function, else the close
   * (code and reason) that ends the session. A refusal also stops the guard.
   */
  inbound: (bytes: number) => { code: number, reason: string } | undefined
  /** the function sent a message (the session is not idle) */
  outbound: () => void
  stop: () => void
}

/**
 * Starts the idle and length timers; `breach` is called once, when one of them fires (never after
 * `stop`, nor after `inbound` refused a message).
 */
export function sessionGuard (limits: SessionGuardLimits, breach: (code: number, reason: string) => void): SessionGuard {
  const grace = limits.graceMs ?? NODE_DEFAULTS.workerSessionGraceMs
  const capacity = limits.messagesPerSec * (limits.burstSec ?? NODE_DEFAULTS.workerSessionBurstSec)
  let tokens = capacity
  let filledAt = performance.now()
  let stopped = false
  const fire = (code: number, reason: string): void => {
    if (stopped) return
    stop()
    breach(code, reason)
  }
  const idle = setTimeout(() => { fire(WS_CLOSE.idleTimeout, 'idle timeout') }, limits.idleMs + grace)
  const lifetime = setTimeout(() => { fire(WS_CLOSE.sessionTooLong, 'session time limit') }, limits.maxMs + grace)
  // the worker's stop (or the session's end) is never held up by these timers
  idle.unref()
  lifetime.unref()
  function stop (): void {
    stopped = true
    clearTimeout(idle)
    clearTimeout(lifetime)
  }
  return {
    inbound (bytes) {
      if (stopped) return undefined
      if (bytes > limits.maxMessageBytes) { stop(); return { code: WS_CLOSE.tooBig, reason: `a client message over ${limits.maxMessageBytes} bytes` } }
      const now = performance.now()
      tokens = Math.min(capacity, tokens + (now - filledAt) / 1000 * limits.messagesPerSec)
      filledAt = now
      if (tokens < 1) { stop(); return { code: WS_CLOSE.rateLimited, reason: `more than ${limits.messagesPerSec} messages per second` } }
      tokens -= 1
      idle.refresh()
      return undefined
    },
    outbound () {
      if (!stopped) idle.refresh()
    },
    stop
  }
}
