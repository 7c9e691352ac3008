/**
 * The dashboard: one static page and one script, no framework. The script polls `/api/overview`
 * (what is configured) and `/api/stats` (what traffic did) and renders tables; rates, error ratios
 * and latency percentiles are computed from the difference between two successive stats reads, so
 * they describe the last few seconds, not the process's whole life.
 */

export const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>meshgate dashboard</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
  :root { --fg: #1d2330; --muted: #667085; --line: #e4e7ec; --ok: #12805c; --bad: #c4320a; --warn: #b54708; --accent: #2e5aac; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 13px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); background: #f8f9fb; }
  header { display: flex; gap: 24px; align-items: baseline; padding: 12px 20px; background: #1d2330; color: #fff; }
  header h1 { margin: 0; font-size: 18px; }
  header .meta { color: #c8cdd6; }
  main { padding: 12px 20px 40px; }
  section { background: #fff; border: 1px solid var(--line); border-radius: 6px; margin: 12px 0; padding: 10px 14px; }
  h2 { font-size: 14px; margin: 2px 0 8px; }
  table { width: 100%; border-collapse: collapse; }
  th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
  th { color: var(--muted); font-weight: 600; white-space: nowrap; }
  td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
  .muted { color: var(--muted); }
  .ok { color: var(--ok); } .bad { color: var(--bad); font-weight: 600; } .warn { color: var(--warn); }
  .host { font-weight: 600; }
  .src { color: var(--muted); font-size: 12px; }
  code { font-size: 12px; }
  .split { display: inline-block; min-width: 150px; }
  .bar { display: flex; height: 6px; border-radius: 3px; overflow: hidden; background: var(--line); margin-top: 2px; }
  .bar span { display: block; height: 100%; }
  .pill { display: inline-block; padding: 0 6px; border-radius: 8px; font-size: 11px; background: var(--line); }
  .pill.ok { background: #d1fadf; } .pill.bad { background: #fee4e2; }
</style>
</head>
<body>
<header><h1>meshgate</h1><span class="meta" id="version">loading…</span><span class="meta" id="updated"></span></header>
<main>
<section><h2>Listeners</h2><table id="listeners"><thead><tr><th>Name</th><th>Protocol</th><th class="num">Port</th><th class="num">Bound</th><th>State</th><th class="num">Virtual hosts</th></tr></thead><tbody></tbody></table></section>
<section><h2>Hosts and routes</h2><table id="routes"><thead><tr><th>Host</th><th>Route</th><th>Match</th><th>Action</th><th>Defined by</th><th class="num">req/s</th><th class="num">errors</th><th class="num">p50 ms</th><th class="num">p99 ms</th><th class="num">total</th><th>Split (configured / real)</th></tr></thead><tbody></tbody></table></section>
<section><h2>Clusters</h2><table id="clusters"><thead><tr><th>Cluster</th><th>Service</th><th>LB</th><th>Endpoints (health)</th><th class="num">req/s</th><th class="num">errors</th><th class="num">p50 ms</th><th class="num">p99 ms</th><th class="num">total</th></tr></thead><tbody></tbody></table></section>
<section><h2>Diagnostics</h2><table id="diagnostics"><thead><tr><th>Severity</th><th>Reason</th><th>Object</th><th>Where</th><th>Message</th></tr></thead><tbody></tbody></table></section>
<section><h2>Reloads</h2><table id="reloads"><thead><tr><th>Time</th><th>Outcome</th><th>Version</th><th class="num">Errors</th><th class="num">Warnings</th><th class="num">ms</th></tr></thead><tbody></tbody></table></section>
</main>
<script src="/dashboard/app.js"></script>
</body>
</html>
`;

export const DASHBOARD_JS = String.raw`'use strict';
(function () {
  var COLORS = ['#2e5aac', '#12805c', '#b54708', '#7a5af8', '#c4320a', '#0e9384'];
  var overview = null;
  var prev = null;   // previous /api/stats read
  var window_ = {};  // key -> { rate, errRatio, p50, p99, total }

  function el(tag, attrs, children) {
    var e = document.createElement(tag);
    if (attrs) for (var k in attrs) {
      if (k === 'text') e.textContent = attrs[k];
      else if (k === 'cls') e.className = attrs[k];
      else e.setAttribute(k, attrs[k]);
    }
    (children || []).forEach(function (c) { if (c != null) e.appendChild(typeof c === 'string' ? document.createTextNode(c) : c); });
    return e;
  }
  function fill(id, rows) {
    var body = document.querySelector('#' + id + ' tbody');
    body.replaceChildren.apply(body, rows.length ? rows : [el('tr', null, [el('td', { colspan: '12', cls: 'muted', text: 'none' })])]);
  }
  function num(v, digits) {
    if (v == null || !isFinite(v)) return '–';
    return v.toFixed(digits == null ? 1 : digits);
  }
  function quantile(buckets, q) {
    var total = buckets.length ? buckets[buckets.length - 1][1] : 0;
    if (total <= 0) return null;
    var rank = q * total, pb = 0, pc = 0;
    for (var i = 0; i < buckets.length; i++) {
      var b = buckets[i][0], c = buckets[i][1];
      if (c >= rank) {
        if (b === Infinity) return pb;
        var inb = c - pc;
        return inb <= 0 ? b : pb + (b - pb) * (rank - pc) / inb;
      }
      pb = b; pc = c;
    }
    return pb;
  }
  function key(route, cluster) { return route + '\u0000' + cluster; }
  function normalize(stats) {
    stats.routes.forEach(function (r) { r.buckets = r.buckets.map(function (b) { return [b[0] == null ? Infinity : b[0], b[1]]; }); });
    return stats;
  }
  // Differences between two reads: the last few seconds of traffic.
  function windowOf(cur, old, seconds) {
    var w = { rate: 0, errRatio: null, p50: null, p99: null, total: cur.requests, requests: 0 };
    var d = cur.requests - (old ? old.requests : 0);
    var e = cur.errors - (old ? old.errors : 0);
    var buckets = cur.buckets.map(function (b, i) { return [b[0], b[1] - (old && old.buckets[i] ? old.buckets[i][1] : 0)]; });
    w.requests = d;
    w.rate = seconds > 0 ? d / seconds : 0;
    w.errRatio = d > 0 ? e / d : null;
    if (d > 0) { w.p50 = quantile(buckets, 0.5); w.p99 = quantile(buckets, 0.99); }
    else { w.p50 = quantile(cur.buckets, 0.5); w.p99 = quantile(cur.buckets, 0.99); }
    return w;
  }
  function sumStats(list) {
    var out = { requests: 0, errors: 0, buckets: [] };
    list.forEach(function (s) {
      out.requests += s.requests; out.errors += s.errors;
      s.buckets.forEach(function (b, i) { if (!out.buckets[i]) out.buckets[i] = [b[0], 0]; out.buckets[i][1] += b[1]; });
    });
    return out;
  }

  function statCells(w) {
    var errCls = w && w.errRatio > 0.05 ? 'num bad' : w && w.errRatio > 0 ? 'num warn' : 'num';
    return [
      el('td', { cls: 'num rate', text: w ? num(w.rate, 1) : '–' }),
      el('td', { cls: errCls + ' errors', text: w && w.errRatio != null ? num(w.errRatio * 100, 1) + '%' : '–' }),
      el('td', { cls: 'num p50', text: w ? num(w.p50, 1) : '–' }),
      el('td', { cls: 'num p99', text: w ? num(w.p99, 1) : '–' }),
      el('td', { cls: 'num total', text: w ? String(w.total) : '0' }),
    ];
  }

  function splitCell(route) {
    if (route.destinations.length < 2) return el('td', { cls: 'muted', text: route.destinations.length ? '' : '' });
    var totals = route.destinations.map(function (d) { var w = window_[key(route.route, d.cluster)]; return w ? (w.requests > 0 ? w.requests : w.total) : 0; });
    var sum = totals.reduce(function (a, b) { return a + b; }, 0);
    var lines = route.destinations.map(function (d, i) {
      var real = sum > 0 ? (100 * totals[i] / sum) : null;
      return el('div', { cls: 'split-line', 'data-cluster': d.cluster }, [
        el('span', { style: 'color:' + COLORS[i % COLORS.length], text: '■ ' }),
        d.cluster.split('|')[2] || d.cluster.split('|')[3] || d.cluster, ' ',
        el('span', { cls: 'configured', text: d.percent + '%' }), ' / ',
        el('span', { cls: 'real', text: real == null ? '–' : num(real, 1) + '%' }),
      ]);
    });
    var bar = el('div', { cls: 'bar' }, route.destinations.map(function (d, i) {
      var real = sum > 0 ? 100 * totals[i] / sum : d.percent;
      return el('span', { style: 'width:' + real + '%;background:' + COLORS[i % COLORS.length] });
    }));
    return el('td', null, [el('div', { cls: 'split' }, lines.concat([bar]))]);
  }

  function render() {
    if (!overview) return;
    document.getElementById('version').textContent = 'snapshot ' + (overview.version ? overview.version.slice(0, 12) : 'none') + (overview.ready ? ' · serving' : ' · not ready');
    document.getElementById('updated').textContent = 'updated ' + new Date().toLocaleTimeString();
    fill('listeners', overview.listeners.map(function (l) {
      return el('tr', null, [el('td', { text: l.name }), el('td', { text: l.protocol }), el('td', { cls: 'num', text: String(l.externalPort) }),
        el('td', { cls: 'num', text: l.boundPort == null ? '–' : String(l.boundPort) }),
        el('td', { cls: l.state === 'listening' ? 'ok' : 'bad', text: l.state + (l.error ? ': ' + l.error : '') }), el('td', { cls: 'num', text: String(l.virtualHosts) })]);
    }));
    var lastHost = null;
    fill('routes', overview.routes.map(function (r) {
      var ws = r.destinations.map(function (d) { return window_[key(r.route, d.cluster)]; }).filter(Boolean);
      if (!r.destinations.length && window_[key(r.route, '')]) ws = [window_[key(r.route, '')]];
      var w = null;
      if (ws.length) {
        w = { rate: 0, total: 0, errRatio: null, p50: null, p99: null, requests: 0 };
        var errs = 0;
        ws.forEach(function (x) { w.rate += x.rate; w.total += x.total; w.requests += x.requests; if (x.errRatio != null) errs += x.errRatio * x.requests; });
        w.errRatio = w.requests > 0 ? errs / w.requests : null;
        var best = ws.slice().sort(function (a, b) { return b.requests - a.requests || b.total - a.total; })[0];
        w.p50 = best.p50; w.p99 = best.p99;
      }
      var hostLabel = r.vhost === lastHost ? '' : r.domains + ' (' + r.port + ')';
      lastHost = r.vhost;
      return el('tr', { cls: 'route-row', 'data-route': r.route }, [
        el('td', { cls: 'host', text: hostLabel }), el('td', null, [el('code', { text: r.route })]), el('td', null, [el('code', { text: r.match })]),
        el('td', { text: r.action }), el('td', { cls: 'src', text: r.source }),
      ].concat(statCells(w)).concat([splitCell(r)]));
    }));
    // Outlier detection: ejected now (seconds left by the gateway's clock) and times ejected.
    function ejection(c, e) {
      var o = e.outlier;
      if (!c.outlierDetection) return el('span', { cls: 'pill ejection muted', text: 'no outlier detection' });
      if (!o) return el('span', { cls: 'pill ejection', text: 'not ejected' });
      if (o.ejected) {
        var left = o.ejectedUntil === null ? '' : ' ' + Math.max(0, Math.ceil((o.ejectedUntil - overview.time) / 1000)) + 's left';
        return el('span', { cls: 'pill ejection bad', title: 'ejection ends at ' + (o.ejectedUntil === null ? '?' : new Date(o.ejectedUntil).toLocaleTimeString()), text: 'ejected' + left + ' · ' + o.timesEjected + 'x' });
      }
      return el('span', { cls: 'pill ejection', text: 'not ejected · ' + o.timesEjected + 'x before' });
    }
    fill('clusters', overview.clusters.map(function (c) {
      var w = window_['cluster\u0000' + c.cluster] || null;
      var eps = c.discovery === 'missing' ? [el('span', { cls: 'bad', text: 'service missing' })] : c.endpoints.length === 0 ? [el('span', { cls: 'bad', text: 'no endpoints' })] :
        c.endpoints.map(function (e) { return el('div', { cls: 'endpoint', 'data-endpoint': e.address + ':' + e.port, 'data-health': e.health }, [e.address + ':' + e.port + ' ', el('span', { cls: 'pill ' + (e.ready ? 'ok' : 'bad'), text: e.ready ? 'ready' : 'not ready' }), ' ', ejection(c, e)]); });
      return el('tr', { cls: 'cluster-row', 'data-cluster': c.cluster }, [
        el('td', null, [el('code', { text: c.cluster })]), el('td', { text: c.service + (c.subset ? ' · ' + c.subset : '') }), el('td', { text: c.lbPolicy }), el('td', null, eps),
      ].concat(statCells(w)));
    }));
    fill('diagnostics', overview.diagnostics.map(function (d) {
      return el('tr', null, [el('td', { cls: d.severity === 'error' ? 'bad' : 'warn', text: d.severity }), el('td', null, [el('code', { text: d.reason })]),
        el('td', { text: d.object ? d.object.kind + '/' + d.object.namespace + '/' + d.object.name : '–' }),
        el('td', { cls: 'src', text: (d.file || '–') + (d.line ? ':' + d.line : '') + (d.field ? ' ' + d.field : '') }), el('td', { text: d.message })]);
    }));
    fill('reloads', overview.reloads.map(function (r) {
      return el('tr', null, [el('td', { text: new Date(r.time).toLocaleTimeString() }), el('td', { cls: r.outcome === 'rejected' ? 'bad' : r.outcome === 'applied' ? 'ok' : 'muted', text: r.outcome }),
        el('td', null, [el('code', { text: r.version ? r.version.slice(0, 12) : '–' })]), el('td', { cls: 'num', text: String(r.errors) }), el('td', { cls: 'num', text: String(r.warnings) }), el('td', { cls: 'num', text: String(r.durationMs) })]);
    }));
  }

  function updateStats(cur) {
    var seconds = prev ? (cur.time - prev.time) / 1000 : 0;
    var old = {};
    if (prev) prev.routes.forEach(function (r) { old[key(r.route, r.cluster)] = r; });
    var next = {};
    var byCluster = {}, oldByCluster = {};
    cur.routes.forEach(function (r) {
      next[key(r.route, r.cluster)] = windowOf(r, old[key(r.route, r.cluster)], seconds);
      (byCluster[r.cluster] = byCluster[r.cluster] || []).push(r);
      var o = old[key(r.route, r.cluster)];
      if (o) (oldByCluster[r.cluster] = oldByCluster[r.cluster] || []).push(o);
    });
    Object.keys(byCluster).forEach(function (c) {
      next['cluster\u0000' + c] = windowOf(sumStats(byCluster[c]), prev ? sumStats(oldByCluster[c] || []) : null, seconds);
    });
    window_ = next;
    prev = cur;
  }

  function poll() {
    Promise.all([fetch('/api/overview').then(function (r) { return r.json(); }), fetch('/api/stats').then(function (r) { return r.json(); })])
      .then(function (res) { overview = res[0]; updateStats(normalize(res[1])); render(); document.body.setAttribute('data-loaded', 'true'); })
      .catch(function (e) { document.getElementById('updated').textContent = 'admin unreachable: ' + e.message; })
      .finally(function () { setTimeout(poll, 2000); });
  }
  poll();
})();
`;
