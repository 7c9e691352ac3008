import assert from 'node:assert/strict';
import { test } from 'node:test';
import { busyPortHint } from './port-hint.js';

const opts = { httpPort: 8080, httpsPort: 8443, portMap: { '80': 8080, '443': 8443, '9000': 19000 } };
for (const { desc, error, want } of [
  { desc: 'http port', error: 'listener 0.0.0.0_8080 (0.0.0.0:8080): bind EADDRINUSE 0.0.0.0:8080', want: /change --http-port/ },
  { desc: 'https port', error: 'listener 0.0.0.0_8443 (0.0.0.0:8443): bind EADDRINUSE 0.0.0.0:8443', want: /change --https-port/ },
  { desc: 'a mapped Gateway port', error: 'listener 0.0.0.0_19000 (0.0.0.0:19000): bind EADDRINUSE 0.0.0.0:19000', want: /change --port-map \(9000=19000\)/ },
  { desc: 'an unmapped Gateway port', error: 'bind EADDRINUSE 0.0.0.0:7000', want: /--port-map 7000=FREE_PORT/ },
  { desc: 'not a busy port', error: 'bind EACCES 0.0.0.0:80', want: /^$/ },
]) {
  test(`busyPortHint: ${desc}`, () => assert.match(busyPortHint(error, opts), want));
}
