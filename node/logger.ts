/**
 * Per-component structured loggers (pino). `bin/` decides where logs go; components only ever
 * receive a `Logger` and never write to the console.
 */
import { pino, type Logger as PinoLogger, type DestinationStream } from 'pino'

export type Logger = PinoLogger

export interface LoggerInit {
  /** @default 'info' (or PEERHOST_LOG_LEVEL, read by bin/) */
  level?: string
  /** where lines go; @default stderr */
  destination?: DestinationStream
  /** fields on every line, e.g. `{ node: 'worker-1' }` */
  base?: Record<string, unknown>
}

export function createLogger (init: LoggerInit = {}): Logger {
  return pino({ level: init.level ?? 'info', base: init.base ?? {} }, init.destination ?? pino.destination(2))
}

/** A child logger for a component: `component(log, 'peerhost:worker:job')`. */
export function component (log: Logger, name: string): Logger {
  return log.child({ component: name })
}

/** A logger that drops everything (tests that do not look at logs). */
export function silentLogger (): Logger {
  return pino({ level: 'silent' })
}
