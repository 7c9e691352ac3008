/** The DENY /admin policy of the corpus and fuzz tests, and what an upstream might make of a path. */

import path from 'node:path';
import type { AuthorizationPolicy } from '../../src/ir/types.js';

const SRC = { kind: 'AuthorizationPolicy', namespace: 'istio-system', name: 'deny-admin', file: null, line: null };

export const DENY_ADMIN: AuthorizationPolicy = {
  name: 'authorizationpolicy/istio-system/deny-admin',
  source: SRC,
  action: 'DENY',
  provider: null,
  dryRun: false,
  rules: [{ from: [], to: [[{ key: 'request.path', values: ['/admin', '/admin/*'], notValues: [] }]], when: [] }],
};

/** What an upstream might make of a path: every reading the gateway must have already closed off. */
export function upstreamReadings(url: string): string[] {
  const p = url.split('?')[0];
  const out = new Set<string>([p]);
  const variants = [p];
  try {
    variants.push(decodeURIComponent(p));
  } catch {
    // not decodable: the raw form is the only reading
  }
  for (const v of variants) {
    const slashes = v.replace(/\\/g, '/');
    const noParams = slashes.split('/').map((s) => s.split(';')[0]).join('/');
    for (const x of [v, slashes, noParams]) {
      out.add(x);
      out.add(path.posix.normalize(x));
      out.add(path.posix.normalize(x.replace(/\/+/g, '/')));
    }
  }
  return [...out];
}

export function isAdmin(p: string): boolean {
  return p === '/admin' || p.startsWith('/admin/');
}

