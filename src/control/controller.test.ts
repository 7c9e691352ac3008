/**
 * What the controller says is served, from the runtimes' own answers (`servedState`, `/config_dump`):
 * a snapshot every runtime refused is not served (the last good one is); one a runtime refused
 * leaves that runtime on its previous snapshot, which is then the oldest served and is kept for the
 * dump; a reload in progress shows each runtime's version and the oldest one.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Controller } from './controller.js';
import type { DataPlane, RuntimeServing } from './dataplane-types.js';
import type { ConfigSource, LoadedConfig } from '../providers/types.js';
import type { IRSnapshot } from '../ir/types.js';
import type { ApplyResult } from '../runtime/runtime.js';
import type { KubeObject } from '../resources/types.js';
import type { Diagnostic } from '../lib/diagnostic.js';
import { parseFile } from '../providers/file/load.js';
import { DEFAULT_TRANSLATE_OPTIONS } from '../translate/index.js';
import { Logger } from '../lib/log.js';

/** One Ingress whose backend port changes the snapshot version. */
function ingress(port: number): string {
  return `apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web, namespace: default}
spec:
  rules:
  - host: a.example.com
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: ${port}}}}}
`;
}

class TextSource implements ConfigSource {
  readonly description = 'test';
  text = ingress(80);
  load(): Promise<LoadedConfig> {
    const objects: KubeObject[] = [];
    const diagnostics: Diagnostic[] = [];
    parseFile('test.yaml', this.text, objects, diagnostics);
    return Promise.resolve({ objects, diagnostics });
  }
  watch(): { close(): void } {
    return { close: () => undefined };
  }
}

/** Two runtimes, `a` and `b`; `refuse` names those that refuse the next snapshots; `gate` holds an apply half done. */
class FakeDataPlane implements DataPlane {
  readonly state: Record<'a' | 'b', { version: string | null; seq: number }> = { a: { version: null, seq: 0 }, b: { version: null, seq: 0 } };
  refuse = new Set<'a' | 'b'>();
  gate: Promise<void> | null = null;
  #seq = 0;
  async apply(ir: IRSnapshot): Promise<ApplyResult[]> {
    const seq = ++this.#seq;
    const one = (r: 'a' | 'b'): ApplyResult => {
      if (this.refuse.has(r)) return { version: ir.version, applied: false, errors: [`snapshot ${ir.version} does not compile: test`], listeners: [] };
      this.state[r] = { version: ir.version, seq };
      return { version: ir.version, applied: true, errors: [], listeners: [] };
    };
    const a = one('a');
    if (this.gate !== null) await this.gate;
    return [a, one('b')];
  }
  served(): RuntimeServing[] {
    return (['a', 'b'] as const).map((r) => ({ runtime: r, pid: null, ...this.state[r] }));
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
  metrics(): Promise<string> {
    return Promise.resolve('');
  }
}

function setup() {
  const source = new TextSource();
  const plane = new FakeDataPlane();
  const controller = new Controller({ source, translate: DEFAULT_TRANSLATE_OPTIONS, dataPlane: plane, log: new Logger('error', {}, () => {}), watch: false });
  return { source, plane, controller };
}

const versions = (c: Controller) => c.servedState().runtimes.map((r) => `${r.runtime}=${r.version ?? 'none'}`);

test('a snapshot every runtime refuses is not served: the last good one is, and the reload is rejected', async () => {
  const { source, plane, controller } = setup();
  await controller.reload();
  const v1 = controller.serving!.version;
  assert.deepEqual(controller.servedState().version, v1);
  plane.refuse = new Set(['a', 'b']);
  source.text = ingress(81);
  await controller.reload();
  assert.equal(controller.serving?.version, v1, 'the controller still serves the last good snapshot');
  assert.equal(controller.reloads.at(-1)?.outcome, 'rejected');
  assert.equal(controller.reloads.at(-1)?.version, v1);
  const s = controller.servedState();
  assert.equal(s.version, v1);
  assert.equal(s.snapshot?.version, v1);
  assert.equal(s.converged, true);
});

test('a runtime that refuses stays on its snapshot: the oldest version served and its snapshot are reported, not converged', async () => {
  const { source, plane, controller } = setup();
  await controller.reload();
  const v1 = controller.serving!.version;
  plane.refuse = new Set(['b']);
  source.text = ingress(82);
  await controller.reload();
  const v2 = controller.serving!.version;
  assert.notEqual(v2, v1);
  const s = controller.servedState();
  assert.deepEqual(versions(controller), [`a=${v2}`, `b=${v1}`]);
  assert.equal(s.version, v1, 'the oldest version a runtime serves');
  assert.equal(s.snapshot?.version, v1, 'its snapshot is kept while a runtime serves it');
  assert.equal(s.converged, false);
  plane.refuse = new Set();
  source.text = ingress(83);
  await controller.reload();
  const v3 = controller.serving!.version;
  assert.deepEqual(versions(controller), [`a=${v3}`, `b=${v3}`]);
  assert.equal(controller.servedState().version, v3);
  assert.equal(controller.servedState().converged, true);
});

test('during a reload each runtime shows its own version; the dump names the oldest until all serve the new one', async () => {
  const { source, plane, controller } = setup();
  await controller.reload();
  const v1 = controller.serving!.version;
  let open!: () => void;
  plane.gate = new Promise<void>((r) => (open = r));
  source.text = ingress(84);
  const reloading = controller.reload();
  // Runtime a has applied the new snapshot, b not yet.
  for (let i = 0; i < 100 && plane.state.a.version === v1; i++) await new Promise((r) => setTimeout(r, 5));
  const v2 = plane.state.a.version!;
  assert.notEqual(v2, v1);
  const mid = controller.servedState();
  assert.deepEqual(versions(controller), [`a=${v2}`, `b=${v1}`]);
  assert.equal(mid.version, v1);
  assert.equal(mid.snapshot?.version, v1);
  assert.equal(mid.converged, false);
  open();
  await reloading;
  assert.equal(controller.servedState().version, v2);
  assert.equal(controller.servedState().converged, true);
});
