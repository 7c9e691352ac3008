import { test } from 'node:test';
import assert from 'node:assert/strict';
import { addressInCidr, sameAddress } from './addresses.js';

const cases: { desc: string; address: string; cidr: string; want: boolean }[] = [
  { desc: 'loopback prefix holds 127.0.0.2', address: '127.0.0.2', cidr: '127.0.0.1/8', want: true },
  { desc: 'plain address equals', address: '10.0.0.5', cidr: '10.0.0.5', want: true },
  { desc: 'plain address differs', address: '10.0.0.6', cidr: '10.0.0.5', want: false },
  { desc: '/24 boundary', address: '192.0.2.255', cidr: '192.0.2.0/24', want: true },
  { desc: 'outside /24', address: '192.0.3.1', cidr: '192.0.2.0/24', want: false },
  { desc: '/0 holds every IPv4', address: '8.8.8.8', cidr: '0.0.0.0/0', want: true },
  { desc: 'IPv6 ::1/128', address: '::1', cidr: '::1/128', want: true },
  { desc: 'IPv6 prefix', address: 'fd00:1::7', cidr: 'fd00::/8', want: true },
  { desc: 'IPv6 long form equals short form', address: 'fd00:0:0:0:0:0:0:1', cidr: 'fd00::1', want: true },
  { desc: 'families never mix', address: '127.0.0.1', cidr: '::/0', want: false },
  { desc: 'a hostname is no address', address: 'gw.example.com', cidr: '0.0.0.0/0', want: false },
  { desc: 'bad prefix length', address: '10.0.0.1', cidr: '10.0.0.0/33', want: false },
];
for (const c of cases) test(`addressInCidr: ${c.desc}`, () => assert.equal(addressInCidr(c.address, c.cidr), c.want));

test('sameAddress compares values, not spellings', () => {
  assert.equal(sameAddress('::ffff:127.0.0.1', '::ffff:7f00:1'), true);
  assert.equal(sameAddress('127.0.0.1', '127.0.0.2'), false);
  assert.equal(sameAddress('0.0.0.0', '::'), false);
});
