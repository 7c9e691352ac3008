/**
 * A real gRPC server (`@grpc/grpc-js`) for end-to-end tests, with the four call kinds:
 *   Unary        echoes the message; copies request metadata `x-*` into response initial metadata,
 *                sets trailing metadata `x-trailer: done`; message `fail:<code>` answers that
 *                status; `sleep:<ms>` sends the response headers, then waits before answering;
 *                `quiet:<ms>` waits before sending anything (both honour cancellation).
 *   ServerStream sends `count` messages `text#i`.
 *   ClientStream answers one message: every received text joined with `,`.
 *   Bidi         answers each message with `echo:<text>` as it arrives.
 * Every reply's `from` names the server.
 */

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

const PROTO = `
syntax = "proto3";
package meshgate.test;
message EchoRequest { string text = 1; int32 count = 2; }
message EchoReply { string text = 1; string from = 2; }
service Echo {
  rpc Unary (EchoRequest) returns (EchoReply);
  rpc ServerStream (EchoRequest) returns (stream EchoReply);
  rpc ClientStream (stream EchoRequest) returns (EchoReply);
  rpc Bidi (stream EchoRequest) returns (stream EchoReply);
}
`;

export interface EchoRequest { text: string; count?: number }
export interface EchoReply { text: string; from: string }

/** The generated client constructor for `meshgate.test.Echo`. */
export type EchoClient = grpc.Client & {
  Unary(req: EchoRequest, md: grpc.Metadata, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res?: EchoReply) => void): grpc.ClientUnaryCall;
  ServerStream(req: EchoRequest, md?: grpc.Metadata, opts?: grpc.CallOptions): grpc.ClientReadableStream<EchoReply>;
  ClientStream(md: grpc.Metadata, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res?: EchoReply) => void): grpc.ClientWritableStream<EchoRequest>;
  Bidi(md?: grpc.Metadata, opts?: grpc.CallOptions): grpc.ClientDuplexStream<EchoRequest, EchoReply>;
};
type EchoClientCtor = new (address: string, creds: grpc.ChannelCredentials, options?: grpc.ChannelOptions) => EchoClient;

function loadService(): { service: grpc.ServiceDefinition; Client: EchoClientCtor } {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'meshgate-proto-'));
  try {
    const file = path.join(dir, 'echo.proto');
    writeFileSync(file, PROTO);
    const def = protoLoader.loadSync(file, { keepCase: true, defaults: true });
    const pkg = grpc.loadPackageDefinition(def) as unknown as { meshgate: { test: { Echo: EchoClientCtor & { service: grpc.ServiceDefinition } } } };
    const Echo = pkg.meshgate.test.Echo;
    return { service: Echo.service, Client: Echo };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const loaded = loadService();

export interface GrpcEchoServer {
  port: number;
  /** Calls the server saw cancelled by the peer (for deadline tests). */
  cancelled: number;
  close(): Promise<void>;
}

export async function startGrpcEcho(name: string): Promise<GrpcEchoServer> {
  const server = new grpc.Server();
  const state = { cancelled: 0 };
  server.addService(loaded.service, {
    Unary(call: grpc.ServerUnaryCall<EchoRequest, EchoReply>, cb: grpc.sendUnaryData<EchoReply>) {
      const text = call.request.text;
      const md = new grpc.Metadata();
      for (const [k, v] of Object.entries(call.metadata.getMap())) if (k.startsWith('x-')) md.set(k, String(v));
      md.set('x-authority', String(call.getPath()));
      if (text.startsWith('quiet:')) {
        // Sends nothing at all before answering.
        const t = setTimeout(() => cb(null, { text, from: name }), Number(text.slice(6)));
        call.on('cancelled', () => {
          state.cancelled++;
          clearTimeout(t);
        });
        return;
      }
      call.sendMetadata(md);
      const trailer = new grpc.Metadata();
      trailer.set('x-trailer', 'done');
      if (text.startsWith('fail:')) return cb({ code: Number(text.slice(5)), details: `failed as asked (${text})`, metadata: trailer }, null);
      if (text.startsWith('sleep:')) {
        const t = setTimeout(() => cb(null, { text, from: name }, trailer), Number(text.slice(6)));
        call.on('cancelled', () => {
          state.cancelled++;
          clearTimeout(t);
        });
        return;
      }
      cb(null, { text, from: name }, trailer);
    },
    ServerStream(call: grpc.ServerWritableStream<EchoRequest, EchoReply>) {
      for (let i = 0; i < (call.request.count ?? 0); i++) call.write({ text: `${call.request.text}#${i}`, from: name });
      call.end();
    },
    ClientStream(call: grpc.ServerReadableStream<EchoRequest, EchoReply>, cb: grpc.sendUnaryData<EchoReply>) {
      const seen: string[] = [];
      call.on('data', (m: EchoRequest) => seen.push(m.text));
      call.on('end', () => cb(null, { text: seen.join(','), from: name }));
    },
    Bidi(call: grpc.ServerDuplexStream<EchoRequest, EchoReply>) {
      call.on('data', (m: EchoRequest) => call.write({ text: `echo:${m.text}`, from: name }));
      call.on('end', () => call.end());
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  return {
    port,
    get cancelled() {
      return state.cancelled;
    },
    close: () => new Promise<void>((resolve) => server.tryShutdown(() => resolve())),
  } as GrpcEchoServer;
}

/** A plaintext (h2c) client to `host:port` (default 127.0.0.1); `authority` is sent as :authority. */
export function grpcClient(port: number, authority: string, host = '127.0.0.1'): EchoClient {
  return new loaded.Client(`${host}:${port}`, grpc.credentials.createInsecure(), { 'grpc.default_authority': authority });
}

/** A TLS client (HTTP/2 by ALPN) to `127.0.0.1:port` trusting `ca`; `authority` is the SNI, the name checked and :authority. */
export function grpcTlsClient(port: number, authority: string, ca: string): EchoClient {
  return new loaded.Client(`127.0.0.1:${port}`, grpc.credentials.createSsl(Buffer.from(ca)), { 'grpc.default_authority': authority, 'grpc.ssl_target_name_override': authority });
}

export function unary(client: EchoClient, req: EchoRequest, md = new grpc.Metadata(), opts: grpc.CallOptions = {}): Promise<{ reply: EchoReply | null; error: grpc.ServiceError | null; headers: grpc.Metadata | null; status: grpc.StatusObject | null }> {
  return new Promise((resolve) => {
    let headers: grpc.Metadata | null = null;
    let status: grpc.StatusObject | null = null;
    let done: { reply: EchoReply | null; error: grpc.ServiceError | null } | null = null;
    const finish = () => {
      if (done !== null && status !== null) resolve({ ...done, headers, status });
    };
    const call = client.Unary(req, md, opts, (err, res) => {
      done = { reply: res ?? null, error: err };
      finish();
    });
    call.on('metadata', (m: grpc.Metadata) => (headers = m));
    call.on('status', (s: grpc.StatusObject) => {
      status = s;
      finish();
    });
  });
}

export { grpc };
