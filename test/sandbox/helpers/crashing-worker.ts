/** Starts a gVisor executor on argv[2] as data dir, prints "ready" once its pool is full, then waits to be killed. */
import { gvisorExecutor } from '#sandbox'
const ex = gvisorExecutor({ dataDir: process.argv[2], selfTest: false, genericPoolSize: 2 })()
await ex.start()
await ex.settled()
process.stdout.write('ready\n')
setInterval(() => {}, 1000)
