/**
 * Small real-socket clients for end-to-end tests: node:http requests with full control over
 * headers (including raw ones), and a raw TCP exchange for what node:http refuses to send.
 */

import http from 'node:http';
import https from 'node:https';
import net from 'node:net';

export interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  rawHeaders: string[];
  body: string;
  /** Body parsed as JSON when it is JSON, else null. */
  json: EchoJson | null;
}

/** The echo server's reply shape, as tests read it. */
export interface EchoJson {
  name: string;
  method: string;
  url: string;
  path: string;
  query: Record<string, string>;
  headers: Record<string, string | undefined>;
  body: string;
}

export interface RequestOptions {
  method?: string;
  /** Path and query (origin-form), default `/`. */
  path?: string;
  /** Host header; default `127.0.0.1:<port>`. */
  host?: string;
  headers?: http.OutgoingHttpHeaders | string[];
  body?: string | Buffer;
  agent?: http.Agent | false;
  timeoutMs?: number;
}

/** One HTTP/1.1 request to 127.0.0.1:port; resolves with the whole reply. */
export function request(port: number, o: RequestOptions = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const headers: http.OutgoingHttpHeaders | string[] = Array.isArray(o.headers)
      ? ['host', o.host ?? `127.0.0.1:${port}`, ...o.headers]
      : { host: o.host ?? `127.0.0.1:${port}`, ...(o.headers ?? {}) };
    const req = http.request({
      host: '127.0.0.1',
      port,
      method: o.method ?? 'GET',
      path: o.path ?? '/',
      headers: headers as http.OutgoingHttpHeaders,
      agent: o.agent ?? false,
      setHost: false,
    });
    req.setTimeout(o.timeoutMs ?? 10_000, () => req.destroy(new Error('client timeout')));
    req.on('error', reject);
    req.on('response', (res) => collect(res).then(resolve, reject));
    req.end(o.body);
  });
}

export function collect(res: http.IncomingMessage): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    res.on('data', (c: Buffer) => chunks.push(c));
    res.on('error', reject);
    res.on('aborted', () => reject(new Error('response aborted')));
    res.on('end', () => {
      if (!res.complete) return reject(new Error('response incomplete'));
      const body = Buffer.concat(chunks).toString('utf8');
      let json: EchoJson | null = null;
      try {
        json = (res.headers['content-type'] ?? '').includes('json') ? (JSON.parse(body) as EchoJson) : null;
      } catch {
        json = null;
      }
      resolve({ status: res.statusCode ?? 0, headers: res.headers, rawHeaders: res.rawHeaders, body, json });
    });
  });
}

/** An HTTPS request with a chosen SNI; also returns the certificate the server presented. */
export function httpsRequest(
  port: number,
  o: { servername: string; path?: string; host?: string; ca?: string; minVersion?: 'TLSv1.2' | 'TLSv1.3'; maxVersion?: 'TLSv1.2' | 'TLSv1.3' },
): Promise<Reply & { peerCN: string; protocol: string | null }> {
  return new Promise((resolve, reject) => {
    const req = https.request({
      host: '127.0.0.1',
      port,
      path: o.path ?? '/',
      servername: o.servername,
      headers: { host: o.host ?? o.servername },
      rejectUnauthorized: false,
      agent: false,
      minVersion: o.minVersion,
      maxVersion: o.maxVersion,
    });
    req.setTimeout(10_000, () => req.destroy(new Error('client timeout')));
    req.on('error', reject);
    req.on('response', (res) => {
      const socket = res.socket as import('node:tls').TLSSocket;
      const cert = socket.getPeerCertificate();
      const peerCN = String(cert.subject?.CN ?? '');
      const protocol = socket.getProtocol();
      collect(res).then((r) => resolve({ ...r, peerCN, protocol }), reject);
    });
    req.end();
  });
}

/** Sends raw bytes, returns everything the server wrote until it closed or `waitMs` passed. */
export function rawExchange(port: number, payload: string, waitMs = 1000): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => socket.destroy(), waitMs);
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', reject);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks).toString('latin1'));
    });
    socket.write(payload);
  });
}

/** Rejects if `p` takes longer than `ms`. */
export async function within<T>(ms: number, p: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms)));
  try {
    return await Promise.race([p, t]);
  } finally {
    clearTimeout(timer);
  }
}
