/**
 * Request statistics for the dashboard, read from the data plane's Prometheus text (the same
 * numbers `/metrics` serves): per route and destination cluster, requests by status code and the
 * cumulative latency histogram. The page derives rates and percentiles from two successive reads.
 */

import { outlierKey, type EndpointOutlierState } from './model.js';

export interface RouteStats {
  route: string;
  cluster: string;
  requests: number;
  /** Responses with status >= 500, or none at all (0). */
  errors: number;
  byCode: Record<string, number>;
  byFlags: Record<string, number>;
  /** [upper bound in ms, cumulative count]; the last bound is Infinity. */
  buckets: [number, number][];
  durationSumMs: number;
}

const LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

/** Parses Prometheus text exposition lines (comments skipped). */
export function parsePrometheus(text: string): { name: string; labels: Record<string, string>; value: number }[] {
  const out: { name: string; labels: Record<string, string>; value: number }[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = LINE.exec(line);
    if (m === null) continue;
    const labels: Record<string, string> = {};
    if (m[2] !== undefined) for (const l of m[2].matchAll(LABEL)) labels[l[1]] = l[2].replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
    out.push({ name: m[1], labels, value: m[3] === '+Inf' ? Infinity : Number(m[3]) });
  }
  return out;
}

export function routeStats(text: string): RouteStats[] {
  const byKey = new Map<string, RouteStats>();
  const get = (route: string, cluster: string): RouteStats => {
    const key = `${route}\0${cluster}`;
    let s = byKey.get(key);
    if (s === undefined) byKey.set(key, (s = { route, cluster, requests: 0, errors: 0, byCode: {}, byFlags: {}, buckets: [], durationSumMs: 0 }));
    return s;
  };
  for (const s of parsePrometheus(text)) {
    const route = s.labels.route;
    const cluster = s.labels.destination_cluster;
    if (route === undefined || cluster === undefined) continue;
    if (s.name === 'meshgate_route_requests_total') {
      const st = get(route, cluster);
      const code = s.labels.response_code ?? '0';
      st.requests += s.value;
      st.byCode[code] = (st.byCode[code] ?? 0) + s.value;
      const flags = s.labels.response_flags ?? '-';
      if (flags !== '-') st.byFlags[flags] = (st.byFlags[flags] ?? 0) + s.value;
      if (Number(code) >= 500 || code === '0') st.errors += s.value;
    } else if (s.name === 'meshgate_route_request_duration_milliseconds_bucket') {
      const le = s.labels.le === '+Inf' ? Infinity : Number(s.labels.le);
      get(route, cluster).buckets.push([le, s.value]);
    } else if (s.name === 'meshgate_route_request_duration_milliseconds_sum') {
      get(route, cluster).durationSumMs = s.value;
    }
  }
  const out = [...byKey.values()];
  for (const s of out) s.buckets.sort((a, b) => a[0] - b[0]);
  return out;
}

/** The q-quantile (0..1) of a cumulative histogram, interpolated linearly inside its bucket; null when empty. */
export function quantile(buckets: [number, number][], q: number): number | null {
  const total = buckets.length === 0 ? 0 : buckets[buckets.length - 1][1];
  if (total <= 0) return null;
  const rank = q * total;
  let prevBound = 0;
  let prevCount = 0;
  for (const [bound, count] of buckets) {
    if (count >= rank) {
      if (bound === Infinity) return prevBound;
      const inBucket = count - prevCount;
      return inBucket <= 0 ? bound : prevBound + ((bound - prevBound) * (rank - prevCount)) / inBucket;
    }
    prevBound = bound;
    prevCount = count;
  }
  return prevBound;
}

/**
 * Outlier-detection state per endpoint from the data plane's Prometheus text
 * (`meshgate_outlier_endpoint_*`), keyed by `outlierKey(cluster, endpoint)`.
 */
export function outlierStates(text: string): Map<string, EndpointOutlierState> {
  const out = new Map<string, EndpointOutlierState>();
  for (const s of parsePrometheus(text)) {
    if (!s.name.startsWith('meshgate_outlier_endpoint_')) continue;
    const { cluster, endpoint } = s.labels;
    if (cluster === undefined || endpoint === undefined) continue;
    const key = outlierKey(cluster, endpoint);
    let st = out.get(key);
    if (st === undefined) out.set(key, (st = { ejected: false, ejectedUntil: null, timesEjected: 0 }));
    if (s.name === 'meshgate_outlier_endpoint_ejected') st.ejected = s.value > 0;
    else if (s.name === 'meshgate_outlier_endpoint_ejected_until_seconds') st.ejectedUntil = s.value > 0 ? Math.round(s.value * 1000) : null;
    else if (s.name === 'meshgate_outlier_endpoint_ejections_total') st.timesEjected = s.value;
  }
  // Metrics are scraped one by one: an end time without an ejection is stale.
  for (const st of out.values()) if (!st.ejected) st.ejectedUntil = null;
  return out;
}
