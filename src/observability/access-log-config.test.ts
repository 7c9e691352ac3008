/** Table tests for access-log formats (Envoy operators) and CEL filters, without sockets. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CelError, compileCel, type CelSubject } from '../formats/cel.js';
import { LogFormatError, parseLogFormat, renderJson, renderText } from '../formats/log-format.js';

function subject(over: Partial<CelSubject> = {}, entry: Record<string, string | number | null> = {}, headers: Record<string, string> = {}, respHeaders: Record<string, string> = {}): CelSubject {
  return {
    http: true,
    mtls: false,
    attempts: 1,
    grpcStatus: '',
    startWall: Date.UTC(2026, 0, 2, 3, 4, 5, 678),
    entry: {
      method: 'GET',
      path: '/api/items?x=1',
      protocol: 'HTTP/1.1',
      response_code: 404,
      response_flags: 'NR',
      bytes_received: 0,
      bytes_sent: 9,
      duration: 3,
      authority: 'shop.example.com',
      upstream_host: '10.0.0.7:8080',
      upstream_cluster: 'outbound|80||web.default.svc.cluster.local',
      downstream_remote_address: '127.0.0.1:54321',
      downstream_local_address: '127.0.0.1:8080',
      route_name: 'virtualservice/default/shop/http/0',
      request_id: 'abc',
      upstream_service_time: '2',
      ...entry,
    },
    requestHeader: (n) => (n === ':method' ? 'GET' : n === ':path' ? '/api/items?x=1' : n === ':authority' ? 'shop.example.com' : (headers[n] ?? null)),
    responseHeader: (n) => respHeaders[n] ?? null,
    ...over,
  };
}

test('parseLogFormat + renderText', () => {
  const cases: { desc: string; format: string; want: string }[] = [
    { desc: 'Istio default operators', format: '[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" %RESPONSE_CODE% %RESPONSE_FLAGS%', want: '[2026-01-02T03:04:05.678Z] "GET /api/items?x=1 HTTP/1.1" 404 NR\n' },
    { desc: 'missing header is -', format: '%REQ(USER-AGENT)% %RESP(X-NOPE)%', want: '- -\n' },
    { desc: 'max length', format: '%REQ(:PATH):4%', want: '/api\n' },
    { desc: 'upstream and addresses', format: '%UPSTREAM_HOST% %UPSTREAM_CLUSTER% %DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT% %ROUTE_NAME%', want: '10.0.0.7:8080 outbound|80||web.default.svc.cluster.local 127.0.0.1 virtualservice/default/shop/http/0\n' },
    { desc: 'upstream service time falls back to the record', format: '%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%', want: '2\n' },
    { desc: 'start time format and %%', format: '%START_TIME(%Y/%m/%d %T.%3f)% 100%%', want: '2026/01/02 03:04:05.678 100%\n' },
    { desc: 'own newline kept', format: '%BYTES_SENT% %DURATION%\n', want: '9 3\n' },
  ];
  for (const c of cases) assert.equal(renderText(parseLogFormat(c.format), subject()), c.want, c.desc);
});

test('parseLogFormat rejects what it does not know, naming it', () => {
  const cases: { desc: string; format: string; want: RegExp }[] = [
    { desc: 'unknown operator', format: '%FOO_BAR%', want: /unknown operator FOO_BAR/ },
    { desc: 'REQ without header', format: '%REQ()%', want: /needs a header name/ },
    { desc: 'argument on a simple operator', format: '%RESPONSE_CODE(X)%', want: /takes no argument/ },
    { desc: 'unterminated', format: 'abc %RESPONSE_CODE', want: /malformed operator at offset 4/ },
  ];
  for (const c of cases) assert.throws(() => parseLogFormat(c.format), (e: unknown) => e instanceof LogFormatError && c.want.test(e.message), c.desc);
});

test('renderJson keeps single-operator values typed', () => {
  const line = renderJson([{ key: 'code', format: parseLogFormat('%RESPONSE_CODE%') }, { key: 'ua', format: parseLogFormat('%REQ(USER-AGENT)%') }, { key: 'both', format: parseLogFormat('%REQ(:METHOD)% %RESPONSE_CODE%') }], subject());
  assert.deepEqual(JSON.parse(line), { code: 404, ua: null, both: 'GET 404' });
});

test('compileCel: the filters users write', () => {
  const cases: { desc: string; expr: string; s?: CelSubject; want: boolean }[] = [
    { desc: 'code >= 400', expr: 'response.code >= 400', want: true },
    { desc: 'code != 404', expr: 'response.code != 404', want: false },
    { desc: 'and / or / not', expr: "!(request.method == 'POST') && (response.code == 500 || request.host == 'shop.example.com')", want: true },
    { desc: 'url_path drops the query', expr: "request.url_path == '/api/items'", want: true },
    { desc: 'startsWith / endsWith / contains', expr: "request.path.startsWith('/api') && request.host.endsWith('.com') && request.path.contains('items')", want: true },
    { desc: 'in a list', expr: "request.method in ['GET', 'HEAD']", want: true },
    { desc: 'header present', expr: "request.headers['x-debug'] == '1'", s: subject({}, {}, { 'x-debug': '1' }), want: true },
    { desc: 'header names are case-insensitive', expr: "request.headers['X-Debug'] == '1'", s: subject({}, {}, { 'x-debug': '1' }), want: true },
    { desc: 'missing header: error, not logged', expr: "request.headers['x-debug'] == '1'", want: false },
    { desc: 'error absorbed by ||', expr: "request.headers['x-debug'] == '1' || response.code == 404", want: true },
    { desc: 'has()', expr: "has(request.headers['x-debug'])", want: false },
    { desc: 'key in headers', expr: "'x-debug' in request.headers", s: subject({}, {}, { 'x-debug': '' }), want: true },
    { desc: 'mtls', expr: 'connection.mtls', s: subject({ mtls: true }), want: true },
    { desc: 'TCP: HTTP attributes are errors', expr: 'response.code >= 400', s: subject({ http: false }), want: false },
    { desc: 'TCP: connection attributes work', expr: "xds.cluster_name.startsWith('outbound')", s: subject({ http: false }), want: true },
    { desc: 'matches', expr: "request.path.matches('^/api/[a-z]+')", want: true },
    { desc: 'size', expr: 'size(request.path) > 5', want: true },
    { desc: 'ternary', expr: "response.code >= 500 ? true : request.method == 'GET'", want: true },
  ];
  for (const c of cases) assert.equal(compileCel(c.expr)(c.s ?? subject()), c.want, c.desc);
});

test('compileCel: errors say what and where', () => {
  const cases: { desc: string; expr: string; want: RegExp }[] = [
    { desc: 'type mismatch', expr: "response.code >= '400'", want: /no matching overload for >= \(int, string\)/ },
    { desc: 'unknown attribute', expr: 'response.status == 200', want: /unknown attribute "response.status"/ },
    { desc: 'dangling operator', expr: 'response.code == 200 &&', want: /unexpected end/ },
    { desc: 'not a bool', expr: 'response.code', want: /is a int, not a bool/ },
    { desc: 'unknown method', expr: "request.path.lower() == 'a'", want: /unknown method lower\(\)/ },
    { desc: 'empty', expr: ' ', want: /empty expression/ },
    { desc: 'bad character', expr: 'response.code # 1', want: /unexpected "#" at offset 14/ },
    { desc: 'not RE2 (backreference)', expr: "request.path.matches('(a)\\\\1')", want: /invalid RE2 pattern/ },
  ];
  for (const c of cases) assert.throws(() => compileCel(c.expr), (e: unknown) => e instanceof CelError && c.want.test(e.message), c.desc);
});
