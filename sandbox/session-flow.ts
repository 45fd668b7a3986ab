/**
 * The host's side of a session's output window (runtime/session.ts): every `ws-out` the host
 * passed on is acknowledged to the shim, except while the session is paused (its client reads too
 * slowly); the acknowledgements owed then go out on resume. Per session, so a paused session holds
 * back only its own messages and the sandbox's other sessions keep flowing.
 */
export interface SessionCredit {
  /** a `ws-out` of `bytes` was handed to the session's hooks */
  passed: (bytes: number) => void
  pause: () => void
  resume: () => void
}

export function sessionCredit (ack: (bytes: number) => void): SessionCredit {
  let paused = false
  let owed = 0
  return {
    passed (bytes) {
      if (paused) owed += bytes
      else ack(bytes)
    },
    pause () { paused = true },
    resume () {
      paused = false
      if (owed > 0) { const n = owed; owed = 0; ack(n) }
    }
  }
}

/**
 * CPU per event of a session in a shared sandbox: every client message sent in (`sent`) must be
 * answered by the shim's `ws-done` (`done`) within `limitMs`. A message listener that holds the
 * CPU longer blocks the event loop of every session in the sandbox, so `breach` ends the sandbox;
 * the holder gets LIMIT_CPU and its neighbours close 1011 (they may reconnect).
 */
export interface EventWatch {
  sent: () => void
  done: () => void
  stop: () => void
}

export function eventWatch (limitMs: number, breach: () => void): EventWatch {
  /** performance.now() of each message not yet answered, oldest first */
  const pending: number[] = []
  let timer: ReturnType<typeof setTimeout> | undefined
  let stopped = false
  const arm = (): void => {
    if (timer !== undefined || pending.length === 0 || stopped) return
    timer = setTimeout(() => {
      timer = undefined
      if (stopped || pending.length === 0) return
      if (performance.now() - pending[0] >= limitMs) { stopped = true; breach(); return }
      arm()
    }, Math.max(1, limitMs - (performance.now() - pending[0])))
    timer.unref?.()
  }
  return {
    sent () { pending.push(performance.now()); arm() },
    done () {
      pending.shift()
      if (pending.length === 0 && timer !== undefined) { clearTimeout(timer); timer = undefined }
    },
    stop () { stopped = true; clearTimeout(timer); timer = undefined }
  }
}
