/**
 * Password hashes nginx's `auth_basic` accepts through crypt(3) besides MD5-crypt: SHA-crypt
 * (`$5$` SHA-256, `$6$` SHA-512; Ulrich Drepper's "Unix crypt using SHA-256 and SHA-512"
 * specification) and bcrypt (`$2a$`, `$2b$`, `$2y$`; Provos and Mazières, OpenBSD's encoding:
 * the key is the password plus a NUL, at most 72 bytes). Written from the specifications; the test
 * vectors in password-hashes.test.ts come from glibc/libxcrypt crypt(3).
 *
 * Both are deliberately slow (SHA-crypt: 5000 rounds by default; bcrypt cost 10: 2^10 key
 * expansions, tens of ms in JavaScript), as in nginx, which also checks them on every request.
 * Callers keep successful checks (route-filters.ts) so a client that sends the same credentials
 * again is not hashed again.
 */

import { createHash } from 'node:crypto';

const CRYPT64 = './0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';

// --- SHA-crypt ---

/** Byte triples of the final digest in output order (the specification's tables). */
const SHA256_ORDER = [[0, 10, 20], [21, 1, 11], [12, 22, 2], [3, 13, 23], [24, 4, 14], [15, 25, 5], [6, 16, 26], [27, 7, 17], [18, 28, 8], [9, 19, 29]];
const SHA512_ORDER = [
  [0, 21, 42], [22, 43, 1], [44, 2, 23], [3, 24, 45], [25, 46, 4], [47, 5, 26], [6, 27, 48], [28, 49, 7], [50, 8, 29], [9, 30, 51], [31, 52, 10],
  [53, 11, 32], [12, 33, 54], [34, 55, 13], [56, 14, 35], [15, 36, 57], [37, 58, 16], [59, 17, 38], [18, 39, 60], [40, 61, 19], [62, 20, 41],
];

/** Largest rounds value accepted (the specification allows 999 999 999; more would stall the gateway). */
const MAX_SHA_ROUNDS = 1_000_000;

/** `$5$[rounds=N$]salt$hash` / `$6$...` for `password`, with the settings of `setting`; null when `setting` is not SHA-crypt. */
export function shaCrypt(password: string, setting: string): string | null {
  const m = /^\$([56])\$(rounds=(\d+)\$)?([^$]*)/.exec(setting);
  if (m === null) return null;
  const algo = m[1] === '5' ? 'sha256' : 'sha512';
  let rounds = 5000;
  if (m[3] !== undefined) rounds = Math.min(Math.max(Number(m[3]), 1000), 999_999_999);
  if (rounds > MAX_SHA_ROUNDS) return null;
  const salt = Buffer.from(m[4].slice(0, 16), 'utf8');
  const pw = Buffer.from(password, 'utf8');
  const h = () => createHash(algo);
  const size = algo === 'sha256' ? 32 : 64;
  const b = h().update(pw).update(salt).update(pw).digest();
  const a = h().update(pw).update(salt);
  let n = pw.length;
  for (; n > size; n -= size) a.update(b);
  a.update(b.subarray(0, n));
  for (let k = pw.length; k > 0; k >>= 1) a.update(k & 1 ? b : pw);
  let c = a.digest();
  const dp = h();
  for (let i = 0; i < pw.length; i++) dp.update(pw);
  const p = repeatTo(dp.digest(), pw.length);
  const ds = h();
  for (let i = 0; i < 16 + c[0]; i++) ds.update(salt);
  const s = repeatTo(ds.digest(), salt.length);
  for (let i = 0; i < rounds; i++) {
    const x = h();
    x.update(i & 1 ? p : c);
    if (i % 3) x.update(s);
    if (i % 7) x.update(p);
    x.update(i & 1 ? c : p);
    c = x.digest();
  }
  let out = '';
  const put = (b2: number, b1: number, b0: number, chars: number) => {
    let w = (b2 << 16) | (b1 << 8) | b0;
    for (let k = 0; k < chars; k++) {
      out += CRYPT64[w & 0x3f];
      w >>= 6;
    }
  };
  for (const [i, j, k] of algo === 'sha256' ? SHA256_ORDER : SHA512_ORDER) put(c[i], c[j], c[k], 4);
  if (algo === 'sha256') put(0, c[31], c[30], 3);
  else put(0, 0, c[63], 2);
  return `$${m[1]}$${m[2] ?? ''}${salt.toString('utf8')}$${out}`;
}

function repeatTo(block: Buffer, length: number): Buffer {
  const out = Buffer.alloc(length);
  for (let i = 0; i < length; i++) out[i] = block[i % block.length];
  return out;
}

// --- bcrypt ---

const BCRYPT64 = './ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
/** Largest cost accepted (2^14 expansions: about a second in JavaScript). */
export const MAX_BCRYPT_COST = 14;

let piWords: Uint32Array | null = null;

/**
 * The 1042 words (18 for P, 4 x 256 for S) of Blowfish's initial state: the hexadecimal digits of
 * pi's fractional part (Schneier), computed once with Machin's formula in BigInt fixed point.
 */
function blowfishInit(): Uint32Array {
  if (piWords !== null) return piWords;
  const words = 18 + 1024;
  const bits = BigInt(words * 32 + 64);
  const one = 1n << bits;
  const arctanInv = (x: bigint): bigint => {
    let sum = 0n;
    let power = one / x;
    const x2 = x * x;
    for (let k = 1n, sign = 1n; power !== 0n; k += 2n, sign = -sign) {
      sum += (sign * power) / k;
      power /= x2;
    }
    return sum;
  };
  const pi = 16n * arctanInv(5n) - 4n * arctanInv(239n);
  // Drop the integer part (3) and the guard bits; what is left is the fraction's first words*32 bits.
  let frac = (pi - 3n * one) >> 64n;
  const out = new Uint32Array(words);
  for (let i = words - 1; i >= 0; i--) {
    out[i] = Number(frac & 0xffffffffn);
    frac >>= 32n;
  }
  piWords = out;
  return out;
}

function decodeBcrypt64(s: string, bytes: number): Buffer | null {
  const out = Buffer.alloc(bytes);
  let o = 0;
  const v = (i: number): number => (i < s.length ? BCRYPT64.indexOf(s[i]) : -1);
  for (let i = 0; o < bytes; i += 4) {
    const c1 = v(i);
    const c2 = v(i + 1);
    if (c1 < 0 || c2 < 0) return null;
    out[o++] = (c1 << 2) | ((c2 & 0x30) >> 4);
    if (o >= bytes) break;
    const c3 = v(i + 2);
    if (c3 < 0) return null;
    out[o++] = ((c2 & 0x0f) << 4) | ((c3 & 0x3c) >> 2);
    if (o >= bytes) break;
    const c4 = v(i + 3);
    if (c4 < 0) return null;
    out[o++] = ((c3 & 0x03) << 6) | c4;
  }
  return out;
}

function encodeBcrypt64(b: Uint8Array): string {
  let out = '';
  for (let p = 0; p < b.length; ) {
    let c1 = b[p++];
    out += BCRYPT64[c1 >> 2];
    c1 = (c1 & 0x03) << 4;
    if (p >= b.length) {
      out += BCRYPT64[c1];
      break;
    }
    let c2 = b[p++];
    c1 |= (c2 >> 4) & 0x0f;
    out += BCRYPT64[c1];
    c1 = (c2 & 0x0f) << 2;
    if (p >= b.length) {
      out += BCRYPT64[c1];
      break;
    }
    c2 = b[p++];
    c1 |= (c2 >> 6) & 0x03;
    out += BCRYPT64[c1] + BCRYPT64[c2 & 0x3f];
  }
  return out;
}

class Blowfish {
  readonly p: Uint32Array;
  readonly s: Uint32Array;
  constructor() {
    const init = blowfishInit();
    this.p = init.slice(0, 18);
    this.s = init.slice(18);
  }

  /** Encrypts the block lr[off], lr[off + 1] in place. */
  encrypt(lr: Uint32Array, off: number): void {
    const p = this.p;
    const s = this.s;
    let l = lr[off];
    let r = lr[off + 1];
    for (let i = 0; i < 16; i += 2) {
      l ^= p[i];
      r ^= (((s[l >>> 24] + s[256 | ((l >>> 16) & 0xff)]) ^ s[512 | ((l >>> 8) & 0xff)]) + s[768 | (l & 0xff)]) >>> 0;
      r ^= p[i + 1];
      l ^= (((s[r >>> 24] + s[256 | ((r >>> 16) & 0xff)]) ^ s[512 | ((r >>> 8) & 0xff)]) + s[768 | (r & 0xff)]) >>> 0;
    }
    lr[off] = (r ^ p[17]) >>> 0;
    lr[off + 1] = (l ^ p[16]) >>> 0;
  }

  /** Blowfish's key schedule with bcrypt's salt (EksBlowfish ExpandKey); `salt` null = the plain schedule. Hot: 2^(cost+1) calls per check. */
  expand(key: Uint8Array, salt: Uint8Array | null): void {
    const p = this.p;
    const s = this.s;
    let k = 0;
    for (let i = 0; i < 18; i++) {
      let w = 0;
      for (let j = 0; j < 4; j++) {
        w = (w << 8) | key[k];
        k = k + 1 === key.length ? 0 : k + 1;
      }
      p[i] ^= w;
    }
    let l = 0;
    let r = 0;
    let d = 0;
    for (let i = 0; i < 1042; i += 2) {
      if (salt !== null) {
        // Salt words (16 bytes: 4 words, cyclic), big-endian.
        l ^= (salt[d] << 24) | (salt[d + 1] << 16) | (salt[d + 2] << 8) | salt[d + 3];
        r ^= (salt[d + 4] << 24) | (salt[d + 5] << 16) | (salt[d + 6] << 8) | salt[d + 7];
        d = (d + 8) & 15;
      }
      // One Blowfish block, inlined (see encrypt).
      for (let n = 0; n < 16; n += 2) {
        l ^= p[n];
        r ^= (((s[l >>> 24] + s[256 | ((l >>> 16) & 0xff)]) ^ s[512 | ((l >>> 8) & 0xff)]) + s[768 | (l & 0xff)]);
        r ^= p[n + 1];
        l ^= (((s[r >>> 24] + s[256 | ((r >>> 16) & 0xff)]) ^ s[512 | ((r >>> 8) & 0xff)]) + s[768 | (r & 0xff)]);
      }
      const nl = r ^ p[17];
      r = l ^ p[16];
      l = nl;
      if (i < 18) {
        p[i] = l;
        p[i + 1] = r;
      } else {
        s[i - 18] = l;
        s[i - 17] = r;
      }
    }
  }
}

/** The 31-character hash part of a bcrypt hash for `password` with `cost` and the 16-byte `salt`. */
function bcryptHash(password: string, cost: number, salt: Buffer): string {
  const pw = Buffer.from(password, 'utf8');
  const key = Buffer.concat([pw, Buffer.from([0])]).subarray(0, 72);
  const bf = new Blowfish();
  bf.expand(key, salt);
  for (let i = 0, n = 2 ** cost; i < n; i++) {
    bf.expand(key, null);
    bf.expand(salt, null);
  }
  const text = Buffer.from('OrpheanBeholderScryDoubt', 'latin1');
  const lr = new Uint32Array(6);
  for (let i = 0; i < 6; i++) lr[i] = text.readUInt32BE(i * 4);
  for (let i = 0; i < 64; i++) for (let j = 0; j < 6; j += 2) bf.encrypt(lr, j);
  const out = Buffer.alloc(24);
  for (let i = 0; i < 6; i++) out.writeUInt32BE(lr[i], i * 4);
  return encodeBcrypt64(out.subarray(0, 23));
}

/**
 * `$2a$`/`$2b$`/`$2y$` `<cost>$<22 salt chars><31 hash chars>`: the hash `password` would have with
 * the same settings (as crypt(3) writes it), or null when `hash` is not a bcrypt hash meshgate checks
 * (malformed, or cost above MAX_BCRYPT_COST).
 */
export function bcryptCrypt(password: string, hash: string): string | null {
  const m = /^\$2([aby])\$(\d\d)\$([./A-Za-z0-9]{22})[./A-Za-z0-9]{31}$/.exec(hash);
  if (m === null) return null;
  const cost = Number(m[2]);
  if (cost < 4 || cost > MAX_BCRYPT_COST) return null;
  const salt = decodeBcrypt64(m[3], 16);
  if (salt === null) return null;
  return `$2${m[1]}$${m[2]}$${m[3]}${bcryptHash(password, cost, salt)}`;
}

/** Whether `hash` is a SHA-crypt or bcrypt hash this module can check. */
export function isCryptHash(hash: string): boolean {
  return /^\$[56]\$/.test(hash) || /^\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}$/.test(hash);
}
