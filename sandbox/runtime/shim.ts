/**
 * The PeerHost runtime shim: the program the sandbox's Node runs (`/node … /peerhost/shim.ts`).
 * Reads framed messages on stdin, runs each execution in a fresh realm (session.ts), writes framed
 * messages on stdout. stderr carries only the shim's own fatal diagnostics (V8 out-of-memory).
 */
import { createSession } from './session.ts'
import { FrameDecoder, encodeFrame } from './channel.ts'
import type { ShimMessage } from './messages.ts'

const maxFrame = Number(process.env.PEERHOST_MAX_FRAME_BYTES ?? 32 * 1024 * 1024)
const send = (msg: ShimMessage): void => { process.stdout.write(encodeFrame(msg)) }
const session = createSession({ send, tmpDir: '/tmp' })
const decoder = new FrameDecoder(maxFrame, session, () => { process.exit(70) })
process.stdin.on('data', (chunk: Buffer) => { decoder.push(chunk) })
process.stdin.on('end', () => { process.exit(0) })
send({ t: 'ready' })
