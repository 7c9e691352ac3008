import { test } from 'node:test';
import assert from 'node:assert/strict';
import { bcryptCrypt, isCryptHash, shaCrypt } from './password-hashes.js';

// Vectors made with glibc/libxcrypt crypt(3) (Python's crypt module), and OpenBSD's bcrypt "U*U" vectors.
const sha: { password: string; hash: string }[] = [
  { password: 'secret pw', hash: '$5$saltsalt$vCVzagwpKquSflhQxH0D10Fgy2Km11eLAozR93EkXT6' },
  { password: 'secret pw', hash: '$6$rounds=1000$abc$8lvqQqR3vKaq5sTWXaVrGoW5KblEj5TbPnVW/ZumXTgzn3F/Il4ZSD/j022PthYx9bDtYUvP.KI4hzQsi/8ma0' },
  { password: '', hash: '$6$saltsalt$qkTgsCrWMTAS9gBGcf9W60sFfH.hU0oTCAOJjhbz5tSp/sU3/xXZK4OFwCtq8lIIdpJ6CatVdOTSHKp97TPkt/' },
  { password: 'a much longer password that is over sixty-four bytes long for the sha-512 variant of crypt', hash: '$6$16charsaltxxxxx$SrCD9wl85CfOSO0IWaKyU5EcDNKS9zgXoKk9b9YDnMVGGtAVPlM7665agGYyD9YymMwAcTIw/hG9q/vBW8uLg/' },
  { password: 'pw', hash: '$5$rounds=5000$toolongsaltstrin$Y3vz9Yc/Xx.o6DLddrkbpSLCVwMU7/nP4IbKEArcEi9' },
];
for (const v of sha) {
  test(`shaCrypt ${v.hash.slice(0, 24)}...`, () => {
    assert.equal(shaCrypt(v.password, v.hash), v.hash);
    assert.notEqual(shaCrypt(`${v.password}x`, v.hash), v.hash);
  });
}

const bcrypt: { password: string; hash: string }[] = [
  { password: 'U*U', hash: '$2b$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW' },
  { password: '', hash: '$2a$05$CCCCCCCCCCCCCCCCCCCCC.7uG0VCzI2bS7j6ymqJi9CdcdxiRTWNy' },
  { password: 'secret pw', hash: '$2y$10$abcdefghijklmnopqrstuu7aHrDdYtvPL.xxqKWrDe.QVmYAXHM76' },
  // Longer than 72 bytes: only the first 72 count.
  { password: 'a'.repeat(80), hash: '$2b$04$abcdefghijklmnopqrstuuBzzIgyKkz7xMWYSzkIjUSnxEQFQ0WNe' },
  { password: 'pässwörd', hash: '$2y$06$0123456789abcdefABCDE.ajfQW3WkZJ5QR1apiLt46/2TbV0VLDS' },
];
for (const v of bcrypt) {
  test(`bcryptCrypt ${v.hash.slice(0, 12)}... (${JSON.stringify(v.password.slice(0, 10))})`, () => {
    assert.equal(bcryptCrypt(v.password, v.hash), v.hash);
    assert.notEqual(bcryptCrypt(`${v.password}x`.slice(0, 79), v.hash), v.hash === bcrypt[3].hash ? null : v.hash);
  });
}

test('bcrypt: 72 bytes is the limit (a 73rd byte does not change the hash)', () => {
  assert.equal(bcryptCrypt('a'.repeat(73), bcrypt[3].hash), bcrypt[3].hash);
});

test('malformed or too costly hashes are not checked', () => {
  assert.equal(bcryptCrypt('x', '$2b$31$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW'), null);
  assert.equal(bcryptCrypt('x', '$2b$05$short'), null);
  assert.equal(shaCrypt('x', '$7$abc$def'), null);
  assert.equal(isCryptHash('$2y$10$abcdefghijklmnopqrstuu7aHrDdYtvPL.xxqKWrDe.QVmYAXHM76'), true);
  assert.equal(isCryptHash('$6$salt$hash'), true);
  assert.equal(isCryptHash('$apr1$x$y'), false);
});
