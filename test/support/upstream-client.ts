/**
 * Drives an `UpstreamClient` (src/runtime/upstream/client.ts) from tests: one request, its outcome
 * collected (status, headers, body, trailers or the error).
 */

import type { UpstreamClient, UpstreamHandler, UpstreamRequest, UpstreamTrailers } from '../../src/runtime/upstream/client.js';

export interface Outcome {
  status: number;
  headers: Record<string, string>;
  body: string;
  trailers: UpstreamTrailers;
  error: (Error & { code?: string }) | null;
}

/** Sends one request and collects what the handler saw. */
export function send(client: UpstreamClient, req: Partial<UpstreamRequest> & { path: string }, onAbort?: (abort: (err?: Error) => void) => void): Promise<Outcome> {
  return new Promise((resolve) => {
    const out: Outcome = { status: 0, headers: {}, body: '', trailers: null, error: null };
    const chunks: Buffer[] = [];
    const handler: UpstreamHandler = {
      onConnect(abort) {
        onAbort?.(abort);
      },
      onHeaders(status, raw) {
        out.status = status;
        for (let i = 0; i < raw.length; i += 2) out.headers[raw[i].toLowerCase()] = raw[i + 1];
        return true;
      },
      onData(chunk) {
        chunks.push(Buffer.from(chunk));
        return true;
      },
      onComplete(trailers) {
        out.body = Buffer.concat(chunks).toString();
        out.trailers = trailers;
        resolve(out);
      },
      onError(err) {
        out.body = Buffer.concat(chunks).toString();
        out.error = err;
        resolve(out);
      },
    };
    client.dispatch({ method: 'GET', headers: ['host', 'upstream.test'], body: null, ...req }, handler);
  });
}

