/**
 * The fallback upstream when nginx is not installed: a node:http server answering 200 with the
 * same small body on every request, keep-alive, in its own process.
 *
 *   node dist/bench/upstream-node.js PORT
 */

import http from 'node:http';
import { UPSTREAM_BODY } from './config-gen.js';

const port = Number(process.argv[2]);
const body = Buffer.from(UPSTREAM_BODY);
const headers = ['content-type', 'text/plain', 'content-length', String(body.length)];

const server = http.createServer({ keepAliveTimeout: 75_000 }, (_req, res) => {
  res.writeHead(200, headers);
  res.end(body);
});
server.maxRequestsPerSocket = 0;
server.listen(port, '127.0.0.1');
process.on('SIGTERM', () => server.close(() => process.exit(0)));
