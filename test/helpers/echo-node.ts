/**
 * A real libp2p node (createMeshNode: TCP, Noise, Yamux) in its own process, serving an echo
 * protocol as a worker serves job streams: test/integration/stream-burst.spec.ts opens streams
 * to it while the opening process's event loop is stalled, which an in-process peer could not
 * answer through. Prints `{ "addrs": [...] }` on stdout once listening. With `--flag FILE --after N`
 * it writes FILE once N echo streams have been negotiated (their protocol-selection answers are on
 * the wire by then), so the stalled test knows the answers have been sent.
 */
import { writeFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { createMeshNode } from '../../node/libp2p.ts'

export const ECHO = '/peerhost/test-echo/1.0.0'

const { values } = parseArgs({ options: { flag: { type: 'string' }, after: { type: 'string' } } })
const after = values.after === undefined ? Infinity : Number(values.after)
const node = await createMeshNode({ privateKey: await generateKeyPair('Ed25519') })
await node.start()
let negotiated = 0
await node.handle(ECHO, (stream) => {
  stream.addEventListener('message', evt => { stream.send(evt.data) })
  // the answers are written before the handler runs and leave on the next tick (node/corked-tcp.ts)
  if (++negotiated === after && values.flag !== undefined) { const flag = values.flag; setTimeout(() => { writeFileSync(flag, String(negotiated)) }, 50) }
}, { maxInboundStreams: 1_000 })
process.stdout.write(JSON.stringify({ addrs: node.getMultiaddrs().map(String) }) + '\n')
process.on('SIGTERM', () => { void Promise.resolve(node.stop()).finally(() => process.exit(0)) })
