/** gRPC upstream for bench/h2.ts: the test echo server on `127.0.0.1:<any>`; prints its port. */

import { startGrpcEcho } from '../test/support/grpc-echo.js';

const server = await startGrpcEcho('bench');
process.stdout.write(`${server.port}\n`);
process.on('SIGTERM', () => void server.close().then(() => process.exit(0)));
