/**
 * In Kubernetes mode the gateway's labels are those of meshgate's own Pod, so the Istio Gateways and
 * policies that select the pods actually running are the ones applied (istiod does the same: a proxy
 * reports its pod's labels). Read, in order:
 * 1. a downward API volume file (`MESHGATE_POD_LABELS_FILE`, default /etc/podinfo/labels), lines
 *    `key="value"` as the kubelet writes them;
 * 2. the Pod itself, `GET /api/v1/namespaces/$POD_NAMESPACE/pods/$POD_NAME` (needs `get` on pods).
 * null when neither is available (not in a cluster): the `--gateway-labels` default stays.
 */
import { readFileSync } from 'node:fs';

export const POD_LABELS_FILE = '/etc/podinfo/labels';

/** The downward API `metadata.labels` file format: one `key="value"` per line (Go %q quoting). */
export function parseDownwardLabels(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const eq = line.indexOf('=');
    if (eq <= 0) continue;
    const key = line.slice(0, eq).trim();
    const raw = line.slice(eq + 1).trim();
    let value = raw;
    if (raw.startsWith('"')) {
      try {
        value = JSON.parse(raw) as string;
      } catch {
        value = raw.slice(1, -1);
      }
    }
    out[key] = value;
  }
  return out;
}

export interface OwnPodLabels {
  labels: Record<string, string>;
  /** Where they were read (for the startup log). */
  from: string;
}

export interface PodLabelSources {
  env: NodeJS.ProcessEnv;
  readFile: (path: string) => string;
  /** GET of a pod; resolves to the Pod object. */
  getPod: (namespace: string, name: string) => Promise<unknown>;
}

export async function ownPodLabels(src: PodLabelSources): Promise<OwnPodLabels | null> {
  const file = src.env.MESHGATE_POD_LABELS_FILE || POD_LABELS_FILE;
  try {
    const labels = parseDownwardLabels(src.readFile(file));
    if (Object.keys(labels).length > 0) return { labels, from: file };
  } catch {
    // No downward API volume: ask the API server.
  }
  const ns = src.env.POD_NAMESPACE?.trim();
  const name = src.env.POD_NAME?.trim();
  if (!ns || !name) return null;
  const pod = await src.getPod(ns, name);
  const meta = typeof pod === 'object' && pod !== null ? (pod as { metadata?: { labels?: unknown } }).metadata : undefined;
  const raw = meta?.labels;
  const labels: Record<string, string> = {};
  if (typeof raw === 'object' && raw !== null) for (const [k, v] of Object.entries(raw)) if (typeof v === 'string') labels[k] = v;
  return { labels, from: `pod ${ns}/${name}` };
}

export const defaultPodLabelSources = (getPod: PodLabelSources['getPod']): PodLabelSources => ({ env: process.env, readFile: (p) => readFileSync(p, 'utf8'), getPod });
