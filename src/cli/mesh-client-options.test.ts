import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ISTIOD_ADDRESS, parseMeshClientOptions } from './mesh-client-options.js';

const fail = (m: string): never => {
  throw new Error(m);
};

/** A token whose subject names the pod's service account (not verified here: the CA verifies it). */
function token(sub: string): string {
  const part = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
  return `${part({ alg: 'RS256' })}.${part({ sub, aud: ['istio-ca'] })}.sig`;
}

describe('meshgate run: mesh-client options', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'meshgate-mesh-opts-'));
  const mounts = { rootCert: path.join(dir, 'root-cert.pem'), token: path.join(dir, 'istio-token') };
  writeFileSync(mounts.rootCert, '-----BEGIN CERTIFICATE-----\n');
  writeFileSync(mounts.token, token('system:serviceaccount:istio-system:istio-ingressgateway'));
  const none = { rootCert: path.join(dir, 'missing-root'), token: path.join(dir, 'missing-token') };

  test('--kubernetes in a pod with Istio\'s mounts: a mesh client of istiod, identity from the token', () => {
    const o = parseMeshClientOptions({ kubernetes: true }, fail, mounts);
    assert.ok(o !== null);
    assert.equal(o.address, ISTIOD_ADDRESS);
    assert.equal(o.namespace, 'istio-system');
    assert.equal(o.serviceAccount, 'istio-ingressgateway');
    assert.equal(o.rootCertFile, mounts.rootCert);
  });

  test('$CA_ADDR names another control plane, as for istio-agent', () => {
    process.env.CA_ADDR = 'meshgate-control.mesh.svc:15012';
    try {
      assert.equal(parseMeshClientOptions({ kubernetes: true }, fail, mounts)?.address, 'meshgate-control.mesh.svc:15012');
    } finally {
      delete process.env.CA_ADDR;
    }
  });

  test('no mesh client: without the mounts, from a directory, or with --control none', () => {
    assert.equal(parseMeshClientOptions({ kubernetes: true }, fail, none), null);
    assert.equal(parseMeshClientOptions({}, fail, mounts), null);
    assert.equal(parseMeshClientOptions({ kubernetes: true, control: 'none' }, fail, mounts), null);
  });

  test('an explicit --control wins; a bad address is refused', () => {
    assert.equal(parseMeshClientOptions({ control: '10.0.0.5:15012' }, fail, mounts)?.address, '10.0.0.5:15012');
    assert.throws(() => parseMeshClientOptions({ control: 'no-port' }, fail, mounts), /not HOST:PORT/);
  });

  test('cleanup', () => rmSync(dir, { recursive: true, force: true }));
});
