import { PeerHostError, type PeerHostErrorOptions } from '#protocol'

/** A fault of a running node (gateway, worker, bootstrap). */
export class NodeError extends PeerHostError {
  constructor (code: string, message: string, options: PeerHostErrorOptions = {}) {
    super(code, message, options)
    this.name = 'NodeError'
  }
}

/** A user's mistake in configuration, flags or a project: one clear sentence, printed without a stack. */
export class ConfigError extends PeerHostError {
  constructor (code: string, message: string, options: PeerHostErrorOptions = {}) {
    super(code, message, options)
    this.name = 'ConfigError'
  }
}
