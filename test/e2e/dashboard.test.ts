/**
 * The dashboard in a real headless Chromium (Debian's `chromium`, driven by playwright-core) against
 * a running gateway with traffic; plus the `meshgate routes|clusters` tables, live and offline.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium, type BrowserContext } from 'playwright-core';
import { startEchoServer } from '../../src/demo/echo-server.js';
import { CLI, freePort, get, removeDir, startGateway, tempDir, writeConfig, type GatewayProcess } from '../helpers/gateway.js';
import { observabilityConfig } from '../support/observability-config.js';
import { FLAKY_CLUSTER, FLAKY_HOST, outlierConfig, startFailingServer } from '../support/outlier-config.js';
import { needs } from '../support/requires.js';

const CHROMIUM = '/usr/bin/chromium';
type Echo = Awaited<ReturnType<typeof startEchoServer>>;

function meshgate(...args: string[]) {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 20_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('dashboard and route tables', () => {
  const dir = tempDir();
  const profile = mkdtempSync(path.join(os.tmpdir(), 'meshgate-chromium-'));
  let gw: GatewayProcess;
  let browser: BrowserContext | null = null;
  const e: Record<string, Echo> = {};
  let bad: Awaited<ReturnType<typeof startFailingServer>> | null = null;
  /** Keeps traffic flowing while the page polls, so rates are non-zero. */
  let load: NodeJS.Timeout | null = null;

  before(async () => {
    for (const name of ['web', 'a', 'b']) e[name] = await startEchoServer({ name });
    writeConfig(dir, 'config.yaml', observabilityConfig({ web: e.web.port, a: e.a.port, b: e.b.port, down: await freePort() }));
    bad = await startFailingServer();
    writeConfig(dir, 'outlier.yaml', outlierConfig({ good: e.web.port, bad: bad.port }));
    gw = await startGateway({ configDir: dir, workers: 1 });
  });

  after(async () => {
    if (load) clearInterval(load);
    await browser?.close();
    await gw?.stop();
    for (const s of Object.values(e)) await s.close();
    await bad?.close();
    removeDir(dir);
    rmSync(profile, { recursive: true, force: true });
  });

  test('the page shows listeners, routes with their source, clusters and live numbers', { skip: needs('chromium') }, async () => {
    const host = 'obs.example.com';
    const base = `http://127.0.0.1:${gw.httpPort}`;
    for (let i = 0; i < 50; i++) await get(`${base}/canary`, { host });
    for (let i = 0; i < 5; i++) await get(`${base}/empty`, { host });
    // Three 503s in a row from the failing endpoint eject it (round robin alternates, one worker).
    for (let i = 0; i < 8; i++) await get(`${base}/`, { host: FLAKY_HOST });
    let stopLoad = false;
    load = setInterval(() => {
      if (stopLoad) return;
      void get(`${base}/canary`, { host }).catch(() => null);
      void get(`${base}/ok`, { host }).catch(() => null);
    }, 20);

    // A fresh profile directory (playwright passes it as --user-data-dir).
    browser = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
      viewport: { width: 1600, height: 1200 },
      timeout: 30_000,
    });
    const page = browser.pages()[0] ?? (await browser.newPage());
    await page.goto(`http://127.0.0.1:${gw.adminPort}/dashboard`, { timeout: 15_000 });
    await page.waitForSelector('body[data-loaded="true"]', { timeout: 15_000 });
    // A second poll gives rates (two reads 2 s apart).
    await page.waitForFunction(() => {
      const cell = document.querySelector('tr.route-row[data-route="virtualservice/default/obs/http/1"] td.rate');
      return cell !== null && Number(cell.textContent) > 0;
    }, undefined, { timeout: 15_000 });
    stopLoad = true;

    const routes = (await page.$$eval('tr.route-row', (rows) => rows.map((r) => ({ route: r.getAttribute('data-route'), text: r.textContent ?? '', total: r.querySelector('td.total')?.textContent ?? '' })))).filter((r) => r.route?.startsWith('virtualservice/default/obs/'));
    assert.equal(routes.length, 6, `six routes expected, got ${JSON.stringify(routes.map((r) => r.route))}`);
    const canary = routes.find((r) => r.route === 'virtualservice/default/obs/http/1')!;
    assert.match(canary.text, /VirtualService\/default\/obs \(config\.yaml:\d+\)/, 'route links back to its object and file');
    assert.ok(Number(canary.total) >= 50, `canary total ${canary.total}`);
    const split = await page.$$eval('tr.route-row[data-route="virtualservice/default/obs/http/1"] .split-line', (ls) => ls.map((l) => ({ cluster: l.getAttribute('data-cluster'), configured: l.querySelector('.configured')?.textContent, real: l.querySelector('.real')?.textContent })));
    assert.deepEqual(split.map((s) => s.configured), ['80%', '20%']);
    assert.ok(split.every((s) => /^\d+(\.\d)?%$/.test(s.real ?? '')), `real split shown: ${JSON.stringify(split)}`);
    const empty = await page.$eval('tr.route-row[data-route="virtualservice/default/obs/http/3"] td.total', (c) => c.textContent);
    assert.equal(empty, '5');
    const p99 = await page.$eval('tr.route-row[data-route="virtualservice/default/obs/http/1"] td.p99', (c) => c.textContent ?? '');
    assert.match(p99, /^\d+\.\d$/);

    const clusters = await page.$$eval('tr.cluster-row', (rows) => rows.map((r) => ({ cluster: r.getAttribute('data-cluster'), text: r.textContent ?? '' })));
    assert.ok(clusters.some((c) => c.cluster === 'outbound|80||empty.default.svc.cluster.local' && c.text.includes('not ready')));
    assert.ok(clusters.some((c) => c.cluster === 'outbound|80||web.default.svc.cluster.local' && c.text.includes('ready')));
    // Outlier detection: the failing endpoint shows as ejected, with time left and times ejected.
    const eps = await page.$$eval(`tr.cluster-row[data-cluster="${FLAKY_CLUSTER}"] .endpoint`, (ds) => ds.map((d) => ({ endpoint: d.getAttribute('data-endpoint'), health: d.getAttribute('data-health'), ejection: d.querySelector('.ejection')?.textContent ?? '' })));
    const badEp = eps.find((x) => x.endpoint === `127.0.0.1:${bad!.port}`);
    assert.ok(badEp, `failing endpoint listed: ${JSON.stringify(eps)}`);
    assert.equal(badEp.health, 'ejected');
    assert.match(badEp.ejection, /^ejected \d+s left · 1x$/);
    const goodEp = eps.find((x) => x.endpoint === `127.0.0.1:${e.web.port}`);
    assert.equal(goodEp?.health, 'healthy');
    assert.equal(goodEp?.ejection, 'not ejected');
    const noOd = await page.$eval('tr.cluster-row[data-cluster="outbound|80||web.default.svc.cluster.local"] .ejection', (x) => x.textContent);
    assert.equal(noOd, 'no outlier detection');
    const listeners = await page.$eval('#listeners tbody', (b) => b.textContent ?? '');
    assert.match(listeners, /listening/);
    const reloads = await page.$eval('#reloads tbody', (b) => b.textContent ?? '');
    assert.match(reloads, /applied/);

    const shot = path.join(os.tmpdir(), `meshgate-dashboard-${process.pid}.png`);
    await page.screenshot({ path: shot, fullPage: true });
    const png = readFileSync(shot);
    assert.equal(png.subarray(1, 4).toString('latin1'), 'PNG');
    // A rendered page with tables is far larger than a blank one (a few KiB).
    assert.ok(png.length > 30_000, `screenshot of ${png.length} bytes looks blank`);
    // Keep the screenshot when asked (MESHGATE_KEEP_SCREENSHOT=1) for a person to look at.
    if (process.env.MESHGATE_KEEP_SCREENSHOT !== '1') rmSync(shot, { force: true });
    else process.stderr.write(`dashboard screenshot: ${shot}\n`);
  });

  test('meshgate routes / clusters --admin print the running gateway as tables', () => {
    const admin = `http://127.0.0.1:${gw.adminPort}`;
    const routes = meshgate('routes', '--admin', admin);
    assert.equal(routes.code, 0, routes.stderr);
    const lines = routes.stdout.trimEnd().split('\n');
    assert.match(lines[0], /^PORT\s+DOMAINS\s+MATCH\s+ACTION\s+ROUTE\s+SOURCE$/);
    assert.match(lines[1], /^-+\s+-+/);
    assert.equal(lines.length, 2 + 7, 'six obs routes and one flaky route');
    assert.match(routes.stdout, /80\/HTTP\s+obs\.example\.com\s+\/canary\*\s+-> outbound\|80\|\|a\.default\.svc\.cluster\.local 80%, outbound\|80\|\|b\.default\.svc\.cluster\.local 20%\s+virtualservice\/default\/obs\/http\/1\s+VirtualService\/default\/obs \(config\.yaml:\d+\)/);
    assert.match(routes.stdout, /\/delay\*\s+-> outbound\|80\|\|web\.default\.svc\.cluster\.local \(timeout 200ms\)/);

    const clusters = meshgate('clusters', '--admin', admin);
    assert.equal(clusters.code, 0, clusters.stderr);
    assert.match(clusters.stdout, /^CLUSTER\s+SERVICE\s+SUBSET\s+LB\s+READY\s+EJECTED\s+ENDPOINTS\n/);
    assert.match(clusters.stdout, /outbound\|80\|\|empty\.default\.svc\.cluster\.local\s+default\/empty:80\s+-\s+ROUND_ROBIN\s+0\/1\s+-\s+127\.0\.0\.1:\d+ \(not ready\)/);
    assert.match(clusters.stdout, new RegExp(`outbound\\|80\\|\\|web\\.default\\.svc\\.cluster\\.local\\s+default/web:80\\s+-\\s+ROUND_ROBIN\\s+1/1\\s+-\\s+127\\.0\\.0\\.1:${e.web.port}`));

    const unreachable = meshgate('routes', '--admin', `http://127.0.0.1:${gw.httpPort + 0}/nope`);
    assert.notEqual(unreachable.code, 0);
  });

  test('meshgate translate DIR --routes --clusters prints the same tables offline', async () => {
    const live = meshgate('routes', '--admin', `http://127.0.0.1:${gw.adminPort}`).stdout;
    const offline = meshgate('translate', dir, '--routes', '--port-map', `80=${gw.httpPort}`);
    assert.equal(offline.code, 0, offline.stderr);
    assert.equal(offline.stdout, live);
    const both = meshgate('translate', dir, '--routes', '--clusters');
    assert.match(both.stdout, /^PORT/);
    assert.match(both.stdout, /\nCLUSTER\s+SERVICE/);
    const usage = meshgate('routes', '--bogus');
    assert.equal(usage.code, 2);
  });
});
