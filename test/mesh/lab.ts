/**
 * A network-namespace lab for mesh tests (reference mesh.md §6).
 *
 *   - One "node" namespace holds a bridge (`br0`) with the node address; nothing is created in the
 *     root namespace (no link, route, rule or sysctl), and there is no default route anywhere, so
 *     traffic cannot leave the lab.
 *   - Each pod is a namespace with `eth0` (a veth whose other end is on the bridge), `lo` up, its
 *     address on the lab subnet, and optional extra on-link routes (a service VIP range: `connect()`
 *     to a VIP must reach OUTPUT to be captured, else it fails with ENETUNREACH first).
 *   - Processes run in a pod with `ip netns exec`; every one is tracked and killed at cleanup.
 *
 * Names: `mglab-<pid>-<n>-<pod>`. Every lab cleans up on `close()`, and on process exit as a last
 * resort; `sweepLeftovers()` removes the namespaces of labs whose process is gone (a test killed with
 * SIGKILL), never those of a live process. Deleting a namespace deletes its veths, bridge, iptables
 * rules, policy rules and routes.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';

export const LAB_PREFIX = 'mglab-';

export interface LabPodSpec {
  name: string;
  /** The pod's address on the lab subnet, e.g. 10.250.0.2. */
  ip: string;
  /** Extra on-link routes via eth0, e.g. a service VIP range `10.250.1.0/24` (or an IPv6 range). */
  routes?: string[];
  /** An IPv6 address too (dual stack), e.g. fd00:250::2; the prefix length is LabSpec.prefixLength6. */
  ip6?: string;
}

export interface LabSpec {
  /** The node (bridge) address, e.g. 10.250.0.1. */
  nodeIp: string;
  /** Prefix length of the lab subnet. */
  prefixLength: number;
  /** The node's IPv6 address on the bridge and the IPv6 prefix length, for dual-stack labs. */
  nodeIp6?: string;
  prefixLength6?: number;
  pods: LabPodSpec[];
}

/** A process started in a lab pod, with its output collected. */
export interface LabProcess {
  child: ChildProcess;
  stdout: string[];
  stderr: string[];
  /** Resolves with the exit code (or null when killed). */
  exited: Promise<number | null>;
}

/** Why the lab cannot run here, or undefined when it can (root, ip, iptables, perl, setpriv). */
export function labSkipReason(extraIptables: string[] = []): string | undefined {
  if (process.platform !== 'linux') return 'network-namespace lab needs Linux';
  if (typeof process.getuid === 'function' && process.getuid() !== 0) return 'network-namespace lab needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN)';
  for (const [cmd, pkg] of [
    ['ip', 'iproute2'],
    ['iptables', 'iptables'],
    ['iptables-save', 'iptables'],
    ['iptables-restore', 'iptables'],
    ['perl', 'perl-base'],
    ['setpriv', 'util-linux'],
    ...extraIptables.map((c) => [c, 'iptables'] as const),
  ]) {
    if (spawnSync('sh', ['-c', `command -v ${cmd}`]).status !== 0) return `network-namespace lab needs ${cmd}: apt-get install ${pkg}`;
  }
  return undefined;
}

/**
 * The lab must run in CI: `MESHGATE_CI=1` (set by .ci/run), `CI=true` or `MESHGATE_REQUIRE_NETNS=1`
 * turn a skip into a failure (reference §6.5), so a missing package or root cannot pass silently.
 */
export function labRequired(): boolean {
  return process.env.MESHGATE_CI === '1' || process.env.MESHGATE_REQUIRE_NETNS === '1' || process.env.CI === 'true';
}

function sh(cmd: string, args: string[], input?: string): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', input, timeout: 30_000 });
  return { status: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? (r.error ? String(r.error) : '') };
}

function must(cmd: string, args: string[], input?: string): string {
  const r = sh(cmd, args, input);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (exit ${r.status}): ${r.stderr.trim()}`);
  return r.stdout;
}

function listNamespaces(): string[] {
  return sh('ip', ['netns', 'list'])
    .stdout.split('\n')
    .map((l) => l.split(' ')[0])
    .filter((n) => n.startsWith(LAB_PREFIX));
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Kills what runs inside a namespace (only processes in our own lab namespaces) and deletes it. */
function destroyNamespace(ns: string): void {
  for (let attempt = 0; attempt < 3; attempt++) {
    const pids = sh('ip', ['netns', 'pids', ns]).stdout.split('\n').filter((p) => /^\d+$/.test(p.trim()));
    if (pids.length === 0) break;
    for (const p of pids) {
      try {
        process.kill(Number(p), 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
    spawnSync('sleep', ['0.1']);
  }
  sh('ip', ['netns', 'del', ns]);
}

/** Removes namespaces left by labs whose test process no longer exists. */
export function sweepLeftovers(): string[] {
  const swept: string[] = [];
  for (const ns of listNamespaces()) {
    const pid = Number(/^mglab-(\d+)-/.exec(ns)?.[1]);
    if (Number.isInteger(pid) && pid !== process.pid && pidAlive(pid)) continue;
    if (pid === process.pid && live.has(ns.split('-').slice(0, 3).join('-'))) continue;
    destroyNamespace(ns);
    swept.push(ns);
  }
  return swept;
}

const live = new Set<string>();
let counter = 0;
let exitHook = false;
const openLabs = new Set<Lab>();

export class Lab {
  readonly id: string;
  readonly nodeNs: string;
  readonly pods = new Map<string, { ns: string; ip: string; ip6?: string }>();
  readonly #procs = new Set<LabProcess>();
  #closed = false;

  private constructor(id: string) {
    this.id = id;
    this.nodeNs = `${id}-node`;
  }

  /** Builds the topology; on any failure it removes what it made and rethrows. */
  static create(spec: LabSpec): Lab {
    sweepLeftovers();
    const lab = new Lab(`${LAB_PREFIX}${process.pid}-${++counter}`);
    live.add(lab.id);
    openLabs.add(lab);
    if (!exitHook) {
      exitHook = true;
      process.on('exit', () => {
        for (const l of openLabs) l.close();
      });
      // A test run stopped by a signal (the runner's timeout) still removes its namespaces.
      for (const [signal, code] of [['SIGTERM', 143], ['SIGINT', 130]] as const) {
        process.once(signal, () => {
          for (const l of openLabs) l.close();
          process.exit(code);
        });
      }
    }
    try {
      lab.#build(spec);
    } catch (e) {
      lab.close();
      throw e;
    }
    return lab;
  }

  #build(spec: LabSpec): void {
    const node = this.nodeNs;
    must('ip', ['netns', 'add', node]);
    must('ip', ['-n', node, 'link', 'set', 'lo', 'up']);
    must('ip', ['-n', node, 'link', 'add', 'br0', 'type', 'bridge']);
    must('ip', ['-n', node, 'addr', 'add', `${spec.nodeIp}/${spec.prefixLength}`, 'dev', 'br0']);
    // nodad: the address is usable at once (no duplicate address detection wait).
    if (spec.nodeIp6) must('ip', ['-n', node, '-6', 'addr', 'add', `${spec.nodeIp6}/${spec.prefixLength6 ?? 64}`, 'dev', 'br0', 'nodad']);
    must('ip', ['-n', node, 'link', 'set', 'br0', 'up']);
    spec.pods.forEach((pod, i) => {
      const ns = `${this.id}-${pod.name}`;
      const host = `veth${i}`;
      must('ip', ['netns', 'add', ns]);
      this.pods.set(pod.name, { ns, ip: pod.ip, ip6: pod.ip6 });
      must('ip', ['-n', node, 'link', 'add', host, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns]);
      must('ip', ['-n', node, 'link', 'set', host, 'master', 'br0', 'up']);
      must('ip', ['-n', ns, 'addr', 'add', `${pod.ip}/${spec.prefixLength}`, 'dev', 'eth0']);
      if (pod.ip6) must('ip', ['-n', ns, '-6', 'addr', 'add', `${pod.ip6}/${spec.prefixLength6 ?? 64}`, 'dev', 'eth0', 'nodad']);
      must('ip', ['-n', ns, 'link', 'set', 'eth0', 'up']);
      must('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
      for (const r of pod.routes ?? []) must('ip', ['-n', ns, r.includes(':') ? '-6' : '-4', 'route', 'add', r, 'dev', 'eth0']);
    });
  }

  ns(pod: string): string {
    const p = this.pods.get(pod);
    if (!p) throw new Error(`lab has no pod "${pod}"`);
    return p.ns;
  }

  ip(pod: string): string {
    return this.pods.get(pod)!.ip;
  }

  /** Runs a command to completion in a pod (synchronously); throws on a non-zero exit. */
  exec(pod: string, cmd: string, args: string[], input?: string): string {
    return must('ip', ['netns', 'exec', this.ns(pod), cmd, ...args], input);
  }

  /** Same, but returns the status and output instead of throwing. */
  tryExec(pod: string, cmd: string, args: string[], input?: string): { status: number | null; stdout: string; stderr: string } {
    return sh('ip', ['netns', 'exec', this.ns(pod), cmd, ...args], input);
  }

  /** Runs a command to completion in a pod without blocking the event loop (other processes' output keeps flowing). */
  async run(pod: string, argv: string[], env: Record<string, string> = {}, timeoutMs = 20_000): Promise<{ status: number | null; stdout: string; stderr: string }> {
    const proc = this.spawn(pod, argv, env);
    const timer = setTimeout(() => proc.child.kill('SIGKILL'), timeoutMs);
    const status = await proc.exited;
    clearTimeout(timer);
    this.#procs.delete(proc);
    // 'exit' can come before the last 'data': wait for the pipes to close.
    await new Promise<void>((resolve) => (proc.child.stdout!.readableEnded ? resolve() : proc.child.stdout!.once('close', () => resolve())));
    return { status, stdout: proc.stdout.join('\n'), stderr: proc.stderr.join('') };
  }

  /** Starts a long-running process in a pod; it is killed at close(). */
  spawn(pod: string, argv: string[], env: Record<string, string> = {}, opts: { stdin?: boolean } = {}): LabProcess {
    const child = spawn('ip', ['netns', 'exec', this.ns(pod), ...argv], { env: { ...process.env, ...env }, stdio: [opts.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'] });
    const proc: LabProcess = {
      child,
      stdout: [],
      stderr: [],
      exited: new Promise((resolve) => child.once('exit', (code) => resolve(code))),
    };
    let buf = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      buf += d;
      let i: number;
      while ((i = buf.indexOf('\n')) >= 0) {
        proc.stdout.push(buf.slice(0, i));
        buf = buf.slice(i + 1);
      }
    });
    child.stderr!.setEncoding('utf8').on('data', (d: string) => proc.stderr.push(d));
    child.once('error', (e) => proc.stderr.push(String(e)));
    this.#procs.add(proc);
    return proc;
  }

  /** Waits (bounded) until a process printed a line matching `pred`; rejects with its output otherwise. */
  async waitForLine(proc: LabProcess, pred: (line: string) => boolean, timeoutMs = 15_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const hit = proc.stdout.find(pred);
      if (hit !== undefined) return hit;
      if (proc.child.exitCode !== null) break;
      await new Promise((r) => setTimeout(r, 25));
    }
    throw new Error(`no expected line within ${timeoutMs} ms (exit ${proc.child.exitCode}); stdout: ${proc.stdout.join('\n')}; stderr: ${proc.stderr.join('')}`);
  }

  /** Kills every process, deletes every namespace. Safe to call twice. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const p of this.#procs) {
      if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
    }
    for (const { ns } of this.pods.values()) destroyNamespace(ns);
    destroyNamespace(this.nodeNs);
    // A pod that failed half-way through #build may not be in `pods` yet.
    for (const ns of listNamespaces()) if (ns.startsWith(`${this.id}-`)) destroyNamespace(ns);
    live.delete(this.id);
    openLabs.delete(this);
  }
}

/** Does a namespace of this lab still exist? (for cleanup tests) */
export function labNamespacesOf(id: string): string[] {
  return listNamespaces().filter((n) => n.startsWith(`${id}-`));
}
