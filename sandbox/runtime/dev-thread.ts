/**
 * Worker-thread entry of the development executor: the same session as the gVisor shim, over a
 * MessagePort instead of stdio.
 */
import { parentPort } from 'node:worker_threads'
import { createSession } from './session.ts'
import { installUncaughtHandlers } from './realm.ts'
import type { HostMessage } from './messages.ts'

if (parentPort === null) throw new Error('dev-thread.ts must run in a worker thread')
const port = parentPort
installUncaughtHandlers()
const onMessage = createSession({ send: (msg) => { port.postMessage(msg) } })
port.on('message', (msg: HostMessage) => { onMessage(msg) })
port.postMessage({ t: 'ready' })
