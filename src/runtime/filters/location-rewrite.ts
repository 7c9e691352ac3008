/**
 * nginx `proxy_redirect from to` (IR `RouteFilters.locationRewrite`): the Location and Refresh
 * headers of the response written for this request are rewritten when they start with `from`.
 * Installed per request only on routes that ask for it (it wraps this request's downstream exchange).
 */

import type { Downstream } from '../http/downstream.js';

export function rewriteLocations(d: Downstream, from: string, to: string): void {
  const writeHead = d.writeHead;
  const respond = d.respond;
  d.writeHead = function (this: Downstream, status: number, headers: string[]): void {
    rewrite(headers, from, to);
    writeHead.call(this, status, headers);
  };
  d.respond = function (this: Downstream, status: number, headers: string[], body: Buffer | null): void {
    rewrite(headers, from, to);
    respond.call(this, status, headers, body);
  };
}

function rewrite(headers: string[], from: string, to: string): void {
  for (let i = 0; i + 1 < headers.length; i += 2) {
    const n = headers[i].toLowerCase();
    if (n !== 'location' && n !== 'refresh') continue;
    const v = headers[i + 1];
    if (n === 'location' && v.startsWith(from)) headers[i + 1] = to + v.slice(from.length);
    // Refresh: `5; url=<location>`.
    if (n === 'refresh') {
      const m = /^(\s*\d+\s*;\s*url=)(.*)$/i.exec(v);
      if (m && m[2].startsWith(from)) headers[i + 1] = m[1] + to + m[2].slice(from.length);
    }
  }
}
