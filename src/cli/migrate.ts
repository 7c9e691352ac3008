/**
 * `meshgate migrate DIR|--kubernetes`: what changes when meshgate takes over from ingress-nginx.
 *
 * For every Ingress: whether meshgate serves it, and for each `nginx.ingress.kubernetes.io/*`
 * annotation its status (honoured / refused / unsupported / unknown), what meshgate does differently
 * and why (the registry's note), plus the translation diagnostics about that Ingress (bad values,
 * missing Secrets). Exit code 1 when something would change behaviour: an Ingress not served, an
 * annotation that is not honoured, or an error or warning about it; 0 otherwise.
 */

import path from 'node:path';
import type { Diagnostic } from '../lib/diagnostic.js';
import { Logger } from '../lib/log.js';
import { ConfigPipeline } from '../control/pipeline.js';
import { loadDirectory } from '../providers/file/load.js';
import type { LoadedConfig } from '../control/pipeline.js';
import type { TranslateOptions } from '../translate/index.js';
import { classifyAnnotations, type AnnotationStatus } from '../translate/ingress/nginx/registry.js';

export interface MigrateAnnotation {
  annotation: string;
  value: string;
  status: AnnotationStatus | 'unknown';
  note: string;
}

export interface MigrateIngress {
  namespace: string;
  name: string;
  file: string | null;
  /** served, or why not. */
  served: boolean;
  annotations: MigrateAnnotation[];
  diagnostics: { severity: string; reason: string; field: string | null; line: number | null; message: string }[];
  /** Something about this Ingress would behave differently under meshgate. */
  changesBehaviour: boolean;
}

export async function loadForMigrate(dir: string | null, k8s: { kubeconfig?: string; watchNamespaces: string[]; configMaps: { namespace: string; name: string }[] }): Promise<LoadedConfig> {
  if (dir !== null) return loadDirectory(path.resolve(dir));
  const { ApiClient } = await import('../providers/kubernetes/api-client.js');
  const { KubernetesSource } = await import('../providers/kubernetes/source.js');
  const source = new KubernetesSource({ client: ApiClient.load(k8s.kubeconfig ?? null), log: new Logger('warn', { component: 'migrate' }), watchNamespaces: k8s.watchNamespaces.length > 0 ? k8s.watchNamespaces : null, secretLabelSelector: null, configMaps: k8s.configMaps });
  try {
    return await source.load();
  } finally {
    source.close();
  }
}

export function migrateIngresses(loaded: LoadedConfig, options: TranslateOptions): MigrateIngress[] {
  const result = new ConfigPipeline(options).run(loaded);
  const byObject = new Map<string, Diagnostic[]>();
  for (const d of result.diagnostics) {
    if (d.object?.kind !== 'Ingress') continue;
    const k = `${d.object.namespace}/${d.object.name}`;
    byObject.set(k, [...(byObject.get(k) ?? []), d]);
  }
  const servedNames = new Set<string>();
  for (const l of result.snapshot?.listeners ?? []) for (const c of l.filterChains) for (const v of c.virtualHosts) for (const r of v.routes) if (r.source.kind === 'Ingress') servedNames.add(`${r.source.namespace}/${r.source.name}`);
  const out: MigrateIngress[] = [];
  const ingresses = loaded.objects.filter((o) => o.kind === 'Ingress').sort((a, b) => (`${a.metadata.namespace}/${a.metadata.name}` < `${b.metadata.namespace}/${b.metadata.name}` ? -1 : 1));
  for (const ing of ingresses) {
    const key = `${ing.metadata.namespace}/${ing.metadata.name}`;
    const diags = byObject.get(key) ?? [];
    // Ingresses of another class are not part of the switch-over.
    if (diags.some((d) => d.reason === 'MG_INGRESS_CLASS_IGNORED')) continue;
    const annotations = classifyAnnotations(ing.metadata.annotations).map((c) => ({ annotation: c.name, value: ing.metadata.annotations[c.key], status: c.status, note: c.info?.note ?? 'not an ingress-nginx annotation meshgate knows; ignored' }));
    const served = servedNames.has(key);
    const diagnostics = diags.map((d) => ({ severity: d.severity, reason: d.reason, field: d.field, line: d.line, message: d.message }));
    const changesBehaviour = !served || annotations.some((a) => a.status !== 'honoured') || diags.some((d) => d.severity !== 'info');
    out.push({ namespace: ing.metadata.namespace, name: ing.metadata.name, file: ing.origin.file, served, annotations, diagnostics, changesBehaviour });
  }
  return out;
}

export function migrateReport(loaded: LoadedConfig, options: TranslateOptions, output: 'text' | 'json', write: (s: string) => void): number {
  const report = migrateIngresses(loaded, options);
  const changes = report.filter((r) => r.changesBehaviour).length;
  if (output === 'json') {
    write(`${JSON.stringify({ ingressClass: options.ingressClass, controllerName: options.controllerName, ingresses: report, changesBehaviour: changes > 0 }, null, 2)}\n`);
    return changes > 0 ? 1 : 0;
  }
  for (const r of report) {
    write(`Ingress ${r.namespace}/${r.name}${r.file ? ` (${r.file})` : ''}: ${r.served ? 'served' : 'NOT SERVED'}${r.changesBehaviour ? ', behaviour changes' : ', same behaviour'}\n`);
    for (const a of r.annotations) write(`  ${a.status.padEnd(11)} ${a.annotation}: ${JSON.stringify(a.value.length > 60 ? `${a.value.slice(0, 57)}...` : a.value)}\n              ${a.note}\n`);
    for (const d of r.diagnostics) if (d.severity !== 'info') write(`  ${d.severity.padEnd(11)} ${d.reason}${d.field ? ` ${d.field}` : ''}${d.line !== null ? ` (line ${d.line})` : ''}: ${d.message}\n`);
  }
  write(`${report.length} Ingresses (class "${options.ingressClass}", controller "${options.controllerName}"), ${changes} would behave differently under meshgate\n`);
  return changes > 0 ? 1 : 0;
}
