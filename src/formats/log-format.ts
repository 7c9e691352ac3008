/**
 * Envoy access-log format strings (MeshConfig `accessLogFormat`, `envoyFileAccessLog.logFormat`):
 * text with `%COMMAND%`, `%COMMAND(ARG)%` and `%COMMAND(ARG):MAXLEN%` operators
 * (https://www.envoyproxy.io/docs/envoy/latest/configuration/observability/access_log/usage).
 *
 * In `src/formats/` (pure languages shared by translate, which reports errors with their field, and
 * observability, which evaluates them; imports only `lib/`).
 *
 * PURE parsing: `parseLogFormat` runs once per snapshot (translate calls it to report unknown
 * operators; the data plane to compile); the per-request part is a walk over the parsed parts,
 * reading fields of the finished record. The operators are those of Istio's default format plus
 * the common ones; any other is an error naming it.
 */
/** Istio's access-log fields of one request or connection, by name (`observability/access-log.ts` fills it). */
export type LogEntry = Record<string, string | number | null>;

/** What one log line is made from: Istio's fields, plus header lookups for HTTP (null for TCP). */
export interface LogSubject {
  readonly entry: LogEntry;
  /** A request header by lowercase name (`:authority`, `:path`, `:method`, `:scheme` included); null when absent. */
  requestHeader(name: string): string | null;
  responseHeader(name: string): string | null;
  /** Wall-clock start (ms since the epoch). */
  readonly startWall: number;
  readonly attempts: number;
  readonly grpcStatus: string;
}

type Value = string | number | null;
type Getter = (s: LogSubject) => Value;

export interface FormatOperator {
  /** The operator as written (`%REQ(:PATH):20%`), for messages. */
  text: string;
  get: Getter;
  /** Truncate the value to this many characters; null = no limit. */
  maxLength: number | null;
}

/** Literal text and operators, in order. */
export type LogFormat = (string | FormatOperator)[];

export class LogFormatError extends Error {}

const field =
  (key: string): Getter =>
  (s) =>
    s.entry[key];

/** Address `host:port` -> host (IPv6 brackets removed). */
function withoutPort(v: Value): Value {
  if (typeof v !== 'string') return v;
  const i = v.lastIndexOf(':');
  if (i < 0) return v;
  const host = v.slice(0, i);
  return host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
}

/** Operators without an argument. */
const SIMPLE: Record<string, Getter> = {
  PROTOCOL: field('protocol'),
  RESPONSE_CODE: (s) => s.entry.response_code,
  RESPONSE_FLAGS: field('response_flags'),
  RESPONSE_CODE_DETAILS: field('response_code_details'),
  CONNECTION_TERMINATION_DETAILS: field('connection_termination_details'),
  UPSTREAM_TRANSPORT_FAILURE_REASON: field('upstream_transport_failure_reason'),
  BYTES_RECEIVED: field('bytes_received'),
  BYTES_SENT: field('bytes_sent'),
  DURATION: field('duration'),
  UPSTREAM_HOST: field('upstream_host'),
  UPSTREAM_CLUSTER: field('upstream_cluster'),
  UPSTREAM_CLUSTER_RAW: field('upstream_cluster'),
  UPSTREAM_LOCAL_ADDRESS: field('upstream_local_address'),
  UPSTREAM_REMOTE_ADDRESS: field('upstream_host'),
  DOWNSTREAM_LOCAL_ADDRESS: field('downstream_local_address'),
  DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT: (s) => withoutPort(s.entry.downstream_local_address),
  DOWNSTREAM_REMOTE_ADDRESS: field('downstream_remote_address'),
  DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT: (s) => withoutPort(s.entry.downstream_remote_address),
  DOWNSTREAM_DIRECT_REMOTE_ADDRESS: field('downstream_remote_address'),
  DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT: (s) => withoutPort(s.entry.downstream_remote_address),
  REQUESTED_SERVER_NAME: field('requested_server_name'),
  ROUTE_NAME: field('route_name'),
  STREAM_ID: field('request_id'),
  UPSTREAM_REQUEST_ATTEMPT_COUNT: (s) => s.attempts,
  GRPC_STATUS: (s) => (s.grpcStatus === '' ? null : s.grpcStatus),
  GRPC_STATUS_NUMBER: (s) => (s.grpcStatus === '' ? null : Number(s.grpcStatus)),
};

/** Every operator name this parser knows (for messages and docs). */
export const LOG_FORMAT_OPERATORS: readonly string[] = [...Object.keys(SIMPLE), 'START_TIME', 'REQ', 'RESP', 'HOSTNAME'].sort();

/** Parses an Envoy format string; throws LogFormatError naming the first bad operator. */
export function parseLogFormat(format: string, hostname = ''): LogFormat {
  const out: LogFormat = [];
  let literal = '';
  let i = 0;
  while (i < format.length) {
    const c = format[i];
    if (c !== '%') {
      literal += c;
      i++;
      continue;
    }
    if (format[i + 1] === '%') {
      literal += '%';
      i += 2;
      continue;
    }
    const m = /^%([A-Z][A-Z0-9_]*)(?:\(([^)]*)\))?(?::(\d+))?%/.exec(format.slice(i));
    if (m === null) throw new LogFormatError(`unterminated or malformed operator at offset ${i} ("${format.slice(i, i + 24)}"); a literal % is written %%`);
    if (literal !== '') out.push(literal);
    literal = '';
    out.push(compileOperator(m[0], m[1], m[2], m[3] === undefined ? null : Number(m[3]), hostname));
    i += m[0].length;
  }
  if (literal !== '') out.push(literal);
  return out;
}

function compileOperator(text: string, name: string, arg: string | undefined, maxLength: number | null, hostname: string): FormatOperator {
  const simple = SIMPLE[name];
  if (simple !== undefined) {
    if (arg !== undefined) throw new LogFormatError(`${text}: ${name} takes no argument`);
    return { text, get: simple, maxLength };
  }
  switch (name) {
    case 'START_TIME': {
      const fmt = arg ?? null;
      return { text, get: (s) => (fmt === null || fmt === '' ? new Date(s.startWall).toISOString() : strftime(fmt, s.startWall)), maxLength };
    }
    case 'REQ':
    case 'RESP': {
      if (arg === undefined || arg === '') throw new LogFormatError(`${text}: ${name} needs a header name, e.g. ${name}(USER-AGENT)`);
      const [main, alt] = arg.split('?').map((h) => h.trim().toLowerCase());
      if (main === '' || alt === '') throw new LogFormatError(`${text}: empty header name`);
      return { text, get: name === 'REQ' ? requestGetter(main, alt ?? null) : responseGetter(main, alt ?? null), maxLength };
    }
    case 'HOSTNAME':
      return { text, get: () => hostname, maxLength };
    default:
      throw new LogFormatError(`${text}: unknown operator ${name} (supported: ${LOG_FORMAT_OPERATORS.join(', ')})`);
  }
}

function requestGetter(main: string, alt: string | null): Getter {
  return (s) => s.requestHeader(main) ?? (alt === null ? null : s.requestHeader(alt));
}

function responseGetter(main: string, alt: string | null): Getter {
  // The gateway's own header: its value is the upstream service time in ms.
  const get = (s: LogSubject, h: string): Value => (h === 'x-envoy-upstream-service-time' ? (s.responseHeader(h) ?? s.entry.upstream_service_time) : s.responseHeader(h));
  return (s) => get(s, main) ?? (alt === null ? null : get(s, alt));
}

const pad = (n: number, w = 2) => String(n).padStart(w, '0');

/** The strftime subset Envoy users write in `%START_TIME(...)%`, in UTC. */
function strftime(fmt: string, ms: number): string {
  const d = new Date(ms);
  return fmt.replace(/%(\d?)([a-zA-Z%])/g, (all, digits: string, c: string) => {
    switch (c) {
      case 'Y':
        return String(d.getUTCFullYear());
      case 'm':
        return pad(d.getUTCMonth() + 1);
      case 'd':
        return pad(d.getUTCDate());
      case 'H':
        return pad(d.getUTCHours());
      case 'M':
        return pad(d.getUTCMinutes());
      case 'S':
        return pad(d.getUTCSeconds());
      case 'T':
        return `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}`;
      case 'F':
        return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}`;
      case 'f': {
        const w = digits === '' ? 9 : Number(digits);
        return (pad(d.getUTCMilliseconds(), 3) + '000000').slice(0, w);
      }
      case 's':
        return String(Math.floor(ms / 1000));
      case 'z':
        return '+0000';
      case 'Z':
        return 'UTC';
      case '%':
        return '%';
      default:
        return all;
    }
  });
}

function truncate(v: string, max: number | null): string {
  return max !== null && v.length > max ? v.slice(0, max) : v;
}

/** One text line (Envoy prints `-` for a missing value); the format's own newline is kept, one is added when missing. */
export function renderText(format: LogFormat, s: LogSubject): string {
  let line = '';
  for (const p of format) {
    if (typeof p === 'string') line += p;
    else {
      const v = p.get(s);
      line += v === null || v === '' ? '-' : truncate(String(v), p.maxLength);
    }
  }
  return line.endsWith('\n') ? line : `${line}\n`;
}

/** JSON labels (Envoy `json_format`): a key whose format is one operator keeps its type (number, null); others are strings. */
export type JsonLogFormat = { key: string; format: LogFormat }[];

export function renderJson(format: JsonLogFormat, s: LogSubject): string {
  const out: Record<string, Value> = {};
  for (const { key, format: f } of format) {
    if (f.length === 1 && typeof f[0] !== 'string') {
      const v = f[0].get(s);
      out[key] = v === '' ? null : typeof v === 'string' ? truncate(v, f[0].maxLength) : v;
    } else {
      let text = '';
      for (const p of f) {
        if (typeof p === 'string') text += p;
        else {
          const v = p.get(s);
          text += v === null || v === '' ? '-' : truncate(String(v), p.maxLength);
        }
      }
      out[key] = text;
    }
  }
  return `${JSON.stringify(out)}\n`;
}
