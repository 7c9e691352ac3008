/**
 * Connection limits of every listener (hardening D-05, Envoy edge advice: a per-listener connection
 * limit). Above `maxConnectionsPerListener`, Node closes each new connection as soon as it is
 * accepted; established connections are not affected. Mutable so tests can lower it before a
 * listener opens.
 */
export const EDGE_LIMITS = {
  /** Envoy's edge example uses 10 000; one process can hold about 19 000 sockets here (ulimit -n 20000). */
  maxConnectionsPerListener: 10_000,
};
