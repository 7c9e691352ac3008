/**
 * Which version of an optional API (the Istio CRDs) this API server serves. Istio serves
 * networking.istio.io/v1 since 1.22 and v1beta1 before; when neither is there, the kind is absent
 * (not an error: meshgate runs without Istio) and discovery is asked again later.
 */
import type { ApiClient } from './api-client.js';
import { groupVersionPath, type WatchedResource } from './kinds.js';
import { arr, obj, str } from '../../lib/unknown.js';

/** The first of `r.versions` whose resource list names `r.resource`, or null when none does. */
export async function discoverVersion(client: ApiClient, r: WatchedResource): Promise<string | null> {
  for (const version of r.versions) {
    const res = await client.request('GET', groupVersionPath(r.group, version));
    if (res.status === 404) continue;
    if (res.status !== 200) throw new Error(`discovery of ${groupVersionPath(r.group, version)}: ${res.status}`);
    if (arr(obj(res.body).resources).some((x) => str(obj(x).name) === r.resource)) return version;
  }
  return null;
}
