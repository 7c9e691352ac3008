/**
 * nginx `proxy_redirect from to` (IR `RouteFilters.locationRewrite`): the Location and Refresh
 * headers of the response written for this request are rewritten when they start with `from`.
 * Installed per request only on routes that ask for it.
 */

import type { ServerResponse } from 'node:http';

export function rewriteLocations(res: ServerResponse, from: string, to: string): void {
  const writeHead = res.writeHead as (...a: unknown[]) => ServerResponse;
  res.writeHead = function (this: ServerResponse, status: number, ...rest: unknown[]) {
    const headers = rest[rest.length - 1];
    if (Array.isArray(headers)) {
      for (let i = 0; i + 1 < headers.length; i += 2) {
        const n = String(headers[i]).toLowerCase();
        if (n !== 'location' && n !== 'refresh') continue;
        const v = String(headers[i + 1]);
        if (n === 'location' && v.startsWith(from)) headers[i + 1] = to + v.slice(from.length);
        // Refresh: `5; url=<location>`.
        if (n === 'refresh') {
          const m = /^(\s*\d+\s*;\s*url=)(.*)$/i.exec(v);
          if (m && m[2].startsWith(from)) headers[i + 1] = m[1] + to + m[2].slice(from.length);
        }
      }
    }
    return writeHead.call(this, status, ...rest);
  } as ServerResponse['writeHead'];
}
