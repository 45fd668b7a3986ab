import { Command, InvalidArgumentError } from '@commander-js/extra-typings'
import { intOption, say } from '../util.ts'

/** a repeatable option kept whole (messages may hold commas) */
function repeat (value: string, previous: string[]): string[] {
  return [...previous, value]
}

function header (value: string, previous: Array<[string, string]>): Array<[string, string]> {
  const at = value.indexOf(':')
  if (at <= 0) throw new InvalidArgumentError(`--header must be "name: value", e.g. "authorization: Bearer …"; got "${value.slice(0, 80)}".`)
  return [...previous, [value.slice(0, at).trim(), value.slice(at + 1).trim()]]
}

/** ws(s):// for a ws(s):// or http(s):// URL; anything else is a usage error. */
export function wsUrl (value: string): URL {
  let u: URL
  try { u = new URL(value) } catch { throw new InvalidArgumentError(`"${value.slice(0, 200)}" is not a URL: expected ws://host:port/<wallet>/<project>/<function> (or http://…, the same function).`) }
  if (u.protocol === 'http:') u.protocol = 'ws:'
  else if (u.protocol === 'https:') u.protocol = 'wss:'
  else if (u.protocol !== 'ws:' && u.protocol !== 'wss:') throw new InvalidArgumentError(`"${u.protocol}" URLs cannot open a WebSocket: expected ws://, wss://, http:// or https://.`)
  return u
}

export function wsCommand (): Command<any, any> {
  return new Command('ws')
    .description('open a WebSocket session with a function (a gateway, a devnet or `peerhost dev`): send lines from stdin or --send, print what comes back, then check the session\'s receipt yourself — the worker\'s signature over the transcript of exactly what this client sent and received')
    .argument('<url>', 'the function\'s URL: ws://host:port/<wallet>/<project>/<function> (http:// works too)', wsUrl)
    .option('--send <message>', 'send this text message (repeatable; in order); without --send, each line of stdin is sent', repeat, [] as string[])
    .option('--header <header>', 'an extra request header, "name: value" (repeatable), e.g. an API key: "authorization: Bearer …"', header, [] as Array<[string, string]>)
    .option('--wait <ms>', 'after the last message (--send, or the end of stdin): close once nothing has arrived for this long', intOption('--wait', 0, 600_000), 1_000)
    .option('--no-receipt', 'do not fetch and check the session\'s receipt after it ends')
    .option('--json', 'one JSON object per event (open, message, close, receipt)')
    .action(async (url, opts) => {
      const { runSession } = await import('../ws-client.ts')
      const code = await runSession(url, {
        send: opts.send,
        headers: opts.header,
        waitMs: opts.wait,
        receipt: opts.receipt,
        print: (human, data) => { say(opts, human, data) }
      })
      process.exitCode = code
    })
}
