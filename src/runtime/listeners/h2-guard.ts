/**
 * Per-session guards for the HTTP/2 engine (hardening.md §4.3), on top of the server settings in
 * http-front.ts (100 concurrent streams, 64 KiB header list, bounded pings and session memory, idle
 * GOAWAY):
 *
 * - Rapid reset (CVE-2023-44487): a stream the client resets before the gateway answered is
 *   "premature". A session is abusive, and gets GOAWAY ENHANCE_YOUR_CALM then a close, when at least
 *   `minStreamsForRatio` streams were opened and more than half of them were premature (Envoy 1.27.1's
 *   rule), or when more than `maxPrematurePerSecond` premature resets happen within one second
 *   (whatever the ratio). Node's own limit (GOAWAY after about 1000 resets) stays underneath.
 * - CONTINUATION flood (Node CVE-2024-27983, fixed in Node 20.12.1, which meshgate requires): the
 *   header block is bounded by `maxHeaderListSize` in http-front.ts, and nghttp2 1.61 (bundled)
 *   caps CONTINUATION frames per block.
 * - Flow-control windows: the connection window is raised to 1 MiB, the per-stream window stays at
 *   the 64 KiB default (Envoy's edge advice), so one slow reader can make the gateway buffer at
 *   most that much per stream.
 */

import type http2 from 'node:http2';

export const H2_GUARD = {
  /** Streams before the premature-reset ratio is judged (Envoy: 500; lower is stricter). */
  minStreamsForRatio: 100,
  /** Premature resets per second that close a session whatever the ratio. */
  maxPrematurePerSecond: 200,
  /** Per-connection receive window, bytes (Envoy edge: 1 MiB). */
  connectionWindowSize: 1024 * 1024,
  /** Per-stream receive window, bytes (the RFC default, Envoy edge advice 64 KiB). */
  initialWindowSize: 65_535,
} as const;

/** HTTP/2 error code ENHANCE_YOUR_CALM (RFC 9113 §7). */
const ENHANCE_YOUR_CALM = 0xb;

/** Counts kept per session. */
export class ResetTracker {
  streams = 0;
  premature = 0;
  #windowStart = 0;
  #windowCount = 0;

  /** Records a stream end; true when the session is now abusive. */
  record(premature: boolean, now: number): boolean {
    this.streams++;
    if (!premature) return false;
    this.premature++;
    if (now - this.#windowStart >= 1000) {
      this.#windowStart = now;
      this.#windowCount = 0;
    }
    this.#windowCount++;
    if (this.#windowCount > H2_GUARD.maxPrematurePerSecond) return true;
    return this.streams >= H2_GUARD.minStreamsForRatio && this.premature * 2 > this.streams;
  }
}

/** Attach to the HTTP/2 server's `session` event. */
export function guardSession(session: http2.ServerHttp2Session): void {
  const tracker = new ResetTracker();
  let closed = false;
  const abusive = (): void => {
    if (closed) return;
    closed = true;
    session.goaway(ENHANCE_YOUR_CALM);
    // Give the GOAWAY a moment to leave, then drop everything the peer still has open.
    setTimeout(() => session.destroy(), 100).unref();
  };
  session.on('stream', (stream: http2.ServerHttp2Stream) => {
    stream.once('close', () => {
      // Premature: reset by the peer before any response header went out.
      const premature = !stream.headersSent && stream.rstCode !== 0;
      if (tracker.record(premature, Date.now())) abusive();
    });
  });
  session.once('connect', () => {
    try {
      session.setLocalWindowSize(H2_GUARD.connectionWindowSize);
    } catch {
      // the session is already closing
    }
  });
}
