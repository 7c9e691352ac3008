/**
 * Fault injection (Istio HTTPFaultInjection, Envoy fault filter), applied after the route is chosen
 * and before any endpoint is: a delay (flag `DI`), then maybe an abort answered locally (flag `FI`).
 * The route timeout starts after the delay, as in Envoy (the router only sees the request then).
 */

import type { ServerResponse } from 'node:http';
import type { Http2ServerResponse } from 'node:http2';
import type { FaultAbort, FaultInjection } from '../../ir/types.js';
import { isHttp2 } from '../http/h2-compat.js';
import { noteLocalReply } from '../../observability/record.js';
import { sendLocalError, SERVER_NAME, FLAGS_HEADER, type LocalError } from '../http/local-reply.js';

/** Delay (ms, 0 = none) drawn for one request. */
export function faultDelayMs(f: FaultInjection, random: () => number): number {
  const d = f.delay;
  if (d === null || d.percentage <= 0) return 0;
  return d.percentage >= 100 || random() * 100 < d.percentage ? d.fixedDelayMs : 0;
}

/** The abort drawn for one request, or null. */
export function faultAbort(f: FaultInjection, random: () => number): FaultAbort | null {
  const a = f.abort;
  if (a === null || a.percentage <= 0) return null;
  return a.percentage >= 100 || random() * 100 < a.percentage ? a : null;
}

const abortErrors = new Map<number, LocalError>();

/** Answers an injected abort: the status with body `fault filter abort`, or a gRPC trailers-only answer. */
export function sendFaultAbort(res: ServerResponse, a: FaultAbort): void {
  if (a.kind === 'grpc') {
    noteLocalReply(res, 'FI', 0);
    // HTTP/2: a trailers-only answer is one HEADERS frame that ends the stream (gRPC clients read
    // grpc-status from it); written through the compat layer it would be HEADERS then an empty DATA.
    if (res.req !== undefined && isHttp2(res.req)) {
      const stream = (res as unknown as Http2ServerResponse).stream;
      if (!stream.headersSent && !stream.destroyed) stream.respond({ ':status': 200, server: SERVER_NAME, 'content-type': 'application/grpc', 'grpc-status': String(a.grpcStatus), 'grpc-message': 'fault filter abort', [FLAGS_HEADER]: 'FI' }, { endStream: true });
      return;
    }
    res.writeHead(200, ['server', SERVER_NAME, 'content-type', 'application/grpc', 'grpc-status', String(a.grpcStatus), 'grpc-message', 'fault filter abort', 'content-length', '0', FLAGS_HEADER, 'FI']);
    res.end();
    return;
  }
  let e = abortErrors.get(a.status);
  if (e === undefined) {
    e = { status: a.status, flag: 'FI', code: 'MG_ERR_FAULT_ABORT', body: Buffer.from('fault filter abort') };
    abortErrors.set(a.status, e);
  }
  sendLocalError(res, e);
}
