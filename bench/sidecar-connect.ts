/**
 * Preload for bench/sidecar.ts (`node --import <this file> dist/bench/fixed-rate-load.js ...`):
 * fixed-rate-load.ts always dials 127.0.0.1 (its HOST argument only fills the Host header). In the
 * network-namespace lab the load must leave the client pod instead, to the server pod's address or to
 * a Service VIP that `meshgate capture` sends to the client's sidecar. With LOAD_CONNECT_HOST set, this
 * rewrites the host of every `net.connect(options)` call of the process to it; the port, noDelay and
 * everything else the load generator passes are kept. Without the variable it changes nothing.
 */
import net from 'node:net';

const target = process.env.LOAD_CONNECT_HOST;
if (target) {
  const original = net.connect;
  const patched = function (this: unknown, ...args: unknown[]): net.Socket {
    if (typeof args[0] === 'object' && args[0] !== null) args[0] = { ...(args[0] as object), host: target };
    return (original as (...a: unknown[]) => net.Socket).apply(net, args);
  };
  (net as unknown as { connect: unknown }).connect = patched;
}
