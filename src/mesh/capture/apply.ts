/**
 * `meshgate capture` and `meshgate capture --clean`: runs what rules.ts computes, with `iptables-save`,
 * `iptables-restore --noflush` and `ip`, in the current network namespace (the pod's: the command is
 * meant for an init container or `ip netns exec`).
 *
 * Order, so a half-done run never leaves the pod blackholed: the policy rule and route first (harmless
 * alone: nothing carries the mark yet), then the iptables transaction. `--clean` does the reverse.
 */
import { spawnSync } from 'node:child_process';
import { parseArgs } from 'node:util';
import {
  CaptureOptionError,
  DEFAULT_CAPTURE_OPTIONS,
  buildCaptureRules,
  countPolicyRules,
  hasLocalRoute,
  parseCidrList,
  parseInboundPorts,
  parseIncludeCidrs,
  parseIptablesSave,
  parsePortList,
  planApply,
  planClean,
  policyRouting,
  renderPlan,
  validateCaptureOptions,
  type CaptureOptions,
} from './rules.js';

export const CAPTURE_USAGE = `  meshgate capture [--proxy-uid 1337] [--proxy-gid UID] [--inbound-ports '*'|P,...]
                   [--exclude-inbound-ports 15020,15021,15090] [--exclude-outbound-ports P,...]
                   [--exclude-outbound-cidrs CIDR,...] [--include-outbound-cidrs '*'|CIDR,...]
                   [--include-outbound-ports P,...] [--outbound-port 15001] [--inbound-port 15006]
                   [--mark 1337] [--route-table 133] [--dry-run]
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
  };
  validateCaptureOptions(options);
  return { options, clean: values.clean === true, dryRun: values['dry-run'] === true };
}

/** A failure of one of the programs capture runs; the message names the command and its stderr. */
export class CaptureCommandError extends Error {}

function run(cmd: string, args: string[], input?: string): string {
  const r = spawnSync(cmd, args, { input, encoding: 'utf8', timeout: 30_000 });
  if (r.error) {
    const missing = (r.error as NodeJS.ErrnoException).code === 'ENOENT';
    throw new CaptureCommandError(missing ? `${cmd} not found: install ${cmd.startsWith('ip') && cmd !== 'ip' ? 'iptables' : 'iproute2'}` : `${cmd}: ${r.error.message}`);
  }
  if (r.status !== 0) throw new CaptureCommandError(`${cmd} ${args.join(' ')} failed (exit ${r.status}): ${(r.stderr || r.stdout).trim()}`);
  return r.stdout;
}

/** `ip -4 route show table N`; a table that does not exist yet (no route ever added) is empty. */
function showRouteTable(table: number): string {
  try {
    return run('ip', ['-4', 'route', 'show', 'table', String(table)]);
  } catch (e) {
    if (e instanceof CaptureCommandError && /table does not exist/i.test(e.message)) return '';
    throw e;
  }
}

export interface CaptureReport {
  /** What was fed to iptables-restore ('' when nothing was needed). */
  restoreInput: string;
  /** The `ip` argument lists that were run. */
  ipCommands: string[][];
}

/** Installs capture in the current network namespace; idempotent. */
export function applyCapture(o: CaptureOptions): CaptureReport {
  const ipCommands: string[][] = [];
  const { rule, route } = policyRouting(o);
  if (!hasLocalRoute(showRouteTable(o.routeTable))) {
    run('ip', route);
    ipCommands.push(route);
  }
  if (countPolicyRules(run('ip', ['-4', 'rule', 'show']), o) === 0) {
    run('ip', rule);
    ipCommands.push(rule);
  }
  const restoreInput = planApply(o, run('iptables-save', []));
  run('iptables-restore', ['--noflush'], restoreInput);
  // Read back: every chain exists and holds the rules we wrote (catches a kernel without TPROXY or
  // xt_socket, where iptables-nft may accept rules it cannot load).
  const after = parseIptablesSave(run('iptables-save', ['-t', 'mangle'])).tables.get('mangle');
  const { chains, rules } = buildCaptureRules(o);
  const missing = chains.filter((c) => !after?.chains.includes(c));
  const got = after?.rules.filter((l) => chains.some((c) => l.startsWith(`-A ${c} `))).length ?? 0;
  if (missing.length > 0 || got !== rules.length) {
    throw new CaptureCommandError(`iptables-save after iptables-restore shows ${got}/${rules.length} rules (missing chains: ${missing.join(', ') || 'none'})`);
  }
  return { restoreInput, ipCommands };
}

/** Removes every chain, rule, policy rule and route capture made (found by name, mark and table). */
export function cleanCapture(o: Pick<CaptureOptions, 'mark' | 'routeTable'>): CaptureReport {
  const ipCommands: string[][] = [];
  const restoreInput = planClean(run('iptables-save', []));
  if (restoreInput !== '') run('iptables-restore', ['--noflush'], restoreInput);
  const { rule, route } = policyRouting(o);
  const del = (args: string[]) => args.map((a) => (a === 'add' ? 'del' : a));
  // Added once per run, but a run with another tool in between could have added it twice: bounded.
  for (let n = countPolicyRules(run('ip', ['-4', 'rule', 'show']), o); n > 0; n--) {
    run('ip', del(rule));
    ipCommands.push(del(rule));
  }
  if (hasLocalRoute(showRouteTable(o.routeTable))) {
    run('ip', del(route));
    ipCommands.push(del(route));
  }
  return { restoreInput, ipCommands };
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
  const { rule, route } = policyRouting(options);
  if (dryRun) {
    if (clean) {
      const del = (a: string[]) => a.map((x) => (x === 'add' ? 'del' : x)).join(' ');
      process.stdout.write(`# iptables-restore --noflush\n${planClean(safeSave())}# ip ${del(rule)}\n# ip ${del(route)}\n`);
    } else {
      process.stdout.write(renderPlan(options));
    }
    return 0;
  }
  try {
    const report = clean ? cleanCapture(options) : applyCapture(options);
    const what = clean ? 'removed' : 'installed';
    const n = report.restoreInput.split('\n').filter((l) => l.startsWith('-')).length;
    process.stderr.write(`meshgate capture: ${what} (${n} iptables operations, ${report.ipCommands.length} ip commands)\n`);
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
function safeSave(): string {
  try {
    return run('iptables-save', []);
  } catch {
    return '';
  }
}
