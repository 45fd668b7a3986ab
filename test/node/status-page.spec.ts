/** node/status: the series the charts draw, and the bound on open event streams. */
import assert from 'node:assert/strict'
import { statusPage } from '../../node/status/index.ts'

describe('node/status: the status page', () => {
  it('buckets requests per second with nearest-rank percentiles, ending at the last complete second', () => {
    const page = statusPage({ seriesSeconds: 5 }, { status: () => ({ role: 'gateway' }), chartLibrary: null })
    const now = 1_000_000_000 // ms, on a second boundary
    for (let i = 1; i <= 100; i++) page.observe(i, now - 2000 + i) // 100 requests in second t-2
    page.observe(7, now - 1) // one in second t-1
    page.observe(999, now + 10) // the current second is not complete: not charted yet
    page.observe(5, now - 60_000) // older than the window
    const s = page.series(now)
    assert.equal(s.length, 5)
    assert.deepEqual(s.map(p => p.t), [999_995, 999_996, 999_997, 999_998, 999_999])
    assert.deepEqual(s.map(p => p.rps), [0, 0, 0, 100, 1])
    assert.deepEqual([s[3].p50, s[3].p95, s[3].p99], [50, 95, 99])
    assert.deepEqual([s[4].p50, s[4].p99], [7, 7])
    assert.equal(s[0].p50, null)
  })

  it('keeps a bounded ring of samples', () => {
    const page = statusPage({ seriesSeconds: 2, maxSamples: 10 }, { status: () => ({}), chartLibrary: null })
    const now = 2_000_000_000
    for (let i = 0; i < 25; i++) page.observe(1, now - 500)
    assert.equal(page.series(now)[1].rps, 10)
  })

  it('attack: opening more event streams than allowed gets 503, and closing one frees a slot', async () => {
    const page = statusPage({ maxStreams: 2, tickMs: 50 }, { status: () => ({ role: 'worker' }), chartLibrary: null })
    const events = (): Response => page.handle(new Request('http://n/_peerhost/events'))
    const a = events()
    const b = events()
    assert.equal(a.status, 200)
    assert.equal(b.status, 200)
    const refused = events()
    assert.equal(refused.status, 503)
    assert.equal((await refused.json() as any).error.code, 'BUSY')
    // a stream gets a snapshot, then ticks
    const reader = a.body!.getReader()
    let text = ''
    while (!text.includes('event: tick')) text += new TextDecoder().decode((await reader.read()).value)
    assert.match(text, /event: snapshot\ndata: \{"role":"node","series":\[/)
    await reader.cancel()
    assert.equal(events().status, 200)
    page.close()
  })

  it('serves the page with a strict CSP, its own files, and 404 JSON for anything else', async () => {
    const page = statusPage({}, { status: () => ({}), chartLibrary: { js: 'window.uPlot = function () {}', css: '' } })
    const html = page.handle(new Request('http://n/_peerhost/'))
    assert.match(html.headers.get('content-security-policy') ?? '', /script-src 'self'/)
    assert.match(await html.text(), /<script src="\/_peerhost\/ui\/uplot.js"><\/script>/)
    assert.equal(await page.handle(new Request('http://n/_peerhost/ui/uplot.js')).text(), 'window.uPlot = function () {}')
    const missing = page.handle(new Request('http://n/_peerhost/ui/../../etc/passwd'))
    assert.equal(missing.status, 404)
    assert.equal(page.owns('/_peerhost/status'), false)
    assert.equal(page.handle(new Request('http://n/_peerhost/', { method: 'POST' })).status, 405)
  })
})
