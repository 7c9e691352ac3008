/**
 * Transparent (IP_TRANSPARENT) listeners for Node, which cannot set the option on a socket itself.
 *
 * TPROXY only hands a connection to a listener whose socket has IP_TRANSPARENT set (the kernel checks
 * it per packet), and setting it needs CAP_NET_ADMIN. Node 20 has no setsockopt. So, as reference
 * mesh.md §2.3 verified on this machine kind, a tiny launcher does it:
 *   1. as root, it creates each listening socket, sets SO_REUSEADDR and IP_TRANSPARENT (IPv6:
 *      IPV6_TRANSPARENT and IPV6_V6ONLY), binds and listens;
 *   2. it drops to the proxy's gid and uid (so every socket the proxy opens afterwards is owned by the
 *      uid that capture exempts);
 *   3. it execs the command with the sockets left open (not close-on-exec) and their numbers in
 *      MESHGATE_TRANSPARENT_FDS (`127.0.0.1:15001=3,127.0.0.1:15006=4`);
 *   4. Node calls `server.listen({ fd })`, and `socket.localAddress:localPort` of every accepted
 *      connection is the original destination.
 *
 * The launcher is Perl with only perl-base modules (Socket, POSIX): perl-base is Essential on Debian,
 * so it is in `node:20-slim` and every Debian image, where python3 is not.
 */
import net from 'node:net';

/** The environment variable naming the inherited transparent listening sockets. */
export const TRANSPARENT_FDS_ENV = 'MESHGATE_TRANSPARENT_FDS';

/** IP_TRANSPARENT from <linux/in.h>; SOL_IP is 0. */
export const IP_TRANSPARENT = 19;

/** IPV6_TRANSPARENT from <linux/in6.h>; SOL_IPV6 is 41. */
export const IPV6_TRANSPARENT = 75;

const LAUNCHER = String.raw`
use strict; use warnings;
use Socket qw(PF_INET PF_INET6 AF_INET6 SOCK_STREAM SOL_SOCKET SO_REUSEADDR inet_aton inet_pton pack_sockaddr_in pack_sockaddr_in6);
use POSIX ();
$^F = 1023;   # sockets created from here on stay open across exec
my ($uid, $gid) = (shift @ARGV, shift @ARGV);
my (@keep, @names);
while (@ARGV && $ARGV[0] ne '--') {
  my $spec = shift @ARGV;
  my ($s, $addr, $port);
  if ((($addr, $port) = $spec =~ /^\[([0-9a-fA-F:.]+)\]:(\d+)$/)) {
    socket($s, PF_INET6, SOCK_STREAM, 0) or die "launcher: socket: $!\n";
    setsockopt($s, 41, 26, 1) or die "launcher: IPV6_V6ONLY: $!\n";
    setsockopt($s, 41, ${IPV6_TRANSPARENT}, 1) or die "launcher: IPV6_TRANSPARENT on $spec: $! (needs CAP_NET_ADMIN)\n";
    my $packed = inet_pton(AF_INET6, $addr) or die "launcher: bad address $addr\n";
    setsockopt($s, SOL_SOCKET, SO_REUSEADDR, 1) or die "launcher: SO_REUSEADDR: $!\n";
    bind($s, pack_sockaddr_in6($port, $packed)) or die "launcher: bind $spec: $!\n";
  } elsif ((($addr, $port) = $spec =~ /^([0-9.]+):(\d+)$/)) {
    socket($s, PF_INET, SOCK_STREAM, 0) or die "launcher: socket: $!\n";
    setsockopt($s, 0, ${IP_TRANSPARENT}, 1) or die "launcher: IP_TRANSPARENT on $spec: $! (needs CAP_NET_ADMIN)\n";
    setsockopt($s, SOL_SOCKET, SO_REUSEADDR, 1) or die "launcher: SO_REUSEADDR: $!\n";
    bind($s, pack_sockaddr_in($port, inet_aton($addr))) or die "launcher: bind $spec: $!\n";
  } else {
    die "launcher: bad listener $spec\n";
  }
  listen($s, 511) or die "launcher: listen $spec: $!\n";
  push @keep, $s; push @names, "$spec=" . fileno($s);
}
shift @ARGV;
@ARGV or die "launcher: no command after --\n";
$ENV{${TRANSPARENT_FDS_ENV}} = join(',', @names);
if ($gid >= 0) { POSIX::setgid($gid) or die "launcher: setgid $gid: $!\n"; $) = "$gid $gid"; }
if ($uid >= 0) { POSIX::setuid($uid) or die "launcher: setuid $uid: $!\n"; }
die "launcher: still uid $>\n" if $uid >= 0 && ($> != $uid || $< != $uid);
exec { $ARGV[0] } @ARGV or die "launcher: exec $ARGV[0]: $!\n";
`;

export interface TransparentLaunch {
  /** The listeners to create, `ADDRESS:PORT` or `[IPV6]:PORT`, e.g. `127.0.0.1:15001`, `[::1]:15001`. */
  listeners: string[];
  /** Drop to this uid (and gid) before exec; -1 keeps the current one. */
  uid: number;
  gid: number;
  /** The program and its arguments, run with the sockets inherited. */
  command: string[];
}

/** The argv (`perl -e ...`) that runs `command` with transparent listeners, e.g. under `ip netns exec`. */
export function transparentLauncherArgv(l: TransparentLaunch): string[] {
  for (const spec of l.listeners) {
    if (!/^(\d{1,3}(\.\d{1,3}){3}|\[[0-9a-fA-F:.]+\]):\d{1,5}$/.test(spec)) throw new Error(`transparent listener "${spec}" is not ADDRESS:PORT or [IPV6]:PORT`);
  }
  return ['perl', '-e', LAUNCHER, '--', String(l.uid), String(l.gid), ...l.listeners, '--', ...l.command];
}

/** The inherited transparent sockets (`ADDRESS:PORT` → fd) from MESHGATE_TRANSPARENT_FDS. */
export function inheritedTransparentFds(env: NodeJS.ProcessEnv = process.env): Map<string, number> {
  const out = new Map<string, number>();
  for (const item of (env[TRANSPARENT_FDS_ENV] ?? '').split(',')) {
    const m = /^(.+)=(\d+)$/.exec(item.trim());
    if (m) out.set(m[1], Number(m[2]));
  }
  return out;
}

/** Starts `server` on the inherited transparent socket for `spec` (`127.0.0.1:15001`). */
export function listenTransparent(server: net.Server, spec: string, env: NodeJS.ProcessEnv = process.env): Promise<void> {
  const fd = inheritedTransparentFds(env).get(spec);
  if (fd === undefined) return Promise.reject(new Error(`no inherited transparent socket for ${spec} (${TRANSPARENT_FDS_ENV}="${env[TRANSPARENT_FDS_ENV] ?? ''}")`));
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ fd }, () => {
      server.off('error', reject);
      resolve();
    });
  });
}
