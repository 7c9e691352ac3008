/**
 * `meshgate capture` and `meshgate capture --clean`: runs what rules.ts computes, with `iptables-save`,
 * `iptables-restore --noflush` and `ip`, in the current network namespace (the pod's: the command is
 * meant for an init container or `ip netns exec`).
 *
 * Order, so a half-done run never leaves the pod blackholed: the policy rule and route first (harmless
 * alone: nothing carries the mark yet), then the iptables transaction. `--clean` does the reverse.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import {
  CaptureOptionError,
  DEFAULT_CAPTURE_OPTIONS,
  buildAllRules,
  countPolicyRules,
  hasInboundSourceAddress,
  hasLocalRoute,
  inboundSourceAddress,
  parseCidrList,
  parseInboundPorts,
  parseIncludeCidrs,
  parseIptablesSave,
  parsePortList,
  planApply,
  planClean,
  policyRouting,
  renderPlan,
  TOOLS,
  validateCaptureOptions,
  type CaptureOptions,
  type Family,
} from './rules.js';

export const CAPTURE_USAGE = `  meshgate capture [--proxy-uid 1337] [--proxy-gid UID] [--inbound-ports '*'|P,...]
                   [--exclude-inbound-ports 15020,15021,15090] [--exclude-outbound-ports P,...]
                   [--exclude-outbound-cidrs CIDR,...] [--include-outbound-cidrs '*'|CIDR,...]
                   [--include-outbound-ports P,...] [--outbound-port 15001] [--inbound-port 15006]
                   [--mark 1337] [--route-table 133] [--ipv6 auto|on|off]
                   [--redirect-dns [--capture-all-dns | --dns-servers IP,...] [--dns-port 15053]] [--dry-run]
  meshgate capture --clean [--mark 1337] [--route-table 133] [--dry-run]
`;

const CAPTURE_FLAGS = {
  'proxy-uid': { type: 'string' },
  'proxy-gid': { type: 'string' },
  'inbound-ports': { type: 'string' },
  'exclude-inbound-ports': { type: 'string' },
  'exclude-outbound-ports': { type: 'string' },
  'exclude-outbound-cidrs': { type: 'string' },
  'include-outbound-cidrs': { type: 'string' },
  'include-outbound-ports': { type: 'string' },
  'outbound-port': { type: 'string' },
  'inbound-port': { type: 'string' },
  mark: { type: 'string' },
  'route-table': { type: 'string' },
  ipv6: { type: 'string' },
  'redirect-dns': { type: 'boolean' },
  'capture-all-dns': { type: 'boolean' },
  'dns-servers': { type: 'string' },
  'dns-port': { type: 'string' },
  clean: { type: 'boolean' },
  'dry-run': { type: 'boolean' },
} as const;

/** Parses `capture`'s flags into options (throws CaptureOptionError naming the flag). */
export function parseCaptureArgs(args: string[]): { options: CaptureOptions; clean: boolean; dryRun: boolean } {
  let values: Record<string, string | boolean | undefined>;
  try {
    values = parseArgs({ args, options: CAPTURE_FLAGS, strict: true, allowPositionals: false }).values;
  } catch (e) {
    throw new CaptureOptionError((e as Error).message.split('\n')[0]);
  }
  const str = (k: string) => (typeof values[k] === 'string' ? (values[k] as string) : undefined);
  const num = (k: string, fallback: number) => {
    const v = str(k);
    if (v === undefined) return fallback;
    if (!/^(0x[0-9a-fA-F]+|\d+)$/.test(v.trim())) throw new CaptureOptionError(`--${k}: "${v}" is not a number`);
    return Number(v.trim());
  };
  const d = DEFAULT_CAPTURE_OPTIONS;
  const proxyUid = num('proxy-uid', d.proxyUid);
  const options: CaptureOptions = {
    proxyUid,
    proxyGid: num('proxy-gid', proxyUid),
    outboundPort: num('outbound-port', d.outboundPort),
    inboundPort: num('inbound-port', d.inboundPort),
    inboundPorts: str('inbound-ports') === undefined ? d.inboundPorts : parseInboundPorts(str('inbound-ports')!),
    excludeInboundPorts: str('exclude-inbound-ports') === undefined ? d.excludeInboundPorts : parsePortList('--exclude-inbound-ports', str('exclude-inbound-ports')!),
    includeOutboundCidrs: str('include-outbound-cidrs') === undefined ? d.includeOutboundCidrs : parseIncludeCidrs(str('include-outbound-cidrs')!),
    excludeOutboundCidrs: parseCidrList('--exclude-outbound-cidrs', str('exclude-outbound-cidrs') ?? ''),
    includeOutboundPorts: parsePortList('--include-outbound-ports', str('include-outbound-ports') ?? ''),
    excludeOutboundPorts: parsePortList('--exclude-outbound-ports', str('exclude-outbound-ports') ?? ''),
    mark: num('mark', d.mark),
    routeTable: num('route-table', d.routeTable),
    ipv6: ipv6Mode(str('ipv6')),
    redirectDns: values['redirect-dns'] === true,
    captureAllDns: values['capture-all-dns'] === true,
    dnsServers: [],
    dnsPort: num('dns-port', d.dnsPort),
  };
  if (!options.redirectDns && (options.captureAllDns || str('dns-servers') !== undefined)) throw new CaptureOptionError(`--${options.captureAllDns ? 'capture-all-dns' : 'dns-servers'} needs --redirect-dns`);
  if (options.captureAllDns && str('dns-servers') !== undefined) throw new CaptureOptionError('--capture-all-dns and --dns-servers: choose one (all port-53 traffic, or to these servers)');
  // istio-iptables: the servers of /etc/resolv.conf (the init container shares the pod's).
  if (options.redirectDns && !options.captureAllDns) options.dnsServers = parseCidrList('--dns-servers', str('dns-servers') ?? resolvConfServers()).map((c) => c.replace(/\/(32|128)$/, ''));
  validateCaptureOptions(options);
  return { options, clean: values.clean === true, dryRun: values['dry-run'] === true };
}

/** The `nameserver` addresses of /etc/resolv.conf, comma-separated ('' when unreadable). */
function resolvConfServers(): string {
  let text = '';
  try {
    text = readFileSync('/etc/resolv.conf', 'utf8');
  } catch {
    return '';
  }
  const out: string[] = [];
  for (const line of text.split('\n')) {
    const m = /^\s*nameserver\s+([0-9a-fA-F.:]+)(?:%\S+)?\s*$/.exec(line);
    if (m) out.push(m[1]);
  }
  return out.join(',');
}

function ipv6Mode(v: string | undefined): CaptureOptions['ipv6'] {
  if (v === undefined) return DEFAULT_CAPTURE_OPTIONS.ipv6;
  if (v === 'auto' || v === 'on' || v === 'off') return v;
  throw new CaptureOptionError(`--ipv6: "${v}" is not auto, on or off`);
}

/** A failure of one of the programs capture runs; the message names the command and its stderr. */
export class CaptureCommandError extends Error {}

function run(cmd: string, args: string[], input?: string): string {
  const r = spawnSync(cmd, args, { input, encoding: 'utf8', timeout: 30_000 });
  if (r.error) {
    const missing = (r.error as NodeJS.ErrnoException).code === 'ENOENT';
    throw new CaptureCommandError(missing ? `${cmd} not found: install ${cmd.startsWith('ip') && cmd !== 'ip' ? 'iptables' : 'iproute2'}` : `${cmd}: ${r.error.message}`);
  }
  if (r.status !== 0) {
    const text = (r.stderr || r.stdout).trim();
    const hint = /not permitted|permission denied/i.test(text) ? ' (capture needs root, or CAP_NET_ADMIN, in the pod\'s network namespace)' : '';
    throw new CaptureCommandError(`${cmd} ${args.join(' ')} failed (exit ${r.status}): ${text}${hint}`);
  }
  return r.stdout;
}

/** `ip -4|-6 route show table N`; a table that does not exist yet (no route ever added) is empty. */
function showRouteTable(table: number, family: Family): string {
  try {
    return run('ip', [TOOLS[family].ip, 'route', 'show', 'table', String(table)]);
  } catch (e) {
    if (e instanceof CaptureCommandError && /table does not exist/i.test(e.message)) return '';
    throw e;
  }
}

/** Is the program on PATH? */
function have(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { timeout: 10_000 }).status === 0;
}

/**
 * The families to capture: IPv4 always; IPv6 with `--ipv6 on`, or with `auto` when the namespace has
 * a global IPv6 address (then ip6tables must be there: a dual-stack pod must not bypass the proxy).
 */
export function captureFamilies(o: Pick<CaptureOptions, 'ipv6'>): Family[] {
  if (o.ipv6 === 'off') return [4];
  if (o.ipv6 === 'on') return [4, 6];
  let global = '';
  try {
    global = run('ip', ['-6', '-o', 'addr', 'show', 'scope', 'global']);
  } catch {
    return [4]; // IPv6 disabled in this namespace
  }
  return global.trim() === '' ? [4] : [4, 6];
}

export interface CaptureReport {
  /** What was fed to iptables-restore / ip6tables-restore ('' when nothing was needed). */
  restoreInput: string;
  /** The `ip` argument lists that were run. */
  ipCommands: string[][];
  families: Family[];
}

/** Installs capture in the current network namespace, per family; idempotent. */
export function applyCapture(o: CaptureOptions, families: Family[] = captureFamilies(o)): CaptureReport {
  if (o.redirectDns && !o.captureAllDns && o.dnsServers.length === 0) {
    // istio-iptables: "REDIRECT_DNS is set, but CAPTURE_ALL_DNS is false, and no DNS servers provided. DNS capture disabled."
    process.stderr.write('meshgate capture: --redirect-dns without --capture-all-dns and no nameserver in /etc/resolv.conf (nor --dns-servers): DNS is not captured\n');
  }
  const ipCommands: string[][] = [];
  let restoreInput = '';
  for (const family of families) {
    const t = TOOLS[family];
    const { rule, route } = policyRouting(o, family);
    // IPv6: the proxy forwards inbound connections to the app from ::6, which lo must hold.
    const address = inboundSourceAddress(family);
    if (address !== null && !hasInboundSourceAddress(run('ip', ['-6', 'addr', 'show', 'dev', 'lo']))) {
      run('ip', address);
      ipCommands.push(address);
    }
    if (!hasLocalRoute(showRouteTable(o.routeTable, family))) {
      run('ip', route);
      ipCommands.push(route);
    }
    if (countPolicyRules(run('ip', [t.ip, 'rule', 'show']), o) === 0) {
      run('ip', rule);
      ipCommands.push(rule);
    }
    const input = planApply(o, run(t.save, []), family);
    run(t.restore, ['--noflush'], input);
    restoreInput += input;
    // Read back: every chain exists and holds the rules we wrote (catches a kernel without TPROXY or
    // xt_socket, where iptables-nft may accept rules it cannot load).
    for (const [table, { chains, rules }] of buildAllRules(o, family)) {
      const after = parseIptablesSave(run(t.save, ['-t', table])).tables.get(table);
      const missing = chains.filter((c) => !after?.chains.includes(c));
      const got = after?.rules.filter((l) => chains.some((c) => l.startsWith(`-A ${c} `))).length ?? 0;
      if (missing.length > 0 || got !== rules.length) {
        throw new CaptureCommandError(`${t.save} -t ${table} after ${t.restore} shows ${got}/${rules.length} rules (missing chains: ${missing.join(', ') || 'none'})`);
      }
    }
  }
  return { restoreInput, ipCommands, families };
}

/**
 * Removes every chain, rule, policy rule and route capture made (found by name, mark and table), in
 * both families (IPv6 when ip6tables is installed and IPv6 is on in the namespace).
 */
export function cleanCapture(o: Pick<CaptureOptions, 'mark' | 'routeTable'>): CaptureReport {
  const ipCommands: string[][] = [];
  let restoreInput = '';
  const families: Family[] = [4];
  if (have(TOOLS[6].save) && ipv6Enabled()) families.push(6);
  for (const family of families) {
    const t = TOOLS[family];
    const input = planClean(run(t.save, []));
    if (input !== '') run(t.restore, ['--noflush'], input);
    restoreInput += input;
    const { rule, route } = policyRouting(o, family);
    const del = (args: string[]) => args.map((a) => (a === 'add' ? 'del' : a));
    // Added once per run, but a run with another tool in between could have added it twice: bounded.
    for (let n = countPolicyRules(run('ip', [t.ip, 'rule', 'show']), o); n > 0; n--) {
      run('ip', del(rule));
      ipCommands.push(del(rule));
    }
    if (hasLocalRoute(showRouteTable(o.routeTable, family))) {
      run('ip', del(route));
      ipCommands.push(del(route));
    }
    const address = inboundSourceAddress(family);
    if (address !== null && hasInboundSourceAddress(run('ip', ['-6', 'addr', 'show', 'dev', 'lo']))) {
      run('ip', del(address));
      ipCommands.push(del(address));
    }
  }
  return { restoreInput, ipCommands, families };
}

function ipv6Enabled(): boolean {
  return spawnSync('ip', ['-6', 'rule', 'show'], { timeout: 10_000 }).status === 0;
}

/** The `capture` command: exit 0 on success, 1 when a program failed; usage errors go to `fail`. */
export function captureCommand(args: string[], fail: (message: string) => never): number {
  let parsed: ReturnType<typeof parseCaptureArgs>;
  try {
    parsed = parseCaptureArgs(args);
  } catch (e) {
    if (e instanceof CaptureOptionError) fail(`capture: ${e.message}`);
    throw e;
  }
  const { options, clean, dryRun } = parsed;
  if (dryRun) {
    if (clean) {
      for (const family of [4, 6] as const) {
        const { rule, route } = policyRouting(options, family);
        const del = (a: string[]) => a.map((x) => (x === 'add' ? 'del' : x)).join(' ');
        const address = inboundSourceAddress(family);
        process.stdout.write(`# ${TOOLS[family].restore} --noflush\n${planClean(safeSave(family))}# ip ${del(rule)}\n# ip ${del(route)}\n${address === null ? '' : `# ip ${del(address)}\n`}`);
      }
    } else {
      process.stdout.write(renderPlan(options, captureFamilies(options)));
    }
    return 0;
  }
  try {
    const report = clean ? cleanCapture(options) : applyCapture(options);
    const what = clean ? 'removed' : 'installed';
    const n = report.restoreInput.split('\n').filter((l) => l.startsWith('-')).length;
    process.stderr.write(`meshgate capture: ${what} for IPv${report.families.join(' and IPv')} (${n} iptables operations, ${report.ipCommands.length} ip commands)\n`);
    return 0;
  } catch (e) {
    if (e instanceof CaptureCommandError) {
      process.stderr.write(`meshgate capture: ${e.message}\n`);
      return 1;
    }
    throw e;
  }
}

/** `--clean --dry-run` wants the current state; without iptables (or root) there is nothing to show. */
function safeSave(family: Family): string {
  try {
    return run(TOOLS[family].save, []);
  } catch {
    return '';
  }
}
