/**
 * Metrics of the config push, served on the control plane's admin `/metrics` (istiod's monitoring
 * port is 15014 too). Istio's names for the same facts are in brackets:
 *
 * - `meshgate_push_connected_proxies` (pilot_xds): streams open now;
 * - `meshgate_push_views_total` (pilot_xds_pushes): views sent;
 * - `meshgate_push_unchanged_total`: views computed for a proxy and not sent, because it already has
 *   that version (a change elsewhere in the mesh);
 * - `meshgate_push_nacks_total` (pilot_total_xds_rejects): views proxies refused;
 * - `meshgate_push_view_errors_total` (pilot_xds_push_context_errors): views not sent because they
 *   could not be computed (translator error, MG_INVALID_IR);
 * - `meshgate_push_convergence_seconds` (pilot_proxy_convergence_time): from a config change
 *   reaching the push to a proxy's new view being written, debounce included.
 */
import { Counter, Gauge, Histogram, Registry } from '../../observability/prom.js';

export class PushMetrics {
  readonly registry = new Registry();
  readonly connected: Gauge;
  readonly views: Counter;
  readonly nacks: Counter;
  readonly unchanged: Counter;
  readonly viewErrors: Counter;
  readonly convergence: Histogram;

  constructor() {
    const registers = [this.registry];
    this.connected = new Gauge({ name: 'meshgate_push_connected_proxies', help: 'Sidecars with an open config stream.', registers });
    this.views = new Counter({ name: 'meshgate_push_views_total', help: 'Views pushed to sidecars.', registers });
    this.unchanged = new Counter({ name: 'meshgate_push_unchanged_total', help: 'Views not sent because the sidecar already has that version.', registers });
    this.nacks = new Counter({ name: 'meshgate_push_nacks_total', help: 'Views sidecars refused (NACK).', registers });
    this.viewErrors = new Counter({ name: 'meshgate_push_view_errors_total', help: 'Views not pushed because they could not be computed (translator error, invalid view).', registers });
    this.convergence = new Histogram({ name: 'meshgate_push_convergence_seconds', help: 'From a config change reaching the push to a sidecar\'s new view being written (debounce included).', buckets: [0.05, 0.1, 0.2, 0.5, 1, 3, 5, 10, 20, 30], registers });
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }
}
