/**
 * The DNS wire codec: table tests of parsing (compression, loops, truncated and hostile packets,
 * EDNS), of encoding (compression, TC over the UDP limit), and fast-check properties: any byte
 * string either parses or raises DnsFormatError (never another error, never a hang), and an encoded
 * response parses back to what was encoded.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  addressBytes,
  DnsFormatError,
  encodeResponse,
  parseFirstQuestion,
  parseQuery,
  readName,
  splitName,
  truncateRelayed,
  TYPE_A,
  TYPE_AAAA,
  TYPE_CNAME,
  UDP_PLAIN_LIMIT,
  type DnsAnswer,
} from './wire.js';
import { buildQuery, readAnswers } from '../../../test/support/dns-client.js';

test('parseQuery reads a plain query: id, RD, the question with its case kept, no EDNS', () => {
  const q = parseQuery(buildQuery(0x1234, 'ReViews.default.svc.cluster.local', TYPE_A));
  assert.equal(q.header.id, 0x1234);
  assert.equal(q.header.recursionDesired, true);
  assert.equal(q.header.response, false);
  assert.deepEqual(q.questions, [{ name: 'ReViews.default.svc.cluster.local', type: TYPE_A, class: 1 }]);
  assert.equal(q.ednsUdpSize, null);
});

test('parseQuery reads the EDNS(0) UDP size, and raises a size under 512 to 512 (RFC 6891 §6.2.5)', () => {
  assert.equal(parseQuery(buildQuery(1, 'a.example', TYPE_A, { edns: 1232 })).ednsUdpSize, 1232);
  assert.equal(parseQuery(buildQuery(1, 'a.example', TYPE_A, { edns: 100 })).ednsUdpSize, 512);
});

test('readName follows a backward compression pointer', () => {
  // header, then "example.com" at 12, then "www" + pointer to 12 at 25
  const buf = Buffer.concat([Buffer.alloc(12), Buffer.from([7, ...Buffer.from('example'), 3, ...Buffer.from('com'), 0]), Buffer.from([3, ...Buffer.from('www'), 0xc0, 12])]);
  assert.deepEqual(readName(buf, 25), { name: 'www.example.com', next: 31 });
});

const malformed: { desc: string; bytes: number[] }[] = [
  { desc: 'shorter than a header', bytes: [0, 1, 1, 0, 0] },
  { desc: 'a question count with no question', bytes: [0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0] },
  { desc: 'a pointer to itself', bytes: [0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1] },
  { desc: 'a pointer forward', bytes: [0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 14, 1, 0x61, 0, 0, 1, 0, 1] },
  { desc: 'two pointers pointing at each other', bytes: [0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 0x61, 0xc0, 16, 0xc0, 12, 0, 1, 0, 1] },
  { desc: 'a pointer cut short', bytes: [0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0] },
  { desc: 'a label past the end', bytes: [0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 9, 0x61, 0x62] },
  { desc: 'label type 0x40', bytes: [0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0x41, 0x61, 0, 0, 1, 0, 1] },
  { desc: 'a question without type and class', bytes: [0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 0x61, 0, 0, 1] },
  { desc: 'bytes after the last section', bytes: [0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 0x61, 0, 0, 1, 0, 1, 0xff] },
  { desc: 'a record whose data runs past the end', bytes: [0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 41, 2, 0, 0, 0, 0, 0, 0, 9, 1] },
  { desc: 'an OPT record in the answer section', bytes: [0, 1, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 41, 2, 0, 0, 0, 0, 0, 0, 0] },
];
for (const c of malformed) {
  test(`parseQuery refuses ${c.desc} with DnsFormatError`, () => {
    assert.throws(() => parseQuery(Buffer.from(c.bytes)), DnsFormatError);
  });
}

test('a name longer than 255 octets is refused, also when built from pointers', () => {
  // 5 labels of 63 = 320 octets
  const long = Array.from({ length: 5 }, () => 'a'.repeat(63)).join('.');
  assert.throws(() => splitName(`${'a'.repeat(64)}.b`), DnsFormatError);
  const labels = Buffer.concat(long.split('.').map((l) => Buffer.from([l.length, ...Buffer.from(l)])));
  assert.throws(() => parseQuery(Buffer.concat([Buffer.from([0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0]), labels, Buffer.from([0, 0, 1, 0, 1])])), DnsFormatError);
});

test('encodeResponse compresses the owner names onto the question and the CNAME target onto the answer before it', () => {
  const answers: DnsAnswer[] = [
    { type: TYPE_CNAME, name: 'api.example.com.default.svc.cluster.local', ttl: 30, target: 'api.example.com' },
    { type: TYPE_A, name: 'api.example.com', ttl: 30, address: addressBytes('240.240.0.1')! },
  ];
  const out = encodeResponse({ id: 7, opcode: 0, authoritative: true, recursionDesired: true, recursionAvailable: false, checkingDisabled: false, rcode: 0, question: { name: 'api.example.com.default.svc.cluster.local', type: TYPE_A, class: 1 }, answers });
  const back = readAnswers(out);
  assert.deepEqual(back, [
    { name: 'api.example.com.default.svc.cluster.local', type: TYPE_CNAME, ttl: 30, data: 'api.example.com' },
    { name: 'api.example.com', type: TYPE_A, ttl: 30, data: '240.240.0.1' },
  ]);
  // Compressed: question 53 octets + header 12 + CNAME (2 owner + 10 + 2 target ptr... ) stays far under the uncompressed size.
  assert.ok(out.length < 12 + 47 + 4 + 2 + 10 + 17 + 2 + 10 + 4 + 10, `${out.length} bytes: not compressed`);
  const h = parseFirstQuestion(out).header;
  assert.equal(h.response, true);
  assert.equal(h.authoritative, true);
  assert.equal(h.id, 7);
});

test('encodeResponse over the UDP limit keeps the records that fit and sets TC', () => {
  const answers: DnsAnswer[] = Array.from({ length: 60 }, (_, i) => ({ type: TYPE_AAAA, name: 'many.example', ttl: 30, address: addressBytes(`2001:db8::${i + 1}`)! }));
  const r = { id: 1, opcode: 0, authoritative: true, recursionDesired: true, recursionAvailable: false, checkingDisabled: false, rcode: 0, question: { name: 'many.example', type: TYPE_AAAA, class: 1 }, answers };
  const udp = encodeResponse(r, UDP_PLAIN_LIMIT);
  assert.ok(udp.length <= UDP_PLAIN_LIMIT, `${udp.length} bytes`);
  const h = parseFirstQuestion(udp).header;
  assert.equal(h.truncated, true);
  assert.ok(h.ancount > 0 && h.ancount < 60, `ancount ${h.ancount}`);
  assert.equal(readAnswers(udp).length, h.ancount);
  const tcp = encodeResponse(r);
  assert.equal(parseFirstQuestion(tcp).header.truncated, false);
  assert.equal(readAnswers(tcp).length, 60);
});

test('truncateRelayed cuts a long upstream answer to its question with TC, and leaves a short one alone', () => {
  const answers: DnsAnswer[] = Array.from({ length: 40 }, (_, i) => ({ type: TYPE_A, name: 'x.example', ttl: 5, address: Uint8Array.of(10, 0, 0, i) }));
  const long = encodeResponse({ id: 9, opcode: 0, authoritative: false, recursionDesired: true, recursionAvailable: true, checkingDisabled: false, rcode: 0, question: { name: 'x.example', type: TYPE_A, class: 1 }, answers });
  const cut = truncateRelayed(long, 512);
  assert.ok(cut.length <= 512);
  const h = parseFirstQuestion(cut).header;
  assert.equal(h.truncated, true);
  assert.equal(h.ancount, 0);
  assert.equal(h.id, 9);
  assert.deepEqual(parseQuery(cut).questions, [{ name: 'x.example', type: TYPE_A, class: 1 }]);
  assert.deepEqual(truncateRelayed(long, 65535), long);
});

test('addressBytes reads IPv4 and IPv6 text, and refuses what is not an address', () => {
  assert.deepEqual([...addressBytes('240.240.1.2')!], [240, 240, 1, 2]);
  assert.deepEqual([...addressBytes('2001:2::f0f0:1')!], [0x20, 0x01, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0xf0, 0xf0, 0, 1]);
  assert.deepEqual([...addressBytes('::ffff:10.0.0.1')!].slice(10), [0xff, 0xff, 10, 0, 0, 1]);
  for (const bad of ['256.1.1.1', '1.2.3', 'a::b::c', 'example.com', '10.0.0.0/8', '1:2:3:4:5:6:7:8:9']) assert.equal(addressBytes(bad), null, bad);
});

test('property: any bytes parse or fail with DnsFormatError, never another error', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 600 }), (bytes) => {
      try {
        parseQuery(bytes);
      } catch (e) {
        if (!(e instanceof DnsFormatError)) throw e;
      }
    }),
    { numRuns: 3000 },
  );
});

test('property: a valid query with random bytes flipped or cut parses or fails with DnsFormatError', () => {
  const label = fc.stringMatching(/^[a-zA-Z0-9-]{1,20}$/);
  fc.assert(
    fc.property(fc.array(label, { minLength: 1, maxLength: 6 }), fc.integer({ min: 0, max: 0xffff }), fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 4 }), fc.nat(), (labels, id, flips, cut) => {
      const q = buildQuery(id, labels.join('.'), TYPE_A, { edns: 1232 });
      for (const [at, v] of flips) q[at % q.length] = v;
      const bytes = q.subarray(0, q.length - (cut % 4));
      try {
        parseQuery(bytes);
      } catch (e) {
        if (!(e instanceof DnsFormatError)) throw e;
      }
    }),
    { numRuns: 3000 },
  );
});

test('property: an encoded response reads back as encoded, and never exceeds its limit unless nothing can be dropped', () => {
  const label = fc.stringMatching(/^[a-z0-9-]{1,15}$/);
  const name = fc.array(label, { minLength: 1, maxLength: 5 }).map((l) => l.join('.'));
  const answer = fc.oneof(
    fc.record({ type: fc.constant(TYPE_A), name, ttl: fc.nat(), address: fc.uint8Array({ minLength: 4, maxLength: 4 }) }),
    fc.record({ type: fc.constant(TYPE_AAAA), name, ttl: fc.nat(), address: fc.uint8Array({ minLength: 16, maxLength: 16 }) }),
    fc.record({ type: fc.constant(TYPE_CNAME), name, ttl: fc.nat(), target: name }),
  ) as fc.Arbitrary<DnsAnswer>;
  fc.assert(
    fc.property(name, fc.array(answer, { maxLength: 40 }), fc.integer({ min: 512, max: 4096 }), (qname, answers, limit) => {
      const out = encodeResponse({ id: 3, opcode: 0, authoritative: true, recursionDesired: true, recursionAvailable: false, checkingDisabled: false, rcode: 0, question: { name: qname, type: TYPE_A, class: 1 }, answers }, limit);
      const q = parseQuery(out); // the whole message is well formed
      assert.deepEqual(q.questions, [{ name: qname, type: TYPE_A, class: 1 }]);
      const back = readAnswers(out);
      assert.equal(q.header.truncated, back.length < answers.length);
      assert.ok(out.length <= limit || back.length === 0);
      back.forEach((b, i) => {
        const a = answers[i];
        assert.equal(b.name, a.name);
        assert.equal(b.ttl, a.ttl);
        if (a.type === TYPE_CNAME) assert.equal(b.data, a.target);
        else assert.equal(b.type, a.type);
      });
    }),
    { numRuns: 500 },
  );
});
