/**
 * Differential check of meshgate's HTTP/1.1 request parser (src/runtime/h1/parser.ts) against
 * llhttp, Node's own parser (`_http_common`'s HTTPParser, initialised as node:http's server does:
 * request mode, 64 KiB of head, no lenient flags). For one input (one or more pipelined requests)
 * both parse it; meshgate's parser gets it in arbitrary chunks (the split points), llhttp whole.
 *
 * The rules (issue 11, item 4):
 * - whenever both complete a message, they agree on its method, target, version, header lines
 *   and body bytes (so on its framing);
 * - meshgate's parser never completes a message llhttp refuses, except for the differences
 *   README's "HTTP/1.1 engine" section documents (listed in `DOCUMENTED`);
 * - refusing what llhttp accepts is allowed (meshgate is stricter: versions other than 1.0/1.1,
 *   transfer codings other than chunked, whitespace before a chunk extension...).
 */

import { createRequire } from 'node:module';
import { H1Parser, ParseError, tunnelledUpgrade, type ParserHandler, type RequestHead } from '../../src/runtime/h1/parser.js';

interface LlhttpParser {
  initialize(type: number, resource: object, maxHeaderSize: number, lenient: number): void;
  execute(buf: Buffer): number | Error;
  finish(): number | Error | undefined;
  close(): void;
  [k: number]: unknown;
}
interface LlhttpModule {
  HTTPParser: { new (): LlhttpParser; REQUEST: number; kOnHeaders: number; kOnHeadersComplete: number; kOnBody: number; kOnMessageComplete: number };
  methods: string[];
}

const llhttp = createRequire(import.meta.url)('_http_common') as LlhttpModule;

/** One parsed message, as both parsers report it. */
export interface Message {
  method: string;
  target: string;
  version: string;
  headers: string[];
  body: string;
  complete: boolean;
  upgrade: boolean;
}

export interface ParseOutcome {
  messages: Message[];
  /** Error code, or null when the input parsed without error (possibly ending mid-message). */
  error: string | null;
}

/** The `Upgrade` header values of a flat raw header list, joined with `,`. */
function upgradeValues(raw: string[]): string {
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) if (raw[i].toLowerCase() === 'upgrade') out.push(raw[i + 1]);
  return out.join(',');
}

/** llhttp's reading of `input`. */
export function parseWithLlhttp(input: Buffer): ParseOutcome {
  const { HTTPParser, methods } = llhttp;
  const p = new HTTPParser();
  p.initialize(HTTPParser.REQUEST, {}, 64 * 1024, 0);
  const messages: Message[] = [];
  let pendingHeaders: string[] = [];
  let pendingUrl = '';
  let cur: Message | null = null;
  let stopped = false;
  p[HTTPParser.kOnHeaders] = (headers: string[], url: string) => {
    // Trailers arrive here too, after the body: not part of the head.
    if (cur !== null && !cur.complete) return;
    pendingHeaders = pendingHeaders.concat(headers);
    pendingUrl += url;
  };
  p[HTTPParser.kOnHeadersComplete] = (maj: number, min: number, headers: string[] | undefined, method: number, url: string | undefined, _sc: unknown, _sm: unknown, upgrade: boolean) => {
    const h = headers ?? pendingHeaders;
    const u = url ?? pendingUrl;
    pendingHeaders = [];
    pendingUrl = '';
    // llhttp's method numbers: `methods` lists 0..33 in order, then QUERY, whose number is 46.
    cur = { method: method === 46 ? 'QUERY' : methods[method], target: u, version: `${maj}.${min}`, headers: h, body: '', complete: false, upgrade };
    messages.push(cur);
    // meshgate tunnels WebSocket upgrades and CONNECT: 2 = no body, the rest of the bytes are the
    // tunnel's (as `parserOnIncoming` with an `upgrade` listener). Any other upgrade (h2c...) is a
    // plain request to meshgate: llhttp reads its body, then pauses (its upgrade flag), and the
    // execute loop below goes on with the next message, as meshgate does.
    if ((upgrade && tunnelledUpgrade(upgradeValues(h))) || cur.method === 'CONNECT') {
      stopped = true;
      return 2;
    }
    if (upgrade) cur.upgrade = false;
    return 0;
  };
  p[HTTPParser.kOnBody] = (b: Buffer) => {
    if (cur !== null) cur.body += b.toString('latin1');
  };
  p[HTTPParser.kOnMessageComplete] = () => {
    if (cur !== null) cur.complete = true;
  };
  let r: number | Error = 0;
  let offset = 0;
  for (;;) {
    r = p.execute(offset === 0 ? input : input.subarray(offset));
    if (r instanceof Error || stopped) break;
    // llhttp paused after a plain (non-tunnelled) upgrade request: go on after it.
    const last = messages[messages.length - 1];
    if (typeof r === 'number' && r > 0 && offset + r < input.length && last !== undefined && last.complete) {
      offset += r;
      continue;
    }
    break;
  }
  p.close();
  const error = r instanceof Error ? String((r as Error & { code?: string }).code ?? r.message) : null;
  void stopped;
  return { messages, error };
}

/** meshgate's reading of `input`, fed in chunks cut at `splits` (offsets). */
export function parseWithMeshgate(input: Buffer, splits: number[]): ParseOutcome {
  const messages: Message[] = [];
  let cur: Message | null = null;
  let stop = false;
  const handler: ParserHandler = {
    onHead(h: RequestHead) {
      cur = { method: h.method, target: h.target, version: `1.${h.versionMinor}`, headers: h.rawHeaders, body: '', complete: false, upgrade: h.upgrade || h.method === 'CONNECT' };
      messages.push(cur);
      if (cur.upgrade) stop = true;
    },
    onBody(chunk: Buffer) {
      if (cur !== null) cur.body += chunk.toString('latin1');
    },
    onMessageComplete() {
      if (cur !== null) cur.complete = true;
    },
  };
  const parser = new H1Parser(handler, 64 * 1024, 10_000);
  const cuts = [...new Set(splits.filter((s) => s > 0 && s < input.length))].sort((a, b) => a - b);
  cuts.push(input.length);
  let from = 0;
  try {
    for (const to of cuts) {
      const chunk = input.subarray(from, to);
      from = to;
      let i = 0;
      while (i < chunk.length && !stop) {
        i = parser.execute(chunk, i);
        parser.next();
      }
      if (stop) break;
    }
  } catch (err) {
    if (err instanceof ParseError) return { messages, error: `${err.status} ${err.code}` };
    throw err;
  }
  return { messages, error: null };
}

/**
 * Known, documented differences where meshgate's parser completes a message llhttp refuses (README,
 * "HTTP/1.1 engine"). Each returns true when it explains the disagreement on `input`.
 */
export const DOCUMENTED: { name: string; applies: (llhttpError: string, input: string) => boolean }[] = [];

/** Checks the rules on one input; returns a description of the first violation, or null. */
export function checkDifferential(input: Buffer, splits: number[]): string | null {
  const a = parseWithLlhttp(input);
  const b = parseWithMeshgate(input, splits);
  const show = JSON.stringify(input.toString('latin1'));
  for (let k = 0; k < b.messages.length; k++) {
    const mine = b.messages[k];
    const theirs = a.messages[k];
    const mineDone = mine.complete || mine.upgrade;
    if (!mineDone) continue;
    const theirsDone = theirs !== undefined && (theirs.complete || theirs.upgrade);
    if (!theirsDone) {
      // meshgate accepted a message llhttp did not (refused it, or read it differently).
      if (a.error !== null && DOCUMENTED.some((d) => d.applies(a.error!, input.toString('latin1')))) return null;
      return `meshgate accepted message ${k} that llhttp ${a.error !== null ? `refused (${a.error})` : 'did not complete'}: ${show}`;
    }
    for (const field of ['method', 'target', 'version', 'body', 'upgrade'] as const) {
      if (mine[field] !== theirs[field]) return `message ${k}: ${field} differs: meshgate ${JSON.stringify(mine[field])}, llhttp ${JSON.stringify(theirs[field])}: ${show}`;
    }
    if (JSON.stringify(mine.headers) !== JSON.stringify(theirs.headers)) return `message ${k}: headers differ: meshgate ${JSON.stringify(mine.headers)}, llhttp ${JSON.stringify(theirs.headers)}: ${show}`;
  }
  return null;
}
