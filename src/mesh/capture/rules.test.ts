/**
 * Capture rule generation, without sockets or root:
 *   - goldens: every `testdata/<case>.args` (a leading comment says what it proves, then the flags)
 *     through the real flag parser must print `<case>.rules`, exactly what `capture --dry-run` prints;
 *     `UPDATE_GOLDEN=1` rewrites them;
 *   - table tests for flag errors, for the plans that re-run (idempotent) and clean over an existing
 *     `iptables-save` dump, and for reading `ip rule` / `ip route`.
 * The rules' effect on real packets is proved in test/mesh/capture-lab.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseCaptureArgs } from './apply.js';
import {
  CaptureOptionError,
  DEFAULT_CAPTURE_OPTIONS,
  countPolicyRules,
  findOwnRules,
  hasLocalRoute,
  parseCidrList,
  parseIptablesSave,
  planApply,
  planClean,
  renderPlan,
  renderRestore,
} from './rules.js';

const dir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../../src/mesh/capture/testdata');
const update = process.env.UPDATE_GOLDEN === '1';

/** Whitespace-separated words; '...' quotes (so '' is an empty argument). */
function words(line: string): string[] {
  const out: string[] = [];
  for (const m of line.matchAll(/'([^']*)'|(\S+)/g)) out.push(m[1] ?? m[2]);
  return out;
}

for (const file of readdirSync(dir).filter((f) => f.endsWith('.args')).sort()) {
  const name = file.slice(0, -'.args'.length);
  test(`capture golden ${name}`, () => {
    const lines = readFileSync(path.join(dir, file), 'utf8').split('\n');
    assert.ok(lines[0].startsWith('# '), `${file}: the first line must be a comment saying what the case proves`);
    const args = lines.filter((l) => !l.startsWith('#')).flatMap(words);
    const options = parseCaptureArgs(args).options;
    // `auto` looks at the namespace's addresses; a golden is the rules, so it renders IPv4 only.
    const actual = renderPlan(options, options.ipv6 === 'on' ? [4, 6] : [4]);
    const outFile = path.join(dir, `${name}.rules`);
    if (update || !existsSync(outFile)) {
      writeFileSync(outFile, actual);
      if (!update) assert.fail(`${name}.rules did not exist; written now: review it and run again`);
      return;
    }
    assert.equal(actual, readFileSync(outFile, 'utf8'), `${name}: rules differ from ${name}.rules (UPDATE_GOLDEN=1 to accept)`);
  });
}

test('capture flag errors name the flag and the bad value', () => {
  const cases: { args: string[]; want: RegExp }[] = [
    { args: ['--exclude-outbound-ports', '70000'], want: /--exclude-outbound-ports: "70000" is not a port/ },
    { args: ['--exclude-outbound-ports', '20-10'], want: /"20-10" is not a port/ },
    { args: ['--exclude-inbound-ports', 'http'], want: /--exclude-inbound-ports: "http"/ },
    { args: ['--inbound-ports', '0'], want: /--inbound-ports: "0"/ },
    { args: ['--exclude-outbound-cidrs', '10.0.0.0/33'], want: /"10.0.0.0\/33" is not a CIDR/ },
    { args: ['--exclude-outbound-cidrs', '300.1.1.1'], want: /"300.1.1.1" is not a CIDR/ },
    { args: ['--exclude-outbound-cidrs', 'fd00::/129'], want: /"fd00::\/129" is not a CIDR/ },
    { args: ['--exclude-outbound-cidrs', 'fd00:::1'], want: /"fd00:::1" is not a CIDR/ },
    { args: ['--exclude-outbound-cidrs', '1:2:3:4:5:6:7:8:9'], want: /is not a CIDR/ },
    { args: ['--ipv6', 'yes'], want: /--ipv6: "yes" is not auto, on or off/ },
    { args: ['--include-outbound-cidrs', 'example.com'], want: /--include-outbound-cidrs: "example.com"/ },
    { args: ['--proxy-uid', 'istio'], want: /--proxy-uid: "istio" is not a number/ },
    { args: ['--proxy-uid', '0'], want: /--proxy-uid 0/ },
    { args: ['--outbound-port', '15006'], want: /both 15006/ },
    { args: ['--route-table', '254'], want: /--route-table: 254/ },
    { args: ['--mark', '0'], want: /--mark: 0/ },
    { args: ['--frobnicate'], want: /Unknown option '--frobnicate'/ },
    { args: ['extra'], want: /positional/i },
  ];
  for (const c of cases) {
    assert.throws(() => parseCaptureArgs(c.args), (e: unknown) => e instanceof CaptureOptionError && c.want.test((e as Error).message), c.args.join(' '));
  }
});

test('CIDRs are normalised to the network address, IPv6 as inet_ntop prints it', () => {
  const cases: [string, string][] = [
    ['10.96.0.1/12', '10.96.0.0/12'],
    ['169.254.169.254', '169.254.169.254/32'],
    ['0.0.0.0/0', '0.0.0.0/0'],
    ['FD00:0:0:0:0:0:0:1/8', 'fd00::/8'],
    ['fd00:250::3', 'fd00:250::3/128'],
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1/128'],
    ['2001:0:0:1:0:0:0:1/128', '2001:0:0:1::1/128'],
    ['1:0:2:0:3:0:4:0', '1:0:2:0:3:0:4:0/128'],
    ['::', '::/128'],
    ['::ffff:10.1.2.3/128', '::ffff:a01:203/128'],
    ['2001:db8::/32', '2001:db8::/32'],
  ];
  for (const [input, want] of cases) assert.deepEqual(parseCidrList('--x', input), [want], input);
});

test('flags: --clean and --dry-run; the contract defaults', () => {
  const p = parseCaptureArgs(['--clean', '--dry-run']);
  assert.equal(p.clean, true);
  assert.equal(p.dryRun, true);
  assert.deepEqual(p.options, DEFAULT_CAPTURE_OPTIONS);
  assert.deepEqual(parseCaptureArgs(["--inbound-ports", "*", "--exclude-inbound-ports", "15020,15021,15090", "--proxy-uid", "1337"]).options, DEFAULT_CAPTURE_OPTIONS);
});

/** A dump of a pod where capture already ran once, plus someone else's rules and a stale chain of ours. */
const SAVED = `# Generated by iptables-save v1.8.9 (nf_tables)
*nat
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:MESHGATE_OLD_REDIRECT - [0:0]
:KUBE-SERVICES - [0:0]
-A OUTPUT -p tcp -j MESHGATE_OLD_REDIRECT
-A OUTPUT -j KUBE-SERVICES
-A MESHGATE_OLD_REDIRECT -p tcp -j REDIRECT --to-ports 15001
COMMIT
*mangle
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:MESHGATE_DIVERT - [0:0]
:MESHGATE_OUTPUT - [0:0]
:MESHGATE_PREROUTING - [0:0]
:MESHGATE_LEGACY - [0:0]
-A PREROUTING -p tcp -j MESHGATE_PREROUTING
-A OUTPUT -p udp -j RETURN
-A OUTPUT -p tcp -j MESHGATE_OUTPUT
-A OUTPUT -p tcp -m mark --mark 0x7 -g MESHGATE_LEGACY
-A MESHGATE_PREROUTING -p tcp -m socket --transparent -j MESHGATE_DIVERT
-A MESHGATE_DIVERT -j ACCEPT
COMMIT
*filter
:INPUT ACCEPT [0:0]
-A INPUT -p tcp -m tcp --dport 9999 -j ACCEPT
COMMIT
`;

test('findOwnRules: our chains and the exact jumps into them, in every table; nothing else', () => {
  const own = findOwnRules(parseIptablesSave(SAVED));
  assert.deepEqual([...own.keys()].sort(), ['mangle', 'nat']);
  assert.deepEqual(own.get('nat'), { chains: ['MESHGATE_OLD_REDIRECT'], deletions: ['-D OUTPUT -p tcp -j MESHGATE_OLD_REDIRECT'] });
  assert.deepEqual(own.get('mangle'), {
    chains: ['MESHGATE_DIVERT', 'MESHGATE_OUTPUT', 'MESHGATE_PREROUTING', 'MESHGATE_LEGACY'],
    deletions: ['-D PREROUTING -p tcp -j MESHGATE_PREROUTING', '-D OUTPUT -p tcp -j MESHGATE_OUTPUT', '-D OUTPUT -p tcp -m mark --mark 0x7 -g MESHGATE_LEGACY'],
  });
});

test('planClean removes our jumps, then flushes and deletes our chains; other rules are not named', () => {
  const plan = planClean(SAVED);
  assert.equal(
    plan,
    [
      '*nat',
      '-D OUTPUT -p tcp -j MESHGATE_OLD_REDIRECT',
      '-F MESHGATE_OLD_REDIRECT',
      '-X MESHGATE_OLD_REDIRECT',
      'COMMIT',
      '*mangle',
      '-D PREROUTING -p tcp -j MESHGATE_PREROUTING',
      '-D OUTPUT -p tcp -j MESHGATE_OUTPUT',
      '-D OUTPUT -p tcp -m mark --mark 0x7 -g MESHGATE_LEGACY',
      '-F MESHGATE_DIVERT',
      '-F MESHGATE_OUTPUT',
      '-F MESHGATE_PREROUTING',
      '-F MESHGATE_LEGACY',
      '-X MESHGATE_DIVERT',
      '-X MESHGATE_OUTPUT',
      '-X MESHGATE_PREROUTING',
      '-X MESHGATE_LEGACY',
      'COMMIT',
      '',
    ].join('\n'),
  );
  assert.doesNotMatch(plan, /KUBE-SERVICES|9999|-p udp/);
  assert.equal(planClean('*mangle\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n'), '', 'nothing of ours: nothing to run');
  assert.equal(planClean(''), '');
});

test('planApply over a previous run: one mangle transaction deleting the old jumps before adding the new ones; stale chains removed after', () => {
  const plan = planApply(DEFAULT_CAPTURE_OPTIONS, SAVED);
  const blocks = plan.split('COMMIT\n').filter((b) => b !== '');
  assert.equal(blocks.length, 3);
  assert.match(blocks[0], /^\*nat\n-D OUTPUT -p tcp -j MESHGATE_OLD_REDIRECT\n-F MESHGATE_OLD_REDIRECT\n-X MESHGATE_OLD_REDIRECT\n$/);
  const mangle = blocks[1].split('\n');
  const firstAdd = mangle.findIndex((l) => l.startsWith('-A '));
  const lastDelete = mangle.map((l) => l.startsWith('-D ')).lastIndexOf(true);
  assert.ok(lastDelete >= 0 && lastDelete < firstAdd, 'deletions come before the new rules');
  assert.equal(mangle.filter((l) => l === '-A PREROUTING -p tcp -j MESHGATE_PREROUTING').length, 1);
  // The body equals a fresh install plus the deletions.
  assert.equal(blocks[1] + 'COMMIT\n', renderRestore(DEFAULT_CAPTURE_OPTIONS, { deletions: findOwnRules(parseIptablesSave(SAVED)).get('mangle')!.deletions }));
  assert.equal(blocks[2], '*mangle\n-F MESHGATE_LEGACY\n-X MESHGATE_LEGACY\n');
  assert.equal(planApply(DEFAULT_CAPTURE_OPTIONS, ''), renderRestore(DEFAULT_CAPTURE_OPTIONS), 'fresh namespace');
});

test('reading ip rule and ip route output', () => {
  const rules = '0:\tfrom all lookup local\n32764:\tfrom all fwmark 0x539 lookup 133\n32765:\tfrom all fwmark 0x539 lookup 133\n32766:\tfrom all lookup main\n';
  assert.equal(countPolicyRules(rules, { mark: 1337, routeTable: 133 }), 2);
  assert.equal(countPolicyRules(rules, { mark: 1337, routeTable: 13 }), 0);
  assert.equal(countPolicyRules('1:\tfrom all fwmark 0x5390 lookup 133\n', { mark: 1337, routeTable: 133 }), 0);
  assert.equal(hasLocalRoute('local default dev lo scope host \n'), true);
  assert.equal(hasLocalRoute('default via 10.0.0.1 dev eth0\n'), false);
  assert.equal(hasLocalRoute(''), false);
  assert.equal(hasLocalRoute('local default dev lo metric 1024 pref medium\n'), true, 'ip -6');
});
