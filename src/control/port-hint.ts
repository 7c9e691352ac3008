/**
 * What to change when a port is busy: the flag (or the object) that asked for it, so the message a
 * user reads says what to do, not only `EADDRINUSE`.
 */
import type { TranslateOptions } from '../translate/types.js';

/** "change --http-port" style advice for `port`; '' when the error is not about a busy port. */
export function busyPortHint(error: string, options: Pick<TranslateOptions, 'httpPort' | 'httpsPort' | 'portMap'>): string {
  if (!/EADDRINUSE/.test(error)) return '';
  const m = /:(\d+)\b(?!.*:\d+\b)/.exec(error);
  const port = m ? Number(m[1]) : NaN;
  if (port === options.httpPort) return `port ${port} is in use: change --http-port`;
  if (port === options.httpsPort) return `port ${port} is in use: change --https-port`;
  const mapped = Object.entries(options.portMap).find(([, to]) => to === port);
  if (mapped) return `port ${port} is in use: change --port-map (${mapped[0]}=${port})`;
  return `port ${Number.isNaN(port) ? '' : `${port} `}is in use: change the Gateway server port or map it elsewhere with --port-map ${Number.isNaN(port) ? 'PORT' : port}=FREE_PORT`;
}
