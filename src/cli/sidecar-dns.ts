/**
 * The sidecar's DNS proxy wiring (mesh/dns/server.ts): started with `--dns-capture`, or when the
 * first view whose ProxyConfig turns DNS capture on arrives (`sidecar.dns.capture`, from
 * `proxyMetadata.ISTIO_META_DNS_CAPTURE`); each view then replaces its name table. It listens on
 * 127.0.0.1:15053 (and [::1]:15053 for an IPv6 pod), where `meshgate capture --redirect-dns` sends
 * the app's DNS, and forwards what the table does not know to the resolvers of `--resolv-conf`
 * (/etc/resolv.conf: the pod's).
 */
import type { IRSnapshot } from '../ir/types.js';
import type { Logger } from '../lib/log.js';

export interface SidecarDnsOptions {
  /** `--dns-capture`: serve DNS from the start, whatever the view says. */
  always: boolean;
  port: number;
  resolvConf: string;
  namespace: string;
  ipv6: boolean;
  log: Logger;
}

export interface SidecarDns {
  /** Called with every view applied. */
  onView(ir: IRSnapshot): Promise<void>;
  stop(): Promise<void>;
  /** The bound addresses, once started. */
  readonly bound: string[];
  /** The DNS proxy's metrics ('' before it starts). */
  metrics(): string;
}

export async function startSidecarDns(o: SidecarDnsOptions): Promise<SidecarDns> {
  let proxy: import('../mesh/dns/server.js').DnsProxy | null = null;
  let starting: Promise<void> | null = null;
  const bound: string[] = [];
  const start = (): Promise<void> =>
    (starting ??= (async () => {
      const { DnsProxy, readResolvConf } = await import('../mesh/dns/server.js');
      const resolv = readResolvConf(o.resolvConf);
      if (resolv.servers.length === 0) o.log.warn('no nameserver in the resolv.conf: names the view does not know get SERVFAIL', { file: o.resolvConf });
      const p = new DnsProxy({ listen: [`127.0.0.1:${o.port}`, ...(o.ipv6 ? [`[::1]:${o.port}`] : [])], resolv, namespace: o.namespace, log: o.log });
      await p.start();
      proxy = p;
      bound.push(...p.bound);
      o.log.info('DNS proxy listening', { addresses: p.bound, upstream: resolv.servers.map((s) => s.host), search: resolv.search });
    })());
  if (o.always) await start();
  return {
    bound,
    metrics: () => proxy?.metricsText() ?? '',
    async onView(ir) {
      const dns = ir.sidecar?.dns;
      if (proxy === null && dns?.capture === true) {
        try {
          await start();
        } catch (e) {
          o.log.error('cannot start the DNS proxy', { error: (e as Error).message });
          return;
        }
      }
      if (proxy === null) return;
      if (dns === undefined) o.log.warn('the view carries no DNS name table (set proxyMetadata ISTIO_META_DNS_CAPTURE: "true" in MeshConfig defaultConfig or the pod\'s proxy.istio.io/config): every query goes upstream', { version: ir.version });
      proxy.setTable(dns);
    },
    async stop() {
      await starting?.catch(() => undefined);
      await proxy?.close();
    },
  };
}
