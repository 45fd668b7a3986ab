/**
 * Checking the ports a command needs before anything starts: a busy port stops the command at
 * once with one sentence naming the port and the flag that changes it, instead of a child
 * process dying with EADDRINUSE in a log file while the command goes on (issue 14: a devnet
 * whose chain port was taken deployed its contracts onto someone else's chain).
 */
import { createServer } from 'node:net'
import { ConfigError } from './light.ts'

export interface PortNeed {
  /** the flag that changes it, e.g. `--chain-port` */
  flag: string
  port: number
  /** @default '127.0.0.1' */
  host?: string
  /** what listens there, for the message, e.g. 'the local chain' */
  what: string
}

/** Resolves when `host:port` can be bound now; rejects with the error from binding it. Port 0 is always free. */
export async function probePort (port: number, host = '127.0.0.1'): Promise<void> {
  if (port === 0) return
  await new Promise<void>((resolve, reject) => {
    const server = createServer()
    server.unref()
    server.once('error', reject)
    // exclusive: a port another process holds through SO_REUSEPORT or a cluster still counts as busy
    server.listen({ port, host, exclusive: true }, () => server.close(() => resolve()))
  })
}

/** Checks every port; throws ConfigError PORT_BUSY for the first one that cannot be bound. */
export async function checkPorts (needs: PortNeed[]): Promise<void> {
  for (const need of needs) {
    const host = need.host ?? '127.0.0.1'
    try {
      await probePort(need.port, host)
    } catch (err: any) {
      if (err?.code === 'EADDRINUSE') throw new ConfigError('PORT_BUSY', `port ${need.port} on ${host} (${need.what}) is already in use by another program; stop it or pick another port with ${need.flag} <port>`)
      if (err?.code === 'EACCES') throw new ConfigError('PORT_DENIED', `port ${need.port} on ${host} (${need.what}) needs privileges this process does not have; pick a port above 1023 with ${need.flag} <port>`)
      if (err?.code === 'EADDRNOTAVAIL') throw new ConfigError('HOST_UNAVAILABLE', `${host} is not an address of this machine (${need.what}); pass one of its addresses or 0.0.0.0`)
      throw err
    }
  }
}

/** The TCP ports of `/ip4|ip6/<host>/tcp/<port>` multiaddrs (others, and port 0, need no check). */
export function multiaddrPorts (addrs: string[], flag: string, what: string): PortNeed[] {
  const out: PortNeed[] = []
  for (const a of addrs) {
    const m = /^\/(ip4|ip6)\/([^/]+)\/tcp\/(\d+)/.exec(a)
    if (m === null || m[3] === '0') continue
    out.push({ flag, port: Number(m[3]), host: m[2], what })
  }
  return out
}
