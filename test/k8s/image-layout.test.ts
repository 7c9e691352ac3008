/**
 * The container image's contents, without a Docker engine (none runs on CI machines or here): the
 * final stage of deploy/Dockerfile is read, its COPY lines are laid out in a temporary /app, and
 * what the image runs is run from there.
 *
 * - Every module of the image's dist/src resolves: relative imports stay inside what the image
 *   copies (no import of test/ or bench/ code, which the image leaves out), and packages are
 *   `dependencies` of package.json or Node.js built-ins (the image prunes devDependencies).
 * - Its entrypoint, bin/meshgate, serves traffic with `run` (the image's CMD, here from a config
 *   directory), validates examples/, injects a Deployment and plans a sidecar.
 *
 * Not covered: the base image's own files (node, perl-base, iptables, iproute2) and the image's
 * user and file permissions, which only a real build shows.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { builtinModules } from 'node:module';
import { cpSync, existsSync, mkdirSync, readFileSync, readdirSync, statSync, symlinkSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { parse } from 'yaml';
import { freePort, get, removeDir, serviceYaml, tempDir, writeConfig } from '../helpers/gateway.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

interface Copy {
  /** Path in the repository (after the build stage: dist/ is the build's output). */
  from: string;
  /** Path under /app. */
  to: string;
}

/** The final stage's COPY lines, as repository paths and /app paths. */
function finalStageCopies(dockerfile: string): Copy[] {
  const lines = dockerfile.split('\n');
  const last = lines.map((l, i) => (/^FROM\s/i.test(l) ? i : -1)).filter((i) => i >= 0).pop() ?? 0;
  const workdir = '/app';
  const copies: Copy[] = [];
  for (const line of lines.slice(last)) {
    const m = /^COPY\s+(?:--from=(\S+)\s+)?(\S+)\s+(\S+)\s*$/i.exec(line.trim());
    if (m === null) continue;
    const [, stage, src, dst] = m;
    // The build stage works in /src: its /src/X is the repository's X after `tsc`.
    const from = stage === undefined ? src : src.replace(/^\/src\//, '');
    // A destination ending in `/` (or `.`) is a directory: the source keeps its name in it.
    const into = dst.endsWith('/') || dst === '.' ? path.posix.join(dst, path.posix.basename(src)) : dst;
    const to = path.posix.normalize(path.posix.join(workdir, into)).replace(/^\/app\/?/, '');
    copies.push({ from: from.replace(/^\.\//, ''), to });
  }
  return copies;
}

function jsFiles(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...jsFiles(p));
    else if (e.name.endsWith('.js')) out.push(p);
  }
  return out;
}

/** Module specifiers of static imports, re-exports, side-effect imports and literal dynamic imports. */
function specifiers(source: string): string[] {
  const found: string[] = [];
  const re = /(?:^|[\s;})])(?:import|export)\s+(?:[^'";]*?\sfrom\s*)?['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/g;
  for (const m of source.matchAll(re)) found.push(m[1] ?? m[2]);
  return found;
}

function packageOf(spec: string): string {
  const parts = spec.split('/');
  return spec.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0];
}

describe('the container image (deploy/Dockerfile final stage), laid out without Docker', { timeout: 90_000 }, () => {
  let app = '';
  let copies: Copy[] = [];
  const cleanup: (() => void | Promise<void>)[] = [];

  before(() => {
    copies = finalStageCopies(readFileSync(path.join(ROOT, 'deploy/Dockerfile'), 'utf8'));
    app = path.join(tempDir('meshgate-image-'), 'app');
    cleanup.push(() => removeDir(path.dirname(app)));
    mkdirSync(app, { recursive: true });
    for (const c of copies) {
      const src = path.join(ROOT, c.from);
      assert.ok(existsSync(src), `COPY ${c.from}: not in the repository (or not built)`);
      const dst = path.join(app, c.to);
      if (c.from === 'node_modules') {
        // The build stage's node_modules after `npm prune --omit=dev`: the repository's, with the
        // production-only rule checked by the import test below.
        symlinkSync(src, dst, 'dir');
        continue;
      }
      mkdirSync(path.dirname(dst), { recursive: true });
      cpSync(src, dst, { recursive: true });
    }
  });

  after(async () => {
    for (const c of cleanup.reverse()) await c();
  });

  test('the final stage copies the runtime: package.json, node_modules, dist/src, bin, examples; no tests or benches', () => {
    const to = copies.map((c) => c.to).sort();
    assert.deepEqual(to, ['bin', 'dist/src', 'examples', 'node_modules', 'package.json']);
    assert.ok(statSync(path.join(app, 'dist/src/cli/main.js')).isFile());
    assert.ok(!existsSync(path.join(app, 'dist/test')));
  });

  test("every module of the image resolves: relative imports inside the image, packages from package.json's dependencies", () => {
    const pkg = JSON.parse(readFileSync(path.join(app, 'package.json'), 'utf8')) as { dependencies: Record<string, string> };
    const deps = new Set(Object.keys(pkg.dependencies));
    const builtins = new Set(builtinModules);
    const problems: string[] = [];
    const files = jsFiles(path.join(app, 'dist/src')).filter((f) => !f.endsWith('.test.js'));
    assert.ok(files.length > 100, `only ${files.length} modules found`);
    for (const file of files) {
      const rel = path.relative(app, file);
      for (const spec of specifiers(readFileSync(file, 'utf8'))) {
        if (spec.startsWith('.')) {
          const target = path.resolve(path.dirname(file), spec);
          if (!target.startsWith(app + path.sep) || !existsSync(target)) problems.push(`${rel}: ${spec} is not in the image`);
        } else if (spec.startsWith('node:') || builtins.has(spec)) {
          continue;
        } else if (!deps.has(packageOf(spec))) {
          problems.push(`${rel}: ${spec} is not a dependency (devDependencies are pruned from the image)`);
        }
      }
    }
    assert.deepEqual(problems, []);
  });

  test('bin/meshgate validates examples/ and injects a Deployment', () => {
    const bin = path.join(app, 'bin/meshgate');
    const v = spawnSync(bin, ['validate', path.join(app, 'examples')], { encoding: 'utf8', timeout: 30_000 });
    assert.equal(v.status, 0, `validate: ${v.stdout}${v.stderr}`);
    const dir = path.dirname(app);
    writeConfig(dir, 'deploy.yaml', `apiVersion: apps/v1
kind: Deployment
metadata: { name: web, namespace: shop }
spec:
  selector: { matchLabels: { app: web } }
  template:
    metadata: { labels: { app: web } }
    spec: { containers: [{ name: web, image: nginx:1.27, ports: [{ containerPort: 8080 }] }] }
`);
    const i = spawnSync(bin, ['inject', '-f', path.join(dir, 'deploy.yaml')], { encoding: 'utf8', timeout: 30_000 });
    assert.equal(i.status, 0, `inject: ${i.stderr}`);
    const out = parse(i.stdout) as { spec: { template: { spec: { initContainers?: { name: string }[]; containers: { name: string }[] } } } };
    const spec = out.spec.template.spec;
    assert.ok(spec.containers.some((c) => c.name === 'istio-proxy'), i.stdout);
    assert.ok((spec.initContainers ?? []).some((c) => c.name === 'istio-init'), i.stdout);
  });

  test('bin/meshgate plans a sidecar: one process, the proxy, from the image', () => {
    const plan = spawnSync(process.execPath, [path.join(app, 'dist/src/cli/sidecar-main.js'), 'plan-sidecar', '--control', '127.0.0.1:15012', '--root-cert', '/dev/null', '--token-file', '/dev/null', '--pod-ip', '10.0.0.9', '--namespace', 'default', '--service-account', 'web'], { encoding: 'utf8', timeout: 30_000 });
    assert.equal(plan.status, 0, `plan-sidecar: ${plan.stderr}`);
    // The command the entrypoint execs runs the image's own code.
    assert.ok(plan.stdout.includes(path.join(app, 'dist/src/cli/')), plan.stdout);
  });

  test('bin/meshgate run serves an Ingress from a config directory', async () => {
    const echo = http.createServer((req, res) => res.end(`image ${req.url}`));
    await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
    cleanup.push(() => new Promise<void>((r) => echo.close(() => r())));
    const backendPort = (echo.address() as { port: number }).port;
    const config = path.join(path.dirname(app), 'config');
    mkdirSync(config, { recursive: true });
    writeConfig(config, 'app.yaml', `${serviceYaml('web', [backendPort])}---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: { name: web, namespace: default }
spec:
  ingressClassName: meshgate
  rules:
    - host: image.example.com
      http: { paths: [{ path: /, pathType: Prefix, backend: { service: { name: web, port: { number: 80 } } } }] }
`);
    const [httpPort, adminPort, healthPort, httpsPort] = [await freePort(), await freePort(), await freePort(), await freePort()];
    const proc = spawn(path.join(app, 'bin/meshgate'), ['run', '--config', config, '--http-port', String(httpPort), '--https-port', String(httpsPort), '--admin-port', String(adminPort), '--health-port', String(healthPort), '--bind-address', '127.0.0.1', '--workers', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    proc.stdout.on('data', (d: Buffer) => (out += d.toString()));
    proc.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<void>((r) => proc.once('exit', () => r()));
    cleanup.push(async () => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(t);
    });
    const deadline = Date.now() + 30_000;
    for (;;) {
      const r = await get(`http://127.0.0.1:${adminPort}/ready`).catch(() => null);
      if (r?.status === 200) break;
      assert.ok(proc.exitCode === null, `meshgate exited: ${out}`);
      assert.ok(Date.now() < deadline, `not ready within 30 s: ${out}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const r = await get(`http://127.0.0.1:${httpPort}/hello`, { host: 'image.example.com' });
    assert.equal(r.status, 200, out);
    assert.equal(r.body, 'image /hello');
  });
});
