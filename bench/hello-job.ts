/** The hello function as an executor job, shared by the sandbox benchmarks (bench:sandbox, bench:sandbox-cpu). */
import { rawCid, type FunctionOptions } from '#protocol'
import type { BundleRef, ExecutionJob } from '#sandbox'

export const HELLO = `module.exports.default = { async fetch (request) { const name = new URL(request.url).searchParams.get('name') ?? 'world'; return new Response('Hello, ' + name + '!\\n', { headers: { 'content-type': 'text/plain; charset=utf-8' } }) } }`

export const bundle = (src: string): BundleRef => { const bytes = new TextEncoder().encode(src); return { cid: rawCid(bytes), bytes } }

export const options: FunctionOptions = { memoryMb: 128, timeoutMs: 5000, network: [], isolation: 'function' }

export const job = (b: BundleRef): ExecutionJob => ({ jobId: 'bench', bundle: b, request: { method: 'GET', url: 'http://bench/hello?name=bench', headers: [], body: new Uint8Array(0) }, env: {}, options, deadline: Date.now() + 60_000 })
