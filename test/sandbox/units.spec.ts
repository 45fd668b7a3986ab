import assert from 'node:assert/strict'
import { buildOciSpec, hostAllowed, isRefusedAddress, runscGlobalArgs } from '#sandbox'
import { decodePayload, encodeFrame, FrameDecoder } from '../../sandbox/runtime/channel.ts'

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
    assert.equal(spec.process.args.at(-1), '/peerhost/shim.ts')
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

  it('rejects garbage and bad attachment tables', () => {
    const errors: Error[] = []
    const d = new FrameDecoder(1000, () => {}, e => errors.push(e))
    d.push(Buffer.from([0, 0, 0, 6, 0, 0, 0, 2, 0x7b, 0x7d]))
    assert.equal(errors.length, 1)
    assert.throws(() => decodePayload(Buffer.concat([Buffer.from([0, 0, 0, 19]), Buffer.from('{"m":{"t":"x"},"b":[5]}')])))
  })
})

describe('sandbox/fetch broker address checks', () => {
  it('refuses private, loopback, link-local, CGNAT and mapped addresses', () => {
    for (const a of ['127.0.0.1', '10.1.2.3', '172.16.0.1', '192.168.1.1', '169.254.169.254', '100.64.0.1', '0.0.0.0', '::1', '::', 'fe80::1', 'fc00::1', '::ffff:127.0.0.1', '::ffff:169.254.169.254', '224.0.0.1', 'not-an-ip']) {
      assert.equal(isRefusedAddress(a), true, a)
    }
    for (const a of ['1.1.1.1', '93.184.216.34', '2606:4700:4700::1111']) assert.equal(isRefusedAddress(a), false, a)
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
