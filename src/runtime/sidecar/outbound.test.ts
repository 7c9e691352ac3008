import { test } from 'node:test';
import assert from 'node:assert/strict';
import { classify, withPortlessDomains } from './outbound.js';
import { plainAddress } from '../http/downstream.js';
import { httpListener, named, vhost } from '../../../test/support/ir-builders.js';

test('classify: TLS, h2c preface, HTTP/1 methods, opaque bytes, and when more bytes are needed', () => {
  const b = (s: string | number[]) => (typeof s === 'string' ? Buffer.from(s, 'latin1') : Buffer.from(s));
  const cases: [Buffer, ReturnType<typeof classify>][] = [
    [b([]), 'need-more'],
    [b([0x16]), 'need-more'],
    [b([0x16, 0x03, 0x01]), 'tls'],
    [b([0x16, 0x01]), 'tcp'],
    [b('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), 'http'],
    [b('PRI * HTTP/2.0\r\n'), 'need-more'],
    [b('GET / HTTP/1.1\r\n'), 'http'],
    [b('GET /x?a=1 HTTP/1.0\n'), 'http'],
    [b('PROPFIND /x HTTP/1.1\r\nhost: a\r\n'), 'http'],
    [b('PROPFIND /x'), 'need-more'],
    [b('GET / HTTP/1.'), 'need-more'],
    [b('GE'), 'need-more'],
    [b('GET'), 'need-more'],
    [b('GET / HTTP/2.0\r\n'), 'tcp'],
    [b('GET / HTTX'), 'tcp'],
    [b('220 smtp ready\r\n'), 'tcp'],
    [b('get key\r\n'), 'tcp'],
    [b('set k 0 0 3\r\nabc\r\n'), 'tcp'],
    [b('\x00\x00\x00\x01'), 'tcp'],
    [b('SSH-2.0-OpenSSH\r\n'), 'tcp'],
    [b('ABCDEFGHIJKLMNOPQRSTUVWXYZ'), 'tcp'],
    [b('*1\r\n$4\r\nPING\r\n'), 'tcp'],
  ];
  for (const [bytes, want] of cases) assert.equal(classify(bytes), want, JSON.stringify(bytes.toString('latin1')));
});

test('plainAddress strips the IPv4-mapped prefix only', () => {
  assert.equal(plainAddress('::ffff:10.0.0.1'), '10.0.0.1');
  assert.equal(plainAddress('10.0.0.1'), '10.0.0.1');
  assert.equal(plainAddress('fd00::1'), 'fd00::1');
});

test('withPortlessDomains: `host:<table port>` also stands for `host`, never over another virtual host\'s claim', () => {
  const l = httpListener(9080, [vhost('a', ['reviews:9080', '10.0.0.1:9080', 'reviews.default:8080'], [named('a')]), vhost('b', ['ratings', 'ratings:9080'], [named('b')])], { externalPort: 9080 });
  const out = withPortlessDomains(l);
  const hosts = out.filterChains[0].virtualHosts.map((v) => v.domains.map((d) => (d.kind === 'exact' ? d.host : d.kind)));
  assert.deepEqual(hosts, [
    ['reviews:9080', '10.0.0.1:9080', 'reviews.default:8080', 'reviews', '10.0.0.1'],
    ['ratings', 'ratings:9080'],
  ]);
});
