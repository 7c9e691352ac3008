import { test } from 'node:test';
import assert from 'node:assert/strict';
import { withPortlessDomains } from './outbound.js';
import { plainAddress } from '../http/downstream.js';
import { httpListener, named, vhost } from '../../../test/support/ir-builders.js';

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
