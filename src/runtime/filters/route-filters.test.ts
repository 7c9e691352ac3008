import assert from 'node:assert/strict';
import { test } from 'node:test';
import { md5Crypt, verifyPassword } from './route-filters.js';

// Vectors made with `openssl passwd -apr1 -salt xyzSALT1 'secret pw'` and `openssl passwd -1 -salt abc hunter2`.
const cases = [
  { desc: 'apr1 right password', password: 'secret pw', hash: '$apr1$xyzSALT1$UtWQLD3Dm.MaSLGo6QUZ91', want: true },
  { desc: 'apr1 wrong password', password: 'secret px', hash: '$apr1$xyzSALT1$UtWQLD3Dm.MaSLGo6QUZ91', want: false },
  { desc: 'md5-crypt $1$', password: 'hunter2', hash: '$1$abc$9dV135Rc3U8Xbm2DxadgF0', want: true },
  { desc: '{SHA}', password: 'pw', hash: '{SHA}GpHWL3ymc5liWkNopqtdSjuqYHM=', want: true },
  { desc: '{SHA} wrong', password: 'pW', hash: '{SHA}GpHWL3ymc5liWkNopqtdSjuqYHM=', want: false },
  { desc: '{PLAIN}', password: 'open', hash: '{PLAIN}open', want: true },
  { desc: 'bcrypt never matches', password: 'x', hash: '$2y$05$abcdefghijklmnopqrstuu5Qn0Fp2aG9yZ.ePDqTyxYlZJ2Y0m', want: false },
  { desc: 'crypt(3) DES never matches', password: 'x', hash: 'abJnggxhB/yWI', want: false },
];
for (const c of cases) test(`verifyPassword: ${c.desc}`, () => assert.equal(verifyPassword(c.password, c.hash), c.want));

test('md5Crypt reproduces openssl passwd -apr1', () => assert.equal(md5Crypt('secret pw', 'xyzSALT1', '$apr1$'), '$apr1$xyzSALT1$UtWQLD3Dm.MaSLGo6QUZ91'));
