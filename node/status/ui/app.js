// The status page's script (served by node/status/page.ts). Every value from the node is put in
// the page with textContent, never as markup: status fields are data, not HTML.
const MAX_POINTS = 300
const data = { t: [], rps: [], p50: [], p95: [], p99: [] }
const $ = id => document.getElementById(id)

function el (tag, text, className) {
  const e = document.createElement(tag)
  if (text !== undefined && text !== null) e.textContent = String(text)
  if (className) e.className = className
  return e
}
function short (s, n = 10) {
  s = String(s ?? '')
  return s.length > n + 4 ? `${s.slice(0, n)}…${s.slice(-4)}` : s
}
function row (cells) {
  const tr = document.createElement('tr')
  for (const c of cells) {
    if (c instanceof Node) { const td = document.createElement('td'); td.append(c); tr.append(td) } else tr.append(el('td', c))
  }
  return tr
}

// charts: uPlot when the node serves it, else a small canvas plotter
function lineChart (container, series) {
  if (typeof window.uPlot === 'function') {
    const opts = {
      width: Math.max(300, container.clientWidth || 500),
      height: 220,
      series: [{}, ...series.map(s => ({ label: s.label, stroke: s.color, width: 2, spanGaps: false }))],
      axes: [{}, { size: 50 }],
      scales: { y: { range: (u, min, max) => [0, Math.max(1, max ?? 1)] } }
    }
    const u = new window.uPlot(opts, [[], ...series.map(() => [])], container)
    new ResizeObserver(() => u.setSize({ width: Math.max(300, container.clientWidth), height: 220 })).observe(container)
    return { setData: d => u.setData(d), data: () => u.data }
  }
  const canvas = document.createElement('canvas')
  canvas.width = Math.max(300, container.clientWidth || 500)
  canvas.height = 220
  container.append(canvas)
  let current = [[], ...series.map(() => [])]
  return {
    data: () => current,
    setData (d) {
      current = d
      const g = canvas.getContext('2d')
      g.clearRect(0, 0, canvas.width, canvas.height)
      let max = 1
      for (const ys of d.slice(1)) for (const y of ys) if (y !== null && y > max) max = y
      series.forEach((s, k) => {
        g.strokeStyle = s.color
        g.beginPath()
        d[k + 1].forEach((y, i) => {
          if (y === null) return
          const x = (i / Math.max(1, d[0].length - 1)) * canvas.width
          g.lineTo(x, canvas.height - (y / max) * (canvas.height - 10))
        })
        g.stroke()
      })
    }
  }
}

const rpsChart = lineChart($('chart-rps'), [{ label: 'req/s', color: '#0f766e' }])
const latencyChart = lineChart($('chart-latency'), [
  { label: 'p50', color: '#2563eb' }, { label: 'p95', color: '#d97706' }, { label: 'p99', color: '#dc2626' }
])
// what tests and curious operators can read: the charts' own data
window.peerhostStatus = { rps: () => rpsChart.data(), latency: () => latencyChart.data() }

function addPoint (p) {
  const last = data.t.length - 1
  if (last >= 0 && data.t[last] === p.t) {
    data.rps[last] = p.rps; data.p50[last] = p.p50; data.p95[last] = p.p95; data.p99[last] = p.p99
  } else if (last < 0 || p.t > data.t[last]) {
    data.t.push(p.t); data.rps.push(p.rps); data.p50.push(p.p50); data.p95.push(p.p95); data.p99.push(p.p99)
  }
  while (data.t.length > MAX_POINTS) for (const k of Object.keys(data)) data[k].shift()
}
function redraw () {
  rpsChart.setData([data.t, data.rps])
  latencyChart.setData([data.t, data.p50, data.p95, data.p99])
}

function renderNode (s) {
  if (typeof s.role === 'string' && s.role !== $('role').textContent) {
    $('role').textContent = s.role
    document.title = `PeerHost ${s.role} status`
  }
  const dl = $('node')
  const items = []
  for (const key of ['role', 'peerId', 'address', 'connections', 'executor', 'running']) {
    if (s[key] === undefined || s[key] === null || typeof s[key] === 'object') continue
    items.push(el('dt', key), el('dd', s[key]))
  }
  dl.replaceChildren(...items)
}

function renderWorkers (s) {
  const workers = Array.isArray(s.workers) ? s.workers : null
  $('workers-empty').hidden = workers !== null
  $('workers').hidden = workers === null
  $('workers-count').textContent = workers === null ? '' : `(${workers.length})`
  if (workers === null) return
  $('workers').tBodies[0].replaceChildren(...workers.map(w => {
    const load = document.createElement('span')
    const meter = document.createElement('meter')
    meter.min = 0; meter.max = Number(w.capacity) || 1; meter.value = Number(w.load) || 0
    load.append(meter, ` ${w.load ?? '?'} / ${w.capacity ?? '?'}`)
    const r = row([short(w.peerId, 12), short(w.address), load, w.inflight ?? '', w.latencyMs === null || w.latencyMs === undefined ? '—' : `${w.latencyMs} ms`, Array.isArray(w.warm) ? w.warm.length : '', w.advertAgeMs === undefined ? '' : `${Math.round(w.advertAgeMs / 1000)} s`])
    r.dataset.peer = String(w.peerId ?? '')
    r.cells[0].className = 'mono'; r.cells[1].className = 'mono'
    return r
  }))
}

function decodeReceipt (b64) {
  try {
    const json = atob(String(b64).replace(/-/g, '+').replace(/_/g, '/'))
    return JSON.parse(json)
  } catch { return null }
}

function renderJobs (s) {
  const jobs = Array.isArray(s.recentJobs) ? s.recentJobs : []
  $('jobs').tBodies[0].replaceChildren(...jobs.map(j => {
    let receipt = '—'
    const r = j.receipt === undefined ? null : decodeReceipt(j.receipt)
    if (r !== null) {
      const d = document.createElement('details')
      d.append(el('summary', `signed by ${short(r.worker)} · fee ${r.fee ?? '?'}`), el('pre', JSON.stringify(r, null, 2)))
      receipt = d
    } else if (j.worker === 'chain') receipt = 'chain (on-chain result)'
    const tr = row([String(j.at ?? '').slice(11, 19), j.function, j.status, short(j.worker, 12), j.attempts, j.ms, receipt])
    tr.cells[2].className = `s${String(j.status)[0]}`
    return tr
  }))
}

function renderProjects (s) {
  const fns = Array.isArray(s.functions) ? s.functions : []
  $('projects').tBodies[0].replaceChildren(...fns.map(f => {
    const [, wallet, project, name] = String(f.path ?? '').split('/')
    const tr = row([short(wallet), project ?? '', name ?? '', short(f.bundleCid, 14)])
    tr.cells[0].className = 'mono'; tr.cells[3].className = 'mono'
    return tr
  }))
}

// a gateway with a chain checks the settlement batches naming it (node/settlement/checker.ts)
function renderSettlement (s) {
  const st = s.settlement !== null && typeof s.settlement === 'object' ? s.settlement : null
  $('settlement-section').hidden = st === null
  if (st === null) return
  $('settlement-count').textContent = `(${st.checked ?? 0} checked: ${st.ok ?? 0} ok, ${st.faulty ?? 0} faulty, ${st.unverifiable ?? 0} unverifiable)`
  const recent = Array.isArray(st.recent) ? st.recent : []
  $('settlement').tBodies[0].replaceChildren(...recent.map(b => {
    const issued = b.issued !== null && typeof b.issued === 'object' ? `${b.issued.count ?? '?'} / ${b.issued.total ?? '?'}` : ''
    const proof = b.proof === null || b.proof === undefined ? '—' : `${b.proof}${b.tx ? ` (${short(b.tx)})` : ''}`
    const tr = row([short(b.batchId, 14), short(b.worker), b.epoch, b.count, b.total, issued, b.reason ? `${b.verdict}: ${b.reason}` : b.verdict, proof])
    tr.cells[0].className = 'mono'; tr.cells[1].className = 'mono'
    tr.cells[6].className = b.verdict === 'ok' ? 's2' : b.verdict === 'faulty' ? 's5' : 's4'
    return tr
  }))
  // requests and metered WebSocket sessions apart (a session at its latest cumulative fee)
  const fees = Array.isArray(st.fees) ? st.fees : []
  $('fees').tBodies[0].replaceChildren(...fees.map(f => {
    const tr = row([short(f.projectId, 14), f.epoch, f.requests?.count ?? 0, f.requests?.fees ?? '0', f.sessions?.count ?? 0, f.sessions?.fees ?? '0'])
    tr.cells[0].className = 'mono'
    return tr
  }))
}

function render (s) {
  if (s === null || typeof s !== 'object') return
  renderNode(s); renderWorkers(s); renderJobs(s); renderProjects(s); renderSettlement(s)
}

const live = $('live')
const source = new EventSource('/_peerhost/events')
source.addEventListener('snapshot', e => {
  const msg = JSON.parse(e.data)
  for (const k of Object.keys(data)) data[k] = []
  for (const p of msg.series) addPoint(p)
  redraw(); render(msg.status)
  live.textContent = 'live'; live.className = 'badge on'
})
source.addEventListener('tick', e => {
  const msg = JSON.parse(e.data)
  addPoint(msg.point); redraw(); render(msg.status)
  live.textContent = 'live'; live.className = 'badge on'
})
source.addEventListener('error', () => { live.textContent = 'reconnecting…'; live.className = 'badge off' })
