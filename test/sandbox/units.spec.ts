import assert from 'node:assert/strict'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { buildOciSpec, embeddedIPv4, fetchBroker, hostAllowed, isRefusedAddress, runscGlobalArgs } from '#sandbox'
import { anyAddress } from './fixtures.ts'
import { decodePayload, encodeFrame, FrameDecoder, FrameWriter } from '../../sandbox/runtime/channel.ts'
import { abortedError, deadlineCut, hostTimeoutVerdict, limitError, wireError } from '../../sandbox/result.ts'

describe('sandbox/gvisor OCI spec', () => {
  const input = { rootfs: '/data/rootfs/abc', memoryMb: 128, memoryHeadroomMb: 128, cpus: 1, tmpfsMb: 16, cgroupsPath: '/peerhost-x/ph-1', maxFrameBytes: 1024 }
  const spec = buildOciSpec(input) as any

  it('mounts the shared rootfs read-only and /tmp as a small tmpfs', () => {
    assert.deepEqual(spec.root, { path: '/data/rootfs/abc', readonly: true })
    const tmp = spec.mounts.find((m: any) => m.destination === '/tmp')
    assert.equal(tmp.type, 'tmpfs')
    assert.ok(tmp.options.includes('size=16m') && tmp.options.includes('noexec'))
    assert.deepEqual(spec.mounts.map((m: any) => m.destination).sort(), ['/dev', '/proc', '/tmp'])
  })

  it('limits memory in the cgroup and the V8 heap, CPU by quota, and sets no pids limit', () => {
    assert.equal(spec.linux.resources.memory.limit, 256 * 1024 * 1024)
    assert.ok(spec.process.args.includes('--max-old-space-size=128'))
    assert.deepEqual(spec.linux.resources.cpu, { quota: 100_000, period: 100_000 })
    assert.equal(spec.linux.resources.pids, undefined)
    assert.equal(spec.linux.cgroupsPath, '/peerhost-x/ph-1')
  })

  it('runs the shim unprivileged with the permission model, no capabilities and a fixed env', () => {
    assert.deepEqual(spec.process.user, { uid: 65534, gid: 65534 })
    assert.equal(spec.process.args.at(-1), '/peerhost/shim.js')
    assert.ok(spec.process.args.includes('--permission'))
    assert.deepEqual(spec.process.capabilities.bounding, [])
    assert.equal(spec.process.noNewPrivileges, true)
    assert.ok(spec.process.env.every((e: string) => /^(PEERHOST_MAX_FRAME_BYTES|PEERHOST_GC_STEP_MB|TZ|LANG|UV_THREADPOOL_SIZE)=/.test(e)))
    assert.ok(!(buildOciSpec({ ...input, permissionModel: false }) as any).process.args.includes('--permission'))
  })

  it('passes --network=none and a private --root to runsc', () => {
    const args = runscGlobalArgs({ binary: '/usr/bin/runsc', root: '/d/runsc', platform: 'ptrace' })
    assert.ok(args.includes('--network=none'))
    assert.ok(args.includes('--root=/d/runsc'))
    assert.ok(args.includes('--platform=ptrace'))
  })
})

describe('sandbox/runtime channel', () => {
  it('round-trips messages with binary attachments', () => {
    const msg = { t: 'exec', id: 1, bundle: new Uint8Array([1, 2, 3]), request: { body: new Uint8Array([4]), headers: [['a', 'b']] } }
    const frame = encodeFrame(msg)
    assert.equal(frame.readUInt32BE(0), frame.byteLength - 4)
    const back = decodePayload(frame.subarray(4)) as any
    assert.deepEqual(back.bundle, new Uint8Array([1, 2, 3]))
    assert.deepEqual(back.request.body, new Uint8Array([4]))
    assert.deepEqual(back.request.headers, [['a', 'b']])
  })

  it('carries Buffers (Uint8Array subclasses with toJSON) as binary attachments', () => {
    const back = decodePayload(encodeFrame({ t: 'exec', bundle: Buffer.from('abc') }).subarray(4)) as any
    assert.ok(back.bundle instanceof Uint8Array)
    assert.equal(new TextDecoder().decode(back.bundle), 'abc')
  })

  it('reassembles frames split across chunks and rejects an oversize frame', () => {
    const got: any[] = []
    const errors: Error[] = []
    const d = new FrameDecoder(1000, m => got.push(m), e => errors.push(e))
    const f = Buffer.concat([encodeFrame({ t: 'a' }), encodeFrame({ t: 'b' })])
    for (let i = 0; i < f.byteLength; i++) d.push(f.subarray(i, i + 1))
    assert.deepEqual(got.map(m => m.t), ['a', 'b'])
    const big = Buffer.alloc(8)
    big.writeUInt32BE(5000, 0)
    d.push(big)
    assert.equal(errors.length, 1)
  })

  it('assembles a large frame from many small chunks copying each byte at most once (linear, not quadratic)', () => {
    const bundle = new Uint8Array(8 * 1024 * 1024).fill(7)
    const frame = encodeFrame({ t: 'exec', bundle })
    const got: any[] = []
    const d = new FrameDecoder(frame.byteLength, m => got.push(m), e => { throw e })
    const chunk = 4096
    for (let off = 0; off < frame.byteLength; off += chunk) d.push(frame.subarray(off, off + chunk))
    assert.equal(got.length, 1)
    assert.equal(got[0].bundle.byteLength, bundle.byteLength)
    // a concat per chunk would copy ~frame²/(2·chunk) ≈ 8 GiB here; linear assembly copies the frame once
    assert.ok(d.copied <= frame.byteLength, `copied ${d.copied} bytes for a ${frame.byteLength}-byte frame`)
    // frames that arrive whole are not copied at all
    const d2 = new FrameDecoder(frame.byteLength, () => {}, e => { throw e })
    d2.push(Buffer.concat([encodeFrame({ t: 'a' }), encodeFrame({ t: 'b' })]))
    assert.equal(d2.copied, 0)
  })

  it('rejects garbage and bad attachment tables', () => {
    const errors: Error[] = []
    const d = new FrameDecoder(1000, () => {}, e => errors.push(e))
    d.push(Buffer.from([0, 0, 0, 6, 0, 0, 0, 2, 0x7b, 0x7d]))
    assert.equal(errors.length, 1)
    assert.throws(() => decodePayload(Buffer.concat([Buffer.from([0, 0, 0, 19]), Buffer.from('{"m":{"t":"x"},"b":[5]}')])))
  })

  it('writes the messages of one turn of the event loop in one write, in order, and each turn apart', async () => {
    const writes: Buffer[] = []
    const w = new FrameWriter(b => writes.push(b))
    const bin = new Uint8Array([1, 2, 3])
    w.send({ t: 'result', id: 1 })
    await Promise.resolve()
    w.send({ t: 'result', id: 2, data: bin })
    w.send({ t: 'idle', heap: 5 })
    assert.equal(writes.length, 0, 'nothing is written before the turn ends')
    await new Promise(resolve => setImmediate(resolve))
    assert.equal(writes.length, 1)
    const got: any[] = []
    new FrameDecoder(1000, m => got.push(m), e => { throw e }).push(writes[0])
    assert.deepEqual(got.map(m => m.id ?? m.t), [1, 2, 'idle'])
    assert.deepEqual([...got[1].data], [1, 2, 3])
    // the next turn is a write of its own; flush writes what waits at once (before an exit)
    w.send({ t: 'result', id: 3 })
    w.flush()
    assert.equal(writes.length, 2)
    await new Promise(resolve => setImmediate(resolve))
    assert.equal(writes.length, 2, 'a flushed writer writes nothing more at its scheduled turn')
  })
})

describe('sandbox/fetch broker address checks', () => {
  it('refuses private, loopback, link-local, CGNAT and mapped addresses', () => {
    for (const a of ['127.0.0.1', '10.1.2.3', '172.16.0.1', '192.168.1.1', '169.254.169.254', '100.64.0.1', '0.0.0.0', '::1', '::', 'fe80::1', 'fc00::1', '::ffff:127.0.0.1', '::ffff:169.254.169.254', '224.0.0.1', 'not-an-ip']) {
      assert.equal(isRefusedAddress(a), true, a)
    }
    for (const a of ['1.1.1.1', '93.184.216.34', '2606:4700:4700::1111']) assert.equal(isRefusedAddress(a), false, a)
  })

  it('refuses every IPv6 form that embeds a private, loopback, link-local or metadata IPv4', () => {
    const forms = {
      nat64: ['64:ff9b::a9fe:a9fe', '64:ff9b::169.254.169.254', '64:ff9b::7f00:1', '64:ff9b::a00:1'],
      nat64Local: ['64:ff9b:1::a9fe:a9fe', '64:ff9b:1:ffff::7f00:1', '64:ff9b:1::808:808'],
      compatible: ['::7f00:1', '::127.0.0.1', '::a9fe:a9fe', '::c0a8:101'],
      mapped: ['::ffff:127.0.0.1', '::ffff:7f00:1', '::ffff:a9fe:a9fe', '0:0:0:0:0:ffff:a00:1'],
      translated: ['::ffff:0:7f00:1', '::ffff:0:169.254.169.254', '0:0:0:0:ffff:0:a00:1'],
      sixToFour: ['2002:a9fe:a9fe::', '2002:7f00:1::1', '2002:c0a8:101:1::1', '2002:a00:1::'],
      teredo: [
        // client 169.254.169.254 = inverted 5601:5601; server 1.2.3.4 (public)
        '2001:0:102:304::5601:5601',
        // client 127.0.0.1 = inverted 80ff:fffe
        '2001:0:102:304:0:0:80ff:fffe',
        // server private (10.0.0.1)
        '2001:0:a00:1::f7f7:f7f7'
      ],
      v6ranges: ['::1', '::', 'fe80::1', 'fe80::1%eth0', 'fc00::1', 'fd12:3456::1', 'fec0::1', 'ff02::1', '2001:db8::1', '100::1']
    }
    for (const [kind, list] of Object.entries(forms)) {
      for (const a of list) assert.equal(isRefusedAddress(a), true, `${kind}: ${a}`)
    }
    assert.deepEqual(embeddedIPv4('2001:0:102:304::5601:5601'), ['1.2.3.4', '169.254.169.254'])
    assert.ok(embeddedIPv4('64:ff9b::a9fe:a9fe').includes('169.254.169.254'))
    assert.ok(embeddedIPv4('2002:a9fe:a9fe::1').includes('169.254.169.254'))
    // public hosts in translation prefixes stay reachable (a NAT64 network's normal case)
    for (const a of ['64:ff9b::808:808', '64:ff9b::8.8.8.8', '2002:808:808::1', '2001:0:102:304::f7f7:f7f7', '2606:4700:4700::1111']) {
      assert.equal(isRefusedAddress(a), false, a)
    }
  })

  it('enforces the subrequest count and concurrency on the host, whatever the shim says', async () => {
    let hits = 0
    let inFlight = 0
    let peak = 0
    const server = createServer((_req, res) => { hits++; peak = Math.max(peak, ++inFlight); setTimeout(() => { inFlight--; res.end('ok') }, 20) })
    await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
    const port = (server.address() as AddressInfo).port
    try {
      const fetch = fetchBroker({ maxSubrequests: 10, maxConcurrentSubrequests: 3 }, { addressFilter: anyAddress }).forExecution([`127.0.0.1:${port}`], Date.now() + 10_000)
      const req = { method: 'GET', url: `http://127.0.0.1:${port}/`, headers: [] as Array<[string, string]>, body: new Uint8Array(0) }
      const results = await Promise.allSettled(Array.from({ length: 40 }, async () => await fetch(req)))
      assert.equal(results.filter(r => r.status === 'fulfilled').length, 10)
      assert.match(String((results.find(r => r.status === 'rejected') as PromiseRejectedResult).reason.message), /at most 10 subrequests/)
      assert.equal(hits, 10)
      assert.ok(peak <= 3, `peak ${peak}`)
      // the production filter refuses the same loopback server
      const prod = fetchBroker().forExecution([`127.0.0.1:${port}`], Date.now() + 10_000)
      await assert.rejects(prod(req), /private or reserved/)
      const v6 = fetchBroker().forExecution(['[64:ff9b::7f00:1]'], Date.now() + 10_000)
      await assert.rejects(v6({ ...req, url: 'http://[64:ff9b::7f00:1]/' }), /private or reserved/)
    } finally {
      server.close()
    }
  })

  it('matches hosts, ports and wildcards on the allow-list', () => {
    assert.equal(hostAllowed('api.example.com', '443', ['api.example.com']), true)
    assert.equal(hostAllowed('api.example.com', '443', ['*.example.com']), true)
    assert.equal(hostAllowed('example.com', '443', ['*.example.com']), false)
    assert.equal(hostAllowed('evil-example.com', '443', ['*.example.com']), false)
    assert.equal(hostAllowed('127.0.0.1', '8080', ['127.0.0.1:8080']), true)
    assert.equal(hostAllowed('127.0.0.1', '8081', ['127.0.0.1:8080']), false)
    assert.equal(hostAllowed('other.com', '443', []), false)
  })
})

describe('sandbox host timeout: starved is not hung', () => {
  it('kills a spinning or blocked execution at its limit, and gives a starved one more time until its CPU reaches the limit or the deadline nears', () => {
    // spinning: used its CPU budget
    assert.equal(hostTimeoutVerdict({ wallMs: 1500, waitedMs: 100, cpuMs: 1000, timeoutMs: 1000, leftMs: 10_000 }), 0)
    // blocked (Atomics.wait, a sync read): little CPU, but it did not wait for one either
    assert.equal(hostTimeoutVerdict({ wallMs: 1500, waitedMs: 50, cpuMs: 5, timeoutMs: 1000, leftMs: 10_000 }), 0)
    // starved by a loaded machine: waited for a CPU most of the time, used little
    assert.equal(hostTimeoutVerdict({ wallMs: 1500, waitedMs: 1200, cpuMs: 200, timeoutMs: 1000, leftMs: 10_000 }), 800)
    // never past the job's deadline
    assert.equal(hostTimeoutVerdict({ wallMs: 1500, waitedMs: 1200, cpuMs: 200, timeoutMs: 1000, leftMs: 300 }), 300)
    assert.equal(hostTimeoutVerdict({ wallMs: 1500, waitedMs: 1200, cpuMs: 200, timeoutMs: 1000, leftMs: 0 }), 0)
    // at most max(1 s, timeoutMs) more in all: even a starved spinner ends by twice its limit
    assert.equal(hostTimeoutVerdict({ wallMs: 2300, waitedMs: 2000, cpuMs: 300, timeoutMs: 1000, leftMs: 10_000, extendedMs: 800 }), 200)
    assert.equal(hostTimeoutVerdict({ wallMs: 2500, waitedMs: 2200, cpuMs: 300, timeoutMs: 1000, leftMs: 10_000, extendedMs: 1000 }), 0)
    // no cgroup figures: the wall-clock rule as before
    assert.equal(hostTimeoutVerdict({ wallMs: 1500, timeoutMs: 1000, leftMs: 10_000 }), 0)
  })
})

describe('sandbox: whose fault a time limit is', () => {
  const timings = { queueMs: 0, execMs: 0, sandboxMs: 0 }
  const limited = (code: 'LIMIT_TIMEOUT' | 'LIMIT_CPU', measured: number, configured: number) => ({ error: limitError(code, code === 'LIMIT_CPU' ? 'cpuMs' : 'timeoutMs', measured, configured), logs: '', logsTruncated: false, timings })

  it('a time limit hit with less time than the function\'s timeoutMs (the deadline cut it) is DEADLINE_EXCEEDED; the function\'s own limit stays its own', () => {
    // 1 ms given of a configured 500: the wait for a boot used the rest of the deadline
    assert.equal(deadlineCut(limited('LIMIT_TIMEOUT', 6, 1), 500, 1).error?.code, 'DEADLINE_EXCEEDED')
    assert.equal(deadlineCut(limited('LIMIT_CPU', 40, 30), 500, 30).error?.code, 'DEADLINE_EXCEEDED')
    // given the whole timeoutMs: the function's limit
    assert.equal(deadlineCut(limited('LIMIT_TIMEOUT', 510, 500), 500, 500).error?.code, 'LIMIT_TIMEOUT')
    // over its own configured limit anyway (a spinning loop measured past 500 ms of CPU)
    assert.equal(deadlineCut(limited('LIMIT_CPU', 900, 300), 500, 300).error?.code, 'LIMIT_CPU')
    // other errors are untouched
    const thrown = { error: wireError('FUNCTION_ERROR'), logs: '', logsTruncated: false, timings }
    assert.equal(deadlineCut(thrown, 500, 1), thrown)
  })

  it('a job ended by its caller is DEADLINE_EXCEEDED once its deadline passed, else SANDBOX_INFRA "aborted"', () => {
    assert.equal(abortedError({ deadline: Date.now() - 1 }).code, 'DEADLINE_EXCEEDED')
    assert.deepEqual(abortedError({ deadline: Date.now() + 60_000 }), wireError('SANDBOX_INFRA', { reason: 'aborted' }))
  })
})
