/**
 * The last line of defence of the request path: an exception thrown by meshgate's own code while
 * it serves a request (routing, filters, an upstream client's callback, an engine's head writer)
 * must never leave an event handler and end the worker with every connection it carries. The
 * engine boundaries (ListenerManager.serve and the node engine's listeners, the HTTP/2 stream
 * handler, the Exchange's upstream callbacks, the filters' promise continuations) catch it and
 * call `internalFailure`: the client gets a 500 when no response head went out yet, else its
 * stream or connection is reset; one log line (rate-limited: a flood of the same failure does not
 * flood the log). A try/catch at each boundary, nothing per header or per chunk.
 */

import type { Downstream } from './downstream.js';
import { localError, type LocalError } from './local-errors.js';
import { sendLocalError } from './local-reply.js';

export const INTERNAL_ERROR: LocalError = localError(500, null, 'MG_ERR_INTERNAL', 'internal error', 'meshgate_internal_error');

let failures = 0;
let lastLogAt = 0;
let unlogged = 0;

/** Internal failures since the process started (tests and diagnostics). */
export function internalFailureCount(): number {
  return failures;
}

/** Answers 500 (or resets what already started) after `err` escaped the request path at `where`. Never throws. */
export function internalFailure(d: Downstream | null, err: unknown, where: string): void {
  failures++;
  const now = Date.now();
  if (now - lastLogAt >= 1000) {
    const more = unlogged > 0 ? ` (${unlogged} more since the last report)` : '';
    lastLogAt = now;
    unlogged = 0;
    const e = err as { code?: unknown; stack?: unknown; message?: unknown } | null;
    const text = typeof e?.stack === 'string' ? e.stack : String(e?.message ?? err);
    process.stderr.write(`meshgate: internal error in ${where}, request answered 500 or reset${more}: ${text}\n`);
  } else unlogged++;
  if (d === null) return;
  try {
    if (d.record !== null && d.record.details === null) d.record.details = 'meshgate_internal_error';
    if (!d.headersSent && !d.destroyed) sendLocalError(d, INTERNAL_ERROR, true);
    else if (!d.ended && !d.destroyed) d.reset(err instanceof Error ? err : undefined);
  } catch {
    try {
      d.reset();
    } catch {
      // Nothing more can be done for this request; the worker lives on.
    }
  }
}
