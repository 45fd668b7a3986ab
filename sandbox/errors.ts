import { PeerHostError, type PeerHostErrorOptions } from '#protocol'

/** An error of the sandbox machinery itself (not of the function it runs). */
export class SandboxError extends PeerHostError {
  constructor (code: string, message: string, options: PeerHostErrorOptions = {}) {
    super(code, message, options)
    this.name = 'SandboxError'
  }
}
