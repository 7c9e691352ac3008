import { test } from 'node:test';
import assert from 'node:assert/strict';
import { STATUS_CODES } from 'node:http';
import { canonicalLength, statusLine } from './h1-downstream.js';

test('status lines: node:http reason phrases, Unknown for unregistered codes, made once', () => {
  assert.equal(statusLine(200), 'HTTP/1.1 200 OK\r\n');
  assert.equal(statusLine(503), 'HTTP/1.1 503 Service Unavailable\r\n');
  assert.equal(statusLine(299), 'HTTP/1.1 299 Unknown\r\n');
  for (const code of Object.keys(STATUS_CODES).map(Number)) assert.equal(statusLine(code), `HTTP/1.1 ${code} ${STATUS_CODES[code]}\r\n`);
  assert.equal(statusLine(404), statusLine(404));
});

test('a Content-Length is written only as canonical digits', () => {
  assert.equal(canonicalLength('0'), 0);
  assert.equal(canonicalLength('1024'), 1024);
  assert.equal(canonicalLength('0000000000000000002'), 2, 'leading zeros, as llhttp accepts them');
  assert.equal(canonicalLength(String(Number.MAX_SAFE_INTEGER)), Number.MAX_SAFE_INTEGER);
  for (const bad of ['', ' 5', '5 ', '+5', '-1', '0x10', '1e3', '1.5', '5,5', '9007199254740992', '99999999999999999999']) assert.equal(canonicalLength(bad), -1, JSON.stringify(bad));
});
