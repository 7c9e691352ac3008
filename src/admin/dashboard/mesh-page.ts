/**
 * The control plane's dashboard (`meshgate control`, admin port): the **Mesh** view draws the mesh as
 * Kiali's workload graph does (workloads as circles, services as triangles, `unknown` callers;
 * each edge labelled with its request rate, error ratio, p99 and a lock when it is mTLS; nodes and
 * edges coloured by health) from `/mesh/graph`, polled every 2 s; the **Proxies** view lists the
 * connected sidecars from `/debug/proxy-status` (istioctl proxy-status). One static page and one
 * script, no framework, as the gateway's dashboard (page.ts). Node positions come from the server
 * (control/mesh-graph/layout.ts), so the drawing is the same in every browser.
 */

export const MESH_DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>meshgate control · mesh</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
  :root { --fg: #1d2330; --muted: #667085; --line: #e4e7ec; --ok: #12805c; --bad: #c4320a; --warn: #b54708; --idle: #98a2b3; --accent: #2e5aac; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 13px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); background: #f8f9fb; }
  header { display: flex; gap: 24px; align-items: baseline; padding: 12px 20px; background: #1d2330; color: #fff; }
  header h1 { margin: 0; font-size: 18px; }
  header .meta { color: #c8cdd6; }
  nav a { color: #c8cdd6; margin-right: 14px; text-decoration: none; cursor: pointer; }
  nav a.active { color: #fff; font-weight: 600; border-bottom: 2px solid #fff; }
  main { padding: 12px 20px 40px; }
  section { background: #fff; border: 1px solid var(--line); border-radius: 6px; margin: 12px 0; padding: 10px 14px; overflow-x: auto; }
  h2 { font-size: 14px; margin: 2px 0 8px; }
  table { width: 100%; border-collapse: collapse; }
  th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
  th { color: var(--muted); font-weight: 600; white-space: nowrap; }
  td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
  .muted { color: var(--muted); } .ok { color: var(--ok); } .bad { color: var(--bad); font-weight: 600; } .warn { color: var(--warn); }
  .legend span { margin-right: 14px; }
  svg text { font: 12px system-ui, sans-serif; fill: var(--fg); }
  svg .node-name { font-weight: 600; }
  svg .node-ns { fill: var(--muted); font-size: 11px; }
  svg .edge path { fill: none; stroke-width: 2; }
  svg .edge-label { font-size: 11px; paint-order: stroke; stroke: #fff; stroke-width: 4px; stroke-linejoin: round; }
  svg .edge-label .err-degraded { fill: var(--warn); font-weight: 600; } svg .edge-label .err-failing { fill: var(--bad); font-weight: 600; }
  svg .healthy { stroke: var(--ok); } svg .degraded { stroke: var(--warn); } svg .failing { stroke: var(--bad); } svg .idle { stroke: var(--idle); }
  svg .shape { fill: #fff; stroke-width: 3; }
  svg .shape.nosidecar { stroke-dasharray: 5 3; }
  .hidden { display: none; }
</style>
</head>
<body>
<header><h1>meshgate control</h1><nav><a data-view="mesh" class="active">Mesh</a><a data-view="proxies">Proxies</a></nav><span class="meta" id="basis">loading…</span><span class="meta" id="updated"></span></header>
<main>
<div id="view-mesh">
<section><h2>Mesh</h2>
<div class="legend muted"><span>● workload</span><span>▲ service</span><span>dashed: no sidecar</span><span><svg width="10" height="12" viewBox="0 0 10 12"><path d="M2,5 V3.5 a3,3 0 0 1 6,0 V5" fill="none" stroke="#344054" stroke-width="1.5"/><rect x="0" y="5" width="10" height="7" rx="1.5" fill="#344054"/></svg> mTLS</span><span class="ok">healthy</span><span class="warn">degraded ≥ 0.1 % errors</span><span class="bad">failing ≥ 20 % errors</span></div>
<div id="graph-empty" class="muted">No traffic in the window yet.</div>
<svg id="mesh-graph" xmlns="http://www.w3.org/2000/svg" width="0" height="0"></svg>
</section>
<section><h2>Edges</h2><table id="edges"><thead><tr><th>Source</th><th>Destination</th><th>Protocol</th><th class="num">rate</th><th class="num">errors</th><th class="num">p99 ms</th><th>mTLS</th><th>Services</th><th>Reporter</th></tr></thead><tbody></tbody></table></section>
<section><h2>Scraped sidecars</h2><table id="targets"><thead><tr><th>Proxy</th><th>Address</th><th>Workload</th><th class="num">Scrapes kept</th><th>Last scrape</th><th>State</th></tr></thead><tbody></tbody></table></section>
</div>
<div id="view-proxies" class="hidden">
<section><h2>Connected proxies</h2><table id="proxies"><thead><tr><th>Name</th><th>State</th><th>Sent</th><th>Running</th><th>Identity</th><th>Pod IPs</th><th>Last NACK</th></tr></thead><tbody></tbody></table></section>
</div>
</main>
<script src="/dashboard/mesh.js"></script>
</body>
</html>
`;

export const MESH_DASHBOARD_JS = String.raw`'use strict';
(function () {
  var SVG = 'http://www.w3.org/2000/svg';
  var R = 26;
  var view = location.hash === '#proxies' ? 'proxies' : 'mesh';
  var polls = 0;

  function el(tag, attrs, children) {
    var e = document.createElement(tag);
    if (attrs) for (var k in attrs) {
      if (k === 'text') e.textContent = attrs[k]; else if (k === 'cls') e.className = attrs[k]; else e.setAttribute(k, attrs[k]);
    }
    (children || []).forEach(function (c) { if (c != null) e.appendChild(typeof c === 'string' ? document.createTextNode(c) : c); });
    return e;
  }
  function sv(tag, attrs, children) {
    var e = document.createElementNS(SVG, tag);
    if (attrs) for (var k in attrs) { if (k === 'text') e.textContent = attrs[k]; else e.setAttribute(k, attrs[k]); }
    (children || []).forEach(function (c) { if (c != null) e.appendChild(c); });
    return e;
  }
  function fill(id, rows, cols) {
    var body = document.querySelector('#' + id + ' tbody');
    body.replaceChildren.apply(body, rows.length ? rows : [el('tr', null, [el('td', { colspan: String(cols), cls: 'muted', text: 'none' })])]);
  }
  function fmtRate(r) { return r == null ? '–' : (r < 10 ? r.toFixed(2) : r.toFixed(1)); }
  function fmtBytes(r) {
    if (r == null) return '–';
    if (r >= 1048576) return (r / 1048576).toFixed(1) + ' MB/s';
    if (r >= 1024) return (r / 1024).toFixed(1) + ' kB/s';
    return r.toFixed(0) + ' B/s';
  }
  function fmtPct(x) { return x == null ? '–' : (x * 100).toFixed(1) + '%'; }
  function fmtMs(x) { return x == null ? '–' : x.toFixed(1); }
  function lockText(e) { return e.mtls === 'all' ? 'mTLS' : e.mtls === 'some' ? 'mTLS ' + e.mtlsPercent + '%' : ''; }
  // Kiali's lock, drawn (no emoji font needed): after the label's text, with the share when partial.
  function lockIcon(label, e) {
    var box = label.getBBox();
    var x = box.x + box.width + 4, y = box.y + box.height / 2 - 6;
    var g = sv('g', { 'class': 'lock', transform: 'translate(' + x + ',' + y + ')', 'data-mtls-percent': String(e.mtlsPercent) }, [
      sv('title', { text: 'mTLS: ' + e.mtlsPercent + '% of the traffic (' + e.mtlsFrom + ' reports)' }),
      sv('path', { d: 'M2,5 V3.5 a3,3 0 0 1 6,0 V5', fill: 'none', stroke: '#344054', 'stroke-width': '1.5' }),
      sv('rect', { x: '0', y: '5', width: '10', height: '7', rx: '1.5', fill: '#344054' }),
      e.mtls === 'some' ? sv('text', { 'class': 'edge-label', x: '13', y: '11', text: e.mtlsPercent + '%' }) : null,
    ]);
    label.parentNode.appendChild(g);
  }
  function short(id) { return id === 'unknown' ? 'unknown' : id.split('/').slice(2).join('/'); }

  function nodeShape(n) {
    var cls = 'shape ' + n.health + (n.kind === 'workload' && !n.sidecar ? ' nosidecar' : '');
    if (n.kind === 'service') return sv('polygon', { 'class': cls, points: n.x + ',' + (n.y - R) + ' ' + (n.x + R) + ',' + (n.y + R * 0.8) + ' ' + (n.x - R) + ',' + (n.y + R * 0.8) });
    return sv('circle', { 'class': cls, cx: n.x, cy: n.y, r: R });
  }

  function drawGraph(g) {
    var svg = document.getElementById('mesh-graph');
    document.getElementById('graph-empty').classList.toggle('hidden', g.nodes.length > 0);
    svg.setAttribute('width', g.nodes.length ? g.width : 0);
    svg.setAttribute('height', g.nodes.length ? g.height : 0);
    svg.setAttribute('viewBox', '0 0 ' + g.width + ' ' + g.height);
    var byId = {};
    g.nodes.forEach(function (n) { byId[n.id] = n; });
    var defs = sv('defs', null, ['healthy', 'degraded', 'failing', 'idle'].map(function (h) {
      return sv('marker', { id: 'arrow-' + h, viewBox: '0 0 10 10', refX: '10', refY: '5', markerWidth: '7', markerHeight: '7', orient: 'auto-start-reverse' }, [sv('path', { d: 'M0,0 L10,5 L0,10 z', 'class': h, style: 'fill: currentColor', fill: h === 'healthy' ? '#12805c' : h === 'degraded' ? '#b54708' : h === 'failing' ? '#c4320a' : '#98a2b3' })]);
    }));
    // Edges between the same two nodes (http and tcp, or both directions) are fanned out.
    var pairCount = {};
    var edges = g.edges.map(function (e) {
      var k = [e.source, e.target].sort().join('|');
      var i = pairCount[k] = (pairCount[k] || 0) + 1;
      var a = byId[e.source], b = byId[e.target];
      var dx = b.x - a.x, dy = b.y - a.y, len = Math.max(1, Math.sqrt(dx * dx + dy * dy));
      var ux = dx / len, uy = dy / len;
      var x1 = a.x + ux * R, y1 = a.y + uy * R, x2 = b.x - ux * (R + 2), y2 = b.y - uy * (R + 2);
      // Fanned out when several edges join two nodes; bent around the layers an edge skips, and when it goes back left.
      var skipped = Math.max(0, Math.round(Math.abs(dx) / 300) - 1);
      var bend = (i - 1) * 40 * (e.source < e.target ? 1 : -1) + (a.x >= b.x ? 60 : 0) + skipped * 150;
      var mx = (x1 + x2) / 2 - uy * bend, my = (y1 + y2) / 2 + ux * bend;
      var d = e.source === e.target
        ? 'M' + (a.x - 10) + ',' + (a.y - R) + ' C' + (a.x - 50) + ',' + (a.y - R - 70) + ' ' + (a.x + 50) + ',' + (a.y - R - 70) + ' ' + (a.x + 10) + ',' + (a.y - R)
        : 'M' + x1 + ',' + y1 + ' Q' + mx + ',' + my + ' ' + x2 + ',' + y2;
      var lx = e.source === e.target ? a.x : (x1 + 2 * mx + x2) / 4, ly = e.source === e.target ? a.y - R - 55 : (y1 + 2 * my + y2) / 4 + (skipped > 0 ? 16 : -6);
      var label;
      if (e.http) {
        label = sv('text', { 'class': 'edge-label', x: lx, y: ly, 'text-anchor': 'middle' }, [
          sv('tspan', { 'class': 'rate', text: (e.http.rate == null ? e.http.requests + ' req' : fmtRate(e.http.rate) + ' rps') }),
          sv('tspan', { 'class': 'err err-' + e.health, text: ' · ' + fmtPct(e.http.errorRatio) + ' err' }),
          sv('tspan', { 'class': 'p99', text: ' · p99 ' + (e.http.p99Ms == null ? '–' : fmtMs(e.http.p99Ms) + ' ms') }),
        ]);
      } else {
        var rate = e.tcp.sentBytesRate == null ? null : e.tcp.sentBytesRate + e.tcp.receivedBytesRate;
        label = sv('text', { 'class': 'edge-label', x: lx, y: ly, 'text-anchor': 'middle' }, [
          sv('tspan', { 'class': 'rate', text: rate == null ? (e.tcp.sentBytes + e.tcp.receivedBytes) + ' B' : fmtBytes(rate) }),
          sv('tspan', { 'class': 'proto', text: ' tcp' }),
        ]);
      }
      return sv('g', { 'class': 'edge', 'data-edge': e.id, 'data-source': e.source, 'data-target': e.target, 'data-protocol': e.protocol, 'data-mtls': e.mtls, 'data-health': e.health }, [
        sv('title', { text: short(e.source) + ' → ' + short(e.target) + ' (' + e.protocol + ', ' + e.services.join(', ') + ')' }),
        sv('path', { d: d, 'class': e.health + (e.protocol === 'tcp' ? ' tcp' : ''), stroke: e.health === 'healthy' ? '#12805c' : e.health === 'degraded' ? '#b54708' : e.health === 'failing' ? '#c4320a' : '#98a2b3', 'stroke-dasharray': e.protocol === 'tcp' ? '6 4' : '', 'marker-end': 'url(#arrow-' + e.health + ')' }),
        label,
      ]);
    });
    var nodes = g.nodes.map(function (n) {
      return sv('g', { 'class': 'node', 'data-node': n.id, 'data-kind': n.kind, 'data-health': n.health, 'data-sidecar': String(n.sidecar) }, [
        sv('title', { text: n.id + (n.inbound.requests ? ' · in ' + fmtRate(n.inbound.rate) + ' rps, ' + fmtPct(n.inbound.errorRatio) + ' errors' : '') }),
        nodeShape(n),
        sv('text', { 'class': 'node-name', x: n.x, y: n.y + R + 16, 'text-anchor': 'middle', text: n.name }),
        n.kind === 'unknown' ? null : sv('text', { 'class': 'node-ns', x: n.x, y: n.y + R + 30, 'text-anchor': 'middle', text: n.namespace }),
      ]);
    });
    svg.replaceChildren.apply(svg, [defs].concat(edges, nodes));
    // Locks need the labels' rendered size.
    g.edges.forEach(function (e, i) { if (e.mtls === 'all' || e.mtls === 'some') lockIcon(edges[i].querySelector('.edge-label'), e); });
    svg.setAttribute('data-polls', String(polls));
  }

  function render(g) {
    document.getElementById('basis').textContent = g.error ? g.error : g.basis === 'window' ? 'last ' + g.windowSeconds + ' s (scrape every ' + g.intervalSeconds + ' s)' : 'cumulative since the sidecars started (one scrape so far)';
    document.getElementById('updated').textContent = 'updated ' + new Date().toLocaleTimeString();
    drawGraph(g);
    fill('edges', g.edges.map(function (e) {
      var errCls = e.health === 'failing' ? 'num bad' : e.health === 'degraded' ? 'num warn' : 'num';
      return el('tr', { cls: 'edge-row', 'data-edge': e.id }, [
        el('td', { text: short(e.source) }), el('td', { text: short(e.target) }), el('td', { text: e.protocol }),
        el('td', { cls: 'num rate', text: e.http ? fmtRate(e.http.rate) + ' rps' : fmtBytes(e.tcp.sentBytesRate == null ? null : e.tcp.sentBytesRate + e.tcp.receivedBytesRate) }),
        el('td', { cls: errCls + ' err', text: e.http ? fmtPct(e.http.errorRatio) : '' }),
        el('td', { cls: 'num p99', text: e.http ? fmtMs(e.http.p99Ms) + (e.http.p99Basis === 'cumulative' ? ' (cumulative)' : '') : '' }),
        el('td', { cls: 'mtls', text: e.mtls === 'unknown' ? '?' : e.mtls === 'none' ? 'no' : lockText(e) }),
        el('td', { cls: 'muted', text: e.services.join(', ') }), el('td', { cls: 'muted', text: e.reporter }),
      ]);
    }), 9);
    fill('targets', g.targets.map(function (t) {
      return el('tr', { cls: 'target-row' }, [el('td', { text: t.name }), el('td', { text: t.address + ':' + t.port }), el('td', { text: t.workload || '–' }), el('td', { cls: 'num', text: String(t.scrapes) }),
        el('td', { text: t.lastScrapeAt ? new Date(t.lastScrapeAt).toLocaleTimeString() : '–' }),
        el('td', { cls: t.lastError ? 'bad' : t.connected ? 'ok' : 'muted', text: t.lastError ? 'error: ' + t.lastError : t.connected ? 'ok' : 'disconnected' })]);
    }), 6);
  }

  function renderProxies(p) {
    fill('proxies', (p.proxies || []).map(function (x) {
      return el('tr', { cls: 'proxy-row', 'data-proxy': x.name }, [el('td', { text: x.name }), el('td', { cls: x.state === 'SYNCED' ? 'ok' : x.state === 'ERROR' ? 'bad' : 'warn', text: x.state }),
        el('td', null, [el('code', { text: x.sentVersion ? x.sentVersion.slice(0, 12) : '–' })]), el('td', null, [el('code', { text: x.ackedVersion ? x.ackedVersion.slice(0, 12) : '–' })]),
        el('td', { text: x.identity }), el('td', { text: (x.proxy.podIps || []).join(', ') }), el('td', { cls: 'muted', text: x.lastNack ? x.lastNack.version.slice(0, 12) + ': ' + x.lastNack.error : '' })]);
    }), 7);
  }

  function show(v) {
    view = v;
    document.querySelectorAll('nav a').forEach(function (a) { a.classList.toggle('active', a.getAttribute('data-view') === v); });
    document.getElementById('view-mesh').classList.toggle('hidden', v !== 'mesh');
    document.getElementById('view-proxies').classList.toggle('hidden', v !== 'proxies');
  }
  document.querySelectorAll('nav a').forEach(function (a) { a.addEventListener('click', function () { location.hash = a.getAttribute('data-view'); show(a.getAttribute('data-view')); }); });
  show(view);

  function poll() {
    Promise.all([fetch('/mesh/graph').then(function (r) { return r.json(); }), fetch('/debug/proxy-status').then(function (r) { return r.json(); })])
      .then(function (res) { polls++; render(res[0]); renderProxies(res[1]); document.body.setAttribute('data-loaded', 'true'); })
      .catch(function (e) { document.getElementById('updated').textContent = 'admin unreachable: ' + e.message; })
      .finally(function () { setTimeout(poll, 2000); });
  }
  poll();
})();
`;
