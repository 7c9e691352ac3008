/**
 * An HTTP/2 client with the same shape as `request()` in http-client.ts, so one test body runs over
 * HTTP/1.1 and HTTP/2. Plaintext ports are spoken to with prior knowledge (h2c); sessions are kept
 * per port (requests multiplex on them) until `closeH2Sessions()`.
 */

import http2 from 'node:http2';
import type { EchoJson, Reply, RequestOptions } from './http-client.js';

const sessions = new Map<string, http2.ClientHttp2Session>();

function session(port: number, tls: { servername: string } | null): http2.ClientHttp2Session {
  const key = `${tls === null ? 'h2c' : `h2/${tls.servername}`}:${port}`;
  const existing = sessions.get(key);
  if (existing !== undefined && !existing.closed && !existing.destroyed) return existing;
  const s =
    tls === null
      ? http2.connect(`http://127.0.0.1:${port}`)
      : http2.connect(`https://127.0.0.1:${port}`, { servername: tls.servername, rejectUnauthorized: false, ALPNProtocols: ['h2'] });
  s.on('error', () => sessions.delete(key));
  s.on('close', () => sessions.delete(key));
  s.unref();
  sessions.set(key, s);
  return s;
}

export function closeH2Sessions(): void {
  for (const s of sessions.values()) s.close();
  sessions.clear();
}

/** Connection-specific fields an HTTP/2 request must not carry (RFC 9113 §8.2.2); Node's client refuses them. */
const CONNECTION_SPECIFIC = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'host']);

/** One HTTP/2 request; `host` becomes `:authority`. */
export function h2Request(port: number, o: RequestOptions & { tls?: { servername: string } } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const headers: http2.OutgoingHttpHeaders = {
      ':method': o.method ?? 'GET',
      ':path': o.path ?? '/',
      ':authority': o.host ?? `127.0.0.1:${port}`,
    };
    const add = (name: string, value: string | string[] | number | undefined) => {
      const n = name.toLowerCase();
      if (value === undefined || CONNECTION_SPECIFIC.has(n)) return;
      const prev = headers[n];
      headers[n] = prev === undefined ? value : ([] as (string | number)[]).concat(prev as string, value as string).map(String);
    };
    if (Array.isArray(o.headers)) for (let i = 0; i < o.headers.length; i += 2) add(o.headers[i], o.headers[i + 1]);
    else for (const [k, v] of Object.entries(o.headers ?? {})) add(k, v as string | string[] | number | undefined);
    let req: http2.ClientHttp2Stream;
    try {
      req = session(port, o.tls ?? null).request(headers, { endStream: o.body === undefined });
    } catch (err) {
      return reject(err);
    }
    const timer = setTimeout(() => req.close(http2.constants.NGHTTP2_CANCEL), o.timeoutMs ?? 10_000);
    let head: http2.IncomingHttpHeaders & http2.IncomingHttpStatusHeader = {};
    let rawHeaders: string[] = [];
    req.on('response', (h: http2.IncomingHttpHeaders & http2.IncomingHttpStatusHeader) => {
      head = h;
      rawHeaders = Object.entries(h).flatMap(([k, v]) => (Array.isArray(v) ? v.flatMap((x) => [k, x]) : [k, String(v)]));
    });
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    req.on('end', () => {
      clearTimeout(timer);
      const body = Buffer.concat(chunks).toString('utf8');
      let json: EchoJson | null = null;
      try {
        json = String(head['content-type'] ?? '').includes('json') ? (JSON.parse(body) as EchoJson) : null;
      } catch {
        json = null;
      }
      const { ':status': status, ...rest } = head;
      resolve({ status: Number(status ?? 0), headers: rest as Reply['headers'], rawHeaders, body, json });
    });
    if (o.body !== undefined) req.end(o.body);
  });
}
