/**
 * The PeerHost runtime shim: the program the sandbox's Node runs (`/node … /peerhost/shim.ts`).
 * Reads framed messages on stdin, runs each execution in a fresh realm (session.ts), writes framed
 * messages on stdout. stderr carries only the shim's own fatal diagnostics (V8 out-of-memory).
 */
import { createSession } from './session.ts'
import { FrameDecoder, FrameWriter } from './channel.ts'
import { installUncaughtHandlers, runExecution } from './realm.ts'
import type { ShimMessage } from './messages.ts'

installUncaughtHandlers()

const maxFrame = Number(process.env.PEERHOST_MAX_FRAME_BYTES ?? 32 * 1024 * 1024)

// Warm-up before `ready`: the first execution in a fresh Node loads and compiles the Request,
// Response, URL and stream code (~40 ms under gVisor); doing it here keeps it out of the first
// request a pooled sandbox serves.
const WARMUP = new TextEncoder().encode('module.exports = { async fetch (req, env) { const u = new URL(req.url); const b = await req.text(); console.log(u.pathname, b.length); return Response.json({ q: u.searchParams.get("q"), h: req.headers.get("x-w"), b }, { headers: { "x-w": "1" } }) } }')
for (let i = 0; i < 3; i++) {
  await runExecution({
    cid: 'peerhost-warmup',
    bundle: WARMUP,
    request: { method: 'POST', url: 'http://warmup/x?q=1', headers: [['x-w', '1'], ['content-type', 'text/plain']], body: new TextEncoder().encode('warm') },
    env: {},
    limits: { timeoutMs: 5000, maxResponseBytes: 1 << 20, maxLogBytes: 1 << 12, network: false, maxSubrequests: 0 }
  })
}

// the messages of one turn of the event loop share a write (one system call through gVisor)
const writer = new FrameWriter(bytes => { process.stdout.write(bytes) })
// what waits goes out before any exit (the stdout pipe is written synchronously on Linux)
process.on('exit', () => { writer.flush() })
const send = (msg: ShimMessage): void => { writer.send(msg) }
// `gc` exists when the sandbox runs Node with --expose-gc (see session.ts); the function's realm
// never sees it (it is a global of this realm only)
const gc = (globalThis as { gc?: () => void }).gc
gc?.()
const gcStepMb = Number(process.env.PEERHOST_GC_STEP_MB ?? 16)
const session = createSession({ send, tmpDir: '/tmp', gc, gcStepBytes: gcStepMb * 1024 * 1024 })
const decoder = new FrameDecoder(maxFrame, session, () => { process.exit(70) })
process.stdin.on('data', (chunk: Buffer) => { decoder.push(chunk) })
process.stdin.on('end', () => { process.exit(0) })
send({ t: 'ready' })
