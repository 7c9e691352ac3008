/**
 * HTTP/1.1 Upgrade (WebSocket, RFC 6455 §4) through the gateway. The upgrade request goes through
 * the whole request path like any other request (edge checks, authentication and authorization,
 * route matching, weighted destination, endpoint choice, header edits), so a route that would
 * answer 404, 403 or 503 answers the upgrade the same way. Only the hand-off differs: instead of an
 * upstream HTTP exchange, a TCP connection to the endpoint carries the request head, and when the
 * endpoint answers `101 Switching Protocols` the two sockets are spliced byte for byte (Envoy's
 * `upgrade_configs: websocket`, which Istio enables on every gateway route).
 *
 * Only `Upgrade: websocket` is tunnelled; other Upgrade values (h2c, TLS/1.0) are ignored and the
 * request is served as plain HTTP/1.1 on a connection that then closes, as Envoy does.
 * A tunnel closes when either side closes, or after `WEBSOCKET_IDLE_TIMEOUT_MS` without a byte in
 * either direction.
 */

import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import net from 'node:net';
import { applyHeaderOps } from '../compile/header-ops.js';
import type { CompiledDestination, CompiledEndpoint, CompiledRoute } from '../compile/types.js';
import { classifyUpstreamError, Errors, sendLocalError, SERVER_NAME } from './local-reply.js';

/** Idle time after which a tunnel is closed, in ms (Envoy's default stream idle timeout: 5 min). */
export let WEBSOCKET_IDLE_TIMEOUT_MS = 300_000;

/** For tests: a shorter idle timeout. */
export function setWebSocketIdleTimeout(ms: number): void {
  WEBSOCKET_IDLE_TIMEOUT_MS = ms;
}

/** Largest upstream response head read before the splice; more is 502. */
const MAX_RESPONSE_HEAD = 64 * 1024;

interface PendingUpgrade {
  socket: net.Socket;
  head: Buffer;
}

/** Upgrade requests on their way through the request path, by request. */
const pending = new WeakMap<IncomingMessage, PendingUpgrade>();

/**
 * The `upgrade` event of the HTTP/1.1 engine. `serve` runs the normal request path with a response
 * object written straight onto the socket.
 */
export function acceptUpgrade(req: IncomingMessage, socket: net.Socket, head: Buffer, serve: (req: IncomingMessage, res: ServerResponse) => void): void {
  socket.on('error', destroyQuietly);
  const res = new http.ServerResponse(req);
  res.assignSocket(socket);
  // The parser has let go of this socket: after a local answer it is closed.
  res.shouldKeepAlive = false;
  res.once('finish', () => socket.end());
  const value = String(req.headers.upgrade ?? '').toLowerCase();
  if (value === 'websocket') pending.set(req, { socket, head });
  serve(req, res);
}

/** True when the request path should splice this request instead of proxying it as HTTP. */
export function isWebSocketUpgrade(req: IncomingMessage): boolean {
  return pending.has(req);
}

/**
 * Opens the tunnel to `endpoint`: sends the request head (`headers` are the final upstream request
 * headers, hop-by-hop already removed), relays the answer, and splices on 101.
 */
export function forwardUpgrade(
  req: IncomingMessage,
  res: ServerResponse,
  endpoint: CompiledEndpoint,
  connectTimeoutMs: number,
  route: CompiledRoute,
  destination: CompiledDestination,
  target: string,
  headers: string[],
): void {
  const up = pending.get(req);
  if (up === undefined) return sendLocalError(res, Errors.badRequest, true);
  pending.delete(req);
  const client = up.socket;
  const handle = endpoint.handle;
  if (handle !== null) handle.active++;
  let released = false;
  const release = (): void => {
    if (released) return;
    released = true;
    if (handle !== null) handle.active--;
  };

  let head = `${req.method ?? 'GET'} ${target} HTTP/1.1\r\n`;
  for (let i = 0; i < headers.length; i += 2) head += `${headers[i]}: ${headers[i + 1]}\r\n`;
  head += `connection: upgrade\r\nupgrade: ${String(req.headers.upgrade)}\r\n\r\n`;

  const upstream = net.connect({ host: endpoint.address, port: endpoint.port });
  const connectTimer = setTimeout(() => upstream.destroy(Object.assign(new Error('connect timeout'), { code: 'UND_ERR_CONNECT_TIMEOUT' })), connectTimeoutMs);
  let spliced = false;
  let answered = false;
  const closeBoth = (): void => {
    client.destroy();
    upstream.destroy();
    release();
  };
  upstream.on('error', (err) => {
    clearTimeout(connectTimer);
    if (!answered && !res.headersSent) {
      answered = true;
      release();
      sendLocalError(res, classifyUpstreamError(err), true);
      return;
    }
    closeBoth();
  });
  client.on('close', () => {
    if (!spliced) upstream.destroy();
    release();
  });
  upstream.on('connect', () => {
    clearTimeout(connectTimer);
    upstream.setNoDelay(true);
    upstream.write(head);
    if (up.head.length > 0) upstream.write(up.head);
  });

  let buffered: Buffer = Buffer.alloc(0);
  const onHead = (chunk: Buffer): void => {
    buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
    const end = buffered.indexOf('\r\n\r\n');
    if (end === -1) {
      if (buffered.length > MAX_RESPONSE_HEAD) {
        upstream.removeListener('data', onHead);
        upstream.destroy();
        answered = true;
        release();
        sendLocalError(res, Errors.protocolError, true);
      }
      return;
    }
    upstream.removeListener('data', onHead);
    upstream.pause();
    answered = true;
    const parsed = parseHead(buffered.subarray(0, end).toString('latin1'));
    const rest = buffered.subarray(end + 4);
    if (parsed === null) {
      upstream.destroy();
      release();
      return sendLocalError(res, Errors.protocolError, true);
    }
    let out = parsed.headers;
    // Responses: destination-level edits first, then route-level (IR HeaderOps order).
    if (destination.responseHeaders !== null) out = applyHeaderOps(out, destination.responseHeaders);
    if (route.responseHeaders !== null) out = applyHeaderOps(out, route.responseHeaders);
    let text = `HTTP/1.1 ${parsed.status} ${parsed.reason}\r\n`;
    for (let i = 0; i < out.length; i += 2) text += `${out[i]}: ${out[i + 1]}\r\n`;
    client.write(`${text}\r\n`);
    if (rest.length > 0) client.write(rest);
    if (parsed.status === 101) {
      spliced = true;
      // Both sockets are now one byte stream; either end closing closes the other.
      client.setTimeout(WEBSOCKET_IDLE_TIMEOUT_MS, closeBoth);
      client.on('end', () => upstream.end());
      upstream.on('end', () => client.end());
      upstream.on('close', closeBoth);
      client.on('close', closeBoth);
      client.pipe(upstream, { end: false });
      upstream.pipe(client, { end: false });
      upstream.resume();
      return;
    }
    // Not upgraded: relay the answer; the connection closes after it (Content-Length or upstream close).
    let remaining = parsed.contentLength ?? (parsed.status === 204 || parsed.status === 304 ? 0 : -1);
    remaining -= remaining > 0 ? rest.length : 0;
    if (remaining === 0) return closeAfterFlush(client, upstream, release);
    upstream.on('data', (c: Buffer) => {
      client.write(c);
      if (remaining > 0 && (remaining -= c.length) <= 0) closeAfterFlush(client, upstream, release);
    });
    upstream.on('end', () => closeAfterFlush(client, upstream, release));
    upstream.resume();
  };
  upstream.on('data', onHead);
}

function closeAfterFlush(client: net.Socket, upstream: net.Socket, release: () => void): void {
  upstream.destroy();
  client.end();
  release();
}

/** Status line and headers of an HTTP/1.1 response head; hop-by-hop kept only for 101; `server` replaced. */
function parseHead(text: string): { status: number; reason: string; headers: string[]; contentLength: number | null } | null {
  const lines = text.split('\r\n');
  const m = /^HTTP\/1\.[01] (\d{3})(?: (.*))?$/.exec(lines[0]);
  if (m === null) return null;
  const status = Number(m[1]);
  const headers: string[] = [];
  let contentLength: number | null = null;
  for (let i = 1; i < lines.length; i++) {
    const colon = lines[i].indexOf(':');
    if (colon <= 0) return null;
    const name = lines[i].slice(0, colon).trim().toLowerCase();
    const value = lines[i].slice(colon + 1).trim();
    if (name === 'server') continue;
    if (status !== 101 && (name === 'connection' || name === 'upgrade' || name === 'keep-alive' || name === 'transfer-encoding')) continue;
    if (name === 'content-length') contentLength = Number(value);
    headers.push(name, value);
  }
  headers.push('server', SERVER_NAME);
  if (status !== 101) headers.push('connection', 'close');
  return { status, reason: m[2] ?? '', headers, contentLength };
}

function destroyQuietly(this: net.Socket): void {
  this.destroy();
}
