/**
 * Istio's TCP metadata exchange (the `istio.metadata_exchange` network filter, Envoy contrib
 * `metadata_exchange`): when an Istio mTLS connection negotiated ALPN `istio-peer-exchange`, each
 * side first writes one preamble and reads the other's before the application's bytes:
 *
 *   uint32 magic 0x3D230467 (big endian) | uint32 length (big endian) | google.protobuf.Any {
 *     type_url = "type.googleapis.com/google.protobuf.Struct",
 *     value    = Struct { "x-envoy-peer-metadata": Struct (the workload, as the HTTP header's),
 *                         "x-envoy-peer-metadata-id": string (the node ID) } }
 *
 * A client writes its preamble with its first bytes (Envoy: on the first write, or on the first
 * server bytes of a server-first protocol); a server writes its own at once. A side whose peer's bytes
 * do not start with the magic passes them through untouched (Envoy: "peer missing TCP
 * MetadataExchange filter"). Only ALPN decides: a connection that negotiated anything else carries
 * no preamble. Used by the sidecar's outbound TCP relays (runtime/tcp/tcp-listeners.ts) and inbound
 * relays (runtime/sidecar/inbound.ts); see docs/sidecar.md.
 */
import type net from 'node:net';
import { decodeStruct, encodeStruct, lengthDelimitedFields, type StructObject } from '../../lib/proto-struct.js';

/** The ALPN value announcing the preamble. */
export const PEER_EXCHANGE_ALPN = 'istio-peer-exchange';

/** What a client sidecar offers for TCP over Istio mTLS with the exchange (Istio's `ALPNInMeshWithMxc`). */
export const PEER_EXCHANGE_OFFER: readonly string[] = [PEER_EXCHANGE_ALPN, 'istio'];

export const PEER_EXCHANGE_MAGIC = 0x3d230467;

const STRUCT_TYPE_URL = 'type.googleapis.com/google.protobuf.Struct';

/** A peer's preamble larger than this is refused (Envoy sets no bound; a Struct of a workload is a few hundred bytes). */
const MAX_PREAMBLE = 64 * 1024;

/** This proxy's side of the exchange, built once per view. */
export interface TcpPeerExchange {
  /** The whole preamble, header included. */
  readonly preamble: Buffer;
}

/** What a peer's preamble said: its metadata Struct and node ID ('' when absent). */
export interface PeerPreamble {
  metadata: StructObject | null;
  id: string;
}

function lenField(field: number, body: Buffer): Buffer {
  const head: number[] = [(field << 3) | 2];
  let n = body.length;
  while (n > 0x7f) {
    head.push((n & 0x7f) | 0x80);
    n = Math.floor(n / 128);
  }
  head.push(n);
  return Buffer.concat([Buffer.from(head), body]);
}

/** The preamble carrying `metadata` (the workload Struct) and `id`. */
export function encodePeerPreamble(metadata: StructObject, id: string): Buffer {
  const value = encodeStruct({ 'x-envoy-peer-metadata': metadata, 'x-envoy-peer-metadata-id': id });
  const any = Buffer.concat([lenField(1, Buffer.from(STRUCT_TYPE_URL)), lenField(2, value)]);
  const header = Buffer.allocUnsafe(8);
  header.writeUInt32BE(PEER_EXCHANGE_MAGIC, 0);
  header.writeUInt32BE(any.length, 4);
  return Buffer.concat([header, any]);
}

/** The Any body of a preamble (after the 8-byte header); throws when it is not a Struct. */
export function decodePeerPreambleBody(body: Buffer): PeerPreamble {
  const fields = lengthDelimitedFields(body);
  const typeUrl = fields.get(1)?.toString('utf8') ?? '';
  if (typeUrl !== STRUCT_TYPE_URL) throw new Error(`metadata exchange preamble holds ${typeUrl || 'nothing'}, not a google.protobuf.Struct`);
  const s = decodeStruct(fields.get(2) ?? Buffer.alloc(0));
  const m = s['x-envoy-peer-metadata'];
  const id = s['x-envoy-peer-metadata-id'];
  return { metadata: m !== null && typeof m === 'object' && !Array.isArray(m) ? m : null, id: typeof id === 'string' ? id : '' };
}

/** How reading a peer's preamble ended. */
export type PreambleResult =
  /** The preamble was read (bytes after it are back in the socket). */
  | { kind: 'peer'; peer: PeerPreamble }
  /** The bytes are no preamble (no magic): they are back in the socket, untouched. */
  | { kind: 'none' }
  /** The peer half-closed before the preamble was complete: `rest` are the bytes it sent. */
  | { kind: 'ended'; rest: Buffer }
  /** A preamble too large, or not a Struct: the connection should be closed. */
  | { kind: 'error'; error: Error };

/**
 * Reads the peer's preamble from `socket` (which must not be piped yet), then calls `done` with the
 * socket paused: the caller pipes it on. Bytes after the preamble, or all bytes when there is none,
 * are put back (`unshift`).
 */
export function readPeerPreamble(socket: net.Socket, done: (r: PreambleResult) => void): void {
  let buf: Buffer = Buffer.alloc(0);
  let finished = false;
  /** `back`: bytes to put back into the socket, once nothing here listens (a flowing socket re-emits them at once). */
  const finish = (r: PreambleResult, back: Buffer | null = null): void => {
    if (finished) return;
    finished = true;
    socket.removeListener('data', onData);
    socket.removeListener('end', onEnd);
    socket.removeListener('close', onClose);
    socket.pause();
    if (back !== null && back.length > 0) socket.unshift(back);
    done(r);
  };
  const onData = (chunk: Buffer): void => {
    buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
    // The magic is decided on its first bytes: anything else is passed through at once.
    const seen = Math.min(buf.length, 4);
    for (let i = 0; i < seen; i++) {
      if (buf[i] !== ((PEER_EXCHANGE_MAGIC >>> (24 - 8 * i)) & 0xff)) return finish({ kind: 'none' }, buf);
    }
    if (buf.length < 8) return;
    const length = buf.readUInt32BE(4);
    if (length > MAX_PREAMBLE) return finish({ kind: 'error', error: new Error(`metadata exchange preamble of ${length} bytes (at most ${MAX_PREAMBLE})`) });
    if (buf.length < 8 + length) return;
    let peer: PeerPreamble;
    try {
      peer = decodePeerPreambleBody(buf.subarray(8, 8 + length));
    } catch (err) {
      return finish({ kind: 'error', error: err as Error });
    }
    finish({ kind: 'peer', peer }, buf.subarray(8 + length));
  };
  const onEnd = (): void => finish({ kind: 'ended', rest: buf });
  const onClose = (): void => finish({ kind: 'ended', rest: buf });
  socket.on('data', onData);
  socket.once('end', onEnd);
  socket.once('close', onClose);
  socket.resume();
}
