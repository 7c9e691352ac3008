import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import net from 'node:net';
import { decodePeerPreambleBody, encodePeerPreamble, readPeerPreamble, type PreambleResult } from './peer-exchange.js';

/** Hex with spaces for reading. */
function hex(s: string): Buffer {
  return Buffer.from(s.replace(/\s+/g, ''), 'hex');
}

/** A socket pair on loopback: `a` writes, `b` is read by readPeerPreamble. */
async function pair(): Promise<{ a: net.Socket; b: net.Socket; close: () => void }> {
  const server = net.createServer({ allowHalfOpen: true });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as net.AddressInfo).port;
  const accepted = new Promise<net.Socket>((r) => server.once('connection', (s: net.Socket) => r(s)));
  const a = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true });
  const b = await accepted;
  return {
    a,
    b,
    close: () => {
      a.destroy();
      b.destroy();
      server.close();
    },
  };
}

function read(b: net.Socket): Promise<PreambleResult> {
  return new Promise((resolve) => readPeerPreamble(b, resolve));
}

function rest(b: net.Socket): Promise<string> {
  return new Promise((resolve) => {
    let got = '';
    b.setEncoding('utf8');
    b.on('data', (c: string) => (got += c));
    b.on('end', () => resolve(got));
    b.resume();
  });
}

describe('Istio TCP metadata exchange preamble', () => {
  test('the frame as the spec says: magic, length (big endian), Any{type_url, Struct}', () => {
    const p = encodePeerPreamble({ NAME: 'a' }, 'i');
    // Struct { "x-envoy-peer-metadata": Struct{NAME: "a"}, "x-envoy-peer-metadata-id": "i" }, keys sorted.
    const struct = hex(`
      0a28 0a15 782d656e766f792d706565722d6d65746164617461 120f 2a0d 0a0b 0a04 4e414d45 1203 1a0161
      0a1f 0a18 782d656e766f792d706565722d6d657461646174612d6964 1203 1a0169`);
    const typeUrl = Buffer.from('type.googleapis.com/google.protobuf.Struct');
    const any = Buffer.concat([Buffer.from([0x0a, typeUrl.length]), typeUrl, Buffer.from([0x12, struct.length]), struct]);
    const header = Buffer.alloc(8);
    header.writeUInt32BE(0x3d230467, 0);
    header.writeUInt32BE(any.length, 4);
    assert.equal(p.subarray(0, 4).toString('hex'), '3d230467');
    assert.equal(p.toString('hex'), Buffer.concat([header, any]).toString('hex'));
    const back = decodePeerPreambleBody(p.subarray(8));
    assert.equal(back.id, 'i');
    assert.deepEqual({ ...back.metadata }, { NAME: 'a' });
  });

  test('an Any of another type is refused', () => {
    const any = hex('0a03 616263 1200');
    assert.throws(() => decodePeerPreambleBody(any), /not a google.protobuf.Struct/);
  });

  test('read in pieces; the bytes after it stay in the socket', async () => {
    const { a, b, close } = await pair();
    try {
      const p = encodePeerPreamble({ WORKLOAD_NAME: 'w' }, 'sidecar~1.2.3.4~p.ns~ns.svc.cluster.local');
      const r = read(b);
      a.write(p.subarray(0, 3));
      await new Promise((x) => setTimeout(x, 20));
      a.write(p.subarray(3, 10));
      await new Promise((x) => setTimeout(x, 20));
      a.end(Buffer.concat([p.subarray(10), Buffer.from('hello')]));
      const got = await r;
      assert.equal(got.kind, 'peer');
      if (got.kind === 'peer') {
        assert.equal(got.peer.id, 'sidecar~1.2.3.4~p.ns~ns.svc.cluster.local');
        assert.equal(got.peer.metadata?.WORKLOAD_NAME, 'w');
      }
      assert.equal(await rest(b), 'hello');
    } finally {
      close();
    }
  });

  test('bytes without the magic pass through untouched', async () => {
    const { a, b, close } = await pair();
    try {
      const r = read(b);
      a.end('GET / HTTP/1.1\r\n\r\n');
      assert.equal((await r).kind, 'none');
      assert.equal(await rest(b), 'GET / HTTP/1.1\r\n\r\n');
    } finally {
      close();
    }
  });

  test('a peer that half-closes inside the preamble gives its bytes back', async () => {
    const { a, b, close } = await pair();
    try {
      const r = read(b);
      a.end(hex('3d230467 0000'));
      const got = await r;
      assert.equal(got.kind, 'ended');
      if (got.kind === 'ended') assert.equal(got.rest.toString('hex'), '3d2304670000');
    } finally {
      close();
    }
  });

  test('an oversized preamble is an error', async () => {
    const { a, b, close } = await pair();
    try {
      const r = read(b);
      a.write(hex('3d230467 7fffffff'));
      const got = await r;
      assert.equal(got.kind, 'error');
    } finally {
      close();
    }
  });
});
